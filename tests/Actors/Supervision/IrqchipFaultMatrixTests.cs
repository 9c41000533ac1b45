// The fault matrix's second half (issue 5): the interrupt controllers and timers that kernel-irqchip=split and
// off host in device actors (PIC, PIT, RTC, ACPI PM, IOAPIC, HPET, and in off the local APIC) × {throw once,
// throw on every message, hang, slow} × {split, off}. Each device is put on the Mailbox route, so its actor is
// on the guest's path, and each runs under a test guest that programs it and takes its interrupts: timer.bin
// (8259A pair, 8254 and port 0x61, RTC periodic interrupts, the PM timer), apic.bin (IOAPIC, local APIC) and
// hpet.bin (HPET). The expected output is the same guest's run without faults on the default routes, which
// QemuComparisonTests checks line for line against QEMU in every mode; a run without faults on the Mailbox
// route must print the same. Outcomes, as in FaultMatrixTests:
//   throw once   the actor restarts once (its model as it was, the failed message retried): output complete
//   throw always more than 3 restarts in 10 s stop the actor; the VM restarts (RESET, reason host-error) and
//                the next machine runs the guest to the end
//   hang 300 ms  accesses and deadlines wait out the hang: output complete (deterministic time: the guest cannot
//                tell)
//   slow 1 ms    every message 1 ms late: output complete
// Not here: dropping a message of these devices. What a lost ICW, EOI or counter write does depends on which
// message it is, and no outcome has been stated for each yet (docs/actors.md).
using Akka.Actor;
using Akka.TestKit.Xunit2;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Machine;
using ActorVmm.Native.Soft;

namespace ActorVmm.Actors.Tests.Supervision;

