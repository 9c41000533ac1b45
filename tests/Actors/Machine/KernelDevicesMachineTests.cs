// The kernel-irqchip=on machine for each accelerator's kernel device set (AcceleratorCapabilities.KernelPlatform):
// which interrupt controllers, timers and ACPI registers the machine builder adds as userspace devices, where they
// sit, which kernel line each drives (IVm.SetIrqLine), and what the FADT says. The truth is each kernel's documented
// set: the soft accelerator's SoftKernelDevices has everything (PIIX4 PM block at 0x600); FreeBSD's vmm(4) has LAPIC,
// IOAPIC, 8259, PIT, HPET, RTC and the PM timer alone at 0x408, bhyve's userspace adding PM1a_EVT 0x400 and PM1a_CNT
// 0x404 (reference/freebsd-vmm-abi.md section d); Linux KVM's KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2 give LAPIC,
// IOAPIC, 8259 and PIT, QEMU adding the RTC (0x70), the PIIX4 PM block (0x600) and the HPET (0xfed00000) beside them.
using System.Buffers.Binary;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Machine;

namespace ActorVmm.Actors.Tests.Machine;

public sealed class KernelDevicesMachineTests
{
    private sealed class StopRecorder : IMachineControl
    {
        public readonly List<MachineStopRequest> Requests = [];
        public void RequestStop(MachineStopRequest request) => Requests.Add(request);
    }

    private sealed class ManualClock : IClock
    {
        public long NowNanoseconds { get; set; }
    }

    private static readonly MachineConfig Base = new() { KernelPath = "k", RamBytes = 2 * MachineConfig.MiB };

    private static MachineConfig On(KernelPlatform kernel) => Base with { KernelPlatform = kernel };

    /// <summary>Without an actor runtime every device takes the Direct route (the ACPI PM block's default is Mailbox).</summary>
    private static MachineConfig DirectRoutes(MachineConfig config)
        => PcMachineBuilder.DeviceNames(config).Contains(PlatformIrqchip.PmName)
            ? config with { RouteOverrides = new Dictionary<string, Route> { [PlatformIrqchip.PmName] = Route.Direct } }
            : config;

    private sealed record Built(Platform Platform, FakeVm Vm, StopRecorder Control, ManualClock Clock, ExitDispatcher Bus);

    private static Built Build(MachineConfig config)
    {
        var vm = new FakeVm(new VmSpec(config.RamBytes, 1, IrqchipMode.On), (v, c, h) => VcpuExit.SliceEnd);
        var control = new StopRecorder();
        var clock = new ManualClock();
        var platform = PcMachineBuilder.Build(DirectRoutes(config), vm, (_, _) => new RecordingSink(), control, PcMachineBuilder.DirectOnly, new PlatformOptions(Clock: clock));
        return new Built(platform, vm, control, clock, new ExitDispatcher(platform.Bus));
    }

    private static readonly string[] IrqchipNames =
        [PlatformIrqchip.PicName, PlatformIrqchip.PitName, PlatformIrqchip.RtcName, PlatformIrqchip.PmName, PlatformIrqchip.IoApicName, PlatformIrqchip.HpetName];

    /// <summary>The irqchip, timer and ACPI devices the built machine has, with where each is mapped.</summary>
    private static string[] Userspace(Platform platform)
        => [.. platform.Devices.Where(d => IrqchipNames.Contains(d.Model.Name)).Select(d => $"{d.Model.Name}@{d.Where}")];

