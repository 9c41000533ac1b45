using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Machine;

namespace ActorVmm.Actors.Tests.Machine;

public sealed class PcMachineBuilderTests
{
    private sealed class StopRecorder : IMachineControl
    {
        public readonly List<MachineStopRequest> Requests = [];
        public void RequestStop(MachineStopRequest request) => Requests.Add(request);
    }

    private static readonly MachineConfig Base = new() { KernelPath = "k", RamBytes = 2 * MachineConfig.MiB };

    private static (Platform Platform, FakeVm Vm, Dictionary<string, RecordingSink> Sinks, StopRecorder Control) Build(MachineConfig config, EndpointFactory? endpoints = null)
    {
        var vm = new FakeVm(new VmSpec(config.RamBytes, 1, IrqchipMode.On), (v, c, h) => VcpuExit.SliceEnd);
        var sinks = new Dictionary<string, RecordingSink>();
        var control = new StopRecorder();
        var platform = PcMachineBuilder.Build(config, vm, (name, _) => sinks[name] = new RecordingSink(), control, endpoints ?? PcMachineBuilder.DirectOnly);
        return (platform, vm, sinks, control);
    }

    [Fact]
    public void Default_machine_has_COM1_at_0x3f8_on_the_direct_route()
    {
        var (platform, _, sinks, _) = Build(Base);
        var dev = Assert.Single(platform.Devices, d => d.Model.Name.StartsWith("COM", StringComparison.Ordinal));
        Assert.Equal("COM1", dev.Model.Name);
        Assert.Equal(new PortRange(0x3f8, 8), dev.Ports);
        Assert.Equal(Route.Direct, dev.Route);
        var dispatcher = new ExitDispatcher(platform.Bus);
        dispatcher.PortWrite(0x3f8, "A"u8);
        Assert.Equal("A", sinks["COM1"].Text);
        // Nothing else claims ports: the ISA bus answers all-ones.
        var b = new byte[1];
        dispatcher.PortRead(0xf4, b);
        Assert.Equal(0xff, b[0]);
    }

    [Fact]
    public void COM_ports_sit_at_the_PC_addresses_and_drive_IRQ_4_and_3()
    {
        var config = Base with { SerialPorts = [CharBackend.Stdio, CharBackend.None, null, CharBackend.Stdio] };
        var (platform, vm, _, _) = Build(config);
        Assert.Equal(["COM1@0x3f8-0x3ff", "COM2@0x2f8-0x2ff", "COM4@0x2e8-0x2ef"],
            platform.Devices.Where(d => d.Model.Name.StartsWith("COM", StringComparison.Ordinal)).Select(d => $"{d.Model.Name}@{d.Ports}"));
        var dispatcher = new ExitDispatcher(platform.Bus);
        // Enable the THR-empty interrupt with OUT2 set: the line goes high at once (THR is empty).
        foreach (ushort port in new ushort[] { 0x3f8, 0x2f8 })
        {
            dispatcher.PortWrite((ushort)(port + Uart16550.MCR), [Uart16550.MCR_OUT2]);
            dispatcher.PortWrite((ushort)(port + Uart16550.IER), [Uart16550.IER_ETBEI]);
        }
        Assert.Contains((4, true), vm.IrqLines);
        Assert.Contains((3, true), vm.IrqLines);
    }

    [Fact]
    public void Keyboard_controller_port_92_and_0xcf9_reset_the_machine_as_a_PC_does()
    {
        var (platform, _, _, control) = Build(Base);
        var dispatcher = new ExitDispatcher(platform.Bus);
        var status = new byte[1];
        dispatcher.PortRead(0x64, status);
        Assert.Equal(0, status[0] & 0x02);          // input buffer empty: the controller takes a command
        dispatcher.PortWrite(0x64, [0xaa]);         // self-test
        dispatcher.PortRead(0x60, status);
        Assert.Equal(0x55, status[0]);              // passed
        dispatcher.PortWrite(0x64, [0xfe]);         // pulse output port bit 0: the reset line
        dispatcher.PortWrite(0x92, [0x01]);         // fast reset through port 0x92
        dispatcher.PortWrite(0xcf9, [0x06]);        // reset control register: hard reset
        Assert.Equal(3, control.Requests.Count(r => r.Reason == MachineStopReason.Reset));
    }

