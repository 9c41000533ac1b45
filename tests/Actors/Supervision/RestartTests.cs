// Supervised restart of a device actor (docs/actors.md, "Supervision"): the model is put back to its last
// good state, the failed message is retried first, a read waiting through the restart gets its real answer;
// and the VM's reboot policy on a real guest that triple-faults or resets (tests/Guests/triple.asm,
// reset.asm on the soft CPU): -action reboot=reset boots it again, -no-reboot ends with the documented status
// (docs/exit-status.md), -action shutdown=pause keeps the VM until a reset; nothing leaks across reboots.
using Akka.Actor;
using Akka.TestKit.Xunit2;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Machine;
using ActorVmm.Native.Soft;

namespace ActorVmm.Actors.Tests.Supervision;

/// <summary>A register file with its own state; a write can be told to corrupt a register and then throw, once.</summary>
internal sealed class CorruptingDevice : IBusDevice, IStatefulDevice
{
    private byte[] _regs = new byte[8];
    public int CorruptOnWriteTo = -1;
    public int ThrowOnReadOf = -1;
    public string Name => "corrupting";

    public void Read(ulong offset, Span<byte> data)
    {
        if ((int)offset == ThrowOnReadOf)
        {
            ThrowOnReadOf = -1;
            throw new InvalidOperationException("model bug on read");
        }
        data.Fill(_regs[offset & 7]);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if ((int)offset == CorruptOnWriteTo)
        {
            CorruptOnWriteTo = -1;
            _regs[offset & 7] = 0xee;
            _regs[(offset + 1) & 7] = 0xee;
            throw new InvalidOperationException("model bug half-way through a write");
        }
        _regs[offset & 7] = data[0];
    }

    public object CaptureState() => _regs.Clone();

    public void RestoreState(object state) => _regs = (byte[])((byte[])state).Clone();
}

