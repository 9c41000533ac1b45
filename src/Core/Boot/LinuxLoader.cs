// Loads a Linux kernel without firmware and returns the state the boot vCPU starts in, through either of
// the two entries a modern x86 kernel offers:
//
// 64-bit entry (Documentation/x86/boot.rst, "64-bit Boot Protocol"; LoadBzImage):
//   the protected-mode part of the bzImage at pref_address when [pref_address, + init_size) is usable RAM,
//   else (relocatable kernels) at the lowest kernel_alignment-aligned address from 16 MiB, then 1 MiB, where
//   init_size fits; the kernel then decompresses itself. The zero page (struct boot_params) at 0x7000: the
//   file's setup header copied to 0x1f1 with type_of_loader 0xff, code32_start, ramdisk_image/size (and
//   ext_ramdisk_*), cmd_line_ptr (and ext_cmd_line_ptr) filled in; e820_entries (0x1e8) and e820_table
//   (0x2d0) from MultibootLoader.BuildMemoryMap (QEMU pc's map); acpi_rsdp_addr (0x70). Command line at
//   0x20000. CPU: 64-bit mode (CR0 = PE|ET|PG, CR4 = PAE, EFER = LME|LMA), page tables at 0x9000 mapping the
//   first 4 GiB 1:1 with 2 MiB pages (PML4 0x9000, PDPT 0xa000, four PDs 0xb000-0xefff; the soft CPU has
//   no 1 GiB pages), a GDT at 0x500 with __BOOT_CS 0x10 (flat 64-bit code) and __BOOT_DS 0x18 (flat data),
//   CS = 0x10, DS/ES/SS/FS/GS = 0x18, RIP = load address + 0x200, RSI = zero page, RSP = 0x8ff0, IF = 0.
//
// PVH entry (Xen's HVM direct boot ABI, as Linux's arch/x86/platform/pvh expects; LoadPvh):
//   the ELF's PT_LOAD segments at their physical addresses, bss zeroed; struct hvm_start_info (version 1)
//   at 0x6000: magic 0x336ec578, nr_modules and modlist_paddr (one hvm_modlist_entry at 0x6040 for the
//   initrd), cmdline_paddr (0x20000), rsdp_paddr, memmap_paddr/memmap_entries (hvm_memmap_table_entry
//   records from 0x6100, the same memory map). CPU: 32-bit protected mode, paging off (CR0 = PE|ET), flat
//   32-bit CS 0x08 and DS/ES/SS/FS/GS 0x10 from a GDT at 0x500, TR a 32-bit busy TSS, EBX = start_info,
//   EIP = the PHYS32_ENTRY note, IF = 0.
//
// Both: the initrd goes page-aligned as high as possible below the top of usable RAM under 4 GiB (and below
// initrd_addr_max for a bzImage), above the kernel; the MP and ACPI tables (PlatformTables) are written.
// Everything that does not fit is a BootImageException that names the file and the sizes.
using System.Buffers.Binary;
using System.Text;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Memory;

namespace ActorVmm.Core.Boot;

public static class LinuxLoader
{
    public const ulong GdtAddress = 0x500;
    public const ulong StartInfoAddress = 0x6000;
    public const ulong ModlistAddress = 0x6040;
    public const ulong PvhMemmapAddress = 0x6100;
    public const ulong ZeroPageAddress = 0x7000;
    public const ulong StackTop = 0x8ff0;
    public const ulong Pml4Address = 0x9000;
    public const ulong PdptAddress = 0xa000;
    public const ulong PdAddress = 0xb000;
    public const ulong CmdlineAddress = 0x20000;
    public const int MaxCmdlineBytes = 0x10000;
    public const int MaxE820Entries = 128;

    public const ushort BootCs = 0x10, BootDs = 0x18;
    public const ushort PvhCs = 0x08, PvhDs = 0x10;
    /// <summary>Flat 64-bit code: L=1, D=0, present, DPL 0, execute/read, accessed.</summary>
    public const ulong Code64Descriptor = 0x00AF9B000000FFFF;
    public const ulong Code32Descriptor = 0x00CF9B000000FFFF;
    public const ulong DataDescriptor = 0x00CF93000000FFFF;

    public const uint StartInfoMagic = 0x336ec578;
    public const int StartInfoSize = 56;
    public const int ModlistEntrySize = 32;
    public const int PvhMemmapEntrySize = 24;

    private const ulong PageSize = 0x1000;
    private const ulong FourGiB = 1UL << 32;