    [Fact]
    public void With_a_bios_the_host_bridge_pam_registers_remap_the_shadow_window()
    {
        var config = new MachineConfig { BiosPath = "bios.bin", RamBytes = 2 * MachineConfig.MiB };
        var vm = new FakeVm(new VmSpec(config.RamBytes, 1, IrqchipMode.On), (v, c, h) => VcpuExit.SliceEnd);
        var image = Core.Boot.BiosImage.Parse(Enumerable.Repeat((byte)0xb1, 128 * 1024).ToArray(), "bios.bin");
        using var fw = Core.Boot.BiosFirmware.Load(vm.Memory, image);
        var platform = PcMachineBuilder.Build(config, vm, (_, _) => new RecordingSink(), new StopRecorder(), PcMachineBuilder.DirectOnly,
            new PlatformOptions(Pam: fw.Pam));
        var d = new ExitDispatcher(platform.Bus);
        var b = new byte[1];
        Assert.True(vm.Memory.TryRead(0xf0000, b));
        Assert.Equal(0xb1, b[0]);
        // PAM0 is byte 1 of the dword at 0x58: a byte write at 0xcfd sets F-segment read/write DRAM (0x30).
        d.PortWrite(0xcf8, BitConverter.GetBytes(0x80000058u));
        d.PortWrite(0xcfd, [0x30]);
        Assert.True(vm.Memory.TryWrite(0xf0000, [0x5a]));
        Assert.True(vm.Memory.TryRead(0xf0000, b));
        Assert.Equal(0x5a, b[0]);
        // A write elsewhere in the host bridge's space changes nothing.
        int version = vm.Memory.Version;
        d.PortWrite(0xcf8, BitConverter.GetBytes(0x80000004u));
        d.PortWrite(0xcfc, [0x06]);
        Assert.Equal(version, vm.Memory.Version);
    }

    [Fact]
    public void Fw_cfg_gives_firmware_the_e820_map_the_reboot_timeout_and_nographic()
    {
        var fw = PcMachineBuilder.CreateFwCfg(Base with { RebootTimeoutMs = 0 }, new FakeVm(new VmSpec(Base.RamBytes, 1, IrqchipMode.On), (v, c, h) => VcpuExit.SliceEnd));
        // etc/e820: one 20-byte entry, address 0, length = RAM, type 1 (RAM), little-endian (QEMU's layout).
        var e820 = fw.GetItem(fw.FindFile("etc/e820")!.Value)!;
        Assert.Equal(20, e820.Length);
        Assert.Equal(0UL, BitConverter.ToUInt64(e820, 0));
        Assert.Equal(Base.RamBytes, BitConverter.ToUInt64(e820, 8));
        Assert.Equal(1u, BitConverter.ToUInt32(e820, 16));
        Assert.Equal(0, BitConverter.ToInt32(fw.GetItem(fw.FindFile("etc/boot-fail-wait")!.Value)!));
        var forever = PcMachineBuilder.CreateFwCfg(Base, new FakeVm(new VmSpec(Base.RamBytes, 1, IrqchipMode.On), (v, c, h) => VcpuExit.SliceEnd));
        Assert.Equal(-1, BitConverter.ToInt32(forever.GetItem(forever.FindFile("etc/boot-fail-wait")!.Value)!));
        Assert.Equal(1, BitConverter.ToUInt16(fw.GetItem(FwCfg.NOGRAPHIC)!));
    }

    [Fact]
    public void The_debug_console_can_move_to_0x402()
    {
        var (platform, _, sinks, _) = Build(Base with { DebugCon = CharBackend.None, DebugConPort = 0x402 });
        var d = new ExitDispatcher(platform.Bus);
        d.PortWrite(0x402, "S"u8);
        d.PortWrite(0xe9, "x"u8);
        Assert.Equal("S", sinks["debugcon"].Text);
        var b = new byte[1];
        d.PortRead(0x402, b);
        Assert.Equal(0xe9, b[0]); // QEMU's readback, which SeaBIOS checks before it writes there
    }

    [Fact]
    public void Debug_exit_and_debugcon_are_mapped_when_configured()
    {
        var config = Base with { DebugExit = new DebugExitConfig(0xf4, 4), DebugCon = CharBackend.Stdio };
        var (platform, _, sinks, control) = Build(config);
        var dispatcher = new ExitDispatcher(platform.Bus);
        dispatcher.PortWrite(0xf7, [0x10]);
        Assert.Equal(new MachineStopRequest(MachineStopReason.DebugExit, 0x21), Assert.Single(control.Requests));
        foreach (byte b in "dbg"u8) dispatcher.PortWrite(0xe9, [b]);
        Assert.Equal("dbg", sinks["debugcon"].Text);
    }

