// The i440FX's Programmable Attribute Map (Intel 82441FX PMC datasheet, 3.2.14, PAM0-PAM6 at PCI config 0x59-0x5f
// of the host bridge 00.0): how the 256 KiB between 0xc0000 and 0xfffff is decoded, so a BIOS can copy itself from
// ROM into the RAM underneath ("shadowing") and run from RAM.
//
// Segments: PAM0 bits 5:4 control 0xf0000-0xfffff (64 KiB; bits 3:0 reserved); PAM1-PAM6 each control two 16 KiB
// segments, bits 1:0 the lower (0xc0000 + 32 KiB * (n - 1)) and bits 5:4 the upper (+16 KiB). Per segment, bit 0
// (RE) sends reads to DRAM and bit 1 (WE) sends writes to DRAM; an access not sent to DRAM goes to PCI. So
//   00: reads and writes go to PCI           01: read-only (DRAM reads; writes to PCI)
//   10: write-only (DRAM writes; PCI reads)   11: DRAM read/write
// What answers on "PCI" here: in 0xe0000-0xfffff the BIOS ROM (its last 128 KiB, the legacy alias of the flash
// at the top of 4 GiB); in 0xc0000-0xdffff nothing (no option ROMs are mapped), so reads see a master abort's
// all-ones and writes are dropped. ROM writes are dropped too.
// At reset every PAM register is 0: the BIOS runs from the ROM alias.
// Not emulated: the SMRAM window at 0xa0000 (SMRAM register 0x72; no SMM) and the 0xa0000-0xbffff VGA hole,
// which stays plain RAM.
namespace ActorVmm.Core.Memory;

/// <summary>The PAM-controlled window of guest memory, remapped whenever the guest writes PAM0-PAM6.</summary>
public sealed unsafe class I440fxPam : IDisposable
{
    public const ulong WindowStart = 0xc0000;
    public const ulong WindowEnd = 0x100000;
    /// <summary>The part of the window where the BIOS ROM alias answers PCI cycles.</summary>
    public const ulong BiosAliasStart = 0xe0000;
    public const int RegisterCount = 7;

    private const ulong SmallSegment = 0x4000;

    /// <summary>The 13 segments: start, size, PAM register (0-6) and the bit position of its two-bit field.</summary>
    private static readonly (ulong Start, ulong Size, int Register, int Shift)[] Segments = BuildSegments();

    private readonly GuestMemory _memory;
    private readonly byte* _ram;
    private readonly byte* _rom;
    private readonly NativeRam _openBus;
    private readonly GuestRegion[] _mapped = new GuestRegion[Segments.Length];
    private readonly byte[] _modes = new byte[Segments.Length];

    /// <summary>
    /// Splits the RAM region that covers the window into the RAM below and above it plus one region per segment, all
    /// decoded as PAM = 0 (reads from the ROM alias).
    /// </summary>
    /// <param name="biosAlias">128 KiB of host memory that PCI answers with at 0xe0000-0xfffff (the BIOS ROM's last 128 KiB).</param>
    public I440fxPam(GuestMemory memory, byte* biosAlias)
    {
        ArgumentNullException.ThrowIfNull(memory);
        if (biosAlias == null) throw new ArgumentNullException(nameof(biosAlias));
        var ram = memory.FindRegion(WindowStart);
        if (ram is null || !ram.WritesInPlace || ram.End < WindowEnd)
            throw new GuestMemoryException($"PAM: 0x{WindowStart:x}-0x{WindowEnd - 1:x} must lie in one RAM region (the machine needs at least 1 MiB of RAM)");
        _memory = memory;
        _ram = ram.Host + (WindowStart - ram.Start);
        _rom = biosAlias;
        _openBus = new NativeRam(SmallSegment);
        new Span<byte>(_openBus.Pointer, (int)SmallSegment).Fill(0xff);

        var add = new List<GuestRegion>();
        if (ram.Start < WindowStart) add.Add(new GuestRegion($"{ram.Name}-low", ram.Start, WindowStart - ram.Start, ram.Host));
        if (ram.End > WindowEnd) add.Add(new GuestRegion($"{ram.Name}-high", WindowEnd, ram.End - WindowEnd, ram.Host + (WindowEnd - ram.Start)));
        for (int i = 0; i < Segments.Length; i++)
        {
            _mapped[i] = SegmentRegion(i, 0);
            add.Add(_mapped[i]);
        }
        memory.Remap([ram], add);
    }

    /// <summary>Decoding of each segment now (two bits: WE, RE), lowest address first; for tests and the log.</summary>
    public IReadOnlyList<byte> Modes => _modes;

    /// <summary>Applies the PAM0-PAM6 register values (config bytes 0x59-0x5f) to the memory map.</summary>
    public void Apply(ReadOnlySpan<byte> pam)
    {
        if (pam.Length != RegisterCount) throw new ArgumentException($"PAM: {RegisterCount} registers expected, got {pam.Length}", nameof(pam));
        var remove = new List<GuestRegion>();
        var add = new List<GuestRegion>();
        for (int i = 0; i < Segments.Length; i++)
        {
            byte mode = (byte)((pam[Segments[i].Register] >> Segments[i].Shift) & 3);
            if (mode == _modes[i]) continue;
            remove.Add(_mapped[i]);
            _mapped[i] = SegmentRegion(i, mode);
            _modes[i] = mode;
            add.Add(_mapped[i]);
        }
        if (remove.Count > 0) _memory.Remap(remove, add);
    }

    private GuestRegion SegmentRegion(int index, byte mode)
    {
        var (start, size, _, _) = Segments[index];
        byte* dram = _ram + (start - WindowStart);
        // What PCI answers with: the ROM alias in the E and F segments, all-ones (nothing claims the cycle) below.
        byte* pci = start >= BiosAliasStart ? _rom + (start - BiosAliasStart) : null;
        string name = $"pam-{start:x5}";
        return mode switch
        {
            3 => new GuestRegion(name, start, size, dram),
            1 => new GuestRegion(name, start, size, dram, readOnly: true),
            2 => pci != null
                ? new GuestRegion(name, start, size, pci, writeHost: dram)
                : new GuestRegion(name, start, size, _openBus.Pointer, writeHost: dram), // 16 KiB segments only
            _ => pci != null
                ? new GuestRegion(name, start, size, pci, readOnly: true)
                : new GuestRegion(name, start, size, _openBus.Pointer, readOnly: true),
        };
    }

    private static (ulong, ulong, int, int)[] BuildSegments()
    {
        var list = new List<(ulong, ulong, int, int)>();
        for (int reg = 1; reg <= 6; reg++)
        {
            ulong start = WindowStart + (ulong)(reg - 1) * 2 * SmallSegment;
            list.Add((start, SmallSegment, reg, 0));
            list.Add((start + SmallSegment, SmallSegment, reg, 4));
        }
        list.Add((0xf0000, 0x10000, 0, 4));
        return [.. list];
    }

    public void Dispose() => _openBus.Dispose();
}
