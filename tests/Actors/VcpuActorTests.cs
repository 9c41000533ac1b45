using Akka.Actor;
using Akka.TestKit.Xunit2;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;

namespace ActorVmm.Actors.Tests;

public sealed class VcpuActorTests() : TestKit(ActorVmmConfig.Config)
{
    private static readonly IExitHandler NoDevices = new ExitDispatcher(new BusBuilder().Build());

    private static VcpuExit Endless(FakeVcpu v, int call, IExitHandler h)
    {
        Thread.Sleep(1);
        return VcpuExit.SliceEnd;
    }

    [Fact]
    public void Runs_slices_until_an_exit_the_owner_must_decide()
    {
        var vcpu = new FakeVcpu(0, (v, call, h) => call < 5 ? VcpuExit.SliceEnd : new VcpuExit(VcpuExitKind.Shutdown, "triple fault"));
        var actor = Sys.ActorOf(VcpuActor.Props(vcpu, NoDevices, TestActor));
        actor.Tell(VcpuActor.Resume.Instance);

        var ended = ExpectMsg<VcpuActor.Ended>();
        Assert.Equal(VcpuExitKind.Shutdown, ended.Exit.Kind);
        Assert.Equal(6, vcpu.Runs);
        actor.Tell(VcpuActor.GetState.Instance);
        var state = ExpectMsg<VcpuActor.StateReply>();
        Assert.Equal(VcpuRunState.Finished, state.State);
        Assert.Equal(6, state.Slices);
    }

    [Fact]
    public void Starts_paused_and_runs_nothing_until_resumed()
    {
        var vcpu = new FakeVcpu(0, Endless);
        var actor = Sys.ActorOf(VcpuActor.Props(vcpu, NoDevices, TestActor));
        actor.Tell(VcpuActor.GetState.Instance);
        Assert.Equal(VcpuRunState.Paused, ExpectMsg<VcpuActor.StateReply>().State);
        Assert.Equal(0, vcpu.Runs);
    }

    [Fact]
    public void Props_use_the_pinned_dedicated_thread_dispatcher()
    {
        var props = VcpuActor.Props(new FakeVcpu(0, Endless), NoDevices, TestActor);
        Assert.Equal(ActorVmmConfig.VcpuDispatcherId, props.Dispatcher);
        Assert.IsType<Akka.Dispatch.PinnedDispatcher>(Sys.Dispatchers.Lookup(props.Dispatcher));
    }

    [Fact]
    public void Control_messages_are_handled_between_slices_of_an_endless_guest()
    {
        var vcpu = new FakeVcpu(0, Endless);
        var actor = Sys.ActorOf(VcpuActor.Props(vcpu, NoDevices, TestActor));
        actor.Tell(VcpuActor.Resume.Instance);
        AwaitCondition(() => vcpu.Runs > 3);
        VcpuActor.SendControl(actor, vcpu, VcpuActor.Kick.Instance, TestActor);
        var kicked = ExpectMsg<VcpuActor.Kicked>();
        Assert.Equal(VcpuRunState.Running, kicked.State);
        Assert.True(vcpu.Kicks >= 1);
    }

    [Fact]
    public void Pause_stops_the_slices_and_resume_continues_them()
    {
        var vcpu = new FakeVcpu(0, Endless);
        var actor = Sys.ActorOf(VcpuActor.Props(vcpu, NoDevices, TestActor));
        actor.Tell(VcpuActor.Resume.Instance);
        AwaitCondition(() => vcpu.Runs > 3);

        VcpuActor.SendControl(actor, vcpu, VcpuActor.Pause.Instance);
        actor.Tell(VcpuActor.GetState.Instance);
        Assert.Equal(VcpuRunState.Paused, ExpectMsg<VcpuActor.StateReply>().State);
        int runsWhenPaused = vcpu.Runs;
        Thread.Sleep(50);
        Assert.Equal(runsWhenPaused, vcpu.Runs);

        actor.Tell(VcpuActor.Resume.Instance);
        AwaitCondition(() => vcpu.Runs > runsWhenPaused + 3);
        actor.Tell(VcpuActor.GetState.Instance);
        Assert.Equal(VcpuRunState.Running, ExpectMsg<VcpuActor.StateReply>().State);
    }