    [Fact]
    public void Route_overrides_go_through_the_endpoint_factory()
    {
        var seen = new List<(string, Route)>();
        var config = Base with { DebugCon = CharBackend.None, RouteOverrides = new Dictionary<string, Route> { ["debugcon"] = Route.Mailbox } };
        var (platform, _, _, _) = Build(config, (device, route) =>
        {
            seen.Add((device.Name, route));
            return route == Route.Direct ? new DirectEndpoint(device) : new TestMailboxEndpoint(device.Name);
        });
        Assert.Equal([("i8042", Route.Direct), ("port92", Route.Direct), ("reset-control", Route.Direct), ("pci-host", Route.Direct), ("fw_cfg", Route.Direct), ("boot-timer", Route.Direct), ("COM1", Route.Direct), ("debugcon", Route.Mailbox)], seen);
        Assert.Equal(Route.Mailbox, platform.Find("debugcon")!.Endpoint.Route);
        Assert.Throws<MachineConfigException>(() => Build(config));
    }

    [Theory]
    [InlineData(IrqchipMode.Split)]
    [InlineData(IrqchipMode.Off)]
    public void Split_and_off_map_the_irqchip_and_timers_as_platform_devices_with_the_measured_routes(IrqchipMode mode)
    {
        var config = Base with { Irqchip = mode };
        var (platform, vm, _, _) = Build(config, (device, route) => route == Route.Direct ? new DirectEndpoint(device) : new TestMailboxEndpoint(device.Name));
        Assert.NotNull(platform.Irqchip);
        string[] expected = mode == IrqchipMode.Off
            ? ["pic@0x20-0x21 Direct", "pit@0x40-0x43 Direct", "rtc@0x70-0x73 Direct", "acpi-pm@0x600-0x60b Mailbox", "ioapic@0xfec00000-0xfec00fff Direct", "hpet@0xfed00000-0xfed003ff Direct", "lapic0@cpu Direct"]
            : ["pic@0x20-0x21 Direct", "pit@0x40-0x43 Direct", "rtc@0x70-0x73 Direct", "acpi-pm@0x600-0x60b Mailbox", "ioapic@0xfec00000-0xfec00fff Direct", "hpet@0xfed00000-0xfed003ff Direct"];
        Assert.Equal(expected, platform.Devices.Skip(7).Select(d => $"{d.Model.Name}@{d.Where} {d.Route}"));
        // The slave PIC, ELCR and port 0x61 are further ranges of the PIC and PIT.
        Assert.Equal("pic", platform.Bus.Pio.Lookup(0xa1, out ushort offset)!.Name);
        Assert.Equal(1, offset);
        Assert.Equal("pic", platform.Bus.Pio.Lookup(0x4d0, out _)!.Name);
        Assert.Equal("pit", platform.Bus.Pio.Lookup(0x61, out _)!.Name);

        // COM1's IRQ 4 now goes to the platform's 8259 and IOAPIC, not to the accelerator.
        var dispatcher = new ExitDispatcher(platform.Bus);
        dispatcher.PortWrite(0x3f8 + Uart16550.MCR, [Uart16550.MCR_OUT2]);
        dispatcher.PortWrite(0x3f8 + Uart16550.IER, [Uart16550.IER_ETBEI]);
        Assert.Empty(vm.IrqLines);
        Assert.Equal(1u << 4, platform.Irqchip!.IoApic.Model.PinLevels & (1u << 4));
        var irr = new byte[1];
        dispatcher.PortRead(0x20, irr); // OCW3 at reset reads IRR
        Assert.Equal(1 << 4, irr[0] & (1 << 4));
    }

    [Fact]
    public void Overlapping_devices_are_refused_naming_both()
    {
        var config = Base with { DebugExit = new DebugExitConfig(0x3fc, 2) };
        var e = Assert.Throws<MachineConfigException>(() => Build(config));
        Assert.Contains("isa-debug-exit", e.Message, StringComparison.Ordinal);
        Assert.Contains("COM1", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0UL, 1, "k", "memory size must be at least 1 MiB")]
    [InlineData(4UL << 30, 1, "k", "memory size 4 GiB is more than the 3 GiB this machine supports")]
    [InlineData(1UL << 20, 0, "k", "0 vCPUs: a machine has 1 to 255 (the accelerator may allow fewer)")]
    [InlineData(1UL << 20, 256, "k", "256 vCPUs: a machine has 1 to 255 (the accelerator may allow fewer)")]
    [InlineData(1UL << 20, 1, null, "no kernel given (use -kernel PATH, or -bios FILE to boot firmware)")]
    public void Validation_names_the_problem(ulong ram, int vcpus, string? kernel, string message)
    {
        var config = new MachineConfig { RamBytes = ram, VcpuCount = vcpus, KernelPath = kernel };
        Assert.Equal(message, Assert.Single(config.Validate()));
        Assert.Equal(message, Assert.Throws<MachineConfigException>(() => config.EnsureValid()).Message);
    }

