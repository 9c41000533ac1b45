// Loads a Multiboot v1 kernel (Multiboot Specification 0.6.96, section 3.2 "Machine state" and 3.3 "Boot
// information format") into guest memory and returns the state the boot vCPU starts in.
// Guest memory after Load:
//   kernel segments at their addresses (bss zeroed);
//   modules, each page aligned, after the kernel (as QEMU places them);
//   one page-aligned block after the modules holding, in order: the boot information structure (88 bytes),
//   the memory map, the module list, a GDT, the command line, the boot loader name "ActorVmm" and the module
//   strings. Everything stays below 4 GiB, in memory the map reports as usable (as QEMU does too).
//   Given a PlatformDescription, the MP table and ACPI tables first (PlatformTables: in the BIOS area and the
//   reserved top 128 KiB, where SeaBIOS puts its own under QEMU), so a multiboot kernel finds the processors the
//   way it does under QEMU; RAM too small for them gets none. The kernel is written after them.
// Boot information: flags = mem (0) | cmdline (2) | mods (3) | mmap (6) | boot_loader_name (9).
//   mem_lower: KiB of conventional memory (639 with the PC's 0x9FC00 EBDA boundary), mem_upper: KiB of
//   usable RAM from 1 MiB. The memory map is the one QEMU's pc machine gives a multiboot kernel:
//   0-0x9FC00 usable, 0x9FC00-0xA0000 reserved (EBDA), 0xF0000-0x100000 reserved (BIOS), 1 MiB up to 128 KiB
//   below the top of RAM under 4 GiB usable, that top 128 KiB reserved (firmware tables: SeaBIOS keeps them
//   there, and ActorVmm keeps its own platform tables there), every region above 4 GiB usable, read-only
//   regions reserved, and the 256 KiB BIOS flash window at 0xFFFC0000 reserved. QEMU on an AMD-flavoured
//   CPU model also reserves 0xFD00000000-0x10000000000 (the HyperTransport hole); ActorVmm's CPU reports
//   itself as Intel, where QEMU does not add that range either.
// Machine state (spec 3.2): EAX = 0x2BADB002, EBX = info address, EIP = entry, CS = 0x08 flat 32-bit
// execute/read, DS/ES/FS/GS/SS = 0x10 flat read/write (base 0, limit 0xFFFFFFFF), CR0 = PE|ET (paging off),
// EFLAGS = 0x2 (IF and VM clear), and a GDT in guest memory whose descriptors equal those segments
// (accessed bits set, as after a load). ESP is left 0: the kernel must set up its own stack.
using System.Buffers.Binary;
using System.Text;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Memory;

namespace ActorVmm.Core.Boot;

public static class MultibootLoader
{
    /// <summary>EAX at kernel entry.</summary>
    public const uint BootloaderMagic = 0x2BADB002;
    public const string BootLoaderName = "ActorVmm";

    public const ushort CodeSelector = 0x08;
    public const ushort DataSelector = 0x10;
    /// <summary>Flat 32-bit code: base 0, limit 4 GiB (G), D=1, present, DPL 0, execute/read, accessed.</summary>
    public const ulong CodeDescriptor = 0x00CF9B000000FFFF;
    /// <summary>Flat data: base 0, limit 4 GiB (G), B=1, present, DPL 0, read/write, accessed.</summary>
    public const ulong DataDescriptor = 0x00CF93000000FFFF;

    public const uint InfoFlagMemory = 1u << 0;
    public const uint InfoFlagCmdline = 1u << 2;
    public const uint InfoFlagModules = 1u << 3;
    public const uint InfoFlagMmap = 1u << 6;
    public const uint InfoFlagBootLoaderName = 1u << 9;

    public const int InfoSize = 88;
    public const int MmapEntrySize = 24;
    public const int ModuleEntrySize = 16;

