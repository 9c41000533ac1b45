// Multiboot v1 parsing and loading, with images built byte by byte here (both formats) and the boot
// information checked byte for byte against the layout in the Multiboot Specification 0.6.96.
using System.Buffers.Binary;
using System.Text;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Memory;

namespace ActorVmm.Core.Tests.Boot;

public sealed unsafe class MultibootTests : IDisposable
{
    private const uint Magic = 0x1BADB002;
    private const ulong RamSize = 16 << 20;

    private readonly NativeRam _ram = new(RamSize);
    private readonly GuestMemory _memory;

    public MultibootTests()
    {
        _memory = new GuestMemory([new GuestRegion("ram", 0, RamSize, _ram.Pointer)]);
        new Span<byte>(_ram.Pointer, (int)RamSize).Fill(0xcc);
    }

    public void Dispose() => _ram.Dispose();

    // ---- image builders ------------------------------------------------------------------------------

    private static void W32(byte[] b, int off, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(off), v);

    private static void W16(byte[] b, int off, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(off), v);

    private static uint R32(ReadOnlySpan<byte> b, int off) => BinaryPrimitives.ReadUInt32LittleEndian(b[off..]);

    private static void Header(byte[] b, int off, uint flags, uint? checksum = null)
    {
        W32(b, off, Magic);
        W32(b, off + 4, flags);
        W32(b, off + 8, checksum ?? unchecked(0u - Magic - flags));
    }

    /// <summary>A flat a.out-kludge image: header at <paramref name="headerOffset"/>, code bytes after it.</summary>
    private static byte[] Kludge(int headerOffset = 0, uint loadAddr = 0x100000, int size = 0x300, uint bss = 0x1000,
        uint extraFlags = 0, uint? entry = null)
    {
        var b = new byte[size];
        for (int i = 0; i < size; i++) b[i] = (byte)(i * 7 + 1);
        uint flags = 0x00010003 | extraFlags;
        Header(b, headerOffset, flags);
        uint headerAddr = loadAddr + (uint)headerOffset;
        W32(b, headerOffset + 12, headerAddr);
        W32(b, headerOffset + 16, loadAddr);
        W32(b, headerOffset + 20, loadAddr + (uint)size);
        W32(b, headerOffset + 24, loadAddr + (uint)size + bss);
        W32(b, headerOffset + 28, entry ?? headerAddr + 48);
        return b;
    }

    /// <summary>
    /// A 32-bit ELF linked at virtual 0xC0100000 / physical 0x200000: a text segment holding the multiboot
    /// header, and a data segment with bss.
    /// </summary>
    private static byte[] Elf(byte elfClass = 1, ushort machine = 3, int loadSegments = 2, uint multibootFlags = 0x3)
    {
        var b = new byte[0x3000];
        b[0] = 0x7f; b[1] = (byte)'E'; b[2] = (byte)'L'; b[3] = (byte)'F';
        b[4] = elfClass; b[5] = 1; b[6] = 1;
        W16(b, 16, 2);              // ET_EXEC
        W16(b, 18, machine);
        W32(b, 20, 1);
        W32(b, 24, 0xC0100010);     // virtual entry
        W32(b, 28, 52);             // phoff
        W16(b, 40, 52);
        W16(b, 42, 32);
        W16(b, 44, 3);
        // ph 0: PT_LOAD text at file 0x1000, vaddr 0xC0100000, paddr 0x200000, 0x800 bytes
        // ph 1: PT_NOTE (ignored)
        // ph 2: PT_LOAD data at file 0x2000, paddr 0x201000, filesz 0x100, memsz 0x2100
        int ph = 52;
        W32(b, ph, loadSegments >= 1 ? 1u : 4u);
        W32(b, ph + 4, 0x1000); W32(b, ph + 8, 0xC0100000); W32(b, ph + 12, 0x200000);
        W32(b, ph + 16, 0x800); W32(b, ph + 20, 0x800);
        ph += 32;
        W32(b, ph, 4);
        ph += 32;
        W32(b, ph, loadSegments >= 2 ? 1u : 4u);
        W32(b, ph + 4, 0x2000); W32(b, ph + 8, 0xC0101000); W32(b, ph + 12, 0x201000);
        W32(b, ph + 16, 0x100); W32(b, ph + 20, 0x2100);
        for (int i = 0x1000; i < 0x1800; i++) b[i] = 0x90;
        for (int i = 0x2000; i < 0x2100; i++) b[i] = 0x5a;
        Header(b, 0x1000, multibootFlags);
        return b;
    }