    [Fact]
    public void Pause_resume_pairs_never_leave_two_slice_chains_running()
    {
        var vcpu = new FakeVcpu(0, (v, call, h) =>
        {
            Thread.Sleep(2);
            return VcpuExit.SliceEnd;
        });
        var actor = Sys.ActorOf(VcpuActor.Props(vcpu, NoDevices, TestActor));
        actor.Tell(VcpuActor.Resume.Instance);
        for (int i = 0; i < 20; i++)
        {
            AwaitCondition(() => vcpu.Runs > i + 1);
            // While a slice runs: its successor RunSlice is queued behind these two.
            VcpuActor.SendControl(actor, vcpu, VcpuActor.Pause.Instance);
            actor.Tell(VcpuActor.Resume.Instance);
        }
        Thread.Sleep(30);
        // With one slice chain, a control message waits for at most the slice in progress; every extra
        // chain would put one more RunSlice in front of it.
        int runsAtSend = vcpu.Runs;
        actor.Tell(VcpuActor.GetState.Instance);
        var state = ExpectMsg<VcpuActor.StateReply>();
        Assert.Equal(VcpuRunState.Running, state.State);
        Assert.InRange(state.Slices - runsAtSend, -1, 1);
    }

    [Fact]
    public void Stop_ends_the_actor_and_disposes_the_vcpu()
    {
        var vcpu = new FakeVcpu(0, Endless);
        var actor = Sys.ActorOf(VcpuActor.Props(vcpu, NoDevices, TestActor));
        Watch(actor);
        actor.Tell(VcpuActor.Resume.Instance);
        AwaitCondition(() => vcpu.Runs > 2);
        VcpuActor.SendControl(actor, vcpu, VcpuActor.Stop.Instance);
        ExpectTerminated(actor);
        Assert.True(vcpu.Disposed);
    }

    [Fact]
    public void Halt_with_interrupts_enabled_waits_and_halt_with_them_disabled_ends()
    {
        var vcpu = new FakeVcpu(0, (v, call, h) => call < 3 ? new VcpuExit(VcpuExitKind.Halted) : new VcpuExit(VcpuExitKind.Halted));
        vcpu.SetRegisters(new CpuRegisters { Rflags = 0x202 });
        var actor = Sys.ActorOf(VcpuActor.Props(vcpu, NoDevices, TestActor));
        actor.Tell(VcpuActor.Resume.Instance);
        AwaitCondition(() => vcpu.Runs > 3);
        ExpectNoMsg(TimeSpan.FromMilliseconds(50));
        vcpu.SetRegisters(new CpuRegisters { Rflags = 0x002 });
        Assert.Equal(VcpuExitKind.Halted, ExpectMsg<VcpuActor.Ended>().Exit.Kind);
    }

    [Fact]
    public void An_exception_from_Run_is_reported_as_an_error_exit()
    {
        var vcpu = new FakeVcpu(0, (v, call, h) => throw new InvalidOperationException("backend broke"));
        var actor = Sys.ActorOf(VcpuActor.Props(vcpu, NoDevices, TestActor));
        actor.Tell(VcpuActor.Resume.Instance);
        var ended = ExpectMsg<VcpuActor.Ended>();
        Assert.Equal(VcpuExitKind.Error, ended.Exit.Kind);
        Assert.Contains("backend broke", ended.Exit.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void A_closed_gate_runs_no_further_slices()
    {
        var gate = new VcpuGate();
        var vcpu = new FakeVcpu(0, (v, call, h) =>
        {
            if (call == 4) gate.Close();
            return VcpuExit.SliceEnd;
        });
        var actor = Sys.ActorOf(VcpuActor.Props(vcpu, NoDevices, TestActor, gate));
        actor.Tell(VcpuActor.Resume.Instance);
        AwaitCondition(() => vcpu.Runs >= 5);
        Thread.Sleep(50);
        Assert.Equal(5, vcpu.Runs);
        actor.Tell(VcpuActor.Kick.Instance);
        ExpectMsg<VcpuActor.Kicked>();
    }
}