    public const ulong EbdaStart = 0x9FC00;
    public const ulong BiosStart = 0xF0000;
    public const ulong HighMemoryStart = 0x100000;
    /// <summary>Reserved at the top of RAM below 4 GiB for firmware and platform tables (as SeaBIOS does under QEMU).</summary>
    public const ulong FirmwareTablesSize = 0x20000;
    /// <summary>The BIOS flash window below 4 GiB, reserved in the map.</summary>
    public const ulong BiosFlashStart = 0xFFFC0000;
    private const ulong PageSize = 0x1000;

    /// <summary>Memory map entry types (the E820 types the spec refers to).</summary>
    public const uint MemoryAvailable = 1, MemoryReserved = 2;

    /// <summary>Writes the kernel, modules, command line and boot information into <paramref name="memory"/>.</summary>
    /// <exception cref="BootImageException">Something does not fit in guest RAM; the message names the file.</exception>
    /// <exception cref="ArgumentException">The command line or a module name contains a NUL character.</exception>
    public static BootState Load(GuestMemory memory, MultibootImage image, string cmdline,
        IReadOnlyList<(string Name, ReadOnlyMemory<byte> Data)> modules, PlatformDescription? platform = null)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(cmdline);
        ArgumentNullException.ThrowIfNull(modules);
        if (cmdline.Contains('\0', StringComparison.Ordinal)) throw new ArgumentException("the kernel command line contains a NUL character", nameof(cmdline));
        foreach (var (n, _) in modules)
        {
            if (n is null || n.Contains('\0', StringComparison.Ordinal)) throw new ArgumentException($"module name '{n}' is null or contains a NUL character", nameof(modules));
        }

        // Platform tables (MP, ACPI) where a BIOS would leave them, when RAM has room for them.
        if (platform is not null && PlatformTables.FirmwareBlock(memory) is not null && memory.IsBacked(BiosStart, 0x10000))
            PlatformTables.Write(memory, platform);

        // Kernel.
        foreach (var seg in image.Segments)
        {
            if (!IsWritableRam(memory, seg.Address, seg.MemorySize))
                throw new BootImageException($"{image.Name}: segment 0x{seg.Address:x}-0x{seg.End - 1:x} lies outside guest RAM ({Describe(memory)})");
        }
        foreach (var seg in image.Segments)
        {
            memory.Write(seg.Address, seg.Data.Span);
            Zero(memory, seg.Address + (ulong)seg.Data.Length, seg.MemorySize - (ulong)seg.Data.Length);
        }

        // Modules, page aligned after the kernel (and never in low memory).
        ulong next = Math.Max(AlignUp(image.LoadEnd, PageSize), HighMemoryStart);
        var moduleRanges = new List<(ulong Start, ulong End)>();
        foreach (var (modName, data) in modules)
        {
            ulong start = next;
            ulong end = start + (ulong)data.Length;
            if (end > 1UL << 32 || !IsWritableRam(memory, start, Math.Max(1UL, (ulong)data.Length)))
                throw new BootImageException($"{modName}: module of {data.Length} bytes does not fit in guest RAM at 0x{start:x} after kernel {image.Name} ({Describe(memory)})");
            memory.Write(start, data.Span);
            moduleRanges.Add((start, end));
            next = AlignUp(Math.Max(end, start + 1), PageSize);
        }

        // The boot information block.
        var mmap = BuildMemoryMap(memory);
        var cmdBytes = Encoding.UTF8.GetBytes(cmdline);
        var nameBytes = Encoding.ASCII.GetBytes(BootLoaderName);
        var modNames = modules.Select(m => Encoding.UTF8.GetBytes(m.Name)).ToArray();

        ulong info = next;
        ulong mmapAddr = info + InfoSize;
        ulong modsAddr = mmapAddr + (ulong)(mmap.Count * MmapEntrySize);
        ulong gdtAddr = AlignUp(modsAddr + (ulong)(modules.Count * ModuleEntrySize), 8);
        ulong cmdAddr = gdtAddr + 24;
        ulong nameAddr = cmdAddr + (ulong)cmdBytes.Length + 1;
        ulong strings = nameAddr + (ulong)nameBytes.Length + 1;
        var modStringAddrs = new ulong[modules.Count];
        for (int i = 0; i < modNames.Length; i++)
        {
            modStringAddrs[i] = strings;
            strings += (ulong)modNames[i].Length + 1;
        }
        ulong blockEnd = strings;
        if (blockEnd > 1UL << 32 || !IsWritableRam(memory, info, blockEnd - info))
            throw new BootImageException($"{image.Name}: no guest RAM for the {blockEnd - info}-byte boot information block at 0x{info:x} ({Describe(memory)})");