public sealed class RestartTests() : TestKit(ActorVmmConfig.Config)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan Patient = TimeSpan.FromSeconds(30);
    private const string TripleBanner = "ActorVmm triple guest: about to triple fault\n";
    private const string ResetBanner = "ActorVmm reset guest: pulsing the reset line through the i8042\n";

    [Fact]
    public void A_model_that_fails_half_way_is_put_back_to_its_last_good_state_and_the_write_is_retried()
    {
        var device = new CorruptingDevice();
        var actor = Sys.ActorOf(DeviceActor.Props(device, new Lock(), Route.Mailbox));
        var endpoint = new MailboxEndpoint(device.Name, actor, Patient);
        endpoint.Write(1, [5]);
        endpoint.Write(2, [6]);
        device.CorruptOnWriteTo = 1;
        endpoint.Write(1, [7]);
        var data = new byte[1];
        endpoint.Read(1, data);
        Assert.Equal(7, data[0]); // retried after the restore
        endpoint.Read(2, data);
        Assert.Equal(6, data[0]); // the 0xee the failed write left here is gone
        actor.Tell(DeviceActor.GetStats.Instance);
        var stats = ExpectMsg<DeviceActor.Stats>();
        Assert.Equal(1, stats.Restarts);
        Assert.Equal(1, stats.Retried);
    }

    [Fact]
    public void A_read_waiting_while_its_device_actor_restarts_gets_the_real_answer()
    {
        var device = new CorruptingDevice();
        var actor = Sys.ActorOf(DeviceActor.Props(device, new Lock(), Route.Mailbox));
        var endpoint = new MailboxEndpoint(device.Name, actor, Patient);
        endpoint.Write(3, [0x42]);
        device.ThrowOnReadOf = 3;
        var data = new byte[1];
        endpoint.Read(3, data);
        Assert.Equal(0x42, data[0]);
        Assert.Equal(0, endpoint.TimedOutReads);
    }

    [Fact]
    public void An_injected_throw_is_retried_and_a_hang_holds_reads_until_it_is_over_or_cleared()
    {
        var device = new CorruptingDevice();
        var actor = Sys.ActorOf(DeviceActor.Props(device, new Lock(), Route.Mailbox));
        var endpoint = new MailboxEndpoint(device.Name, actor, Patient);
        endpoint.Write(0, [9]);
        actor.Tell(new InjectFault(new ThrowFault()));
        Assert.Single(ExpectMsg<FaultReport>().Active);
        var data = new byte[1];
        endpoint.Read(0, data);
        Assert.Equal(9, data[0]);
        actor.Tell(new InjectFault(new HangFault(TimeSpan.FromMinutes(10))));
        ExpectMsg<FaultReport>();
        var reader = Task.Run(() =>
        {
            var b = new byte[1];
            endpoint.Read(0, b);
            return b[0];
        });
        Assert.False(reader.Wait(300)); // held by the hang
        actor.Tell(ClearFaults.Instance);
        var report = ExpectMsg<FaultReport>();
        Assert.Empty(report.Active);
        Assert.True(reader.Wait(Patient));
        Assert.Equal(9, reader.Result);
        Assert.Equal(1, report.Thrown);
        Assert.Equal(1, report.Hangs);
    }

    private static MachineConfig GuestConfig(string kernel, bool noReboot = false) => new()
    {
        KernelPath = kernel + ".bin",
        RamBytes = 16 * MachineConfig.MiB,
        DebugExit = new DebugExitConfig(0xf4, 4),
        NoReboot = noReboot,
        Deterministic = true,
    };

    private (IActorRef Vm, RecordingSink Serial, Akka.TestKit.TestProbe Events) Start(string guest, MachineConfig config, VmActions? actions = null)
    {
        var serial = new RecordingSink();
        var vm = Sys.ActorOf(VmActor.Props(config, new SoftAccelerator(), TestGuests.Images(guest), (_, _) => serial, actions));
        var events = CreateTestProbe();
        vm.Tell(new VmActor.Subscribe(events.Ref));
        vm.Tell(VmActor.Run.Instance);
        return (vm, serial, events);
    }

    private static int Count(string text, string what)
    {
        int n = 0;
        for (int i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    [Fact]
    public void A_triple_fault_mid_run_reboots_the_guest_by_default_and_its_output_appears_again()
    {
        var (vm, serial, events) = Start("triple", GuestConfig("triple"));
        AwaitCondition(() => Count(serial.Text, TripleBanner) >= 2, Wait);
        var reset = events.FishForMessage<VmActor.VmEvent>(e => e.Name == "RESET", Wait);
        Assert.Equal("guest-reset", reset.Data!["reason"]);
        Assert.Equal(true, reset.Data!["guest"]);
        vm.Tell(VmActor.GetStatus.Instance);
        var status = ExpectMsg<VmActor.Status>();
        Assert.True(status.Reboots >= 1);
        Assert.True(status.Generation >= 2);
        Assert.DoesNotContain("STILL RUNNING", serial.Text, StringComparison.Ordinal);
        vm.Tell(VmActor.Quit.Instance);
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.HostQuit, finished.Reason);
        Assert.Equal("host-qmp-quit", events.FishForMessage<VmActor.VmEvent>(e => e.Name == "SHUTDOWN", Wait).Data!["reason"]);
    }

    [Fact]
    public void A_triple_fault_with_no_reboot_ends_with_status_4_after_one_run()
    {
        var (_, serial, events) = Start("triple", GuestConfig("triple", noReboot: true));
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.TripleFault, finished.Reason);
        Assert.Equal(ExitStatus.TripleFault, finished.ExitStatus);
        Assert.Equal(TripleBanner, serial.Text);
        var shutdown = events.FishForMessage<VmActor.VmEvent>(e => e.Name == "SHUTDOWN", Wait);
        Assert.Equal("guest-reset", shutdown.Data!["reason"]);
    }

    [Fact]
    public void An_i8042_reset_with_no_reboot_ends_with_status_0_and_reboots_without_it()
    {
        var (_, serial, _) = Start("reset", GuestConfig("reset", noReboot: true));
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.Reset, finished.Reason);
        Assert.Equal(ExitStatus.PowerOff, finished.ExitStatus);
        Assert.Equal(ResetBanner, serial.Text);

        var (vm, again, _) = Start("reset", GuestConfig("reset"));
        AwaitCondition(() => Count(again.Text, ResetBanner) >= 2, Wait);
        vm.Tell(VmActor.Quit.Instance);
        Assert.Equal(VmEndReason.HostQuit, ExpectMsg<VmActor.VmFinished>(Wait).Reason);
    }

    [Fact]
    public void With_shutdown_pause_a_guest_power_off_keeps_the_VM_until_a_host_reset_boots_it_again()
    {
        const string banner = "ActorVmm poweroff guest: entering ACPI S5\n";
        var (vm, serial, events) = Start("poweroff", GuestConfig("poweroff"), new VmActions(PauseOnShutdown: true));
        var shutdown = events.FishForMessage<VmActor.VmEvent>(e => e.Name == "SHUTDOWN", Wait);
        Assert.Equal("guest-shutdown", shutdown.Data!["reason"]);
        events.FishForMessage<VmActor.VmEvent>(e => e.Name == "STOP", Wait);
        vm.Tell(VmActor.GetStatus.Instance);
        Assert.Equal(VmRunState.Shutdown, ExpectMsg<VmActor.Status>().State);
        Assert.Equal(banner, serial.Text);

        vm.Tell(VmActor.SystemReset.Instance);
        Assert.Equal("host-qmp-system-reset", events.FishForMessage<VmActor.VmEvent>(e => e.Name == "RESET", Wait).Data!["reason"]);
        AwaitCondition(() => Count(serial.Text, banner) >= 2, Wait);
        vm.Tell(VmActor.Quit.Instance);
        Assert.Equal(VmEndReason.HostQuit, ExpectMsg<VmActor.VmFinished>(Wait).Reason);
    }

    [Fact]
    public void With_no_reboot_a_host_reset_is_a_shutdown_as_in_QEMU()
    {
        var (vm, _, events) = Start("poweroff", GuestConfig("poweroff", noReboot: true), new VmActions(PauseOnShutdown: true));
        events.FishForMessage<VmActor.VmEvent>(e => e.Name == "STOP", Wait);
        vm.Tell(VmActor.SystemReset.Instance);
        vm.Tell(VmActor.GetStatus.Instance);
        var status = ExpectMsg<VmActor.Status>();
        Assert.Equal(VmRunState.Shutdown, status.State);
        Assert.Equal(0, status.Reboots);
        vm.Tell(VmActor.Quit.Instance);
        Assert.Equal(VmEndReason.HostQuit, ExpectMsg<VmActor.VmFinished>(Wait).Reason);
    }

    private int ChildrenOf(IActorRef vm)
    {
        var probe = CreateTestProbe();
        Sys.ActorSelection(vm.Path / "*").Tell(new Identify(null), probe.Ref);
        return probe.ReceiveWhile<ActorIdentity>(TimeSpan.FromMilliseconds(300), m => (m as ActorIdentity)!).Count(i => i.Subject is not null);
    }

    private static int ThreadCount() => System.Diagnostics.Process.GetCurrentProcess().Threads.Count;

    private static int OpenFiles() => Directory.GetFiles("/proc/self/fd").Length;

    [Fact]
    public void Reboots_leak_no_threads_actors_or_file_handles()
    {
        // Warm-up: one run to its end creates what the actor system keeps (dispatcher threads, JIT'd code).
        Start("triple", GuestConfig("triple", noReboot: true));
        FishForMessage<VmActor.VmFinished>(_ => true, Wait);
        int threads = ThreadCount(), files = OpenFiles();

        var (vm, _, _) = Start("triple", GuestConfig("triple"));
        AwaitCondition(() =>
        {
            vm.Tell(VmActor.GetStatus.Instance);
            return ExpectMsg<VmActor.Status>().Reboots >= 12;
        }, Wait);
        vm.Tell(VmActor.Quit.Instance);
        FishForMessage<VmActor.VmFinished>(_ => true, Wait);

        // Twelve machines came and went, each with its device actors and a vCPU thread of its own: none remain.
        AwaitCondition(() => ChildrenOf(vm) == 0, Wait);
        AwaitCondition(() => ThreadCount() <= threads + 2, Wait);
        AwaitCondition(() => OpenFiles() <= files + 2, Wait);
    }
}

