// Composition of the PC platform (DESIGN.md §3-§5): which device models exist for a MachineConfig, where they
// sit in port and MMIO space, which interrupt line each drives, and which route each takes. The builder creates
// the models and maps them with BusBuilder; the endpoint for each (device, route) pair comes from a delegate, so
// the actor layer can supply Mailbox endpoints while the pure logic here stays free of Akka. Devices:
//   COM1 0x3f8-0x3ff IRQ 4, COM2 0x2f8 IRQ 3, COM3 0x3e8 IRQ 4, COM4 0x2e8 IRQ 3   16550A UART
//   isa-debug-exit at the configured iobase/iosize                                 (when configured)
//   debugcon at 0xe9 or the configured port (SeaBIOS: 0x402)                       (when configured)
//   i8042 keyboard controller 0x60 and 0x64, IRQ 1/12; port 0x92 (fast A20, reset); 0xcf9 reset control
//   PCI host 0xcf8 (CONFIG_ADDRESS, dword) and 0xcfc-0xcff (CONFIG_DATA): i440FX 00.0 and PIIX3 01.0
//   fw_cfg 0x510 (selector), 0x511 (data), 0x514-0x51b (DMA): signature, ID, RAM size, CPU count, boot
//     device, nographic = 1 (there is no display: SeaBIOS then mirrors its console to COM1, as under QEMU's
//     -nographic), the files etc/e820 (the RAM) and etc/boot-fail-wait (the reboot timeout), the command line,
//     and the kernel and initrd blobs when the caller gives them
//   with BIOS firmware, the host bridge's PAM registers drive the shadow-RAM map (I440fxPam)
//   boot timer 0x440 (byte writes report value and elapsed time to the host)
// Where the interrupt controllers and timers are depends on kernel-irqchip (DESIGN.md §3):
//   on     the local APICs, IOAPIC and PIC belong to the accelerator's kernel, and so does whatever else its
//          KernelPlatform (AcceleratorCapabilities, MachineConfig.KernelPlatform) lists; device lines go to
//          IVm.SetIrqLine. What the kernel lacks is added here as userspace platform devices, hosted as in split
//          (PlatformIrqchip in on mode: the same models, clock, timer service deadlines, routes and deterministic
//          lock-step), their lines to IVm.SetIrqLine on the kernel's GSIs (RTC 8, SCI 9, HPET its timers' routes):
//            soft  everything in the kernel (SoftKernelDevices), nothing added; ACPI PM block at 0x600.
//            vmm   vmm(4) has LAPIC, IOAPIC, PIC, PIT, HPET, RTC and the PM timer alone at 0x408 (bhyve's layout);
//                  added: the PM1 event/control block at 0x400-0x405 (PM1a_EVT 0x400, PM1a_CNT 0x404: SCI, S5).
//            kvm   KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2 give LAPIC, IOAPIC, PIC and PIT; added, as QEMU adds them
//                  beside kvm's irqchip: the RTC/CMOS (0x70-0x73), the ACPI PM block at 0x600 (PM1 + PM timer) and
//                  the HPET (MMIO 0xfed00000).
//          The firmware tables (Describe → PlatformTables) put the FADT's PM ports where the block is.
//          Not done: the HPET's legacy replacement cannot cut off a kernel PIT's IRQ0 (KVM has a PIT flag for that,
//          not in the contract); a guest that enables it gets both, as Linux does not (it stops the PIT itself).
//   split  the PIC pair (0x20, 0xa0, ELCR 0x4d0), PIT (0x40-0x43, port 0x61), RTC (0x70-0x73), ACPI PM (0x600),
//          IOAPIC (MMIO 0xfec00000) and HPET (MMIO 0xfed00000) are platform devices here (PlatformIrqchip), each
//          with its route; device lines go to the PIC and IOAPIC.
//   off    as split, plus one local APIC per vCPU ("lapicN"), reached from the vCPU's exit handler.
// Default routes come from measured exit counts (docs/actors.md, DefaultRoute): the cold ACPI PM block takes the
// Mailbox route, every other device the Direct route.
using ActorVmm.Core.Accel;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Memory;

namespace ActorVmm.Core.Machine;

