// The firmware tables that describe the PC machine to an operating system booted without firmware (Linux
// through the 64-bit or PVH entry): an Intel MultiProcessor Specification 1.4 table and ACPI tables
// (ACPI 6.x layouts). They describe what PcMachineBuilder and SoftKernelDevices build (docs/devices.md):
//   local APICs 0..N-1 at 0xfee00000 (APIC ID = processor UID = vCPU index), version 0x14;
//   the IOAPIC (ID 0, version 0x20) at 0xfec00000 with GSI base 0 and 24 pins; ISA IRQ n on pin n except
//   IRQ0 on pin 2 (source override), IRQ9 (the SCI) level-triggered, active high;
//   the ACPI PM block at PmBasePort (PcMachineBuilder.Describe: where the kernel or the platform has it):
//   PM1a_EVT base (4 bytes), PM1a_CNT base + 4 (2), PM_TMR base + 8 (4, 24-bit); 0x600 on QEMU's PIIX4 (soft,
//   KVM, split and off), 0x400 on bhyve's layout (vmm: PM timer 0x408 in the kernel), SCI IRQ 9, no SMI command port (always in ACPI mode), reset register 0xcf9
//   value 6, the i8042 and legacy devices present, no VGA;
//   the HPET at 0xfed00000 (3 timers, 64-bit counter, legacy replacement capable, vendor 0x8086), when present;
//   a DSDT with \_S5 = Package {S5, S5, 0, 0} (the SLP_TYP value AcpiPm treats as S5) and, with -device pvpanic,
//   the pvpanic device as QEMU describes it: \_SB.PEVT, _HID "QEMU0001", _CRS one I/O port (its port).
// Placement (PlatformTables.Write): the RSDP and the MP floating pointer and configuration table in the
// BIOS area at 0xf0000 (where both specifications tell the OS to search; the memory map reserves
// 0xf0000-0xfffff), everything else in the reserved firmware block at the top of RAM below 4 GiB
// (MultibootLoader.FirmwareTablesSize, reserved in the memory map). Every table is checksummed; the FACS
// is 64-byte aligned.
using System.Buffers.Binary;
using System.Text;
using ActorVmm.Core.Memory;

namespace ActorVmm.Core.Boot;

/// <summary>What the tables describe; the defaults are the soft platform's devices.</summary>
public sealed record PlatformDescription(int VcpuCount)
{
    public ulong LocalApicAddress { get; init; } = 0xfee00000;
    public byte LocalApicVersion { get; init; } = 0x14;
    public ulong IoApicAddress { get; init; } = 0xfec00000;
    public byte IoApicId { get; init; } = 0;
    public byte IoApicVersion { get; init; } = 0x20;
    public int IoApicPins { get; init; } = 24;
    /// <summary>The IOAPIC pin ISA IRQ0 reaches (SoftKernelDevices.Irq0IoApicPin).</summary>
    public int Irq0Pin { get; init; } = 2;
    public ushort PmBasePort { get; init; } = 0x600;
    public byte SciIrq { get; init; } = 9;
    /// <summary>The SLP_TYP value AcpiPm powers off on (AcpiPm.S5SleepType, 0 by default as QEMU's PIIX4).</summary>
    public byte S5SleepType { get; init; } = 0;
    public ushort ResetPort { get; init; } = 0xcf9;
    public byte ResetValue { get; init; } = 6;
    /// <summary>Whether the machine has an HPET (the kernel's or a platform device): the ACPI HPET table is there only then.</summary>
    public bool HpetPresent { get; init; } = true;
    public ulong HpetAddress { get; init; } = 0xfed00000;
    public int HpetTimers { get; init; } = 3;
    /// <summary>The pvpanic device's port (MachineConfig.PvPanicPort), or null when there is none.</summary>
    public ushort? PvPanicPort { get; init; }
}

/// <summary>Where <see cref="PlatformTables.Write"/> put the tables.</summary>
public sealed record PlatformTableAddresses(ulong Rsdp, ulong MpFloatingPointer, ulong TablesStart, ulong TablesEnd);