public sealed class DeviceStateKeeperTests
{
    private sealed class NoStop : Core.Devices.IMachineControl
    {
        public void RequestStop(Core.Devices.MachineStopRequest request)
        {
        }
    }

    [Fact]
    public void Every_device_of_the_PC_machine_and_of_the_soft_kernel_has_a_state_that_goes_back_in_place()
    {
        var config = FaultMatrixTests.ConfigFor(IrqchipMode.On) with { RouteOverrides = new Dictionary<string, Route>() };
        using var vm = new FakeVm(new VmSpec(config.RamBytes, 1, IrqchipMode.On), (v, c, h) => VcpuExit.SliceEnd);
        var platform = PcMachineBuilder.Build(config, vm, (_, _) => new RecordingSink(), new NoStop(), PcMachineBuilder.DirectOnly);
        var soft = (SoftVm)new SoftAccelerator().CreateVm(new VmSpec(16 << 20, 1, IrqchipMode.On));
        using var _ = soft;
        Core.Bus.IBusDevice[] kernel = [soft.Kernel.Pit!, soft.Kernel.Rtc!, soft.Kernel.Pm!, soft.Kernel.IoApic!, soft.Kernel.Hpet!];
        foreach (var model in platform.Devices.Select(d => d.Model).Concat(kernel))
        {
            var keeper = DeviceStateKeeper.For(model);
            Assert.True(keeper is not null, $"{model.Name}: no state keeper");
            var state = keeper.Capture();
            keeper.Restore(state);
            Assert.Equivalent(state, keeper.Capture());
        }
    }
}