    private static string ParseError(byte[] image, string name = "kernel.bin")
        => Assert.Throws<BootImageException>(() => MultibootImage.Parse(image, name)).Message;

    // ---- parsing --------------------------------------------------------------------------------------

    [Fact]
    public void Parses_an_aout_kludge_image()
    {
        var img = MultibootImage.Parse(Kludge(), "k.bin");
        Assert.Equal(MultibootFormat.AoutKludge, img.Format);
        Assert.Equal(0x100030u, img.Entry);
        var seg = Assert.Single(img.Segments);
        Assert.Equal(0x100000u, seg.Address);
        Assert.Equal(0x300, seg.Data.Length);
        Assert.Equal(0x1300u, seg.MemorySize);
        Assert.Empty(img.Warnings);
    }

    [Fact]
    public void Kludge_header_may_sit_inside_the_file_with_load_addr_below_header_addr()
    {
        var b = Kludge(headerOffset: 0x100, size: 0x400);
        var img = MultibootImage.Parse(b, "k.bin");
        Assert.Equal(0x100, img.HeaderOffset);
        var seg = Assert.Single(img.Segments);
        Assert.Equal(0x100000u, seg.Address);
        Assert.Equal(b, seg.Data.ToArray());   // loaded from the first byte of the file
    }

    [Fact]
    public void Kludge_load_end_zero_means_the_rest_of_the_file()
    {
        var b = Kludge(size: 0x500);
        W32(b, 20, 0);
        W32(b, 24, 0);
        var seg = Assert.Single(MultibootImage.Parse(b, "k.bin").Segments);
        Assert.Equal(0x500, seg.Data.Length);
        Assert.Equal(0x500u, seg.MemorySize);
    }

    [Fact]
    public void Parses_an_elf32_image_and_translates_a_virtual_entry()
    {
        var img = MultibootImage.Parse(Elf(), "k.elf");
        Assert.Equal(MultibootFormat.Elf32, img.Format);
        Assert.Equal(0x200010u, img.Entry);
        Assert.Equal(2, img.Segments.Count);
        Assert.Equal(0x200000u, img.Segments[0].Address);
        Assert.Equal(0x800, img.Segments[0].Data.Length);
        Assert.Equal(0x201000u, img.Segments[1].Address);
        Assert.Equal(0x2100u, img.Segments[1].MemorySize);
        Assert.Equal(0x203100UL, img.LoadEnd);
    }

    [Fact]
    public void Video_mode_flag_is_accepted_with_a_warning()
    {
        var b = Kludge(extraFlags: 0x4, size: 0x300);
        var img = MultibootImage.Parse(b, "k.bin");
        Assert.Contains(img.Warnings, w => w.Contains("video", StringComparison.Ordinal) && w.Contains("k.bin", StringComparison.Ordinal));
    }

    [Fact]
    public void Rejects_a_file_without_a_header()
    {
        var msg = ParseError(new byte[4096]);
        Assert.Contains("kernel.bin", msg, StringComparison.Ordinal);
        Assert.Contains("no Multiboot v1 header", msg, StringComparison.Ordinal);
    }

    [Fact]
    public void Rejects_a_header_past_8192_bytes()
    {
        var b = new byte[0x3000];
        Header(b, 8192, 0x3);
        Assert.Contains("first 8192 bytes", ParseError(b), StringComparison.Ordinal);
        var ok = new byte[0x3000];
        Header(ok, 8192 - 12, 0x3);
        // Found, then rejected only because the file is not ELF: the search did reach the last slot.
        Assert.Contains("not ELF", ParseError(ok), StringComparison.Ordinal);
    }

