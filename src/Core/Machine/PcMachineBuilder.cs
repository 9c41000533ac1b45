// Composition of the PC platform for this stage (DESIGN.md §4, §5): which device models exist for a
// MachineConfig, where they sit in port space, which interrupt line each drives, and which route each
// takes. The builder creates the models and maps them with BusBuilder; the endpoint for each (device,
// route) pair comes from a delegate, so the actor layer can supply Mailbox endpoints while the pure
// logic here stays free of Akka. Devices of this stage:
//   COM1 0x3f8-0x3ff IRQ 4, COM2 0x2f8 IRQ 3, COM3 0x3e8 IRQ 4, COM4 0x2e8 IRQ 3   16550A UART
//   isa-debug-exit at the configured iobase/iosize                                 (when configured)
//   debugcon at 0xe9                                                               (when configured)
//   i8042 keyboard controller 0x60 and 0x64, IRQ 1/12; port 0x92 (fast A20, reset); 0xcf9 reset control
// The PIC, PIT, RTC and ACPI PM are not here: in kernel-irqchip=on they belong to the accelerator's kernel
// side (SoftKernelDevices for the soft accelerator).
// Interrupt lines go to the kernel irqchip (IVm.SetIrqLine), the only placement this stage has (on).
using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Machine;

/// <summary>Creates the endpoint through which the vCPUs reach <paramref name="device"/> by <paramref name="route"/>.</summary>
public delegate BusEndpoint EndpointFactory(IBusDevice device, Route route);

/// <summary>Gives a device its host-side output for a backend (stdout, a file, nothing).</summary>
public delegate IByteSink ByteSinkFactory(string deviceName, CharBackend backend);

/// <summary>One device of the built machine: its model, where it is mapped and how it is reached.</summary>
public sealed record PlatformDevice(IBusDevice Model, PortRange Ports, Route Route, BusEndpoint Endpoint);

/// <summary>The frozen bus and the devices on it.</summary>
public sealed record Platform(Bus.Bus Bus, IReadOnlyList<PlatformDevice> Devices)
{
    public PlatformDevice? Find(string name) => Devices.FirstOrDefault(d => d.Model.Name == name);
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
        if (config.DebugExit is not null) names.Add(DebugExitName);
        if (config.DebugCon is not null) names.Add(DebugConName);
        return names;
    }

    /// <summary>An endpoint factory for machines without an actor runtime: Direct only.</summary>
    public static BusEndpoint DirectOnly(IBusDevice device, Route route) => route == Route.Direct
        ? new DirectEndpoint(device)
        : throw new MachineConfigException($"{device.Name}: the Mailbox route needs the actor runtime");

    /// <summary>
    /// Creates the devices <paramref name="config"/> asks for, wires their interrupt lines to
    /// <paramref name="vm"/>, and maps them on a frozen bus.
    /// </summary>
    /// <exception cref="MachineConfigException">The configuration is invalid or two devices overlap.</exception>
    public static Platform Build(MachineConfig config, IVm vm, ByteSinkFactory sinks, IMachineControl control, EndpointFactory endpoints)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(vm);
        ArgumentNullException.ThrowIfNull(sinks);
        ArgumentNullException.ThrowIfNull(control);
        ArgumentNullException.ThrowIfNull(endpoints);
        config.EnsureValid();

        var models = new List<(IBusDevice Model, PortRange Ports)>();
        // The keyboard controller is one model at 0x60 and 0x64 (the second range reaches it with offset 4).
        var kbc = new I8042(new VmIrqLine(vm, 1), new VmIrqLine(vm, 12), control);
        models.Add((kbc.Ports, new PortRange(0x60, 1)));
        models.Add((new SystemControlPortA(control), new PortRange(0x92, 1)));
        models.Add((new ResetControlRegister(control), new PortRange(0xcf9, 1)));
        for (int i = 0; i < config.SerialPorts.Count; i++)
        {
            if (config.SerialPorts[i] is not { } backend) continue;
            var (name, port, irq) = ComPorts[i];
            var uart = new Uart16550(name, new VmIrqLine(vm, irq), sinks(name, backend));
            models.Add((uart, new PortRange(port, 8)));
        }
        if (config.DebugExit is { } de)
        {
            var dev = new IsaDebugExit(control, (ushort)de.IoBase, de.IoSize, DebugExitName);
            models.Add((dev, new PortRange((ushort)de.IoBase, de.IoSize)));
        }
        if (config.DebugCon is { } dc)
        {
            var dev = new DebugCon(sinks(DebugConName, dc), DebugCon.BochsPort, name: DebugConName);
            models.Add((dev, new PortRange(DebugCon.BochsPort, 1)));
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
        }
        return new Platform(builder.Build(), devices);
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
