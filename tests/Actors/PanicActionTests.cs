// -action panic= (QEMU's, as qemu-system-x86_64 7.2 behaves with -device pvpanic) for a guest that reports a
// panic through pvpanic (tests/Guests/pvpanic.asm: prints the device's features, writes PANICKED, spins, then says
// it went on and exits with status 51). The ends of the run (shutdown, exit-failure, none) are compared with QEMU in
// QemuComparisonTests; here the VM actor's states and QMP events: GUEST_PANICKED with QMP's action, pause keeping the
// machine in GuestPanicked until cont, shutdown=pause turning a panic's shutdown into the Shutdown state.
using Akka.Actor;
using Akka.TestKit.Xunit2;
using ActorVmm.Actors.Tests.Supervision;
using ActorVmm.Core.Machine;
using ActorVmm.Native.Soft;

namespace ActorVmm.Actors.Tests;

public sealed class PanicActionTests() : TestKit(ActorVmmConfig.Config)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);

    private const string Features = "ActorVmm pvpanic guest: features 03\n";
    private const string WentOn = "the guest went on after its panic report\n";

    private static MachineConfig Config => new()
    {
        KernelPath = "pvpanic.bin",
        RamBytes = 16 * MachineConfig.MiB,
        DebugExit = new DebugExitConfig(0xf4, 4),
        PvPanicPort = 0x505,
        Deterministic = true,
    };

    private (IActorRef Vm, RecordingSink Serial, Akka.TestKit.TestProbe Events) Start(VmActions actions)
    {
        var serial = new RecordingSink();
        var vm = Sys.ActorOf(VmActor.Props(Config, new SoftAccelerator(), TestGuests.Images("pvpanic"), (_, _) => serial, actions));
        var events = CreateTestProbe();
        vm.Tell(new VmActor.Subscribe(events.Ref));
        vm.Tell(VmActor.Run.Instance);
        return (vm, serial, events);
    }

    [Fact]
    public void Pause_keeps_the_panicked_guest_until_cont_and_then_it_goes_on()
    {
        var (vm, serial, events) = Start(new VmActions(Panic: PanicAction.Pause));
        var panicked = events.FishForMessage<VmActor.VmEvent>(e => e.Name == "GUEST_PANICKED", Wait);
        Assert.Equal("pause", panicked.Data!["action"]);
        events.FishForMessage<VmActor.VmEvent>(e => e.Name == "STOP", Wait);
        vm.Tell(VmActor.GetStatus.Instance);
        Assert.Equal(VmRunState.GuestPanicked, ExpectMsg<VmActor.Status>().State);
        // Held: well past the time the guest's spin takes when it runs, it has not gone on.
        Thread.Sleep(1500);
        Assert.Equal(Features, serial.Text);

        vm.Tell(VmActor.Resume.Instance);
        Assert.Equal(VmRunState.Running, ExpectMsg<VmActor.Status>().State);
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(51, finished.ExitStatus);
        Assert.Equal(Features + WentOn, serial.Text);
    }

    [Fact]
    public void Shutdown_ends_the_run_as_a_guest_panic_with_status_0()
    {
        var (_, serial, events) = Start(VmActions.Default);
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.GuestPanic, finished.Reason);
        Assert.Equal(ExitStatus.PowerOff, finished.ExitStatus);
        Assert.Equal(Features, serial.Text);
        Assert.Equal("poweroff", events.FishForMessage<VmActor.VmEvent>(e => e.Name == "GUEST_PANICKED", Wait).Data!["action"]);
        var shutdown = events.FishForMessage<VmActor.VmEvent>(e => e.Name == "SHUTDOWN", Wait);
        Assert.Equal(true, shutdown.Data!["guest"]);
        Assert.Equal("guest-panic", shutdown.Data!["reason"]);
    }

    [Fact]
    public void With_shutdown_pause_a_panic_keeps_the_VM_in_the_shutdown_state()
    {
        var (vm, serial, events) = Start(new VmActions(PauseOnShutdown: true, Panic: PanicAction.Shutdown));
        Assert.Equal("guest-panic", events.FishForMessage<VmActor.VmEvent>(e => e.Name == "SHUTDOWN", Wait).Data!["reason"]);
        vm.Tell(VmActor.GetStatus.Instance);
        Assert.Equal(VmRunState.Shutdown, ExpectMsg<VmActor.Status>().State);
        Assert.Equal(Features, serial.Text);
        vm.Tell(VmActor.Quit.Instance);
        Assert.Equal(VmEndReason.HostQuit, ExpectMsg<VmActor.VmFinished>(Wait).Reason);
    }

    [Fact]
    public void None_reports_the_panic_and_lets_the_guest_go_on()
    {
        var (_, serial, events) = Start(new VmActions(Panic: PanicAction.None));
        Assert.Equal("run", events.FishForMessage<VmActor.VmEvent>(e => e.Name == "GUEST_PANICKED", Wait).Data!["action"]);
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(51, finished.ExitStatus);
        Assert.Equal(Features + WentOn, serial.Text);
    }

    [Fact]
    public void Exit_failure_ends_the_run_with_status_1()
    {
        var (_, serial, _) = Start(new VmActions(Panic: PanicAction.ExitFailure));
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.GuestPanic, finished.Reason);
        Assert.Equal(ExitStatus.GuestPanic, finished.ExitStatus);
        Assert.Equal(Features, serial.Text);
    }
}