/// <summary>Creates the endpoint through which the vCPUs reach <paramref name="device"/> by <paramref name="route"/>.</summary>
public delegate BusEndpoint EndpointFactory(IBusDevice device, Route route);

/// <summary>Gives a device its host-side output for a backend (stdout, a file, nothing).</summary>
public delegate IByteSink ByteSinkFactory(string deviceName, CharBackend backend);

/// <summary>One device of the built machine: its model, where it is mapped and how it is reached.</summary>
public sealed record PlatformDevice(IBusDevice Model, PortRange Ports, Route Route, BusEndpoint Endpoint)
{
    /// <summary>The MMIO range of a memory-mapped device (then <see cref="Ports"/> is unused).</summary>
    public MmioRange? Mmio { get; init; }

    /// <summary>Where the device is mapped, for logs: its ports, its MMIO range, or "cpu" for a local APIC.</summary>
    public string Where => Mmio is { } m ? m.ToString() : Ports.Count == 0 ? "cpu" : Ports.ToString();
}

/// <summary>The frozen bus and the devices on it.</summary>
public sealed record Platform(Bus.Bus Bus, IReadOnlyList<PlatformDevice> Devices)
{
    /// <summary>
    /// The interrupt controllers and timers outside the accelerator (kernel-irqchip=split or off; in on the timers and
    /// ACPI registers the kernel lacks), else null.
    /// </summary>
    public PlatformIrqchip? Irqchip { get; init; }

    public PlatformDevice? Find(string name) => Devices.FirstOrDefault(d => d.Model.Name == name);

    /// <summary>The exit handler vCPU <paramref name="vcpuId"/> runs with: the dispatcher, wrapped by the irqchip in split/off.</summary>
    public IExitHandler ExitHandlerFor(int vcpuId, ExitDispatcher dispatcher)
        => Irqchip is { } chip ? chip.CreateExitHandler(vcpuId, dispatcher) : dispatcher;
}

/// <summary>Blobs fw_cfg hands to firmware for a direct kernel boot (QEMU's -kernel/-initrd items).</summary>
public sealed record FwCfgBootItems(uint KernelAddress, byte[] Kernel, uint InitrdAddress = 0, byte[]? Initrd = null);

/// <summary>
/// What the platform takes from its host beyond the configuration: the clock for platform timers (the boot
/// timer; host time when null), where boot-timer writes are reported, and fw_cfg's kernel/initrd items.
/// </summary>
/// <param name="Pam">The BIOS's shadow-RAM map, which writes to the i440FX's PAM0-PAM6 drive; null without firmware.</param>
public sealed record PlatformOptions(IClock? Clock = null, Action<byte, long>? BootTimerReport = null, FwCfgBootItems? Boot = null,
    I440fxPam? Pam = null);

/// <summary>Host monotonic time since construction.</summary>
public sealed class HostClock : IClock
{
    private readonly long _start = System.Diagnostics.Stopwatch.GetTimestamp();

    public long NowNanoseconds => (long)((System.Diagnostics.Stopwatch.GetTimestamp() - _start) * (1e9 / System.Diagnostics.Stopwatch.Frequency));
}

/// <summary>An interrupt line wired to a kernel-irqchip input (GSI).</summary>
public sealed class VmIrqLine(IVm vm, int gsi) : IIrqLine
{
    public int Gsi { get; } = gsi;

    public void Set(bool level) => vm.SetIrqLine(Gsi, level);
}

public static class PcMachineBuilder
{
    /// <summary>The legacy COM ports: name, first port, IRQ.</summary>
    public static readonly IReadOnlyList<(string Name, ushort Port, int Irq)> ComPorts =
    [
        ("COM1", 0x3f8, 4),
        ("COM2", 0x2f8, 3),
        ("COM3", 0x3e8, 4),
        ("COM4", 0x2e8, 3),
    ];

    public const string KeyboardControllerName = "i8042";
    public const string Port92Name = "port92";
    public const string ResetControlName = "reset-control";
    public const string DebugExitName = "isa-debug-exit";
    public const string DebugConName = "debugcon";
    public const string PciHostName = "pci-host";
    public const string FwCfgName = "fw_cfg";
    public const string BootTimerName = "boot-timer";
    public const string PvPanicName = "pvpanic";