    [Fact]
    public void Rejects_a_misaligned_header_and_a_bad_checksum()
    {
        var b = new byte[0x1000];
        Header(b, 0x102, 0x3);
        Assert.Contains("no Multiboot v1 header", ParseError(b), StringComparison.Ordinal);
        var c = new byte[0x1000];
        Header(c, 0x100, 0x3, checksum: 0x12345678);
        Assert.Contains("no Multiboot v1 header", ParseError(c), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1u << 3)]
    [InlineData(1u << 15)]
    public void Rejects_required_flags_it_cannot_honour(uint bit)
    {
        var msg = ParseError(Kludge(extraFlags: bit));
        Assert.Contains("requires features", msg, StringComparison.Ordinal);
        Assert.Contains($"0x{bit:x4}", msg, StringComparison.Ordinal);
    }

    [Fact]
    public void Optional_high_flag_bits_are_ignored()
    {
        var img = MultibootImage.Parse(Kludge(extraFlags: 1u << 20), "k.bin");
        Assert.Equal(MultibootFormat.AoutKludge, img.Format);
    }

    [Fact]
    public void Rejects_truncated_files()
    {
        var b = new byte[20];
        Header(b, 0, 0x00010000);
        Assert.Contains("truncated", ParseError(b), StringComparison.Ordinal);
        var k = Kludge(size: 0x300);
        W32(k, 20, 0x100000 + 0x400);   // load_end past the end of the file
        W32(k, 24, 0);
        Assert.Contains("truncated", ParseError(k), StringComparison.Ordinal);
        Assert.Contains("too short", ParseError(new byte[8]), StringComparison.Ordinal);
        var e = Elf();
        W32(e, 52 + 16, 0x5000);        // text filesz past the end of the file
        W32(e, 52 + 20, 0x5000);
        Assert.Contains("truncated", ParseError(e), StringComparison.Ordinal);
        var ph = Elf();
        W32(ph, 28, 0x2ff0);            // program headers past the end
        Assert.Contains("truncated", ParseError(ph), StringComparison.Ordinal);
    }

    [Fact]
    public void Rejects_inconsistent_kludge_addresses()
    {
        var a = Kludge();
        W32(a, 16, 0x100100);           // load_addr above header_addr
        Assert.Contains("load_addr", ParseError(a), StringComparison.Ordinal);
        var b = Kludge();
        W32(b, 24, 0x100010);           // bss_end below load_end
        Assert.Contains("bss_end_addr", ParseError(b), StringComparison.Ordinal);
        Assert.Contains("entry_addr", ParseError(Kludge(entry: 0x500000)), StringComparison.Ordinal);
        var c = Kludge(headerOffset: 0x10);
        W32(c, 0x10 + 16, 0x100000 - 0x100); // load start would be before the file
        Assert.Contains("before the beginning", ParseError(c), StringComparison.Ordinal);
        var d = Kludge(loadAddr: 0xFFFFFF00, size: 0x300);
        W32(d, 20, 0);                  // load to the end of the file: past 4 GiB
        W32(d, 24, 0);
        Assert.Contains("4 GiB", ParseError(d), StringComparison.Ordinal);
    }

    [Fact]
    public void Rejects_elf64_with_a_clear_message()
    {
        var withHeader = Elf(elfClass: 2);
        Assert.Contains("64-bit ELF", ParseError(withHeader, "vmlinux"), StringComparison.Ordinal);
        var noHeader = new byte[0x2000];
        noHeader[0] = 0x7f; noHeader[1] = (byte)'E'; noHeader[2] = (byte)'L'; noHeader[3] = (byte)'F'; noHeader[4] = 2;
        var msg = ParseError(noHeader, "vmlinux");
        Assert.Contains("vmlinux", msg, StringComparison.Ordinal);
        Assert.Contains("64-bit ELF", msg, StringComparison.Ordinal);
    }