    /// <summary>Loads <paramref name="image"/> for the 64-bit entry.</summary>
    /// <exception cref="BootImageException">Something does not fit; the message names the file.</exception>
    public static BootState LoadBzImage(GuestMemory memory, LinuxBzImage image, string cmdline, ReadOnlyMemory<byte>? initrd,
        string initrdName, PlatformDescription platform)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(platform);
        var cmd = CommandLineBytes(cmdline, image.CmdlineSize, image.Name);
        var map = MultibootLoader.BuildMemoryMap(memory);
        if (map.Count > MaxE820Entries) throw new BootImageException($"{image.Name}: the memory map has {map.Count} entries, more than the zero page's {MaxE820Entries}");

        ulong initSize = Math.Max(image.InitSize, (ulong)image.Kernel.Length);
        ulong load = ChooseLoadAddress(map, image, initSize);
        var kernel = image.Kernel;
        memory.Write(load, kernel.Span);

        var (initrdAt, initrdSize) = PlaceInitrd(memory, map, initrd, initrdName, load + initSize, Math.Min((ulong)image.InitrdAddressMax + 1, FourGiB), image.Name);
        var tables = PlatformTables.Write(memory, platform);

        var zp = new byte[PageSize];
        var header = image.SetupHeader.Span;
        header.CopyTo(zp.AsSpan(LinuxBzImage.HeaderOffset));
        zp[0x210] = 0xff;                                                            // type_of_loader: undefined
        zp[0x211] &= unchecked((byte)~0x20);                                         // loadflags: QUIET_FLAG off
        W32(zp, 0x214, (uint)load);                                                  // code32_start
        W32(zp, 0x218, (uint)initrdAt);
        W32(zp, 0x21c, (uint)initrdSize);
        W32(zp, 0xc0, (uint)(initrdAt >> 32));                                       // ext_ramdisk_image
        W32(zp, 0xc4, (uint)(initrdSize >> 32));                                     // ext_ramdisk_size
        W32(zp, 0x228, (uint)CmdlineAddress);
        W32(zp, 0xc8, 0);                                                            // ext_cmd_line_ptr
        BinaryPrimitives.WriteUInt64LittleEndian(zp.AsSpan(0x70), tables.Rsdp);     // acpi_rsdp_addr
        zp[0x1e8] = (byte)map.Count;
        for (int i = 0; i < map.Count; i++)
        {
            var e = zp.AsSpan(0x2d0 + i * 20, 20);
            BinaryPrimitives.WriteUInt64LittleEndian(e, map[i].Base);
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], map[i].Length);
            BinaryPrimitives.WriteUInt32LittleEndian(e[16..], map[i].Type);
        }
        memory.Write(ZeroPageAddress, zp);
        memory.Write(CmdlineAddress, cmd);
        WriteGdt(memory, [0, 0, Code64Descriptor, DataDescriptor]);
        WriteIdentityPageTables(memory);

        var regs = new CpuRegisters
        {
            Rip = load + LinuxBzImage.Entry64Offset,
            Rsi = ZeroPageAddress,
            Rsp = StackTop,
            Rflags = 0x2,
        };
        var sys = SystemRegisters.PowerOn();
        sys.Cs = SegmentRegister.Make(BootCs, 0, 0xFFFFFFFF, type: 0xB, s: true, dpl: 0, l: true, db: false, g: true);
        var data = SegmentRegister.Make(BootDs, 0, 0xFFFFFFFF, type: 0x3, s: true, dpl: 0, l: false, db: true, g: true);
        sys.Ds = data; sys.Es = data; sys.Ss = data; sys.Fs = data; sys.Gs = data;
        sys.Gdtr = new DescriptorTableRegister { Base = GdtAddress, Limit = 4 * 8 - 1 };
        sys.Tr = new SegmentRegister { Limit = 0xffff, Attributes = 0x8b }; // busy 32-bit TSS shape (the 64-bit kernel loads its own)
        sys.Cr0 = 0x80000011; // PG | ET | PE
        sys.Cr3 = Pml4Address;
        sys.Cr4 = 0x20;       // PAE
        sys.Efer = 0x500;     // LME | LMA
        ulong end = Math.Max(load + initSize, initrdAt + initrdSize);
        return new BootState(regs, sys) { InfoAddress = ZeroPageAddress, LoadedEnd = end };
    }

    /// <summary>Loads <paramref name="image"/> for the PVH entry.</summary>
    /// <exception cref="BootImageException">Something does not fit; the message names the file.</exception>
    public static BootState LoadPvh(GuestMemory memory, PvhImage image, string cmdline, ReadOnlyMemory<byte>? initrd,
        string initrdName, PlatformDescription platform)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(platform);
        var cmd = CommandLineBytes(cmdline, MaxCmdlineBytes - 1, image.Name);
        var map = MultibootLoader.BuildMemoryMap(memory);
        foreach (var seg in image.Segments)
        {
            if (!IsUsable(map, seg.Address, seg.MemorySize))
                throw new BootImageException($"{image.Name}: segment 0x{seg.Address:x}-0x{seg.End - 1:x} does not lie in usable guest RAM ({DescribeUsable(map)})");
        }
        foreach (var seg in image.Segments)
        {
            memory.Write(seg.Address, seg.Data.Span);
            Zero(memory, seg.Address + (ulong)seg.Data.Length, seg.MemorySize - (ulong)seg.Data.Length);
        }
        var (initrdAt, initrdSize) = PlaceInitrd(memory, map, initrd, initrdName, AlignUp(image.LoadEnd, PageSize), FourGiB, image.Name);
        var tables = PlatformTables.Write(memory, platform);

        var info = new byte[StartInfoSize];
        W32(info, 0, StartInfoMagic);
        W32(info, 4, 1);                                                              // version 1: has the memory map
        W32(info, 8, 0);                                                              // flags
        W32(info, 12, initrd is null ? 0u : 1u);
        BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(16), initrd is null ? 0 : ModlistAddress);
        BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(24), CmdlineAddress);
        BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(32), tables.Rsdp);
        BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(40), PvhMemmapAddress);
        W32(info, 48, (uint)map.Count);
        memory.Write(StartInfoAddress, info);
        if (initrd is not null)
        {
            var mod = new byte[ModlistEntrySize];
            BinaryPrimitives.WriteUInt64LittleEndian(mod, initrdAt);
            BinaryPrimitives.WriteUInt64LittleEndian(mod.AsSpan(8), initrdSize);
            memory.Write(ModlistAddress, mod);
        }
        if (PvhMemmapAddress + (ulong)(map.Count * PvhMemmapEntrySize) > ZeroPageAddress)
            throw new BootImageException($"{image.Name}: the memory map has {map.Count} entries, too many for the PVH block");
        var mm = new byte[map.Count * PvhMemmapEntrySize];
        for (int i = 0; i < map.Count; i++)
        {
            var e = mm.AsSpan(i * PvhMemmapEntrySize);
            BinaryPrimitives.WriteUInt64LittleEndian(e, map[i].Base);
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], map[i].Length);
            BinaryPrimitives.WriteUInt32LittleEndian(e[16..], map[i].Type);
        }
        memory.Write(PvhMemmapAddress, mm);
        memory.Write(CmdlineAddress, cmd);
        WriteGdt(memory, [0, Code32Descriptor, DataDescriptor]);

        var regs = new CpuRegisters { Rbx = StartInfoAddress, Rip = image.Entry, Rflags = 0x2 };
        var sys = SystemRegisters.PowerOn();
        sys.Cs = SegmentRegister.Make(PvhCs, 0, 0xFFFFFFFF, type: 0xB, s: true, dpl: 0, l: false, db: true, g: true);
        var data = SegmentRegister.Make(PvhDs, 0, 0xFFFFFFFF, type: 0x3, s: true, dpl: 0, l: false, db: true, g: true);
        sys.Ds = data; sys.Es = data; sys.Ss = data; sys.Fs = data; sys.Gs = data;
        sys.Gdtr = new DescriptorTableRegister { Base = GdtAddress, Limit = 3 * 8 - 1 };
        sys.Tr = new SegmentRegister { Limit = 0x67, Attributes = 0x8b };
        sys.Cr0 = 0x11; // PE | ET
        sys.Cr3 = 0;
        sys.Cr4 = 0;
        sys.Efer = 0;
        ulong end = Math.Max(image.LoadEnd, initrdAt + initrdSize);
        return new BootState(regs, sys) { InfoAddress = StartInfoAddress, LoadedEnd = end };
    }

    /// <summary>
    /// Where the protected-mode kernel goes: pref_address when init_size fits there, else (relocatable) the lowest
    /// aligned address from 1 MiB where it fits.
    /// </summary>
    private static ulong ChooseLoadAddress(IReadOnlyList<(ulong Base, ulong Length, uint Type)> map, LinuxBzImage image, ulong initSize)
    {
        if (IsUsable(map, image.PreferredAddress, initSize)) return image.PreferredAddress;
        if (image.Relocatable)
        {
            ulong align = Math.Max(image.KernelAlignment, 1UL << image.MinAlignmentLog2);
            align = Math.Max(align, PageSize);
            foreach (var e in map)
            {
                if (e.Type != MultibootLoader.MemoryAvailable) continue;
                ulong at = AlignUp(Math.Max(e.Base, MultibootLoader.HighMemoryStart), align);
                if (at + initSize <= e.Base + e.Length && at + initSize <= FourGiB) return at;
            }
        }
        throw new BootImageException(
            $"{image.Name}: the kernel needs {MachineSize(initSize)} of RAM (init_size) from 0x{image.PreferredAddress:x}" +
            $"{(image.Relocatable ? " or another aligned address" : "")}, and the usable RAM is {DescribeUsable(map)}; give the guest more memory (-m)");
    }

    /// <summary>Puts the initrd at the highest page-aligned address below the limit and the top of usable RAM, above <paramref name="floor"/>.</summary>
    private static (ulong At, ulong Size) PlaceInitrd(GuestMemory memory, IReadOnlyList<(ulong Base, ulong Length, uint Type)> map,
        ReadOnlyMemory<byte>? initrd, string initrdName, ulong floor, ulong limit, string kernelName)
    {
        if (initrd is not { } data) return (0, 0);
        ulong size = (ulong)data.Length;
        for (int i = map.Count - 1; i >= 0; i--)
        {
            var e = map[i];
            if (e.Type != MultibootLoader.MemoryAvailable) continue;
            ulong top = Math.Min(e.Base + e.Length, limit);
            if (top < size) continue;
            ulong at = (top - size) & ~(PageSize - 1);
            if (at < e.Base || at < floor) continue;
            memory.Write(at, data.Span);
            return (at, size);
        }
        throw new BootImageException(
            $"{initrdName}: the initrd ({size} bytes) does not fit in usable RAM between the end of kernel {kernelName} (0x{floor:x}) and 0x{limit:x} ({DescribeUsable(map)}); give the guest more memory (-m)");
    }

    private static byte[] CommandLineBytes(string cmdline, uint maxBytes, string kernelName)
    {
        ArgumentNullException.ThrowIfNull(cmdline);
        if (cmdline.Contains('\0', StringComparison.Ordinal)) throw new ArgumentException("the kernel command line contains a NUL character", nameof(cmdline));
        var bytes = Encoding.UTF8.GetBytes(cmdline);
        uint limit = Math.Min(maxBytes, (uint)MaxCmdlineBytes - 1);
        if ((uint)bytes.Length > limit)
            throw new BootImageException($"{kernelName}: the command line is {bytes.Length} bytes, more than the kernel's cmdline_size {limit}");
        var z = new byte[bytes.Length + 1];
        bytes.CopyTo(z, 0);
        return z;
    }

    private static void WriteGdt(GuestMemory memory, ulong[] descriptors)
    {
        var gdt = new byte[descriptors.Length * 8];
        for (int i = 0; i < descriptors.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(gdt.AsSpan(i * 8), descriptors[i]);
        memory.Write(GdtAddress, gdt);
    }

    /// <summary>PML4[0] → PDPT; PDPT[0..3] → four PDs of 512 2-MiB pages each: 0-4 GiB identity mapped, writable.</summary>
    private static void WriteIdentityPageTables(GuestMemory memory)
    {
        var pml4 = new byte[PageSize];
        BinaryPrimitives.WriteUInt64LittleEndian(pml4, PdptAddress | 0x3);
        var pdpt = new byte[PageSize];
        for (int i = 0; i < 4; i++) BinaryPrimitives.WriteUInt64LittleEndian(pdpt.AsSpan(i * 8), (PdAddress + (ulong)i * PageSize) | 0x3);
        var pd = new byte[4 * PageSize];
        for (int i = 0; i < 4 * 512; i++) BinaryPrimitives.WriteUInt64LittleEndian(pd.AsSpan(i * 8), ((ulong)i << 21) | 0x83);
        memory.Write(Pml4Address, pml4);
        memory.Write(PdptAddress, pdpt);
        memory.Write(PdAddress, pd);
    }

    private static bool IsUsable(IReadOnlyList<(ulong Base, ulong Length, uint Type)> map, ulong start, ulong length)
        => map.Any(e => e.Type == MultibootLoader.MemoryAvailable && start >= e.Base && start + length <= e.Base + e.Length && start + length >= start);

    private static string DescribeUsable(IReadOnlyList<(ulong Base, ulong Length, uint Type)> map)
        => string.Join(", ", map.Where(e => e.Type == MultibootLoader.MemoryAvailable).Select(e => $"0x{e.Base:x}-0x{e.Base + e.Length - 1:x}"));

    private static string MachineSize(ulong bytes) => bytes >= 1 << 20 ? $"{bytes / (1 << 20)} MiB" : $"{bytes} bytes";

    private static void Zero(GuestMemory memory, ulong gpa, ulong length)
    {
        var zeros = new byte[Math.Min(length, 1UL << 20)];
        while (length > 0)
        {
            int n = (int)Math.Min(length, (ulong)zeros.Length);
            memory.Write(gpa, zeros.AsSpan(0, n));
            gpa += (ulong)n;
            length -= (ulong)n;
        }
    }

    private static ulong AlignUp(ulong value, ulong alignment) => (value + alignment - 1) & ~(alignment - 1);

    private static void W32(Span<byte> s, int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(s[offset..], value);

    private static void W32(byte[] s, int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(s.AsSpan(offset), value);
}