        var block = new byte[blockEnd - info];
        var infoSpan = block.AsSpan(0, InfoSize);
        uint memLower = (uint)(ContiguousFrom(memory, 0, EbdaStart) / 1024);
        uint memUpper = UpperMemoryKiB(mmap);
        W32(infoSpan, 0, InfoFlagMemory | InfoFlagCmdline | InfoFlagModules | InfoFlagMmap | InfoFlagBootLoaderName);
        W32(infoSpan, 4, memLower);
        W32(infoSpan, 8, memUpper);
        W32(infoSpan, 16, (uint)cmdAddr);
        W32(infoSpan, 20, (uint)modules.Count);
        W32(infoSpan, 24, (uint)modsAddr);
        W32(infoSpan, 44, (uint)(mmap.Count * MmapEntrySize));
        W32(infoSpan, 48, (uint)mmapAddr);
        W32(infoSpan, 64, (uint)nameAddr);
        for (int i = 0; i < mmap.Count; i++)
        {
            var e = block.AsSpan((int)(mmapAddr - info) + i * MmapEntrySize, MmapEntrySize);
            W32(e, 0, MmapEntrySize - 4);
            BinaryPrimitives.WriteUInt64LittleEndian(e[4..], mmap[i].Base);
            BinaryPrimitives.WriteUInt64LittleEndian(e[12..], mmap[i].Length);
            W32(e, 20, mmap[i].Type);
        }
        for (int i = 0; i < modules.Count; i++)
        {
            var e = block.AsSpan((int)(modsAddr - info) + i * ModuleEntrySize, ModuleEntrySize);
            W32(e, 0, (uint)moduleRanges[i].Start);
            W32(e, 4, (uint)moduleRanges[i].End);
            W32(e, 8, (uint)modStringAddrs[i]);
            modNames[i].CopyTo(block.AsSpan((int)(modStringAddrs[i] - info)));
        }
        BinaryPrimitives.WriteUInt64LittleEndian(block.AsSpan((int)(gdtAddr - info) + 8), CodeDescriptor);
        BinaryPrimitives.WriteUInt64LittleEndian(block.AsSpan((int)(gdtAddr - info) + 16), DataDescriptor);
        cmdBytes.CopyTo(block.AsSpan((int)(cmdAddr - info)));
        nameBytes.CopyTo(block.AsSpan((int)(nameAddr - info)));
        memory.Write(info, block);