public sealed class IrqchipFaultMatrixTests() : TestKit(ActorVmmConfig.Config)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(90);

    /// <summary>The guest that exercises each actor-hosted irqchip device, and its isa-debug-exit status.</summary>
    private static (string Guest, int Status) GuestFor(string device) => device switch
    {
        PlatformIrqchip.PicName or PlatformIrqchip.PitName or PlatformIrqchip.RtcName or PlatformIrqchip.PmName => ("timer", 37),
        PlatformIrqchip.IoApicName => ("apic", 39),
        PlatformIrqchip.HpetName => ("hpet", 41),
        _ when device.StartsWith("lapic", StringComparison.Ordinal) => ("apic", 39),
        _ => throw new InvalidOperationException($"no guest exercises '{device}': add it to the irqchip fault matrix"),
    };

    private static Fault FaultFor(string fault) => fault switch
    {
        "throw-once" => new ThrowFault(),
        "throw-always" => new ThrowFault(EveryMessage: true),
        "hang" => new HangFault(TimeSpan.FromMilliseconds(300)),
        "slow" => new SlowFault(TimeSpan.FromMilliseconds(1)),
        _ => throw new ArgumentException(fault),
    };

    private static MachineConfig ConfigFor(IrqchipMode mode, string guest, string? mailboxDevice) => new()
    {
        KernelPath = guest + ".bin",
        Irqchip = mode,
        RamBytes = 16 * MachineConfig.MiB,
        DebugExit = new DebugExitConfig(0xf4, 4),
        Deterministic = true,
        RouteOverrides = mailboxDevice is null ? new Dictionary<string, Route>() : new Dictionary<string, Route> { [mailboxDevice] = Route.Mailbox },
    };

    /// <summary>The devices split and off move out of the vCPU, per mode.</summary>
    private static IEnumerable<string> ActorHosted(IrqchipMode mode)
    {
        var on = PcMachineBuilder.DeviceNames(ConfigFor(IrqchipMode.On, "timer", null)).ToHashSet();
        return PcMachineBuilder.DeviceNames(ConfigFor(mode, "timer", null)).Where(d => !on.Contains(d));
    }

    public static TheoryData<IrqchipMode, string, string> Rows()
    {
        var rows = new TheoryData<IrqchipMode, string, string>();
        foreach (var mode in new SoftAccelerator().Capabilities.IrqchipModes.Where(m => m != IrqchipMode.On).Order())
        {
            foreach (var device in ActorHosted(mode))
            {
                foreach (var fault in new[] { "throw-once", "throw-always", "hang", "slow" }) rows.Add(mode, device, fault);
            }
        }
        return rows;
    }

    private sealed record Run(VmActor.VmFinished Finished, string Serial, VmActor.Status Status, VmActor.Stats Stats, List<VmActor.VmEvent> Events);

    private Run RunGuest(MachineConfig config, string guest, (string Target, Fault Fault)? fault = null)
    {
        var serial = new RecordingSink();
        var vm = Sys.ActorOf(VmActor.Props(config, new SoftAccelerator(), TestGuests.Images(guest), (_, _) => serial));
        var events = CreateTestProbe();
        vm.Tell(new VmActor.Subscribe(events.Ref));
        if (fault is var (target, f))
        {
            vm.Tell(new VmActor.FaultCommand(target, f));
            Assert.Null(ExpectMsg<VmActor.FaultReply>().Error);
        }
        vm.Tell(VmActor.Run.Instance);
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        vm.Tell(VmActor.GetStatus.Instance);
        var status = ExpectMsg<VmActor.Status>();
        vm.Tell(VmActor.GetStats.Instance);
        var stats = ExpectMsg<VmActor.Stats>();
        var received = events.ReceiveWhile<VmActor.VmEvent>(TimeSpan.FromMilliseconds(200), x => (x as VmActor.VmEvent)!).ToList();
        Sys.Stop(vm);
        return new Run(finished, serial.Text, status, stats, received);
    }

    private static readonly Dictionary<(IrqchipMode, string, string?), string> Baselines = [];

    [Theory]
    [Trait("Category", "Slow")]
    [MemberData(nameof(Rows))]
    public void Irqchip_fault_matrix(IrqchipMode mode, string device, string fault)
    {
        var (guest, exitStatus) = GuestFor(device);
        // The fault-free runs are deterministic, so each is made once per mode and guest (and device) and reused.
        string reference;
        lock (Baselines)
        {
            if (!Baselines.TryGetValue((mode, guest, null), out reference!))
            {
                var run0 = RunGuest(ConfigFor(mode, guest, null), guest);
                Assert.Equal(exitStatus, run0.Finished.ExitStatus);
                Baselines[(mode, guest, null)] = reference = run0.Serial;
            }
            if (!Baselines.ContainsKey((mode, guest, device)))
            {
                var mailbox = RunGuest(ConfigFor(mode, guest, device), guest);
                Assert.Equal(exitStatus, mailbox.Finished.ExitStatus);
                Assert.Equal(reference, mailbox.Serial);
                Assert.Equal(Route.Mailbox, mailbox.Stats.Devices.Single(d => d.Device == device).Route);
                Baselines[(mode, guest, device)] = mailbox.Serial;
            }
        }

        var run = RunGuest(ConfigFor(mode, guest, device), guest, (device, FaultFor(fault)));
        var deviceStats = run.Stats.Devices.Single(d => d.Device == device);
        Assert.Equal(exitStatus, run.Finished.ExitStatus);
        if (fault == "throw-always")
        {
            Assert.Equal(1, run.Status.Reboots);
            Assert.EndsWith(reference, run.Serial, StringComparison.Ordinal);
            var reset = Assert.Single(run.Events, e => e.Name == "RESET");
            Assert.Equal("host-error", reset.Data!["reason"]);
            Assert.Equal(2, run.Stats.Generation);
            Assert.Equal(0, deviceStats.Restarts); // the machine after the restart has no fault
        }
        else
        {
            Assert.Equal(reference, run.Serial);
            Assert.Equal(0, run.Status.Reboots);
            Assert.True(deviceStats.Accesses > 0 || deviceStats.FaultsFired > 0, $"{device}: nothing reached its actor");
            Assert.Equal(fault == "throw-once" ? 1 : 0, deviceStats.Restarts);
            Assert.True(deviceStats.FaultsFired > 0, $"{device}: the {fault} fault never fired");
        }
    }
}
