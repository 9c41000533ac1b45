// The VM actor's control surface beyond run/pause/resume/reset/quit (DESIGN.md §6, §9): what the control
// socket (QMP) and tests use. Kept apart from VmActor.cs, which builds and tears down machines.
//   FaultCommand(Target, Fault)  inject a fault into a device actor (by device name) or a vCPU actor ("vcpu0");
//                                a null Fault clears them; before the machine is built the faults wait and
//                                are applied to the next machine built. Reply FaultReply.
//   SystemPowerdown              press the ACPI power button (a PM device actor's, or the VM's in-kernel one);
//                                POWERDOWN event. Reply CommandResult.
//   GetCpus                      per vCPU: index, thread, state. Reply Cpus.
//   Subscribe / Unsubscribe      VmEvent for STOP, RESUME, RESET, SHUTDOWN, POWERDOWN, with QMP's names and
//                                data fields (guest, reason) and the time of the event.
// Actions (VmActions, QEMU's -action): shutdown=pause keeps the VM in state Shutdown after a guest power-off
// (and after a reset or triple fault with -no-reboot, which QEMU also turns into a shutdown) instead of
// ending the run; reboot=shutdown is MachineConfig.NoReboot; panic= says what a panic the guest reports through
// pvpanic (-device pvpanic) does, as QEMU 7.2 does it: shutdown (the default) ends the run as a guest power-off
// with reason guest-panic (status 0; with shutdown=pause the Shutdown state), pause stops the vCPUs in state
// GuestPanicked (QMP "guest-panicked"; cont resumes them), exit-failure ends the run with status 1, none lets
// the guest run on. Each emits GUEST_PANICKED with QMP's action (poweroff, pause, run); a crash kernel's
// "loaded" report emits GUEST_CRASHLOADED and changes nothing.
// Escalation (docs/actors.md, "Supervision"): a child stopped after too many restarts makes the VM restart
// (RESET, reason host-error); more than FailureRebootLimit such restarts within FailureRebootWindow end the
// run with status 8.
using Akka.Actor;
using Akka.Event;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Machine;

namespace ActorVmm.Actors;

/// <summary>QEMU's -action panic=: what a guest panic reported through pvpanic does.</summary>
public enum PanicAction
{
    Shutdown,
    Pause,
    ExitFailure,
    None,
}

/// <summary>What guest events do beyond MachineConfig.NoReboot (QEMU's -action shutdown=, panic=).</summary>
public sealed record VmActions(bool PauseOnShutdown = false, PanicAction Panic = PanicAction.Shutdown)
{
    public static readonly VmActions Default = new();
}

public sealed partial class VmActor
{
    /// <summary>Inject <paramref name="Fault"/> into <paramref name="Target"/> (a device name or "vcpuN"); null clears its faults.</summary>
    public sealed record FaultCommand(string Target, Fault? Fault) : IVmProtocol;

    /// <summary>Reply to <see cref="FaultCommand"/>: an error, or the target's report (null while the fault waits for the machine).</summary>
    public sealed record FaultReply(string? Error, FaultReport? Report);

    public sealed record SystemPowerdown : IVmProtocol
    {
        public static readonly SystemPowerdown Instance = new();
    }

    /// <summary>Reply to commands that succeed or say why not.</summary>
    public sealed record CommandResult(string? Error)
    {
        public static readonly CommandResult Ok = new((string?)null);
    }

    public sealed record GetCpus : IVmProtocol
    {
        public static readonly GetCpus Instance = new();
    }

    public sealed record CpuInfo(int Index, int ThreadId, VcpuRunState State);

    public sealed record Cpus(IReadOnlyList<CpuInfo> List);

    /// <summary>Send <see cref="VmEvent"/>s to <paramref name="Subscriber"/> until it unsubscribes or terminates.</summary>
    public sealed record Subscribe(IActorRef Subscriber) : IVmProtocol;

    public sealed record Unsubscribe(IActorRef Subscriber) : IVmProtocol;

    /// <summary>An event in QMP's terms: its name, when it happened, and its data (null for none).</summary>
    public sealed record VmEvent(string Name, DateTimeOffset Timestamp, IReadOnlyDictionary<string, object?>? Data);

    /// <summary>The guest reported a panic (or, <paramref name="CrashLoaded"/>, a loaded crash kernel) through pvpanic in machine <paramref name="Generation"/>.</summary>
    public sealed record GuestPanic(int Generation, bool CrashLoaded) : IVmProtocol;

    /// <summary>A child stopped by supervision more than this many times in the window ends the run instead of restarting the VM.</summary>
    public const int FailureRebootLimit = 3;

    public static readonly TimeSpan FailureRebootWindow = TimeSpan.FromSeconds(60);

