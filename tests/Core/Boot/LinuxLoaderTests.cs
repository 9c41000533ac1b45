// The Linux boot protocol loader: bzImage header validation, host-side payload extraction, the 64-bit entry
// (zero page, command line, initrd, page tables, register state) and the PVH entry (hvm_start_info, memory
// map, module list), with bzImages and vmlinux ELFs built byte by byte here from the layouts in
// Documentation/x86/boot.rst and Xen's hvm_start_info. The Debian kernel itself is checked in a Slow test
// when scripts/build-linux-guest.sh has been run.
using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Memory;

namespace ActorVmm.Core.Tests.Boot;

public sealed unsafe class LinuxLoaderTests : IDisposable
{
    private const ulong RamSize = 64 << 20;
    private const uint PvhEntry = 0x1000850;
    private readonly NativeRam _ram = new(RamSize);
    private readonly GuestMemory _memory;

    public LinuxLoaderTests()
    {
        _memory = new GuestMemory([new GuestRegion("ram", 0, RamSize, _ram.Pointer)]);
        new Span<byte>(_ram.Pointer, (int)RamSize).Fill(0xcc);
    }

    public void Dispose() => _ram.Dispose();

    // ---- builders ----

    /// <summary>An ELF64 vmlinux: one PT_LOAD at 16 MiB (0x3000 bytes of 0x5a, 0x2000 of bss) and a PT_NOTE with the PVH entry.</summary>
    private static byte[] BuildVmlinux(bool withPvhNote = true)
    {
        var elf = new byte[0x4000];
        "\x7f"u8.CopyTo(elf);
        Encoding.ASCII.GetBytes("ELF").CopyTo(elf, 1);
        elf[4] = 2; elf[5] = 1; elf[6] = 1;
        W16(elf, 16, 2); W16(elf, 18, 62); W32(elf, 20, 1);
        W64(elf, 24, 0xffffffff81000000);
        W64(elf, 32, 64);             // phoff
        W16(elf, 52, 64); W16(elf, 54, 56); W16(elf, 56, 2);
        // PT_LOAD
        W32(elf, 64, 1); W32(elf, 68, 7); W64(elf, 72, 0x1000); W64(elf, 80, 0xffffffff81000000);
        W64(elf, 88, 0x1000000); W64(elf, 96, 0x3000); W64(elf, 104, 0x5000); W64(elf, 112, 0x1000);
        // PT_NOTE at 0x200: a GNU note first, then Xen's PHYS32_ENTRY
        W32(elf, 120, 4); W64(elf, 128, 0x200); W64(elf, 152, 0x28); W64(elf, 160, 0x28);
        W32(elf, 0x200, 4); W32(elf, 0x204, 4); W32(elf, 0x208, 3); Encoding.ASCII.GetBytes("GNU\0").CopyTo(elf, 0x20c); W32(elf, 0x210, 0x1234);
        W32(elf, 0x214, 4); W32(elf, 0x218, 4); W32(elf, 0x21c, withPvhNote ? 18u : 17u); Encoding.ASCII.GetBytes("Xen\0").CopyTo(elf, 0x220); W32(elf, 0x224, PvhEntry);
        elf.AsSpan(0x1000, 0x3000).Fill(0x5a);
        return elf;
    }

