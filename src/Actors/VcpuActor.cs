// One vCPU (DESIGN.md §6). Runs on a thread of its own (PinnedDispatcher, ActorVmmConfig.VcpuDispatcherId)
// and runs the exit loop in slices: a RunSlice message calls IVcpu.Run once; when Run comes back with
// SliceEnd or Kicked the actor posts itself the next RunSlice, so every control message already in the
// mailbox is handled between two slices and nothing waits behind a running guest for longer than a slice.
// Whoever sends a control message to a running vCPU also calls IVcpu.Kick (thread-safe), which makes the
// current slice end promptly; SendControl does both.
// States: Paused (created so; RunSlice ignored) → Running (Resume) ⇄ Paused (Pause) → Finished (the vCPU
// ended, or Stop). Each Resume starts a new epoch and RunSlice messages of older epochs are ignored, so a
// Pause/Resume pair never leaves two slice chains running.
// Run results the owner must decide go to the owner as Ended: Shutdown (triple fault), Reset, PowerOff,
// Debug, Error, and Halted when RFLAGS.IF = 0 (nothing can wake the vCPU). A halt with IF = 1 is waited out
// here: the next slice is scheduled after a short pause, as the interrupt that wakes it comes from outside.
// An exception from Run is a VMM failure, reported as Ended(Error), never a process exit.
// Faults (Faults.cs): throw and slow apply to each RunSlice, before Run; hang holds the vCPU's own thread
// for the duration (nothing else runs on it; a Stop waits until the hang is over); drop applies to the
// control messages others send (Pause, Resume, Kick), never to the slice chain or Stop. A restarted actor
// (supervision, docs/actors.md) carries on: the vCPU's state lives in the IVcpu, and VcpuInfo (shared with
// the VM actor, outliving actor instances) says whether it was running, so it resumes running.
using Akka.Actor;
using Akka.Event;
using ActorVmm.Core.Accel;

namespace ActorVmm.Actors;

public sealed class VcpuActor : ReceiveActor, IWithTimers
{
    public interface IVcpuProtocol;

    /// <summary>Start or continue running guest code.</summary>
    public sealed record Resume : IVcpuProtocol
    {
        public static readonly Resume Instance = new();
    }

    /// <summary>Stop after the current slice and wait for Resume.</summary>
    public sealed record Pause : IVcpuProtocol
    {
        public static readonly Pause Instance = new();
    }

    /// <summary>End for good; the actor stops (and disposes the vCPU).</summary>
    public sealed record Stop : IVcpuProtocol
    {
        public static readonly Stop Instance = new();
    }

    /// <summary>Asks for a slice boundary; the sender gets <see cref="Kicked"/> once the mailbox is reached.</summary>
    public sealed record Kick : IVcpuProtocol
    {
        public static readonly Kick Instance = new();
    }

    public sealed record GetState : IVcpuProtocol
    {
        public static readonly GetState Instance = new();
    }

    /// <summary>Reply to <see cref="GetState"/>.</summary>
    public sealed record StateReply(int Id, VcpuRunState State, long Slices, VcpuExit? LastExit);

    /// <summary>Reply to <see cref="Kick"/>: the vCPU actor was between slices.</summary>
    public sealed record Kicked(int Id, VcpuRunState State);

    /// <summary>To the owner: the vCPU ended with an outcome the owner must decide.</summary>
    public sealed record Ended(int Id, VcpuExit Exit);

    private sealed record RunSlice(long Epoch);

    private const ulong RflagsIf = 1 << 9;
    private static readonly TimeSpan HaltPoll = TimeSpan.FromMilliseconds(1);

    private readonly VcpuInfo _info;
    private readonly IVcpu _vcpu;
    private readonly VcpuGate? _gate;
    private readonly IExitHandler _handler;
    private readonly IActorRef _owner;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private long _epoch;
    private long _slices;
    private VcpuExit? _lastExit;
    private VcpuRunState _state;

    public ITimerScheduler Timers { get; set; } = null!;

    public VcpuActor(IVcpu vcpu, IExitHandler handler, IActorRef owner, VcpuGate? gate = null, VcpuInfo? info = null)
    {
        _gate = gate;
        _vcpu = vcpu;
        _handler = handler;
        _owner = owner;
        _info = info ?? new VcpuInfo(vcpu.Id);
        BecomePaused();
    }

    /// <summary>Props on the dedicated vCPU dispatcher. <paramref name="info"/> outlives restarts; the owner reads it.</summary>
    public static Props Props(IVcpu vcpu, IExitHandler handler, IActorRef owner, VcpuGate? gate = null, VcpuInfo? info = null)
    {
        info ??= new VcpuInfo(vcpu.Id);
        return Akka.Actor.Props.Create(() => new VcpuActor(vcpu, handler, owner, gate, info)).WithDispatcher(ActorVmmConfig.VcpuDispatcherId);
    }

    /// <summary>Sends a control message and kicks the vCPU so a running slice ends promptly.</summary>
    public static void SendControl(IActorRef vcpuActor, IVcpu vcpu, IVcpuProtocol message, IActorRef? sender = null)
    {
        vcpuActor.Tell(message, sender ?? ActorRefs.NoSender);
        vcpu.Kick();
    }