    [Fact]
    public void Rejects_bad_elf_files()
    {
        Assert.Contains("EM_386", ParseError(Elf(machine: 62)), StringComparison.Ordinal);
        Assert.Contains("PT_LOAD", ParseError(Elf(loadSegments: 0)), StringComparison.Ordinal);
        var m = Elf();
        W32(m, 52 + 20, 0x10);          // memsz < filesz
        Assert.Contains("p_memsz", ParseError(m), StringComparison.Ordinal);
        var entry = Elf();
        W32(entry, 24, 0x12345678);
        Assert.Contains("entry point", ParseError(entry), StringComparison.Ordinal);
        var notElf = new byte[0x1000];
        Header(notElf, 0, 0x3);
        Assert.Contains("not ELF", ParseError(notElf), StringComparison.Ordinal);
    }

    // ---- loading --------------------------------------------------------------------------------------

    private byte[] Mem(ulong gpa, int length)
    {
        var b = new byte[length];
        _memory.Read(gpa, b);
        return b;
    }

    private string CString(ulong gpa)
    {
        var bytes = new List<byte>();
        for (ulong a = gpa; ; a++)
        {
            byte c = Mem(a, 1)[0];
            if (c == 0) return Encoding.UTF8.GetString(bytes.ToArray());
            bytes.Add(c);
        }
    }

    [Fact]
    public void Loads_kernel_bytes_and_zeroes_bss()
    {
        var file = Kludge(size: 0x300, bss: 0x1000);
        var state = MultibootLoader.Load(_memory, MultibootImage.Parse(file, "k.bin"), "", []);
        Assert.Equal(file, Mem(0x100000, 0x300));
        Assert.All(Mem(0x100300, 0x1000), b => Assert.Equal(0, b));
        Assert.Equal(0xcc, Mem(0x101300, 1)[0]);    // nothing beyond bss_end touched
        Assert.Equal(0x100030UL, state.Registers.Rip);
    }

    [Fact]
    public void Loads_elf_segments_at_physical_addresses()
    {
        var state = MultibootLoader.Load(_memory, MultibootImage.Parse(Elf(), "k.elf"), "", []);
        Assert.All(Mem(0x200010, 0x7f0), b => Assert.Equal(0x90, b));
        Assert.All(Mem(0x201000, 0x100), b => Assert.Equal(0x5a, b));
        Assert.All(Mem(0x201100, 0x2000), b => Assert.Equal(0, b));
        Assert.Equal(0x200010UL, state.Registers.Rip);
        Assert.True(state.InfoAddress >= 0x204000);   // after the kernel's bss, page aligned
        Assert.Equal(0UL, state.InfoAddress % 0x1000);
    }