    private static byte[] Gzip(byte[] data)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest)) gz.Write(data);
        return ms.ToArray();
    }

    /// <summary>A bzImage (protocol 2.15, 4 setup sectors) whose payload is <paramref name="payload"/>.</summary>
    private static byte[] BuildBzImage(byte[] payload, ushort version = 0x020f, ushort xloadflags = 1, uint initSize = 0x400000,
        ulong pref = 0x1000000)
    {
        const int setupSects = 4, kernelOffset = (setupSects + 1) * 512, payloadOffset = 0x200;
        int kernelLength = payloadOffset + payload.Length;
        kernelLength = (kernelLength + 15) & ~15;
        var f = new byte[kernelOffset + kernelLength];
        f[0x1f1] = setupSects;
        W32(f, 0x1f4, (uint)(kernelLength / 16));
        W16(f, 0x1fe, 0xaa55);
        f[0x200] = 0xeb; f[0x201] = 0x6a;          // jump: the header runs to 0x26c
        W32(f, 0x202, 0x53726448);
        W16(f, 0x206, version);
        f[0x211] = 0x01;                            // LOADED_HIGH
        W32(f, 0x214, 0x100000);
        W32(f, 0x22c, 0x7fffffff);
        W32(f, 0x230, 0x200000);
        f[0x234] = 1; f[0x235] = 21;
        W16(f, 0x236, xloadflags);
        W32(f, 0x238, 2047);
        W32(f, 0x248, payloadOffset);
        W32(f, 0x24c, (uint)payload.Length);
        W64(f, 0x258, pref);
        W32(f, 0x260, initSize);
        f.AsSpan(kernelOffset, payloadOffset).Fill(0x90);
        payload.CopyTo(f, kernelOffset + payloadOffset);
        return f;
    }

    private static void W16(byte[] b, int o, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(o), v);
    private static void W32(byte[] b, int o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(o), v);
    private static void W64(byte[] b, int o, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(o), v);
    private static uint U32(byte[] b, int o) => BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(o));
    private static ulong U64(byte[] b, int o) => BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(o));

    private byte[] Read(ulong gpa, int n)
    {
        var b = new byte[n];
        _memory.Read(gpa, b);
        return b;
    }

    private static string CString(byte[] b) => Encoding.UTF8.GetString(b, 0, Array.IndexOf(b, (byte)0));

    // ---- parsing ----

    [Fact]
    public void Parse_reads_the_setup_header()
    {
        var bz = LinuxBzImage.Parse(BuildBzImage(Gzip(BuildVmlinux())), "bz");
        Assert.Equal(0x020f, bz.Version);
        Assert.Equal(4, bz.SetupSectors);
        Assert.Equal(0xa00, bz.KernelOffset);
        Assert.Equal(0x1000000UL, bz.PreferredAddress);
        Assert.Equal(0x200000u, bz.KernelAlignment);
        Assert.True(bz.Relocatable);
        Assert.Equal(2047u, bz.CmdlineSize);
        Assert.Equal(LinuxCompression.Gzip, bz.Compression);
        Assert.Equal(0x26c - 0x1f1, bz.SetupHeader.Length);
        Assert.Contains("2.15", bz.Format, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("truncated", "truncated")]
    [InlineData("old", "2.12")]
    [InlineData("no64", "XLF_KERNEL_64")]
    [InlineData("payload", "payload")]
    [InlineData("initsize", "init_size")]
    [InlineData("bootflag", "boot_flag")]
    public void Parse_rejects_bad_images_naming_the_problem(string what, string expected)
    {
        var good = BuildBzImage(Gzip(BuildVmlinux()));
        byte[] bad = what switch
        {
            "truncated" => good[..0x800],
            "old" => BuildBzImage(Gzip(BuildVmlinux()), version: 0x020b),
            "no64" => BuildBzImage(Gzip(BuildVmlinux()), xloadflags: 0),
            "initsize" => BuildBzImage(Gzip(BuildVmlinux()), initSize: 0x10),
            _ => (byte[])good.Clone(),
        };
        if (what == "payload") W32(bad, 0x24c, 0x10000000);
        if (what == "bootflag") W16(bad, 0x1fe, 0);
        var e = Assert.Throws<BootImageException>(() => LinuxBzImage.Parse(bad, "k.img"));
        Assert.StartsWith("k.img: ", e.Message, StringComparison.Ordinal);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Payload_is_extracted_on_the_host_and_its_pvh_note_found()
    {
        var vmlinux = BuildVmlinux();
        var bz = LinuxBzImage.Parse(BuildBzImage(Gzip(vmlinux)), "bz");
        Assert.Equal(vmlinux, LinuxPayload.Extract(bz));
        var pvh = LinuxPayload.ExtractPvh(bz);
        Assert.Equal(PvhEntry, pvh.Entry);
        var seg = Assert.Single(pvh.Segments);
        Assert.Equal(0x1000000UL, seg.Address);
        Assert.Equal(0x3000, seg.Data.Length);
        Assert.Equal(0x5000UL, seg.MemorySize);
    }

    [Fact]
    public void Corrupt_and_unsupported_payloads_are_refused()
    {
        var gz = Gzip(BuildVmlinux());
        gz[gz.Length / 2] ^= 0xff;
        gz[gz.Length / 2 + 1] ^= 0xff;
        var e = Assert.Throws<BootImageException>(() => LinuxPayload.Extract(LinuxBzImage.Parse(BuildBzImage(gz), "bz")));
        Assert.StartsWith("bz: ", e.Message, StringComparison.Ordinal);

        var lz4 = new byte[64];
        W32(lz4, 0, 0x184c2102);
        W32(lz4, 60, 1000);
        e = Assert.Throws<BootImageException>(() => LinuxPayload.Extract(LinuxBzImage.Parse(BuildBzImage(lz4), "bz")));
        Assert.Contains("lz4", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Kernel_detection_chooses_pvh_or_the_64_bit_entry()
    {
        var file = BuildBzImage(Gzip(BuildVmlinux()));
        Assert.IsType<PvhImage>(KernelImages.Parse(file, "bz", LinuxBootMode.Auto).Image);
        Assert.IsType<PvhImage>(KernelImages.Parse(file, "bz", LinuxBootMode.Pvh).Image);
        Assert.IsType<LinuxBzImage>(KernelImages.Parse(file, "bz", LinuxBootMode.BzImage).Image);

        // No PVH note: auto falls back to the 64-bit entry with a note; pvh refuses.
        var noNote = BuildBzImage(Gzip(BuildVmlinux(withPvhNote: false)));
        var choice = KernelImages.Parse(noNote, "bz", LinuxBootMode.Auto);
        Assert.IsType<LinuxBzImage>(choice.Image);
        Assert.Contains("PHYS32_ENTRY", choice.Note, StringComparison.Ordinal);
        Assert.Throws<BootImageException>(() => KernelImages.Parse(noNote, "bz", LinuxBootMode.Pvh));

        // An ELF vmlinux given directly boots through PVH.
        Assert.IsType<PvhImage>(KernelImages.Parse(BuildVmlinux(), "vmlinux", LinuxBootMode.Auto).Image);

        var e = Assert.Throws<BootImageException>(() => KernelImages.Parse(new byte[4096], "junk", LinuxBootMode.Auto));
        Assert.Contains("Multiboot", e.Message, StringComparison.Ordinal);
        Assert.Contains("bzImage", e.Message, StringComparison.Ordinal);
    }

    // ---- 64-bit entry ----

    [Fact]
    public void Bzimage_64_bit_entry_writes_the_zero_page_and_enters_long_mode()
    {
        var file = BuildBzImage(Gzip(BuildVmlinux()));
        var bz = LinuxBzImage.Parse(file, "bz");
        var initrd = Enumerable.Range(0, 10000).Select(i => (byte)i).ToArray();
        var boot = LinuxLoader.LoadBzImage(_memory, bz, "console=ttyS0 quiet", initrd, "initrd.img", new PlatformDescription(1));

        // The protected-mode kernel at pref_address.
        Assert.Equal(file[0xa00..], Read(0x1000000, file.Length - 0xa00));
        var zp = Read(LinuxLoader.ZeroPageAddress, 4096);
        Assert.Equal(file[0x1f1..0x210], zp[0x1f1..0x210]);                      // header copy
        Assert.Equal(0xff, zp[0x210]);                                           // type_of_loader
        Assert.Equal(0x1000000u, U32(zp, 0x214));                                // code32_start
        Assert.Equal("console=ttyS0 quiet", CString(Read(U32(zp, 0x228), 64)));
        Assert.Equal(0u, U32(zp, 0xc8));

        uint rd = U32(zp, 0x218);
        Assert.Equal(10000u, U32(zp, 0x21c));
        Assert.Equal(0u, rd % 4096);
        Assert.Equal(initrd, Read(rd, initrd.Length));
        var map = MultibootLoader.BuildMemoryMap(_memory);
        var top = map.Last(e => e.Type == MultibootLoader.MemoryAvailable);
        Assert.True(rd + 10000 <= top.Base + top.Length && rd + 10000 > top.Base + top.Length - 8192, "initrd at the top of usable RAM");
        Assert.True(rd >= 0x1000000 + bz.InitSize);

        Assert.Equal(map.Count, zp[0x1e8]);
        for (int i = 0; i < map.Count; i++)
        {
            Assert.Equal(map[i].Base, U64(zp, 0x2d0 + i * 20));
            Assert.Equal(map[i].Length, U64(zp, 0x2d0 + i * 20 + 8));
            Assert.Equal(map[i].Type, U32(zp, 0x2d0 + i * 20 + 16));
        }
        Assert.Equal(PlatformTables.BiosAreaTables, U64(zp, 0x70));             // acpi_rsdp_addr
        Assert.Equal("RSD PTR ", Encoding.ASCII.GetString(Read(U64(zp, 0x70), 8)));

        var r = boot.Registers;
        var s = boot.System;
        Assert.Equal(0x1000200UL, r.Rip);
        Assert.Equal(LinuxLoader.ZeroPageAddress, r.Rsi);
        Assert.Equal(0UL, r.Rflags & 0x200);                                    // IF clear
        Assert.Equal(0x10, s.Cs.Selector);
        Assert.NotEqual(0, s.Cs.Attributes & 0x2000);                            // L
        Assert.Equal(0, s.Cs.Attributes & 0x4000);                               // D clear
        Assert.Equal(0x18, s.Ds.Selector); Assert.Equal(0x18, s.Ss.Selector); Assert.Equal(0x18, s.Es.Selector);
        Assert.Equal(0x80000011UL, s.Cr0 & 0x80000011);
        Assert.Equal(0x20UL, s.Cr4 & 0x20);
        Assert.Equal(0x500UL, s.Efer & 0x500);
        var gdt = Read(s.Gdtr.Base, s.Gdtr.Limit + 1);
        Assert.Equal(LinuxLoader.Code64Descriptor, U64(gdt, 0x10));
        Assert.Equal(LinuxLoader.DataDescriptor, U64(gdt, 0x18));

        // Identity map of 4 GiB with 2 MiB pages: walk a few addresses.
        foreach (ulong va in new ulong[] { 0, 0x1000200, 0x3ffff000, 0xfec00000, 0xffe00000 })
        {
            ulong pml4e = U64(Read(s.Cr3 + (va >> 39 & 511) * 8, 8), 0);
            ulong pdpte = U64(Read((pml4e & ~0xfffUL) + (va >> 30 & 511) * 8, 8), 0);
            ulong pde = U64(Read((pdpte & ~0xfffUL) + (va >> 21 & 511) * 8, 8), 0);
            Assert.Equal(3UL, pml4e & 3); Assert.Equal(3UL, pdpte & 3);
            Assert.Equal(0x83UL, pde & 0x83);
            Assert.Equal(va & ~0x1fffffUL, pde & ~0xfffUL & ~(1UL << 63));
        }
    }

    [Fact]
    public void Bzimage_too_big_for_ram_or_command_line_too_long_fails_with_the_sizes()
    {
        var bz = LinuxBzImage.Parse(BuildBzImage(Gzip(BuildVmlinux()), initSize: 0x8000000), "big");
        var e = Assert.Throws<BootImageException>(() => LinuxLoader.LoadBzImage(_memory, bz, "", null, "", new PlatformDescription(1)));
        Assert.Contains("-m", e.Message, StringComparison.Ordinal);
        Assert.StartsWith("big: ", e.Message, StringComparison.Ordinal);

        var ok = LinuxBzImage.Parse(BuildBzImage(Gzip(BuildVmlinux())), "k");
        e = Assert.Throws<BootImageException>(() => LinuxLoader.LoadBzImage(_memory, ok, new string('x', 3000), null, "", new PlatformDescription(1)));
        Assert.Contains("cmdline_size", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Relocatable_kernel_moves_down_when_pref_address_does_not_fit()
    {
        // 50 MiB of init_size from 16 MiB does not fit below the 64 MiB top; from 2 MiB (aligned) it does.
        var bz = LinuxBzImage.Parse(BuildBzImage(Gzip(BuildVmlinux()), initSize: 50 << 20), "k");
        var boot = LinuxLoader.LoadBzImage(_memory, bz, "", null, "", new PlatformDescription(1));
        Assert.Equal(0x200200UL, boot.Registers.Rip);
    }

    // ---- PVH entry ----

    [Fact]
    public void Pvh_entry_loads_segments_and_writes_hvm_start_info()
    {
        var pvh = PvhImage.Parse(BuildVmlinux(), "vmlinux");
        var initrd = new byte[5000];
        initrd.AsSpan().Fill(0x42);
        var boot = LinuxLoader.LoadPvh(_memory, pvh, "console=ttyS0", initrd, "initrd", new PlatformDescription(1));

        Assert.All(Read(0x1000000, 0x3000), b => Assert.Equal(0x5a, b));
        Assert.All(Read(0x1003000, 0x2000), b => Assert.Equal(0, b));           // bss zeroed

        var si = Read(boot.Registers.Rbx, LinuxLoader.StartInfoSize);
        Assert.Equal(0x336ec578u, U32(si, 0));
        Assert.Equal(1u, U32(si, 4));
        Assert.Equal(1u, U32(si, 12));                                           // nr_modules
        var mod = Read(U64(si, 16), 32);
        Assert.Equal(5000UL, U64(mod, 8));
        Assert.Equal(initrd, Read(U64(mod, 0), 5000));
        Assert.Equal("console=ttyS0", CString(Read(U64(si, 24), 64)));
        Assert.Equal("RSD PTR ", Encoding.ASCII.GetString(Read(U64(si, 32), 8)));
        var map = MultibootLoader.BuildMemoryMap(_memory);
        Assert.Equal((uint)map.Count, U32(si, 48));
        var mm = Read(U64(si, 40), map.Count * 24);
        for (int i = 0; i < map.Count; i++)
        {
            Assert.Equal(map[i].Base, U64(mm, i * 24));
            Assert.Equal(map[i].Length, U64(mm, i * 24 + 8));
            Assert.Equal(map[i].Type, U32(mm, i * 24 + 16));
        }

        var s = boot.System;
        Assert.Equal(PvhEntry, boot.Registers.Rip);
        Assert.Equal(0UL, boot.Registers.Rflags & 0x200);
        Assert.Equal(0x11UL, s.Cr0);
        Assert.Equal(0UL, s.Efer);
        Assert.NotEqual(0, s.Cs.Attributes & 0x4000);                            // 32-bit code
        Assert.Equal(0xffffffffu, s.Cs.Limit);
        Assert.Equal(0UL, s.Ds.Base);
        Assert.Equal(0xb, s.Tr.Attributes & 0xf);                                // busy 32-bit TSS
    }

    [Fact]
    public void Pvh_elf_without_the_note_or_with_a_segment_outside_ram_is_refused()
    {
        var e = Assert.Throws<BootImageException>(() => PvhImage.Parse(BuildVmlinux(withPvhNote: false), "v"));
        Assert.Contains("XEN_ELFNOTE_PHYS32_ENTRY", e.Message, StringComparison.Ordinal);
        var elf = BuildVmlinux();
        W64(elf, 88, 0x7000000); // paddr beyond 64 MiB
        var pvh = PvhImage.Parse(elf, "v");
        e = Assert.Throws<BootImageException>(() => LinuxLoader.LoadPvh(_memory, pvh, "", null, "", new PlatformDescription(1)));
        Assert.Contains("usable guest RAM", e.Message, StringComparison.Ordinal);
    }

    // ---- the Debian kernel (scripts/build-linux-guest.sh) ----

    [DebianKernelFact]
    [Trait("Category", "Slow")]
    public void Debian_kernel_is_extracted_to_a_pvh_vmlinux_and_loads_both_ways()
    {
        var file = File.ReadAllBytes(DebianKernelFactAttribute.KernelPath);
        var bz = LinuxBzImage.Parse(file, "vmlinuz");
        Assert.Equal(LinuxCompression.Xz, bz.Compression);
        Assert.True(bz.Version >= 0x020f);
        var pvh = LinuxPayload.ExtractPvh(bz);
        Assert.Equal(0x1000000UL, pvh.LoadStart);
        Assert.InRange(pvh.Entry, 0x1000000u, 0x2000000u);

        using var ram = new NativeRam(256 << 20);
        var mem = new GuestMemory([new GuestRegion("ram", 0, 256 << 20, ram.Pointer)]);
        Assert.Equal(0x1000200UL, LinuxLoader.LoadBzImage(mem, bz, "console=ttyS0", null, "", new PlatformDescription(1)).Registers.Rip);
        using var ram2 = new NativeRam(256 << 20);
        var mem2 = new GuestMemory([new GuestRegion("ram", 0, 256 << 20, ram2.Pointer)]);
        Assert.Equal(pvh.Entry, LinuxLoader.LoadPvh(mem2, pvh, "console=ttyS0", null, "", new PlatformDescription(1)).Registers.Rip);
    }
}

/// <summary>A test that needs Debian's kernel in artifacts/linux (scripts/build-linux-guest.sh); skipped, saying so, without it.</summary>
public sealed class DebianKernelFactAttribute : FactAttribute
{
    public static string KernelPath { get; } = Locate();

    public DebianKernelFactAttribute()
    {
        if (!File.Exists(KernelPath))
            Skip = $"the Debian kernel is not built: run scripts/build-linux-guest.sh (expected {KernelPath})";
    }

    private static string Locate()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ActorVmm.sln"))) return Path.Combine(dir.FullName, "artifacts", "linux", "vmlinuz");
        }
        return Path.Combine("artifacts", "linux", "vmlinuz");
    }
}