    /// <summary>The boot timer's port: free on a PC and under QEMU's pc machine.</summary>
    public const ushort BootTimerPort = 0x440;

    /// <summary>fw_cfg's boot device item: 'c', the first hard disk, QEMU's default boot order for a PC.</summary>
    public const ushort FwCfgBootDeviceDisk = 'c';

    /// <summary>The names of the devices a configuration produces, in mapping order.</summary>
    public static IReadOnlyList<string> DeviceNames(MachineConfig config)
    {
        var names = new List<string>();
        for (int i = 0; i < Math.Min(config.SerialPorts.Count, ComPorts.Count); i++)
        {
            if (config.SerialPorts[i] is not null) names.Add(ComPorts[i].Name);
        }
        names.Add(KeyboardControllerName);
        names.Add(Port92Name);
        names.Add(ResetControlName);
        names.Add(PciHostName);
        names.Add(FwCfgName);
        names.Add(BootTimerName);
        if (config.DebugExit is not null) names.Add(DebugExitName);
        if (config.DebugCon is not null) names.Add(DebugConName);
        if (config.PvPanicPort is not null) names.Add(PvPanicName);
        names.AddRange(PlatformIrqchip.HostedNames(config.Irqchip, UserspaceIrqchipDevices(config), config.VcpuCount));
        return names;
    }

    /// <summary>
    /// The interrupt controllers, timers and ACPI registers the platform hosts: everything in split and off; in on what
    /// the accelerator's kernel lacks (None for the soft accelerator).
    /// </summary>
    public static KernelDevices UserspaceIrqchipDevices(MachineConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config.Irqchip == IrqchipMode.On ? config.KernelPlatform.Missing : KernelDevices.All;
    }

    /// <summary>
    /// What the firmware tables (MP, ACPI) must describe for <paramref name="config"/>: the vCPUs, and the ACPI PM
    /// block where this machine has it (the kernel's PM base in on, 0x600 in split and off). An HPET always exists
    /// (the kernel's or a platform device), so the ACPI HPET table is always there.
    /// </summary>
    public static PlatformDescription Describe(MachineConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new PlatformDescription(config.VcpuCount)
        {
            PmBasePort = config.Irqchip == IrqchipMode.On ? config.KernelPlatform.PmBasePort : PlatformIrqchip.DefaultPmBasePort,
            HpetPresent = true,
            PvPanicPort = config.PvPanicPort,
        };
    }

    /// <summary>
    /// The route a device takes unless the command line overrides it, from the exit counts of a Debian Linux boot to
    /// power-off (docs/actors.md): the ACPI PM block (about 130 exits) is cold and takes the Mailbox route, so it lives
    /// in its actor like any peripheral; the PIT (about 35,000), the local APIC in off (about 32,000), the HPET (about
    /// 9,000), the IOAPIC (about 1,000 with the EOIs) and the PIC (on every ExtINT's INTA) are hot or on the interrupt
    /// path and take the Direct route. So does the RTC (about 170): cold, but its periodic interrupt needs the
    /// running vCPU's timer delivery, which only the Direct route gets (a Mailbox device's deadlines reach it through
    /// the timer thread and its actor, milliseconds late on a loaded host: the apic guest then saw a new periodic
    /// interrupt between its handler's register C read and its EOI, which it never does under QEMU).
    /// </summary>
    public static Route DefaultRoute(string deviceName) => deviceName switch
    {
        PlatformIrqchip.PmName => Route.Mailbox,
        _ => Route.Direct,
    };

    /// <summary>An endpoint factory for machines without an actor runtime: Direct only.</summary>
    public static BusEndpoint DirectOnly(IBusDevice device, Route route) => route == Route.Direct
        ? new DirectEndpoint(device)
        : throw new MachineConfigException($"{device.Name}: the Mailbox route needs the actor runtime");