    [Fact]
    public void Writes_the_boot_information_structure()
    {
        var modA = Enumerable.Range(0, 5000).Select(i => (byte)i).ToArray();
        var modB = "second module"u8.ToArray();
        var state = MultibootLoader.Load(_memory, MultibootImage.Parse(Kludge(), "k.bin"), "console=ttyS0 quiet",
            [("/boot/a.mod arg", modA), ("b", modB)]);
        ulong info = state.InfoAddress;
        var mbi = Mem(info, MultibootLoader.InfoSize);

        Assert.Equal(0x2BADB002UL, state.Registers.Rax);
        Assert.Equal(info, state.Registers.Rbx);
        // flags: mem, cmdline, mods, mmap, boot_loader_name
        Assert.Equal(0x24Du, R32(mbi, 0));
        Assert.Equal(639u, R32(mbi, 4));                                  // 0x9FC00 / 1024
        Assert.Equal((uint)((RamSize - 0x100000 - MultibootLoader.FirmwareTablesSize) / 1024), R32(mbi, 8));
        Assert.Equal("console=ttyS0 quiet", CString(R32(mbi, 16)));
        Assert.Equal("ActorVmm", CString(R32(mbi, 64)));

        // Modules: page aligned, after the kernel (which ends at 0x101300), in order.
        Assert.Equal(2u, R32(mbi, 20));
        var mods = Mem(R32(mbi, 24), 32);
        uint aStart = R32(mods, 0), aEnd = R32(mods, 4), bStart = R32(mods, 16), bEnd = R32(mods, 20);
        Assert.Equal(0x102000u, aStart);
        Assert.Equal(aStart + 5000, aEnd);
        Assert.Equal(0x104000u, bStart);
        Assert.Equal(bStart + (uint)modB.Length, bEnd);
        Assert.Equal(modA, Mem(aStart, modA.Length));
        Assert.Equal(modB, Mem(bStart, modB.Length));
        Assert.Equal("/boot/a.mod arg", CString(R32(mods, 8)));
        Assert.Equal("b", CString(R32(mods, 24)));
        Assert.Equal(0u, R32(mods, 12));
        Assert.True(info >= bEnd);

        // Memory map entries: size 20, base, length, type — the PC layout.
        uint mmapLength = R32(mbi, 44);
        var mmap = Mem(R32(mbi, 48), (int)mmapLength);
        var entries = new List<(ulong, ulong, uint)>();
        for (int off = 0; off < mmap.Length; off += (int)R32(mmap, off) + 4)
        {
            Assert.Equal(20u, R32(mmap, off));
            entries.Add((BinaryPrimitives.ReadUInt64LittleEndian(mmap.AsSpan(off + 4)),
                BinaryPrimitives.ReadUInt64LittleEndian(mmap.AsSpan(off + 12)), R32(mmap, off + 20)));
        }
        Assert.Equal(new (ulong, ulong, uint)[]
        {
            (0, 0x9FC00, 1), (0x9FC00, 0x400, 2), (0xF0000, 0x10000, 2),
            (0x100000, RamSize - 0x100000 - 0x20000, 1), (RamSize - 0x20000, 0x20000, 2),
            (0xFFFC0000, 0x40000, 2),
        }, entries);
    }

    [Fact]
    public void Memory_map_matches_what_qemu_reports_for_the_pc_low_memory()
    {
        // Recorded from the hello guest under qemu-system-x86_64 7.2 -m 64 (see QemuGuestExpectations in the
        // integration tests): the same entries, mem_lower 0x27f and mem_upper 0xfb80.
        using var ram = new NativeRam(64 << 20);
        var mem = new GuestMemory([new GuestRegion("ram", 0, 64 << 20, ram.Pointer)]);
        var map = MultibootLoader.BuildMemoryMap(mem);
        Assert.Equal((0UL, 0x9fc00UL, 1u), map[0]);
        Assert.Equal((0x9fc00UL, 0x400UL, 2u), map[1]);
        Assert.Equal((0xf0000UL, 0x10000UL, 2u), map[2]);
        Assert.Equal((0x100000UL, 0x3ee0000UL, 1u), map[3]);
        Assert.Equal((0x3fe0000UL, 0x20000UL, 2u), map[4]);
        Assert.Equal((0xfffc0000UL, 0x40000UL, 2u), map[5]);
        Assert.Equal(6, map.Count);
        var state = MultibootLoader.Load(mem, MultibootImage.Parse(Kludge(), "k.bin"), "", []);
        Assert.Equal(0x27fu, mem.ReadObject<uint>(state.InfoAddress + 4));
        Assert.Equal(0xfb80u, mem.ReadObject<uint>(state.InfoAddress + 8));
    }

    [Fact]
    public void Memory_map_follows_guest_memory_regions()
    {
        using var low = new NativeRam(0xC0000000);
        using var rom = new NativeRam(0x10000);
        using var high = new NativeRam(0x1000);
        var mem = new GuestMemory([
            new GuestRegion("low", 0, 0xC0000000, low.Pointer),
            new GuestRegion("rom", 0xFFFF0000, 0x10000, rom.Pointer, readOnly: true),
            new GuestRegion("high", 0x100000000, 0x1000, high.Pointer),
        ]);
        var map = MultibootLoader.BuildMemoryMap(mem);
        Assert.Equal(new (ulong, ulong, uint)[]
        {
            (0, 0x9FC00, 1), (0x9FC00, 0x400, 2), (0xF0000, 0x10000, 2),
            (0x100000, 0xC0000000 - 0x100000 - 0x20000, 1),
            (0xC0000000 - 0x20000, 0x20000, 2),
            (0xFFFF0000, 0x10000, 2),
            (0x100000000, 0x1000, 1),
        }, map);
    }