    [Fact]
    public void Route_override_for_an_unknown_device_is_refused()
    {
        var config = Base with { RouteOverrides = new Dictionary<string, Route> { ["COM3"] = Route.Mailbox } };
        Assert.Equal("route override for \"COM3\": no such device (devices: COM1, i8042, port92, reset-control, pci-host, fw_cfg, boot-timer)", Assert.Single(config.Validate()));
    }

    private sealed class TestMailboxEndpoint(string name) : BusEndpoint(name, Route.Mailbox)
    {
        public override void Read(ulong offset, Span<byte> data) => data.Clear();
        public override void Write(ulong offset, ReadOnlySpan<byte> data) { }
    }
}

public sealed class PcMachineBuilderFirmwareDeviceTests
{
    private static readonly MachineConfig Base = new() { KernelPath = "k", RamBytes = 2 * MachineConfig.MiB, Append = "console=ttyS0" };

    private sealed class NoStop : IMachineControl
    {
        public void RequestStop(MachineStopRequest request)
        {
        }
    }

    private static ExitDispatcher Dispatcher(PlatformOptions? options = null)
    {
        var vm = new FakeVm(new VmSpec(Base.RamBytes, 1, IrqchipMode.On), (v, c, h) => VcpuExit.SliceEnd);
        var platform = PcMachineBuilder.Build(Base, vm, (_, _) => new RecordingSink(), new NoStop(), PcMachineBuilder.DirectOnly, options);
        return new ExitDispatcher(platform.Bus);
    }

    private static uint PciRead(ExitDispatcher d, int device, int fn, int register, int width = 4)
    {
        d.PortWrite(0xcf8, BitConverter.GetBytes(0x80000000u | (uint)(device << 11) | (uint)(fn << 8) | (uint)(register & 0xfc)));
        var data = new byte[4];
        d.PortRead((ushort)(0xcfc + (register & 3)), data.AsSpan(0, width));
        return BitConverter.ToUInt32(data);
    }

    [Fact]
    public void The_pci_host_answers_configuration_mechanism_1_with_the_i440fx_and_piix3()
    {
        var d = Dispatcher();
        Assert.Equal(0x12378086u, PciRead(d, 0, 0, 0));
        Assert.Equal(0x70008086u, PciRead(d, 1, 0, 0));
        Assert.Equal(0x0600u, PciRead(d, 0, 0, 0x0a, 2)); // class: host bridge, through 0xcfe
        Assert.Equal(0xffffffffu, PciRead(d, 5, 0, 0));    // empty slot: master abort
        var address = new byte[4];
        d.PortRead(0xcf8, address);
        Assert.Equal(0x80002800u, BitConverter.ToUInt32(address));
    }

    [Fact]
    public void Fw_cfg_reports_signature_id_ram_cpus_boot_device_and_command_line()
    {
        var d = Dispatcher();
        byte[] Item(ushort key, int length)
        {
            d.PortWrite(0x510, BitConverter.GetBytes(key));
            var bytes = new byte[length];
            for (int i = 0; i < length; i++) d.PortRead(0x511, bytes.AsSpan(i, 1));
            return bytes;
        }
        Assert.Equal("QEMU"u8.ToArray(), Item(FwCfg.SIGNATURE, 4));
        Assert.Equal(3u, BitConverter.ToUInt32(Item(FwCfg.ID, 4)));
        Assert.Equal(Base.RamBytes, BitConverter.ToUInt64(Item(FwCfg.RAM_SIZE, 8)));
        Assert.Equal((ushort)1, BitConverter.ToUInt16(Item(FwCfg.NB_CPUS, 2)));
        Assert.Equal((ushort)'c', BitConverter.ToUInt16(Item(FwCfg.BOOT_DEVICE, 2)));
        Assert.Equal("console=ttyS0\0"u8.ToArray(), Item(FwCfg.CMDLINE_DATA, 14));
        var dma = new byte[4];
        d.PortRead(0x514, dma);
        Assert.Equal("QEMU"u8.ToArray(), dma); // the DMA register's signature, big-endian "QEMU CFG"
    }

    [Fact]
    public void The_boot_timer_reports_guest_writes_to_the_host()
    {
        var reports = new List<(byte, long)>();
        var d = Dispatcher(new PlatformOptions(BootTimerReport: (v, ns) => reports.Add((v, ns))));
        d.PortWrite(PcMachineBuilder.BootTimerPort, [BootTimer.BootCompleteMagic]);
        Assert.Equal(BootTimer.BootCompleteMagic, Assert.Single(reports).Item1);
    }
}