    /// <summary>Restarts a child may have within <see cref="ChildRestartWindow"/> before it is stopped.</summary>
    public const int ChildRestartLimit = 3;

    public static readonly TimeSpan ChildRestartWindow = TimeSpan.FromSeconds(10);

    private readonly VmActions _actions;
    private readonly HashSet<IActorRef> _subscribers = [];
    private readonly List<(string Target, Fault? Fault)> _pendingFaults = [];
    private readonly Queue<DateTime> _failureReboots = new();

    private void ReceiveControl()
    {
        Receive<FaultCommand>(m => HandleFault(m));
        Receive<SystemPowerdown>(_ => Sender.Tell(Powerdown()));
        Receive<GetCpus>(_ =>
        {
            var infos = _machine?.VcpuInfos ?? [];
            Sender.Tell(new Cpus([.. infos.Select(i => new CpuInfo(i.Id, i.ThreadId, i.State))]));
        });
        Receive<GuestPanic>(m =>
        {
            if (_machine is null || m.Generation != _machine.Generation || !IsLive) return;
            if (m.CrashLoaded) Emit("GUEST_CRASHLOADED", new Dictionary<string, object?> { ["action"] = "run" });
            else OnGuestPanic();
        });
        Receive<Subscribe>(m =>
        {
            if (_subscribers.Add(m.Subscriber)) Context.Watch(m.Subscriber);
        });
        Receive<Unsubscribe>(m =>
        {
            if (_subscribers.Remove(m.Subscriber)) Context.Unwatch(m.Subscriber);
        });
    }

    private void HandleFault(FaultCommand m)
    {
        if (_state is VmRunState.Finished)
        {
            Sender.Tell(new FaultReply("the VM has finished", null));
            return;
        }
        if (_machine is null)
        {
            bool known = PcMachineBuilder.DeviceNames(_config).Contains(m.Target) || VcpuIndex(m.Target) is { } i && i < _config.VcpuCount;
            if (!known)
            {
                Sender.Tell(new FaultReply($"no device or vCPU named '{m.Target}' (devices: {string.Join(", ", PcMachineBuilder.DeviceNames(_config))}; vCPUs: vcpu0-vcpu{_config.VcpuCount - 1})", null));
                return;
            }
            _pendingFaults.Add((m.Target, m.Fault));
            Sender.Tell(new FaultReply(null, null));
            return;
        }
        if (Resolve(_machine, m.Target) is not { } target)
        {
            Sender.Tell(new FaultReply($"no device or vCPU named '{m.Target}' (devices: {string.Join(", ", _machine.DeviceActors.Keys)}; vCPUs: vcpu0-vcpu{_machine.Vcpus.Length - 1})", null));
            return;
        }
        object message = m.Fault is { } f ? new InjectFault(f) : ClearFaults.Instance;
        target.Ask<FaultReport>(message, TimeSpan.FromSeconds(5))
            .PipeTo(Sender, success: r => new FaultReply(null, r), failure: e => new FaultReply($"{m.Target}: no answer ({e.GetType().Name})", null));
        if (VcpuIndex(m.Target) is { } v && v < _machine.Vcpus.Length) _machine.Vcpus[v].Kick();
    }

    private void ApplyPendingFaults()
    {
        if (_machine is null) return;
        foreach (var (target, fault) in _pendingFaults)
        {
            if (Resolve(_machine, target) is { } actor)
                actor.Tell(fault is { } f ? new InjectFault(f) : ClearFaults.Instance, ActorRefs.NoSender);
        }
        _pendingFaults.Clear();
    }