    private void Common()
    {
        Receive<InjectFault>(m =>
        {
            _info.Faults.Inject(m.Fault);
            _log.Warning("vCPU {0}: fault injected: {1}", _vcpu.Id, m.Fault);
            Sender.Tell(_info.Faults.Report());
            if (m.Fault is HangFault h)
            {
                Thread.Sleep(h.Duration);
                _info.Faults.HangEnded();
            }
        });
        Receive<ClearFaults>(_ =>
        {
            _info.Faults.Clear();
            Sender.Tell(_info.Faults.Report());
        });
        Receive<GetFaults>(_ => Sender.Tell(_info.Faults.Report()));
        Receive<Kick>(_ => Sender.Tell(new Kicked(_vcpu.Id, _state)));
        Receive<GetState>(_ => Sender.Tell(new StateReply(_vcpu.Id, _state, _slices, _lastExit)));
        Receive<Stop>(_ =>
        {
            BecomeFinished();
            Context.Stop(Self);
        });
    }

    protected override bool AroundReceive(Receive receive, object message)
    {
        // Drop faults apply to what others send (Pause, Resume, Kick); the slice chain and Stop always get through.
        if (message is Pause or Resume or Kick && _info.Faults.Any && _info.Faults.BeforeControlMessage()) return true;
        return base.AroundReceive(receive, message);
    }

    private void BecomePaused()
    {
        _state = VcpuRunState.Paused;
        _info.State = VcpuRunState.Paused;
        Become(() =>
        {
            Receive<Resume>(_ => BecomeRunning());
            Receive<Pause>(_ => { });
            Receive<RunSlice>(_ => { });
            Common();
        });
    }

    private void BecomeRunning()
    {
        _state = VcpuRunState.Running;
        _info.State = VcpuRunState.Running;
        long epoch = ++_epoch;
        Become(() =>
        {
            Receive<RunSlice>(m => m.Epoch == _epoch, m => RunOneSlice(m.Epoch));
            Receive<RunSlice>(_ => { });
            Receive<Resume>(_ => { });
            Receive<Pause>(_ => BecomePaused());
            Common();
        });
        Self.Tell(new RunSlice(epoch));
    }

    private void BecomeFinished()
    {
        _state = VcpuRunState.Finished;
        _info.State = VcpuRunState.Finished;
        Become(() =>
        {
            Receive<Kick>(_ => Sender.Tell(new Kicked(_vcpu.Id, _state)));
            Receive<GetState>(_ => Sender.Tell(new StateReply(_vcpu.Id, _state, _slices, _lastExit)));
            Receive<Stop>(_ => Context.Stop(Self));
            ReceiveAny(_ => { });
        });
    }

    private void RunOneSlice(long epoch)
    {
        _info.ThreadId = Environment.CurrentManagedThreadId;
        if (_info.Faults.Any) _info.Faults.BeforeSlice();
        VcpuExit exit;
        try
        {
            exit = _vcpu.Run(_handler);
        }
        catch (Exception e)
        {
            exit = new VcpuExit(VcpuExitKind.Error, $"vCPU {_vcpu.Id}: {e.GetType().Name}: {e.Message}");
        }
        _slices++;
        _lastExit = exit;
        switch (exit.Kind)
        {
            case VcpuExitKind.SliceEnd:
            case VcpuExitKind.Kicked:
                // A closed gate: the machine is stopping; run no more guest code, keep serving the mailbox.
                if (_gate is not { IsClosed: true }) Self.Tell(new RunSlice(epoch));
                break;
            case VcpuExitKind.Halted when (SafeRflags() & RflagsIf) != 0:
                // Waiting for an interrupt that comes from outside; poll without spinning.
                Timers.StartSingleTimer("halt", new RunSlice(epoch), HaltPoll);
                break;
            default:
                _log.Debug("vCPU {0} ended: {1}", _vcpu.Id, exit);
                BecomeFinished();
                _owner.Tell(new Ended(_vcpu.Id, exit));
                break;
        }
    }

    private ulong SafeRflags()
    {
        try
        {
            return _vcpu.GetRegisters().Rflags;
        }
        catch (Exception)
        {
            return 0;
        }
    }

    protected override void PreRestart(Exception reason, object message)
    {
        _info.StateBeforeRestart = _state;
        // Not base.PreRestart: that would run PostStop and dispose the vCPU the restarted actor still owns.
        foreach (var child in Context.GetChildren()) Context.Stop(child);
    }

    protected override void PostRestart(Exception reason)
    {
        base.PostRestart(reason);
        _info.Faults.Restarts++;
        var was = _info.StateBeforeRestart;
        _log.Warning("vCPU {0}: actor restarted after {1}: {2} (restart {3}); it was {4}", _vcpu.Id, reason.GetType().Name, reason.Message,
            _info.Faults.Restarts, was);
        // The guest's state is in the IVcpu, untouched by the failure: carry on where the actor was.
        if (was == VcpuRunState.Running) BecomeRunning();
        else if (was == VcpuRunState.Finished) BecomeFinished();
    }

    protected override void PostStop()
    {
        _vcpu.Dispose();
        base.PostStop();
    }
}

/// <summary>What the owner may read about one vCPU at any time, and what outlives restarts of its actor.</summary>
public sealed class VcpuInfo(int id)
{
    public int Id { get; } = id;

    /// <summary>The managed id of the thread that runs the vCPU (0 before its first slice).</summary>
    public volatile int ThreadId;

    public volatile VcpuRunState State;

    internal VcpuRunState StateBeforeRestart;

    public FaultState Faults { get; } = new($"vcpu{id}");
}

/// <summary>
/// Shared by the vCPUs of one machine: once closed (by a device asking the machine to stop, on any thread)
/// no vCPU starts another slice, so the guest runs no further while the VM actor tears the machine down.
/// </summary>
public sealed class VcpuGate
{
    private volatile bool _closed;

    public bool IsClosed => _closed;

    public void Close() => _closed = true;
}

public enum VcpuRunState
{
    Paused,
    Running,
    Finished,
}
