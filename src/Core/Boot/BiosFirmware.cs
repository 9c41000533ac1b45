// PC BIOS firmware (-bios FILE, e.g. Debian's SeaBIOS bios.bin): a flash image mapped as ROM at the top of the
// 32-bit address space, ending at 4 GiB, with its last 128 KiB also answering at 0xe0000-0xfffff through the
// chipset (I440fxPam), where the i440FX's PAM registers let the BIOS shadow itself into RAM.
// The image must be a whole number of 64 KiB blocks, at least 128 KiB (the legacy alias) and at most 16 MiB (the
// firmware hub's largest decode below 4 GiB, and what QEMU's pc machine maps); anything else is refused before a
// VM exists, naming the file.
// The boot vCPU starts as after a hardware reset: real mode, CS selector 0xf000 with base 0xffff0000, IP 0xfff0,
// so the first fetch is at 0xfffffff0, inside the ROM.
using ActorVmm.Core.Accel;
using ActorVmm.Core.Memory;

namespace ActorVmm.Core.Boot;

/// <summary>A validated BIOS image, read by the host before the VM starts.</summary>
public sealed class BiosImage
{
    public const int BlockSize = 64 * 1024;
    public const int MinSize = 128 * 1024;
    public const int MaxSize = 16 * 1024 * 1024;
    public const ulong FourGiB = 1UL << 32;

    private BiosImage(string name, byte[] data)
    {
        Name = name;
        Data = data;
    }

    public string Name { get; }

    public ReadOnlyMemory<byte> Data { get; }

    /// <summary>Where the ROM starts in guest-physical memory (it ends at 4 GiB).</summary>
    public ulong Base => FourGiB - (ulong)Data.Length;

    /// <summary>Checks the size rules; throws <see cref="BootImageException"/> naming the file and the rule broken.</summary>
    public static BiosImage Parse(ReadOnlySpan<byte> data, string name)
    {
        if (data.Length == 0) throw new BootImageException($"{name}: the BIOS image is empty");
        if (data.Length > MaxSize)
            throw new BootImageException($"{name}: a BIOS image of {data.Length} bytes is larger than the 16 MiB that can be mapped below 4 GiB");
        if (data.Length % BlockSize != 0)
            throw new BootImageException($"{name}: a BIOS image must be a multiple of 64 KiB; this one is {data.Length} bytes");
        if (data.Length < MinSize)
            throw new BootImageException($"{name}: a BIOS image must be at least 128 KiB (it is aliased at 0xe0000-0xfffff); this one is {data.Length} bytes");
        return new BiosImage(name, data.ToArray());
    }
}

/// <summary>The ROM of a BIOS mapped into one VM's memory, and the shadow-RAM map over it. Dispose after the VM.</summary>
public sealed unsafe class BiosFirmware : IDisposable
{
    private readonly NativeRam _rom;

    private BiosFirmware(NativeRam rom, I440fxPam pam)
    {
        _rom = rom;
        Pam = pam;
    }

    /// <summary>The PAM decoder the host bridge's configuration writes drive.</summary>
    public I440fxPam Pam { get; }

    /// <summary>Maps <paramref name="image"/> as ROM below 4 GiB and its last 128 KiB at 0xe0000 (through PAM).</summary>
    public static BiosFirmware Load(GuestMemory memory, BiosImage image)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(image);
        var rom = new NativeRam((ulong)image.Data.Length);
        try
        {
            image.Data.Span.CopyTo(new Span<byte>(rom.Pointer, image.Data.Length));
            if (memory.FindRegion(image.Base) is { } clash || memory.Regions.Any(r => r.Start >= image.Base && r.Start < BiosImage.FourGiB))
                throw new BootImageException($"{image.Name}: the BIOS ROM at 0x{image.Base:x}-0xffffffff would overlap guest memory");
            memory.Remap([], [new GuestRegion("bios", image.Base, (ulong)image.Data.Length, rom.Pointer, readOnly: true)]);
            var pam = new I440fxPam(memory, rom.Pointer + (image.Data.Length - BiosImage.MinSize));
            return new BiosFirmware(rom, pam);
        }
        catch
        {
            rom.Dispose();
            throw;
        }
    }

    /// <summary>The boot vCPU's state after a hardware reset: it fetches its first instruction at 0xfffffff0.</summary>
    public static BootState ResetState()
    {
        var regs = new CpuRegisters { Rip = 0xfff0, Rflags = 2 };
        return new BootState(regs, SystemRegisters.PowerOn());
    }

    public void Dispose()
    {
        Pam.Dispose();
        _rom.Dispose();
    }
}