    private static uint ReadPort(ExitDispatcher bus, ushort port, int width)
    {
        Span<byte> b = stackalloc byte[4];
        b.Clear();
        bus.PortRead(port, b[..width]);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    private static void WritePort16(ExitDispatcher bus, ushort port, ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        bus.PortWrite(port, b);
    }

    [Fact]
    public void The_accelerators_declare_their_kernels_documented_device_sets()
    {
        var all = KernelDevices.Lapic | KernelDevices.IoApic | KernelDevices.Pic | KernelDevices.Pit | KernelDevices.Hpet | KernelDevices.Rtc
                  | KernelDevices.PmTimer | KernelDevices.Pm1;
        Assert.Equal(all, new Native.Soft.SoftAccelerator().Capabilities.KernelPlatform.Devices);
        Assert.Equal((ushort)0x600, new Native.Soft.SoftAccelerator().Capabilities.KernelPlatform.PmBasePort);
        Assert.Equal(all & ~KernelDevices.Pm1, KernelPlatform.Vmm.Devices);
        Assert.Equal((ushort)0x408, KernelPlatform.Vmm.PmTimerPort);
        Assert.Equal((ushort)0x404, KernelPlatform.Vmm.Pm1ControlPort);
        Assert.Equal(KernelDevices.Lapic | KernelDevices.IoApic | KernelDevices.Pic | KernelDevices.Pit, KernelPlatform.Kvm.Devices);
        Assert.Equal((ushort)0x600, KernelPlatform.Kvm.PmBasePort);
        // A soft accelerator given a kernel set reports it (the backends' stand-ins use this).
        Assert.Same(KernelPlatform.Kvm, new Native.Soft.SoftAccelerator(KernelPlatform.Kvm).Capabilities.KernelPlatform);
    }

    [Fact]
    public void A_kernel_set_without_its_interrupt_controllers_is_refused_with_a_clear_error()
    {
        var e = Assert.Throws<ArgumentException>(() => new KernelPlatform(KernelDevices.Lapic | KernelDevices.IoApic, 0x600));
        Assert.Contains("Pic", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new KernelPlatform(KernelDevices.All, 0xfff8));
        Assert.Throws<ArgumentException>(() => new KernelPlatform((KernelDevices)0x100 | KernelDevices.All, 0x600));
    }

    [Fact]
    public void Soft_kernel_has_everything_so_on_adds_no_userspace_irqchip_device()
    {
        var b = Build(On(KernelPlatform.Soft));
        Assert.Null(b.Platform.Irqchip); // the power button is the kernel's PM block's (SoftVm's IPowerButton)
        Assert.Empty(Userspace(b.Platform));
        Assert.DoesNotContain(PcMachineBuilder.DeviceNames(On(KernelPlatform.Soft)), n => IrqchipNames.Contains(n));
        // The RTC, PM and HPET addresses are the kernel's: the platform bus leaves them to it (all-ones).
        Assert.Equal(0xffu, ReadPort(b.Bus, 0x70, 1));
        Assert.Equal(0xffffffffu, ReadPort(b.Bus, 0x608, 4));
    }

    [Fact]
    public void Vmm_on_adds_only_the_PM1_event_and_control_block_at_0x400_and_leaves_0x408_to_the_kernel()
    {
        var config = On(KernelPlatform.Vmm);
        Assert.Equal([PlatformIrqchip.PmName], PcMachineBuilder.DeviceNames(config).Where(n => IrqchipNames.Contains(n)));
        var b = Build(config);
        Assert.Equal(["acpi-pm@0x400-0x405"], Userspace(b.Platform));
        // The kernel's ports: PM timer 0x408-0x40b, RTC, PIT, PIC; the HPET's and IOAPIC's MMIO.
        Assert.Equal(0xffffffffu, ReadPort(b.Bus, 0x408, 4));
        Assert.Equal(0xffu, ReadPort(b.Bus, 0x70, 1));
        Assert.Equal(0xffu, ReadPort(b.Bus, 0x40, 1));
        Assert.Equal(0xffu, ReadPort(b.Bus, 0x20, 1));
        Span<byte> m = stackalloc byte[4];
        b.Bus.MmioRead(0xfed00000, m);
        Assert.Equal(0xffffffffu, BinaryPrimitives.ReadUInt32LittleEndian(m));
        // PM1a_CNT (0x404): SCI_EN is set (no SMI command port: always in ACPI mode); SLP_TYP 0 with SLP_EN is S5.
        Assert.Equal((uint)AcpiPm.SCI_EN, ReadPort(b.Bus, 0x404, 2));
        WritePort16(b.Bus, 0x404, AcpiPm.SLP_EN);
        Assert.Equal(MachineStopReason.PowerOff, Assert.Single(b.Control.Requests).Reason);
    }

    [Fact]
    public void Vmm_on_PM1_block_raises_the_SCI_on_kernel_line_9_and_has_no_timer_of_its_own()
    {
        var b = Build(On(KernelPlatform.Vmm));
        var chip = b.Platform.Irqchip!;
        Assert.False(chip.Pm.Model.HasTimer);
        WritePort16(b.Bus, 0x402, AcpiPm.PWRBTN_EN | AcpiPm.TMR_EN); // PM1a_EN
        // The PM timer is the kernel's: a timer overflow here never sets TMR_STS (no deadline, no SCI).
        b.Clock.NowNanoseconds = 10_000_000_000;
        Assert.Null(chip.NextDeadlineNs);
        chip.RunDueTimers(b.Clock.NowNanoseconds);
        Assert.Equal(0u, ReadPort(b.Bus, 0x400, 2) & AcpiPm.TMR_STS);
        Assert.Empty(b.Vm.IrqLines);
        Assert.True(chip.PressPowerButton()); // QMP's system_powerdown
        Assert.Equal([(9, true)], b.Vm.IrqLines);
        WritePort16(b.Bus, 0x400, AcpiPm.PWRBTN_STS); // write 1 to clear: the SCI falls
        Assert.Equal([(9, true), (9, false)], b.Vm.IrqLines);
    }

    [Fact]
    public void Kvm_on_adds_the_RTC_the_PIIX4_PM_block_and_the_HPET_as_QEMU_does()
    {
        var config = On(KernelPlatform.Kvm);
        Assert.Equal([PlatformIrqchip.RtcName, PlatformIrqchip.PmName, PlatformIrqchip.HpetName],
            PcMachineBuilder.DeviceNames(config).Where(n => IrqchipNames.Contains(n)));
        var b = Build(config);
        Assert.Equal(["rtc@0x70-0x73", "acpi-pm@0x600-0x60b", "hpet@0xfed00000-0xfed003ff"], Userspace(b.Platform));
        // The PIT, PIC and IOAPIC stay the kernel's.
        Assert.Equal(0xffu, ReadPort(b.Bus, 0x40, 1));
        Assert.Equal(0xffu, ReadPort(b.Bus, 0x20, 1));
        // PM timer: 24 bits at 3.579545 MHz (ACPI), on the VM's clock: 1 s after start it reads 3579545.
        b.Clock.NowNanoseconds = 1_000_000_000;
        Assert.Equal(3_579_545u, ReadPort(b.Bus, 0x608, 4));
        // HPET GCAP_ID: vendor 0x8086, 3 timers (NUM_TIM_CAP 2), 64-bit, legacy-replacement capable.
        Span<byte> m = stackalloc byte[4];
        b.Bus.MmioRead(0xfed00000, m);
        Assert.Equal(0x8086a201u, BinaryPrimitives.ReadUInt32LittleEndian(m));
    }

    [Fact]
    public void Kvm_on_RTC_periodic_interrupt_reaches_kernel_line_8_from_the_timer_service_delivery()
    {
        var b = Build(On(KernelPlatform.Kvm));
        var chip = b.Platform.Irqchip!;
        b.Bus.PortWrite(0x70, [0x0a]);
        b.Bus.PortWrite(0x71, [0x26]); // 32.768 kHz divider, rate 6: 1024 Hz
        b.Bus.PortWrite(0x70, [0x0b]);
        b.Bus.PortWrite(0x71, [0x42]); // PIE, 24-hour
        Assert.NotNull(chip.NextDeadlineNs);
        Assert.DoesNotContain((8, true), b.Vm.IrqLines);
        // A hardware kernel's vCPU (RunsPlatformTimers false, as KVM's) never runs platform timers: the timer
        // service's delivery (KickVcpus) runs the deadline itself, and kicks the vCPU.
        var vcpu = (FakeVcpu)b.Vm.CreateVcpu(0);
        Assert.False(((IVcpu)vcpu).RunsPlatformTimers);
        chip.AttachVcpus([vcpu]);
        b.Clock.NowNanoseconds = chip.NextDeadlineNs!.Value;
        chip.KickVcpus();
        Assert.Contains((8, true), b.Vm.IrqLines);
        b.Bus.PortWrite(0x70, [0x0c]);
        Assert.Equal(0xc0u, ReadPort(b.Bus, 0x71, 1)); // register C: IRQF, PF; reading it lowers IRQ8
        Assert.Equal((8, false), b.Vm.IrqLines.Last());
    }

    [Fact]
    public void Kvm_on_HPET_legacy_replacement_drives_kernel_lines_0_and_8_and_silences_the_userspace_RTC()
    {
        var b = Build(On(KernelPlatform.Kvm));
        var chip = b.Platform.Irqchip!;
        void W64(ulong offset, ulong value)
        {
            Span<byte> q = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(q, value);
            b.Bus.MmioWrite(0xfed00000 + offset, q);
        }
        W64(0x100, Hpet.Tn_INT_ENB_CNF);         // timer 0: edge, enabled
        W64(0x108, 1000);                        // comparator
        W64(0x010, Hpet.ENABLE_CNF | Hpet.LEG_RT_CNF);
        b.Clock.NowNanoseconds = 1_000_000;      // far past 1000 ticks of 10 ns
        chip.RunDueTimers(b.Clock.NowNanoseconds);
        // Legacy replacement: timer 0 is IRQ0 (8259 input 0 and IOAPIC input 2), as the HPET specification says.
        Assert.Contains((0, true), b.Vm.IrqLines);
        Assert.Contains((2, true), b.Vm.IrqLines);
        // The RTC's IRQ8 is cut off while timer 1 owns it.
        b.Bus.PortWrite(0x70, [0x0a]);
        b.Bus.PortWrite(0x71, [0x26]);
        b.Bus.PortWrite(0x70, [0x0b]);
        b.Bus.PortWrite(0x71, [0x42]);
        b.Clock.NowNanoseconds += 10_000_000;
        chip.RunDueTimers(b.Clock.NowNanoseconds);
        Assert.DoesNotContain((8, true), b.Vm.IrqLines);
    }

    [Fact]
    public void Split_and_off_still_host_every_irqchip_device_whatever_the_kernel_set()
    {
        foreach (var mode in new[] { IrqchipMode.Split, IrqchipMode.Off })
        {
            var config = Base with { Irqchip = mode, KernelPlatform = KernelPlatform.Kvm };
            Assert.Equal(IrqchipNames, PcMachineBuilder.DeviceNames(config).Where(n => IrqchipNames.Contains(n)));
            Assert.Equal((ushort)0x600, PcMachineBuilder.Describe(config with { KernelPlatform = KernelPlatform.Vmm }).PmBasePort);
        }
    }

    /// <summary>The FADT's PM1a_EVT_BLK, PM1a_CNT_BLK and PM_TMR_BLK (ACPI 6: offsets 56, 64, 76) and the X_ GAS addresses.</summary>
    private static (uint Evt, uint Cnt, uint Tmr, ulong XEvt, ulong XCnt, ulong XTmr, bool HpetTable) Fadt(PlatformDescription p)
    {
        var (tables, _) = PlatformTables.BuildAcpi(p, 0x100000);
        int at = IndexOf(tables, "FACP"u8);
        Assert.True(at >= 0);
        var f = tables.AsSpan(at);
        return (BinaryPrimitives.ReadUInt32LittleEndian(f[56..]), BinaryPrimitives.ReadUInt32LittleEndian(f[64..]), BinaryPrimitives.ReadUInt32LittleEndian(f[76..]),
            BinaryPrimitives.ReadUInt64LittleEndian(f[152..]), BinaryPrimitives.ReadUInt64LittleEndian(f[176..]), BinaryPrimitives.ReadUInt64LittleEndian(f[212..]),
            IndexOf(tables, "HPET"u8) >= 0);
    }

    private static int IndexOf(byte[] haystack, ReadOnlySpan<byte> needle) => haystack.AsSpan().IndexOf(needle);

    [Fact]
    public void The_FADT_points_at_the_PM_ports_each_backend_has()
    {
        Assert.Equal((0x600u, 0x604u, 0x608u, 0x600ul, 0x604ul, 0x608ul, true), Fadt(PcMachineBuilder.Describe(On(KernelPlatform.Soft))));
        Assert.Equal((0x600u, 0x604u, 0x608u, 0x600ul, 0x604ul, 0x608ul, true), Fadt(PcMachineBuilder.Describe(On(KernelPlatform.Kvm))));
        // vmm: bhyve's layout, PM1 event/control from userspace, the timer from the kernel.
        Assert.Equal((0x400u, 0x404u, 0x408u, 0x400ul, 0x404ul, 0x408ul, true), Fadt(PcMachineBuilder.Describe(On(KernelPlatform.Vmm))));
        // A machine without an HPET gets no HPET table (and the RSDT lists only the FADT and MADT).
        Assert.False(Fadt(new PlatformDescription(1) { HpetPresent = false }).HpetTable);
    }
}