    [Fact]
    public void Entry_state_is_flat_protected_mode_with_a_matching_gdt()
    {
        var state = MultibootLoader.Load(_memory, MultibootImage.Parse(Kludge(), "k.bin"), "x", []);
        var sys = state.System;
        Assert.Equal(0x2UL, state.Registers.Rflags);
        Assert.Equal(1UL, sys.Cr0 & 1);              // PE
        Assert.Equal(0UL, sys.Cr0 & 0x80000000);     // PG
        Assert.Equal(0UL, sys.Efer);
        Assert.Equal(0x08, sys.Cs.Selector);
        foreach (var s in new[] { sys.Ds, sys.Es, sys.Fs, sys.Gs, sys.Ss }) Assert.Equal(0x10, s.Selector);
        Assert.Equal(23, sys.Gdtr.Limit);

        var gdt = Mem(sys.Gdtr.Base, 24);
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(gdt));
        // Decode each descriptor (Intel SDM vol. 3, 3.4.5) and compare with the cached segment registers.
        foreach (var seg in new[] { sys.Cs, sys.Ds, sys.Es, sys.Fs, sys.Gs, sys.Ss })
        {
            ulong d = BinaryPrimitives.ReadUInt64LittleEndian(gdt.AsSpan(seg.Selector));
            ulong baseAddr = (d >> 16 & 0xffffff) | (d >> 56 & 0xff) << 24;
            uint rawLimit = (uint)((d & 0xffff) | (d >> 48 & 0xf) << 16);
            bool g = (d >> 55 & 1) != 0;
            uint limit = g ? rawLimit << 12 | 0xfff : rawLimit;
            ushort attributes = (ushort)((d >> 40 & 0xff) | (d >> 52 & 0xf) << 12);
            Assert.Equal(baseAddr, seg.Base);
            Assert.Equal(limit, seg.Limit);
            Assert.Equal(attributes, seg.Attributes);
            Assert.Equal(0UL, baseAddr);
            Assert.Equal(0xFFFFFFFFu, limit);
            Assert.True((d >> 54 & 1) != 0);          // 32-bit (D/B)
            Assert.True((d >> 47 & 1) != 0);          // present
        }
        Assert.Equal(0xB, sys.Cs.Attributes & 0xf);   // execute/read, accessed
        Assert.Equal(0x3, sys.Ss.Attributes & 0xf);   // read/write, accessed
    }

    [Fact]
    public void Rejects_segments_outside_ram()
    {
        var img = MultibootImage.Parse(Kludge(loadAddr: 0x2000000), "far.bin");
        var msg = Assert.Throws<BootImageException>(() => MultibootLoader.Load(_memory, img, "", [])).Message;
        Assert.Contains("far.bin", msg, StringComparison.Ordinal);
        Assert.Contains("outside guest RAM", msg, StringComparison.Ordinal);
        // Straddling the end of RAM is outside too.
        var edge = MultibootImage.Parse(Kludge(loadAddr: (uint)RamSize - 0x100), "edge.bin");
        Assert.Throws<BootImageException>(() => MultibootLoader.Load(_memory, edge, "", []));
    }

    [Fact]
    public void Rejects_modules_that_do_not_fit()
    {
        var img = MultibootImage.Parse(Kludge(), "k.bin");
        var msg = Assert.Throws<BootImageException>(() =>
            MultibootLoader.Load(_memory, img, "", [("initrd.img", new byte[RamSize])])).Message;
        Assert.Contains("initrd.img", msg, StringComparison.Ordinal);
    }

    [Fact]
    public void Rejects_nul_in_the_command_line()
    {
        var img = MultibootImage.Parse(Kludge(), "k.bin");
        Assert.Throws<ArgumentException>(() => MultibootLoader.Load(_memory, img, "a\0b", []));
    }
}