    private static int? VcpuIndex(string target)
    {
        foreach (var prefix in new[] { "vcpu", "cpu" })
        {
            if (target.StartsWith(prefix, StringComparison.Ordinal) && int.TryParse(target.AsSpan(prefix.Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int i))
                return i;
        }
        return null;
    }

    private static IActorRef? Resolve(Machine machine, string target)
    {
        if (machine.DeviceActors.TryGetValue(target, out var device)) return device;
        return VcpuIndex(target) is { } i && i < machine.VcpuActors.Length ? machine.VcpuActors[i] : null;
    }

    private CommandResult Powerdown()
    {
        if (_machine is null || !IsLive) return new CommandResult($"the VM is not running (state {_state})");
        // A PM block in a device actor (kernel-irqchip=split/off) first, else the VM's in-kernel one.
        foreach (var d in _machine.Platform.Devices)
        {
            if (d.Model is AcpiPm && _machine.DeviceActors.TryGetValue(d.Model.Name, out var pm))
            {
                pm.Tell(DeviceActor.PowerButton.Instance, ActorRefs.NoSender);
                Emit("POWERDOWN");
                return CommandResult.Ok;
            }
        }
        // The platform's hosted PM block (split, off; on over a kernel without PM1 registers: vmm, KVM).
        if (_machine.Platform.Irqchip?.PressPowerButton() == true)
        {
            Emit("POWERDOWN");
            return CommandResult.Ok;
        }
        if (_machine.Vm is IPowerButton button && button.PressPowerButton())
        {
            Emit("POWERDOWN");
            return CommandResult.Ok;
        }
        return new CommandResult("this machine has no ACPI power button");
    }

    /// <summary>-action panic= for a panic the guest reported (QEMU's qemu_system_guest_panicked, in effect).</summary>
    private void OnGuestPanic()
    {
        const string Detail = "the guest reported a panic (pvpanic)";
        switch (_actions.Panic)
        {
            case PanicAction.None:
                _log.Warning("{0}; -action panic=none: it runs on", Detail);
                Emit("GUEST_PANICKED", new Dictionary<string, object?> { ["action"] = "run" });
                break;
            case PanicAction.Pause:
                if (_state == VmRunState.GuestPanicked) return;
                _log.Warning("{0}; -action panic=pause: its vCPUs are stopped (cont, system_reset or quit)", Detail);
                Emit("GUEST_PANICKED", new Dictionary<string, object?> { ["action"] = "pause" });
                if (_state == VmRunState.Running)
                {
                    for (int i = 0; i < _machine!.Vcpus.Length; i++)
                        VcpuActor.SendControl(_machine.VcpuActors[i], _machine.Vcpus[i], VcpuActor.Pause.Instance, Self);
                    Emit("STOP");
                }
                _state = VmRunState.GuestPanicked;
                break;
            case PanicAction.ExitFailure:
                Emit("GUEST_PANICKED", new Dictionary<string, object?> { ["action"] = "poweroff" });
                Finish(new VmFinished(VmEndReason.GuestPanic, ExitStatus.GuestPanic, $"{Detail}; -action panic=exit-failure"));
                break;
            default:
                Emit("GUEST_PANICKED", new Dictionary<string, object?> { ["action"] = "poweroff" });
                if (!ShutdownPauses(Detail, "guest-panic"))
                    Finish(new VmFinished(VmEndReason.GuestPanic, ExitStatus.PowerOff, $"{Detail}; -action panic=shutdown"));
                break;
        }
    }

    /// <summary>A guest power-off: the end of the run, or with shutdown=pause the Shutdown state.</summary>
    private void PowerOff(string detail)
    {
        if (!ShutdownPauses(detail, "guest-shutdown"))
            Finish(new VmFinished(VmEndReason.PowerOff, ExitStatus.PowerOff, detail));
    }

    /// <summary>With -action shutdown=pause: stop the guest, keep the machine, emit SHUTDOWN and STOP. False when the action is poweroff.</summary>
    private bool ShutdownPauses(string detail, string reason, bool guest = true)
    {
        if (!_actions.PauseOnShutdown || _machine is null) return false;
        if (_state == VmRunState.Shutdown) return true;
        for (int i = 0; i < _machine.Vcpus.Length; i++)
            VcpuActor.SendControl(_machine.VcpuActors[i], _machine.Vcpus[i], VcpuActor.Pause.Instance, Self);
        _state = VmRunState.Shutdown;
        _log.Info("{0}: shutdown=pause keeps the VM (reset or quit it)", detail);
        Emit("SHUTDOWN", new Dictionary<string, object?> { ["guest"] = guest, ["reason"] = reason });
        Emit("STOP");
        return true;
    }

    /// <summary>A device or vCPU actor stopped by its supervisor: restart the VM, or end the run if that keeps happening.</summary>
    private void ChildFailedForGood(IActorRef child, string detail)
    {
        if (_machine is null) return;
        foreach (var d in _machine.Platform.Devices)
        {
            if (d.Endpoint is MailboxEndpoint mb && mb.Device.Equals(child)) mb.DeviceGone();
        }
        var now = DateTime.UtcNow;
        while (_failureReboots.Count > 0 && now - _failureReboots.Peek() > FailureRebootWindow) _failureReboots.Dequeue();
        if (_failureReboots.Count >= FailureRebootLimit)
        {
            Finish(new VmFinished(VmEndReason.InternalError, ExitStatus.InternalError,
                $"{detail}; the VM was already restarted {_failureReboots.Count} times in {FailureRebootWindow.TotalSeconds:0} s for failures: giving up"));
            return;
        }
        _failureReboots.Enqueue(now);
        _log.Error("{0} (more than {1} restarts in {2:0} s): restarting the VM", detail, ChildRestartLimit, ChildRestartWindow.TotalSeconds);
        Reboot($"supervision: {detail}", "host-error", guest: false);
    }

    /// <summary>The counters of the machine torn down last (GetStats answers them once no machine is built).</summary>
    private Stats? _lastStats;

    private static Stats StatsOf(Machine machine)
        => new(machine.Generation, [.. machine.Platform.Devices.Select(d => DeviceStatsOf(machine, d))],
            machine.Dispatchers.Sum(x => x.UnclaimedPortAccesses), machine.Dispatchers.Sum(x => x.UnclaimedMmioAccesses));

    private static DeviceStats DeviceStatsOf(Machine machine, PlatformDevice d)
    {
        var e = d.Endpoint;
        machine.DeviceFaults.TryGetValue(d.Model.Name, out var faults);
        return new DeviceStats(d.Model.Name, d.Route, Interlocked.Read(ref e.Accesses))
        {
            Reads = Interlocked.Read(ref e.Reads),
            MeanLatencyNs = e.MeanLatencyNanoseconds,
            LatencySamples = Interlocked.Read(ref e.LatencySamples),
            TimedOutReads = (e as MailboxEndpoint)?.TimedOutReads ?? 0,
            Restarts = faults?.Restarts ?? 0,
            FaultsFired = faults is null ? 0 : faults.Thrown + faults.Slowed + faults.Dropped + faults.Hangs,
        };
    }

    /// <summary>A drain of the Mailbox-route devices of machine <paramref name="Generation"/> is complete.</summary>
    private sealed record Drained(int Generation, long Drain);

    // Decisions waiting for a drain, in arrival order, each tagged with the first drain that covers it.
    private readonly Queue<(int Generation, long Drain, Action Act)> _afterDrain = new();
    private long _drainsStarted;
    private bool _draining;

    /// <summary>
    /// Runs <paramref name="act"/> once every Mailbox-route device actor has handled what was queued before now (a
    /// GetStats round trip each, at most 2 s), so the writes a vCPU posted before it ended take effect first; at once when no device is on the Mailbox route and nothing waits. Decisions run
    /// in the order they arrived.
    /// </summary>
    private void AfterMailboxDevicesDrained(Machine machine, Action act)
    {
        if (_afterDrain.Count == 0 && !MailboxActors(machine).Any())
        {
            act();
            return;
        }
        // A drain in flight started before this decision arrived, so it is covered by the next one.
        _afterDrain.Enqueue((machine.Generation, _drainsStarted + 1, act));
        if (!_draining) StartDrain(machine);
    }

    private static IEnumerable<IActorRef> MailboxActors(Machine machine)
        => machine.Platform.Devices.Where(d => d.Route == Core.Bus.Route.Mailbox && machine.DeviceActors.ContainsKey(d.Model.Name))
            .Select(d => machine.DeviceActors[d.Model.Name]);

    private void StartDrain(Machine machine)
    {
        _draining = true;
        var done = new Drained(machine.Generation, ++_drainsStarted);
        Task.WhenAll(MailboxActors(machine).Select(a => a.Ask<DeviceActor.Stats>(DeviceActor.GetStats.Instance, TimeSpan.FromSeconds(2))))
            .PipeTo(Self, success: _ => done, failure: _ => done);
    }

    private void OnDrained(Drained m)
    {
        _draining = false;
        while (_afterDrain.Count > 0 && _afterDrain.Peek().Drain <= m.Drain)
        {
            var (generation, _, act) = _afterDrain.Dequeue();
            if (_machine is not null && generation == _machine.Generation && IsLive) act();
        }
        if (_afterDrain.Count == 0) return;
        if (_machine is null || !IsLive)
        {
            _afterDrain.Clear();
            return;
        }
        StartDrain(_machine);
    }

    private void Emit(string name, IReadOnlyDictionary<string, object?>? data = null)
    {
        if (_subscribers.Count == 0) return;
        var e = new VmEvent(name, DateTimeOffset.UtcNow, data);
        foreach (var s in _subscribers) s.Tell(e, Self);
    }

    private void EmitShutdown(VmFinished finished)
    {
        var (guest, reason) = finished.Reason switch
        {
            VmEndReason.PowerOff or VmEndReason.DebugExit or VmEndReason.Halted => (true, "guest-shutdown"),
            VmEndReason.Reset or VmEndReason.TripleFault => (true, "guest-reset"),
            VmEndReason.GuestPanic => (true, "guest-panic"),
            VmEndReason.HostQuit => (false, "host-qmp-quit"),
            _ => (false, "host-error"),
        };
        Emit("SHUTDOWN", new Dictionary<string, object?> { ["guest"] = guest, ["reason"] = reason });
    }
}