public static class PlatformTables
{
    public const string OemId = "ACTVMM";
    public const string OemTableId = "ACTORVMM";
    public const ulong BiosAreaTables = 0xf0000;

    // ---- ACPI ----

    public const int SdtHeaderSize = 36;
    public const int RsdpSize = 36;
    public const int FadtSize = 276;
    public const int FacsSize = 64;
    public const int HpetTableSize = 56;

    /// <summary>
    /// The DSDT's AML: Name (_S5, Package (4) { S5, S5, 0, 0 }); with a pvpanic port also
    /// Scope (\_SB) { Device (PEVT) { Name (_HID, "QEMU0001") Name (_CRS, ResourceTemplate () { IO (Decode16, port, port, 1, 1) }) } },
    /// the ACPI device through which Linux's pvpanic driver finds the port (ACPI 6.x §19/§20: every PkgLength here fits one byte).
    /// </summary>
    public static byte[] DsdtAml(byte s5, ushort? pvpanicPort = null)
    {
        byte[] s5Package =
        [
            0x08, (byte)'_', (byte)'S', (byte)'5', (byte)'_', // NameOp "_S5_"
            0x12, 0x08, 0x04,                                 // PackageOp, PkgLength 8, NumElements 4
            0x0a, s5, 0x0a, s5,                               // BytePrefix S5, BytePrefix S5
            0x00, 0x00,                                       // ZeroOp, ZeroOp
        ];
        if (pvpanicPort is not { } port) return s5Package;
        byte lo = (byte)port, hi = (byte)(port >> 8);
        byte[] device =
        [
            0x10, 0x2f, (byte)'\\', (byte)'_', (byte)'S', (byte)'B', (byte)'_',          // ScopeOp, PkgLength 47, "\_SB_"
            0x5b, 0x82, 0x27, (byte)'P', (byte)'E', (byte)'V', (byte)'T',                // DeviceOp, PkgLength 39, "PEVT"
            0x08, (byte)'_', (byte)'H', (byte)'I', (byte)'D',                            // NameOp "_HID"
            0x0d, .. Encoding.ASCII.GetBytes("QEMU0001"), 0x00,                          // String "QEMU0001"
            0x08, (byte)'_', (byte)'C', (byte)'R', (byte)'S',                            // NameOp "_CRS"
            0x11, 0x0d, 0x0a, 0x0a,                                                      // BufferOp, PkgLength 13, BufferSize 10
            0x47, 0x01, lo, hi, lo, hi, 0x01, 0x01,                                      // I/O port descriptor: 16-bit decode, min = max = port, align 1, length 1
            0x79, 0x00,                                                                  // End tag (checksum 0: none)
        ];
        return [.. s5Package, .. device];
    }