    /// <summary>
    /// Creates the devices <paramref name="config"/> asks for, wires their interrupt lines to
    /// <paramref name="vm"/>, and maps them on a frozen bus.
    /// </summary>
    /// <exception cref="MachineConfigException">The configuration is invalid or two devices overlap.</exception>
    public static Platform Build(MachineConfig config, IVm vm, ByteSinkFactory sinks, IMachineControl control, EndpointFactory endpoints,
        PlatformOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(vm);
        ArgumentNullException.ThrowIfNull(sinks);
        ArgumentNullException.ThrowIfNull(control);
        ArgumentNullException.ThrowIfNull(endpoints);
        config.EnsureValid();
        options ??= new PlatformOptions();

        PlatformIrqchip? chip = null;
        if (UserspaceIrqchipDevices(config) != KernelDevices.None)
        {
            // The platform's timers must run on the accelerator's clock (the guest's TSC and kernel LAPIC timer use it).
            var clock = vm.Clock ?? options.Clock ?? new HostClock();
            var rtcStart = config.Deterministic ? new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc) : DateTime.UtcNow;
            chip = new PlatformIrqchip(config.Irqchip, vm, clock, control, config.RamBytes, config.VcpuCount, rtcStart, config.KernelPlatform)
            {
                LockStep = config.Deterministic,
            };
        }
        IIrqLine Irq(int gsi) => chip is not null ? chip.Line(gsi) : new VmIrqLine(vm, gsi);

        var models = new List<(IBusDevice Model, PortRange Ports)>();
        // The keyboard controller is one model at 0x60 and 0x64 (the second range reaches it with offset 4).
        var kbc = new I8042(Irq(1), Irq(12), control);
        models.Add((kbc.Ports, new PortRange(0x60, 1)));
        models.Add((new SystemControlPortA(control), new PortRange(0x92, 1)));
        models.Add((new ResetControlRegister(control), new PortRange(0xcf9, 1)));
        // The PCI host is one model at 0xcf8 and 0xcfc-0xcff (the second range reaches it with offset 4).
        var pci = PciHost.CreateI440fx();
        if (options.Pam is { } pam) WirePam(pci.GetFunction(0, 0)!, pam);
        models.Add((pci, new PortRange(PciHost.ConfigAddressPort, 1)));
        models.Add((CreateFwCfg(config, vm, options.Boot), new PortRange(FwCfg.BasePort, FwCfg.PortCount)));
        models.Add((new BootTimer(options.Clock ?? new HostClock(), options.BootTimerReport ?? ((_, _) => { })), new PortRange(BootTimerPort, 1)));
        for (int i = 0; i < config.SerialPorts.Count; i++)
        {
            if (config.SerialPorts[i] is not { } backend) continue;
            var (name, port, irq) = ComPorts[i];
            var uart = new Uart16550(name, Irq(irq), sinks(name, backend));
            models.Add((uart, new PortRange(port, 8)));
        }
        if (config.DebugExit is { } de)
        {
            var dev = new IsaDebugExit(control, (ushort)de.IoBase, de.IoSize, DebugExitName);
            models.Add((dev, new PortRange((ushort)de.IoBase, de.IoSize)));
        }
        if (config.DebugCon is { } dc)
        {
            var dev = new DebugCon(sinks(DebugConName, dc), config.DebugConPort, name: DebugConName);
            models.Add((dev, dev.Ports));
        }
        if (config.PvPanicPort is { } panicPort)
        {
            // The machine's control hears the guest's panic reports (the VM actor applies -action panic=); a control
            // without that ear (a bare test machine) leaves the reports to the device's own counters.
            var dev = new PvPanic(control as IGuestPanicReport ?? IgnoredPanicReport.Instance, panicPort, PvPanicName);
            models.Add((dev, dev.Ports));
        }

