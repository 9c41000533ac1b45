// The MP and ACPI tables, read back from guest memory by a small independent parser here (signatures,
// lengths, checksums, pointers, field values against the ACPI 6 and MP 1.4 layouts), and the DSDT
// disassembled by iasl when acpica-tools is installed.
using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Memory;

namespace ActorVmm.Core.Tests.Boot;

public sealed unsafe class PlatformTablesTests : IDisposable
{
    private const ulong RamSize = 64 << 20;
    private readonly NativeRam _ram = new(RamSize);
    private readonly GuestMemory _memory;

    public PlatformTablesTests()
    {
        _memory = new GuestMemory([new GuestRegion("ram", 0, RamSize, _ram.Pointer)]);
    }

    public void Dispose() => _ram.Dispose();

    private byte[] Read(ulong gpa, int length)
    {
        var b = new byte[length];
        _memory.Read(gpa, b);
        return b;
    }

    private static uint U32(byte[] b, int o) => BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(o));
    private static ushort U16(byte[] b, int o) => BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(o));
    private static ulong U64(byte[] b, int o) => BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(o));
    private static int Sum(byte[] b) => b.Aggregate(0, (a, x) => (a + x) & 0xff);

    /// <summary>Reads a table at <paramref name="gpa"/>, checks signature, length and checksum.</summary>
    private byte[] Table(ulong gpa, string signature)
    {
        var head = Read(gpa, 36);
        Assert.Equal(signature, Encoding.ASCII.GetString(head, 0, 4));
        int length = (int)U32(head, 4);
        Assert.InRange(length, 36, 4096);
        var t = Read(gpa, length);
        Assert.Equal(0, Sum(t));
        Assert.Equal("ACTVMM", Encoding.ASCII.GetString(t, 10, 6));
        return t;
    }

    private (PlatformTableAddresses At, Dictionary<string, ulong> Tables) WriteAndWalk(int vcpus = 2, ushort? pvpanicPort = null)
    {
        var at = PlatformTables.Write(_memory, new PlatformDescription(vcpus) { PvPanicPort = pvpanicPort });
        var rsdp = Read(at.Rsdp, 36);
        Assert.Equal("RSD PTR ", Encoding.ASCII.GetString(rsdp, 0, 8));
        Assert.Equal(0, Sum(rsdp[..20]));
        Assert.Equal(0, Sum(rsdp));
        Assert.Equal(2, rsdp[15]);
        Assert.Equal(36u, U32(rsdp, 20));
        var rsdt = Table(U32(rsdp, 16), "RSDT");
        var xsdt = Table(U64(rsdp, 24), "XSDT");
        Assert.Equal((rsdt.Length - 36) / 4, (xsdt.Length - 36) / 8);
        var tables = new Dictionary<string, ulong>();
        for (int i = 0; i < (xsdt.Length - 36) / 8; i++)
        {
            ulong p = U64(xsdt, 36 + i * 8);
            Assert.Equal(p, U32(rsdt, 36 + i * 4));
            tables[Encoding.ASCII.GetString(Read(p, 4))] = p;
        }
        return (at, tables);
    }

    [Fact]
    public void Rsdp_lies_in_the_bios_area_and_the_tables_in_the_reserved_firmware_block()
    {
        var (at, tables) = WriteAndWalk();
        Assert.InRange(at.Rsdp, 0xe0000UL, 0xfffffUL);
        Assert.Equal(0UL, at.Rsdp % 16);
        var map = MultibootLoader.BuildMemoryMap(_memory);
        var block = map.Single(e => e.Base == at.TablesStart);
        Assert.Equal(MultibootLoader.MemoryReserved, block.Type);
        Assert.True(at.TablesEnd <= block.Base + block.Length);
        Assert.Equal(["APIC", "FACP", "HPET"], tables.Keys.Order());
    }

    [Fact]
    public void Fadt_describes_the_pm_block_sci_reset_register_facs_and_dsdt()
    {
        var (_, tables) = WriteAndWalk();
        var f = Table(tables["FACP"], "FACP");
        Assert.Equal(276, f.Length);
        Assert.Equal(6, f[8]);
        Assert.Equal(9, U16(f, 46));                  // SCI_INT
        Assert.Equal(0u, U32(f, 48));                 // no SMI_CMD: always ACPI mode
        Assert.Equal(0x600u, U32(f, 56));             // PM1a_EVT_BLK
        Assert.Equal(0x604u, U32(f, 64));             // PM1a_CNT_BLK
        Assert.Equal(0x608u, U32(f, 76));             // PM_TMR_BLK
        Assert.Equal(4, f[88]); Assert.Equal(2, f[89]); Assert.Equal(4, f[91]);
        uint flags = U32(f, 112);
        Assert.Equal(0u, flags & (1u << 20));         // HW_REDUCED_ACPI off
        Assert.Equal(0u, flags & (1u << 8));          // TMR_VAL_EXT off: 24-bit PM timer, as AcpiPm
        Assert.NotEqual(0u, flags & (1u << 10));      // RESET_REG_SUP
        Assert.Equal(1, f[116]);                      // reset register: system I/O
        Assert.Equal(8, f[117]);
        Assert.Equal(0xcf9UL, U64(f, 120));
        Assert.Equal(6, f[128]);
        Assert.Equal(U32(f, 36), U64(f, 132));        // FIRMWARE_CTRL = X_FIRMWARE_CTRL
        Assert.Equal(U32(f, 40), U64(f, 140));        // DSDT = X_DSDT
        Assert.Equal(0x600UL, U64(f, 152));           // X_PM1a_EVT_BLK address
        Assert.Equal(0x604UL, U64(f, 176));
        Assert.Equal(0x608UL, U64(f, 212));
        var facs = Read(U32(f, 36), 64);
        Assert.Equal("FACS", Encoding.ASCII.GetString(facs, 0, 4));
        Assert.Equal(64u, U32(facs, 4));
        Assert.Equal(0u, U32(f, 36) % 64);
        var dsdt = Table(U32(f, 40), "DSDT");
        Assert.Equal(2, dsdt[8]);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    public void Dsdt_names_S5_with_the_sleep_type_the_pm_device_powers_off_on(byte s5)
    {
        var aml = PlatformTables.DsdtAml(s5);
        // NameOp "_S5_" PackageOp PkgLength NumElements 4: BytePrefix s5, BytePrefix s5, Zero, Zero.
        Assert.Equal([0x08, (byte)'_', (byte)'S', (byte)'5', (byte)'_', 0x12], aml[..6]);
        Assert.Equal(aml.Length - 6, aml[6]);        // PkgLength counts itself and what follows
        Assert.Equal(4, aml[7]);
        Assert.Equal([0x0a, s5, 0x0a, s5, 0x00, 0x00], aml[8..]);
        Assert.Equal(0, new AcpiPm(new FixedClock(), NullIrqLine.Instance, new NullControl()).S5SleepType);
    }

    [Fact]
    public void Madt_lists_each_local_apic_the_ioapic_and_the_overrides()
    {
        var (_, tables) = WriteAndWalk(vcpus: 3);
        var m = Table(tables["APIC"], "APIC");
        Assert.Equal(0xfee00000u, U32(m, 36));
        Assert.Equal(1u, U32(m, 40));                 // PCAT_COMPAT
        var entries = new List<byte[]>();
        for (int at = 44; at < m.Length; at += m[at + 1])
        {
            Assert.True(m[at + 1] >= 2, "zero-length MADT entry");
            entries.Add(m[at..(at + m[at + 1])]);
        }
        var lapics = entries.Where(e => e[0] == 0).ToList();
        Assert.Equal(3, lapics.Count);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(i, lapics[i][2]);
            Assert.Equal(i, lapics[i][3]);
            Assert.Equal(1u, U32(lapics[i], 4));
        }
        var ioapic = Assert.Single(entries, e => e[0] == 1);
        Assert.Equal(0, ioapic[2]);
        Assert.Equal(0xfec00000u, U32(ioapic, 4));
        Assert.Equal(0u, U32(ioapic, 8));
        var overrides = entries.Where(e => e[0] == 2).Select(e => (Irq: e[3], Gsi: U32(e, 4), Flags: U16(e, 8))).ToList();
        Assert.Contains((Irq: (byte)0, Gsi: 2u, Flags: (ushort)0), overrides);
        Assert.Contains((Irq: (byte)9, Gsi: 9u, Flags: (ushort)0x000d), overrides);
        var nmi = Assert.Single(entries, e => e[0] == 4);
        Assert.Equal(0xff, nmi[2]);
        Assert.Equal(1, nmi[5]);
    }

    [Fact]
    public void Hpet_table_matches_the_device()
    {
        var (_, tables) = WriteAndWalk();
        var h = Table(tables["HPET"], "HPET");
        Assert.Equal(56, h.Length);
        var hpet = new Hpet(new FixedClock(), (_, _) => { }, (_, _) => { });
        Assert.Equal((uint)hpet.Capabilities, U32(h, 36)); // the low half of GCAP_ID
        Assert.Equal(0, h[40]);                            // memory space
        Assert.Equal(0xfed00000UL, U64(h, 44));
    }

    [Fact]
    public void Mp_table_has_a_valid_floating_pointer_processors_buses_ioapic_and_isa_interrupts()
    {
        var at = PlatformTables.Write(_memory, new PlatformDescription(2));
        Assert.Equal(0UL, at.MpFloatingPointer % 16);
        Assert.InRange(at.MpFloatingPointer, 0xf0000UL, 0xfffffUL);
        var fp = Read(at.MpFloatingPointer, 16);
        Assert.Equal("_MP_", Encoding.ASCII.GetString(fp, 0, 4));
        Assert.Equal(0, Sum(fp));
        Assert.Equal(1, fp[8]);
        Assert.Equal(4, fp[9]);
        Assert.Equal(0, fp[11]);                         // a configuration table follows, no default config
        var head = Read(U32(fp, 4), 44);
        Assert.Equal("PCMP", Encoding.ASCII.GetString(head, 0, 4));
        var ct = Read(U32(fp, 4), U16(head, 4));
        Assert.Equal(0, Sum(ct));
        Assert.Equal(0xfee00000u, U32(ct, 36));
        int count = U16(ct, 34);
        var entries = new List<byte[]>();
        int o = 44;
        for (int i = 0; i < count; i++)
        {
            int len = ct[o] == 0 ? 20 : 8;
            entries.Add(ct[o..(o + len)]);
            o += len;
        }
        Assert.Equal(ct.Length, o);
        var cpus = entries.Where(e => e[0] == 0).ToList();
        Assert.Equal(2, cpus.Count);
        Assert.Equal(3, cpus[0][3]);                     // enabled + BSP
        Assert.Equal(1, cpus[1][3]);
        var buses = entries.Where(e => e[0] == 1).ToDictionary(e => Encoding.ASCII.GetString(e, 2, 6).TrimEnd(), e => e[1]);
        byte isa = buses["ISA"];
        Assert.Contains("PCI", buses.Keys);
        var io = Assert.Single(entries, e => e[0] == 2);
        Assert.Equal(0xfec00000u, U32(io, 4));
        Assert.Equal(1, io[3]);
        var ints = entries.Where(e => e[0] == 3 && e[1] == 0 && e[4] == isa).ToDictionary(e => e[5], e => (Pin: e[7], Flags: U16(e, 2)));
        Assert.Equal(2, ints[0].Pin);
        Assert.Equal(1, ints[1].Pin);
        Assert.Equal((Pin: (byte)9, Flags: (ushort)0x000d), ints[9]);
        Assert.False(ints.ContainsKey(2));
        Assert.Equal(15, ints.Count);
        Assert.Contains(entries, e => e[0] == 4 && e[1] == 3 && e[7] == 0); // ExtINT on LINT0
        Assert.Contains(entries, e => e[0] == 4 && e[1] == 1 && e[7] == 1); // NMI on LINT1
    }

    [IaslTheory]
    [InlineData(null)]
    [InlineData((ushort)0x505)]
    [InlineData((ushort)0x1234)]
    public void Iasl_disassembles_the_dsdt_without_errors(ushort? pvpanicPort)
    {
        string iasl = FindOnPath("iasl")!;
        var (_, tables) = WriteAndWalk(pvpanicPort: pvpanicPort);
        var f = Table(tables["FACP"], "FACP");
        var dsdt = Table(U32(f, 40), "DSDT");
        var dir = Directory.CreateTempSubdirectory("actorvmm-iasl");
        try
        {
            string file = Path.Combine(dir.FullName, "dsdt.dat");
            File.WriteAllBytes(file, dsdt);
            var psi = new ProcessStartInfo(iasl, ["-d", file]) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = dir.FullName };
            using var p = Process.Start(psi)!;
            string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            Assert.True(p.WaitForExit(30_000), "iasl did not finish");
            Assert.True(p.ExitCode == 0, $"iasl -d failed ({p.ExitCode}): {output}");
            string dsl = File.ReadAllText(Path.Combine(dir.FullName, "dsdt.dsl"));
            Assert.Contains("Name (_S5, Package (0x04)", dsl, StringComparison.Ordinal);
            Assert.DoesNotContain("Error", output, StringComparison.Ordinal);
            if (pvpanicPort is { } port)
            {
                // QEMU's description of its ISA pvpanic, which Linux's pvpanic-mmio driver binds to: _HID QEMU0001
                // and the port as a one-byte 16-bit-decode I/O range in _CRS.
                string hex = $"0x{port:X4}";
                var lines = dsl.Split('\n').Select(l => l.Trim()).ToList();
                Assert.Contains("Scope (\\_SB)", lines);
                Assert.Contains("Device (PEVT)", lines);
                Assert.Contains("Name (_HID, \"QEMU0001\")  // _HID: Hardware ID", lines);
                int io = lines.IndexOf("IO (Decode16,");
                Assert.True(io > 0, dsl);
                Assert.StartsWith(hex + ",", lines[io + 1], StringComparison.Ordinal);   // Range Minimum
                Assert.StartsWith(hex + ",", lines[io + 2], StringComparison.Ordinal);   // Range Maximum
                Assert.StartsWith("0x01,", lines[io + 3], StringComparison.Ordinal);     // Alignment
                Assert.StartsWith("0x01,", lines[io + 4], StringComparison.Ordinal);     // Length
            }
            else
            {
                Assert.DoesNotContain("QEMU0001", dsl, StringComparison.Ordinal);
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    internal static string? FindOnPath(string name)
        => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    private sealed class FixedClock : IClock
    {
        public long NowNanoseconds => 0;
    }

    private sealed class NullControl : IMachineControl
    {
        public void RequestStop(MachineStopRequest request) { }
    }
}

/// <summary>A test that needs iasl (Debian's acpica-tools); skipped, saying so, when it is not installed.</summary>
public sealed class IaslFactAttribute : FactAttribute
{
    public IaslFactAttribute()
    {
        if (PlatformTablesTests.FindOnPath("iasl") is null)
            Skip = "iasl not found: install acpica-tools (scripts/setup.sh does) to check the DSDT with the ACPICA disassembler";
    }
}

public sealed class IaslTheoryAttribute : TheoryAttribute
{
    public IaslTheoryAttribute()
    {
        if (PlatformTablesTests.FindOnPath("iasl") is null)
            Skip = "iasl not found: install acpica-tools (scripts/setup.sh does) to check the DSDT with the ACPICA disassembler";
    }
}