    /// <summary>The ACPI tables laid out from <paramref name="baseAddress"/>, and the RSDP that points at them.</summary>
    public static (byte[] Tables, byte[] Rsdp) BuildAcpi(PlatformDescription p, ulong baseAddress)
    {
        ArgumentNullException.ThrowIfNull(p);
        var dsdt = Sdt("DSDT", 2, DsdtAml(p.S5SleepType, p.PvPanicPort));
        var facs = Facs();
        var fadt = new byte[FadtSize];
        var madt = Madt(p);
        var hpet = p.HpetPresent ? HpetTable(p) : [];

        // Layout: FACS (64-byte aligned) first, then DSDT, FADT, MADT, HPET, RSDT, XSDT, each 8-byte aligned.
        ulong at = baseAddress;
        ulong facsAt = Align(at, 64); at = facsAt + FacsSize;
        ulong dsdtAt = Align(at, 8); at = dsdtAt + (ulong)dsdt.Length;
        ulong fadtAt = Align(at, 8); at = fadtAt + FadtSize;
        ulong madtAt = Align(at, 8); at = madtAt + (ulong)madt.Length;
        ulong hpetAt = Align(at, 8); at = hpetAt + (ulong)hpet.Length;
        ulong[] entries = p.HpetPresent ? [fadtAt, madtAt, hpetAt] : [fadtAt, madtAt];
        var rsdtBody = new byte[entries.Length * 4];
        var xsdtBody = new byte[entries.Length * 8];
        for (int i = 0; i < entries.Length; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(rsdtBody.AsSpan(i * 4), (uint)entries[i]);
            BinaryPrimitives.WriteUInt64LittleEndian(xsdtBody.AsSpan(i * 8), entries[i]);
        }
        var rsdt = Sdt("RSDT", 1, rsdtBody);
        var xsdt = Sdt("XSDT", 1, xsdtBody);
        ulong rsdtAt = Align(at, 8); at = rsdtAt + (ulong)rsdt.Length;
        ulong xsdtAt = Align(at, 8); at = xsdtAt + (ulong)xsdt.Length;

        FillFadt(fadt, p, facsAt, dsdtAt);
        var blob = new byte[at - baseAddress];
        void Put(ulong addr, byte[] table) => table.CopyTo(blob, (int)(addr - baseAddress));
        Put(facsAt, facs);
        Put(dsdtAt, dsdt);
        Put(fadtAt, fadt);
        Put(madtAt, madt);
        if (p.HpetPresent) Put(hpetAt, hpet);
        Put(rsdtAt, rsdt);
        Put(xsdtAt, xsdt);
        return (blob, Rsdp(rsdtAt, xsdtAt));
    }