        var regs = new CpuRegisters
        {
            Rax = BootloaderMagic,
            Rbx = info,
            Rip = image.Entry,
            Rflags = 0x2,
        };
        var sys = SystemRegisters.PowerOn();
        sys.Cs = SegmentRegister.Make(CodeSelector, 0, 0xFFFFFFFF, type: 0xB, s: true, dpl: 0, l: false, db: true, g: true);
        var data32 = SegmentRegister.Make(DataSelector, 0, 0xFFFFFFFF, type: 0x3, s: true, dpl: 0, l: false, db: true, g: true);
        sys.Ds = data32;
        sys.Es = data32;
        sys.Fs = data32;
        sys.Gs = data32;
        sys.Ss = data32;
        sys.Gdtr = new DescriptorTableRegister { Base = gdtAddr, Limit = 3 * 8 - 1 };
        sys.Cr0 = 0x11; // PE | ET; PG, CD and NW clear
        sys.Cr3 = 0;
        sys.Cr4 = 0;
        sys.Efer = 0;
        return new BootState(regs, sys) { InfoAddress = info, LoadedEnd = blockEnd };
    }

    /// <summary>The memory map a multiboot kernel is given for <paramref name="memory"/> (base, length, type).</summary>
    public static IReadOnlyList<(ulong Base, ulong Length, uint Type)> BuildMemoryMap(GuestMemory memory)
    {
        var map = new List<(ulong Base, ulong Length, uint Type)>();
        ulong low = ContiguousFrom(memory, 0, EbdaStart);
        if (low > 0) map.Add((0, low, MemoryAvailable));
        map.Add((EbdaStart, 0xA0000 - EbdaStart, MemoryReserved));
        map.Add((BiosStart, HighMemoryStart - BiosStart, MemoryReserved));
        ulong lowRamTop = memory.Regions
            .Where(r => !r.ReadOnly && r.End > HighMemoryStart && r.Start < 1UL << 32)
            .Select(r => Math.Min(r.End, 1UL << 32))
            .DefaultIfEmpty(0UL)
            .Max();
        foreach (var r in memory.Regions.Where(r => r.End > HighMemoryStart))
        {
            ulong start = Math.Max(r.Start, HighMemoryStart);
            ulong end = r.End;
            if (r.ReadOnly)
            {
                Append(map, start, end, MemoryReserved);
                continue;
            }
            if (end == lowRamTop && lowRamTop - start > FirmwareTablesSize)
            {
                Append(map, start, end - FirmwareTablesSize, MemoryAvailable);
                Append(map, end - FirmwareTablesSize, end, MemoryReserved);
            }
            else
            {
                Append(map, start, end, MemoryAvailable);
            }
        }
        if (!memory.Regions.Any(r => r.Start < 1UL << 32 && r.End > BiosFlashStart))
            map.Add((BiosFlashStart, (1UL << 32) - BiosFlashStart, MemoryReserved));
        map.Sort((a, b) => a.Base.CompareTo(b.Base));
        return map;

        static void Append(List<(ulong Base, ulong Length, uint Type)> map, ulong start, ulong end, uint type)
        {
            if (map[^1].Type == type && map[^1].Base + map[^1].Length == start)
                map[^1] = (map[^1].Base, map[^1].Length + (end - start), type);
            else
                map.Add((start, end - start, type));
        }
    }

    /// <summary>KiB of usable RAM from 1 MiB in <paramref name="map"/> (multiboot mem_upper).</summary>
    private static uint UpperMemoryKiB(IReadOnlyList<(ulong Base, ulong Length, uint Type)> map)
    {
        foreach (var e in map)
        {
            if (e.Base == HighMemoryStart && e.Type == MemoryAvailable)
                return (uint)Math.Min(e.Length / 1024, uint.MaxValue);
        }
        return 0;
    }

    /// <summary>Bytes of writable RAM contiguous from <paramref name="start"/>, at most <paramref name="limit"/>.</summary>
    private static ulong ContiguousFrom(GuestMemory memory, ulong start, ulong limit)
    {
        ulong at = start;
        while (at - start < limit)
        {
            var r = memory.FindRegion(at);
            if (r is null || r.ReadOnly) break;
            at = r.End;
        }
        return Math.Min(at - start, limit);
    }

    private static bool IsWritableRam(GuestMemory memory, ulong start, ulong length)
        => length == 0 || (start + length >= start && ContiguousFrom(memory, start, length) == length);

    private static void Zero(GuestMemory memory, ulong gpa, ulong length)
    {
        Span<byte> zeros = stackalloc byte[4096];
        zeros.Clear();
        while (length > 0)
        {
            int n = (int)Math.Min(length, (ulong)zeros.Length);
            memory.Write(gpa, zeros[..n]);
            gpa += (ulong)n;
            length -= (ulong)n;
        }
    }

    private static string Describe(GuestMemory memory)
        => memory.Regions.Count == 0 ? "no RAM" : "RAM: " + string.Join(", ", memory.Regions.Select(r => r.ToString()));

    private static ulong AlignUp(ulong value, ulong alignment) => (value + alignment - 1) & ~(alignment - 1);

    private static void W32(Span<byte> s, int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(s[offset..], value);
}