        var builder = new BusBuilder();
        var devices = new List<PlatformDevice>();
        foreach (var (model, ports) in models)
        {
            var route = config.RouteFor(model.Name);
            var endpoint = endpoints(model, route);
            if (endpoint.Route != route)
                throw new InvalidOperationException($"{model.Name}: endpoint factory returned a {endpoint.Route} endpoint for the {route} route");
            try
            {
                builder.AddPorts(ports, endpoint);
            }
            catch (BusOverlapException e)
            {
                throw new MachineConfigException(e.Message);
            }
            devices.Add(new PlatformDevice(model, ports, route, endpoint));
            if (ReferenceEquals(model, kbc.Ports))
                AddRange(builder, new PortRange(0x64, 1), new OffsetEndpoint(endpoint, 4));
            if (ReferenceEquals(model, pci))
                AddRange(builder, new PortRange(PciHost.ConfigDataPort, 4), new OffsetEndpoint(endpoint, 4));
        }
        if (chip is not null)
        {
            foreach (var d in chip.HostedDevices)
            {
                var route = config.RouteFor(d.Device.Name);
                var endpoint = endpoints(d.Device, route);
                if (endpoint.Route != route)
                    throw new InvalidOperationException($"{d.Device.Name}: endpoint factory returned a {endpoint.Route} endpoint for the {route} route");
                chip.Endpoints[d.Device.Name] = endpoint;
                try
                {
                    if (d.Ports is { } ports) builder.AddPorts(ports, endpoint);
                    if (d.Mmio is { } mmio) builder.AddMmio(mmio, endpoint);
                    foreach (var (range, bias) in d.Aliases) builder.AddPorts(range, new OffsetEndpoint(endpoint, bias));
                }
                catch (BusOverlapException e)
                {
                    throw new MachineConfigException(e.Message);
                }
                devices.Add(new PlatformDevice(d.Device, d.Ports ?? default, route, endpoint) { Mmio = d.Mmio });
            }
        }
        return new Platform(builder.Build(), devices) { Irqchip = chip };
    }

    /// <summary>fw_cfg with what firmware asks a PC machine for (DMA through the VM's guest memory).</summary>
    public static FwCfg CreateFwCfg(MachineConfig config, IVm vm, FwCfgBootItems? boot = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(vm);
        var fw = new FwCfg(vm.Memory);
        fw.SetRamSize(config.RamBytes);
        fw.SetCpuCount((ushort)config.VcpuCount, (ushort)config.VcpuCount);
        fw.SetU16(FwCfg.BOOT_DEVICE, FwCfgBootDeviceDisk);
        fw.SetU16(FwCfg.NOGRAPHIC, 1);
        fw.AddFile(E820FileName, E820File(config.RamBytes));
        fw.AddFile(BootFailWaitFileName, BitConverter.GetBytes(config.RebootTimeoutMs)); // little-endian, as the x86 guest reads it
        if (config.Append.Length > 0) fw.SetCommandLine(0, config.Append);
        if (boot is not null)
        {
            fw.SetKernel(boot.KernelAddress, boot.Kernel);
            if (boot.Initrd is not null) fw.SetInitrd(boot.InitrdAddress, boot.Initrd);
        }
        return fw;
    }

    public const string E820FileName = "etc/e820";
    public const string BootFailWaitFileName = "etc/boot-fail-wait";

    /// <summary>fw_cfg's etc/e820 as QEMU lays it out: 20-byte entries (u64 address, u64 length, u32 type 1 = RAM), little-endian.</summary>
    public static byte[] E820File(ulong ramBytes)
    {
        var entry = new byte[20];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(entry, 0);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(entry.AsSpan(8), ramBytes);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(16), 1);
        return entry;
    }

    /// <summary>Every write that touches PAM0-PAM6 (0x59-0x5f) of the host bridge remaps the shadow window.</summary>
    private static void WirePam(PciFunction hostBridge, I440fxPam pam)
    {
        hostBridge.ConfigWritten = (f, offset, length) =>
        {
            if (offset + length <= PciHost.I440fxPam0 || offset >= PciHost.I440fxPam0 + I440fxPam.RegisterCount) return;
            Span<byte> regs = stackalloc byte[I440fxPam.RegisterCount];
            f.ReadConfig(PciHost.I440fxPam0, regs);
            pam.Apply(regs);
        };
    }

    private static void AddRange(BusBuilder builder, PortRange ports, BusEndpoint endpoint)
    {
        try
        {
            builder.AddPorts(ports, endpoint);
        }
        catch (BusOverlapException e)
        {
            throw new MachineConfigException(e.Message);
        }
    }
}

/// <summary>Panic reports nobody acts on: the pvpanic device of a machine whose control does not take them counts them itself.</summary>
internal sealed class IgnoredPanicReport : IGuestPanicReport
{
    public static readonly IgnoredPanicReport Instance = new();

    public void GuestPanicked()
    {
    }

    public void GuestCrashLoaded()
    {
    }
}