    private static byte[] Rsdp(ulong rsdt, ulong xsdt)
    {
        var r = new byte[RsdpSize];
        Encoding.ASCII.GetBytes("RSD PTR ").CopyTo(r, 0);
        Encoding.ASCII.GetBytes(OemId).CopyTo(r, 9);
        r[15] = 2; // revision: ACPI 2.0+ (XSDT)
        BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(16), (uint)rsdt);
        BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(20), RsdpSize);
        BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(24), xsdt);
        r[8] = Checksum(r.AsSpan(0, 20));
        r[32] = Checksum(r);
        return r;
    }

    /// <summary>A system description table: the 36-byte header (checksummed) followed by <paramref name="body"/>.</summary>
    private static byte[] Sdt(string signature, byte revision, ReadOnlySpan<byte> body)
    {
        var t = new byte[SdtHeaderSize + body.Length];
        WriteHeader(t, signature, revision);
        body.CopyTo(t.AsSpan(SdtHeaderSize));
        t[9] = Checksum(t);
        return t;
    }

    private static void WriteHeader(byte[] t, string signature, byte revision)
    {
        Encoding.ASCII.GetBytes(signature).CopyTo(t, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(t.AsSpan(4), (uint)t.Length);
        t[8] = revision;
        Encoding.ASCII.GetBytes(OemId).CopyTo(t, 10);
        Encoding.ASCII.GetBytes(OemTableId).CopyTo(t, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(t.AsSpan(24), 1);            // OEM revision
        Encoding.ASCII.GetBytes("AVMM").CopyTo(t, 28);                       // creator ID
        BinaryPrimitives.WriteUInt32LittleEndian(t.AsSpan(32), 1);            // creator revision
    }

    private static byte[] Facs()
    {
        var f = new byte[FacsSize];
        Encoding.ASCII.GetBytes("FACS").CopyTo(f, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(4), FacsSize);
        f[32] = 2; // version
        return f;
    }

    private static void FillFadt(byte[] f, PlatformDescription p, ulong facs, ulong dsdt)
    {
        WriteHeader(f, "FACP", 6);
        var s = f.AsSpan();
        uint evt = p.PmBasePort, cnt = p.PmBasePort + 4u, tmr = p.PmBasePort + 8u;
        BinaryPrimitives.WriteUInt32LittleEndian(s[36..], (uint)facs);
        BinaryPrimitives.WriteUInt32LittleEndian(s[40..], (uint)dsdt);
        BinaryPrimitives.WriteUInt16LittleEndian(s[46..], p.SciIrq);          // SCI_INT
        // SMI_CMD (48) = 0: no SMI command port, the machine is always in ACPI mode.
        BinaryPrimitives.WriteUInt32LittleEndian(s[56..], evt);               // PM1a_EVT_BLK
        BinaryPrimitives.WriteUInt32LittleEndian(s[64..], cnt);               // PM1a_CNT_BLK
        BinaryPrimitives.WriteUInt32LittleEndian(s[76..], tmr);               // PM_TMR_BLK
        f[88] = 4;                                                           // PM1_EVT_LEN
        f[89] = 2;                                                           // PM1_CNT_LEN
        f[91] = 4;                                                           // PM_TMR_LEN
        BinaryPrimitives.WriteUInt16LittleEndian(s[96..], 0x0fff);            // P_LVL2_LAT: C2 not supported
        BinaryPrimitives.WriteUInt16LittleEndian(s[98..], 0x0fff);            // P_LVL3_LAT: C3 not supported
        BinaryPrimitives.WriteUInt16LittleEndian(s[109..], FadtBootArch);     // IAPC_BOOT_ARCH
        BinaryPrimitives.WriteUInt32LittleEndian(s[112..], FadtFlags);
        WriteGas(s[116..], space: 1, bitWidth: 8, accessSize: 1, p.ResetPort); // RESET_REG
        f[128] = p.ResetValue;
        // 129 ARM_BOOT_ARCH 0, 131 minor version 0 (ACPI 6.0).
        BinaryPrimitives.WriteUInt64LittleEndian(s[132..], facs);             // X_FIRMWARE_CTRL
        BinaryPrimitives.WriteUInt64LittleEndian(s[140..], dsdt);             // X_DSDT
        WriteGas(s[148..], 1, 32, 2, evt);                                   // X_PM1a_EVT_BLK
        WriteGas(s[172..], 1, 16, 2, cnt);                                   // X_PM1a_CNT_BLK
        WriteGas(s[208..], 1, 32, 3, tmr);                                   // X_PM_TMR_BLK
        f[9] = Checksum(f);
    }

    /// <summary>IAPC_BOOT_ARCH: LEGACY_DEVICES (bit 0), 8042 (bit 1), VGA Not Present (bit 2).</summary>
    public const ushort FadtBootArch = 0x0007;

    /// <summary>FADT flags: WBINVD (0), PROC_C1 (2), SLP_BUTTON (5: no fixed sleep button), RESET_REG_SUP (10).</summary>
    public const uint FadtFlags = 1u << 0 | 1u << 2 | 1u << 5 | 1u << 10;

    private static void WriteGas(Span<byte> g, byte space, byte bitWidth, byte accessSize, ulong address)
    {
        g[0] = space;
        g[1] = bitWidth;
        g[2] = 0;
        g[3] = accessSize;
        BinaryPrimitives.WriteUInt64LittleEndian(g[4..], address);
    }

    /// <summary>MADT interrupt source override flags for IRQ9: active high (01), level triggered (11 &lt;&lt; 2).</summary>
    public const ushort SciOverrideFlags = 0x000d;

    private static byte[] Madt(PlatformDescription p)
    {
        var body = new List<byte>();
        void U8(byte v) => body.Add(v);
        void U16(ushort v) { U8((byte)v); U8((byte)(v >> 8)); }
        void U32(uint v) { U16((ushort)v); U16((ushort)(v >> 16)); }
        U32((uint)p.LocalApicAddress);
        U32(1); // PCAT_COMPAT: the 8259s are present
        for (int i = 0; i < p.VcpuCount; i++)
        {
            U8(0); U8(8); U8((byte)i); U8((byte)i); U32(1); // processor local APIC, enabled
        }
        U8(1); U8(12); U8(p.IoApicId); U8(0); U32((uint)p.IoApicAddress); U32(0); // IOAPIC, GSI base 0
        U8(2); U8(10); U8(0); U8(0); U32((uint)p.Irq0Pin); U16(0);                // IRQ0 -> GSI 2, bus default
        U8(2); U8(10); U8(0); U8(p.SciIrq); U32(p.SciIrq); U16(SciOverrideFlags);   // SCI: level, active high
        U8(4); U8(6); U8(0xff); U16(0); U8(1);                                    // local APIC NMI: all, LINT1
        return Sdt("APIC", 3, body.ToArray());
    }

    private static byte[] HpetTable(PlatformDescription p)
    {
        var body = new byte[HpetTableSize - SdtHeaderSize];
        uint blockId = 1u | (uint)(p.HpetTimers - 1) << 8 | 1u << 13 | 1u << 15 | 0x8086u << 16;
        BinaryPrimitives.WriteUInt32LittleEndian(body, blockId);
        WriteGas(body.AsSpan(4), space: 0, bitWidth: 64, accessSize: 0, p.HpetAddress);
        body[16] = 0;                                                   // HPET number
        BinaryPrimitives.WriteUInt16LittleEndian(body.AsSpan(17), 0x80); // minimum periodic tick
        body[19] = 0;                                                   // no page protection
        return Sdt("HPET", 1, body);
    }

    // ---- MP table (Intel MultiProcessor Specification 1.4) ----

    public const int MpFloatingPointerSize = 16;
    public const int MpConfigHeaderSize = 44;
    public const byte MpIsaBus = 1, MpPciBus = 0;

    /// <summary>The MP floating pointer at <paramref name="address"/> followed by the configuration table.</summary>
    public static byte[] BuildMp(PlatformDescription p, ulong address)
    {
        ArgumentNullException.ThrowIfNull(p);
        var e = new List<byte>();
        int count = 0;
        void U8(byte v) => e.Add(v);
        void U16(ushort v) { U8((byte)v); U8((byte)(v >> 8)); }
        void U32(uint v) { U16((ushort)v); U16((ushort)(v >> 16)); }
        void Str(string s, int n) { foreach (var c in s.PadRight(n)[..n]) U8((byte)c); }

        for (int i = 0; i < p.VcpuCount; i++)
        {
            U8(0); U8((byte)i); U8(p.LocalApicVersion); U8((byte)(1 | (i == 0 ? 2 : 0))); // enabled, BSP
            U32(0x00000663);     // signature: family 6, model 6, stepping 3 (what the soft CPU's CPUID 1 is close to)
            U32(0x00000201);     // features: FPU, APIC
            U32(0); U32(0);
            count++;
        }
        U8(1); U8(MpPciBus); Str("PCI", 6); count++;
        U8(1); U8(MpIsaBus); Str("ISA", 6); count++;
        U8(2); U8(p.IoApicId); U8(p.IoApicVersion); U8(1); U32((uint)p.IoApicAddress); count++;
        // I/O interrupt assignments: the 8259 through pin 0 (ExtINT), then every ISA IRQ as the soft platform wires it.
        U8(3); U8(3); U16(0); U8(MpIsaBus); U8(0); U8(p.IoApicId); U8(0); count++;
        for (int irq = 0; irq < 16; irq++)
        {
            if (irq == 2) continue; // the cascade
            int pin = irq == 0 ? p.Irq0Pin : irq;
            ushort flags = irq == p.SciIrq ? SciOverrideFlags : (ushort)0;
            U8(3); U8(0); U16(flags); U8(MpIsaBus); U8((byte)irq); U8(p.IoApicId); U8((byte)pin); count++;
        }
        // Local interrupt assignments: ExtINT on LINT0, NMI on LINT1, every local APIC.
        U8(4); U8(3); U16(0); U8(MpIsaBus); U8(0); U8(0xff); U8(0); count++;
        U8(4); U8(1); U16(0); U8(MpIsaBus); U8(0); U8(0xff); U8(1); count++;

        var table = new byte[MpFloatingPointerSize + MpConfigHeaderSize + e.Count];
        var fp = table.AsSpan(0, MpFloatingPointerSize);
        Encoding.ASCII.GetBytes("_MP_").CopyTo(fp);
        BinaryPrimitives.WriteUInt32LittleEndian(fp[4..], (uint)(address + MpFloatingPointerSize));
        fp[8] = 1;  // length in 16-byte units
        fp[9] = 4;  // spec revision 1.4
        // feature bytes: 0 = a configuration table is present; IMCRP clear (virtual wire mode)
        fp[10] = Checksum(fp);

        var ct = table.AsSpan(MpFloatingPointerSize);
        Encoding.ASCII.GetBytes("PCMP").CopyTo(ct);
        BinaryPrimitives.WriteUInt16LittleEndian(ct[4..], (ushort)(MpConfigHeaderSize + e.Count));
        ct[6] = 4;
        Encoding.ASCII.GetBytes(OemId.PadRight(8)).CopyTo(ct[8..]);
        Encoding.ASCII.GetBytes("ActorVmm pc ").CopyTo(ct[16..]);
        BinaryPrimitives.WriteUInt16LittleEndian(ct[34..], (ushort)count);
        BinaryPrimitives.WriteUInt32LittleEndian(ct[36..], (uint)p.LocalApicAddress);
        e.ToArray().CopyTo(ct[MpConfigHeaderSize..]);
        ct[7] = Checksum(ct);
        return table;
    }

    // ---- placement ----

    /// <summary>Writes the MP table and RSDP at 0xf0000 and the ACPI tables at the top-of-RAM firmware block.</summary>
    /// <exception cref="BootImageException">Guest RAM has no room for them (RAM under 2 MiB).</exception>
    public static PlatformTableAddresses Write(GuestMemory memory, PlatformDescription p)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ulong tablesStart = FirmwareBlock(memory)
            ?? throw new BootImageException($"guest RAM is too small for the ACPI tables (no reserved firmware block at the top of RAM below 4 GiB; {MachineConfigRam(memory)})");
        var (acpi, rsdp) = BuildAcpi(p, tablesStart);
        if ((ulong)acpi.Length > MultibootLoader.FirmwareTablesSize)
            throw new BootImageException($"the ACPI tables ({acpi.Length} bytes) do not fit the {MultibootLoader.FirmwareTablesSize}-byte firmware block");
        ulong rsdpAt = BiosAreaTables;
        ulong mpAt = BiosAreaTables + 0x40;
        var mp = BuildMp(p, mpAt);
        if (!memory.IsBacked(BiosAreaTables, 0x10000))
            throw new BootImageException($"guest RAM does not cover the BIOS area at 0xf0000 ({MachineConfigRam(memory)})");
        memory.Write(tablesStart, acpi);
        memory.Write(rsdpAt, rsdp);
        memory.Write(mpAt, mp);
        return new PlatformTableAddresses(rsdpAt, mpAt, tablesStart, tablesStart + (ulong)acpi.Length);
    }

    /// <summary>Start of the reserved firmware block the memory map keeps at the top of RAM below 4 GiB, if any.</summary>
    public static ulong? FirmwareBlock(GuestMemory memory)
    {
        var map = MultibootLoader.BuildMemoryMap(memory);
        foreach (var e in map)
        {
            if (e.Type == MultibootLoader.MemoryReserved && e.Length == MultibootLoader.FirmwareTablesSize
                && e.Base >= MultibootLoader.HighMemoryStart && e.Base < 1UL << 32 && memory.IsBacked(e.Base, e.Length))
                return e.Base;
        }
        return null;
    }

    private static string MachineConfigRam(GuestMemory memory)
        => "RAM: " + string.Join(", ", memory.Regions.Select(r => r.ToString()));

    /// <summary>The byte that makes <paramref name="data"/> (with that byte at 0) sum to zero.</summary>
    public static byte Checksum(ReadOnlySpan<byte> data)
    {
        byte sum = 0;
        foreach (var b in data) sum += b;
        return (byte)-sum;
    }

    private static ulong Align(ulong v, ulong a) => (v + a - 1) & ~(a - 1);
}
