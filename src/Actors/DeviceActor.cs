// Hosts one device model (DESIGN.md §6). Every touch of the model — register messages on the Mailbox
// route, host input, statistics — happens under the model's lock, the same lock the DirectEndpoint takes
// on the vCPU thread for the Direct route, so the model sees one access at a time whichever way it comes.
// Lock order: a device lock is a leaf; nothing is locked while holding it (the model's own outputs — IRQ
// line, byte sink, machine control — must not call back into another device).
// Timer deadlines (kernel-irqchip=split/off): the timer service's TimerExpired advances a model that has timers
// (ITimedDevice) to the current VM time, under the same lock.
// Host input (serial bytes from stdin) is pushed into the UART's bounded backlog as space allows; what
// does not fit waits here (up to MaxPendingInput bytes, then counted as dropped) and is retried as the
// guest drains the receiver.
// Supervision (docs/actors.md): on the Mailbox route the actor is the only one touching its model, so after
// each register message it keeps the model's state (DeviceStateKeeper) as the last good state. When a message
// throws, the VM actor's strategy restarts the actor: the model is put back to the last good state and the
// failed message is retried first, ahead of everything queued (so a waiting read is answered, not lost, and
// program order holds), after each restart up to MaxRetries times: under the VM actor's strategy a message
// that keeps failing exhausts the restart budget first and escalates (docs/actors.md); under a parent that
// restarts without limit it is then dropped (a read answered all-ones). An actor stopped for good answers the
// read it was retrying. On the Direct route the vCPU thread also touches
// the model, so the model is kept as it is. DeviceCell holds what must outlive an actor instance.
// Faults (Faults.cs) apply to the work messages: RegisterWrite, RegisterRead, TimerExpired, HostInput, PowerButton.
using Akka.Actor;
using Akka.Event;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;

namespace ActorVmm.Actors;

public sealed class DeviceActor : ReceiveActor, IWithTimers, IWithUnboundedStash
{
    public interface IDeviceProtocol;

    /// <summary>A posted register write (Mailbox route); <paramref name="Done"/>, when given, is completed once it is done.</summary>
    public sealed record RegisterWrite(ulong Offset, ReadOnlyMemory<byte> Data, ReadReplySlot? Done = null) : IDeviceProtocol;

    /// <summary>The model's timer deadline <paramref name="DeadlineNs"/> has passed on <paramref name="Clock"/> (from the timer service).</summary>
    public sealed record TimerExpired(long DeadlineNs, IClock Clock) : IDeviceProtocol;

    /// <summary>A register read; the answer goes into <paramref name="Reply"/> (Mailbox route).</summary>
    public sealed record RegisterRead(ulong Offset, ReadReplySlot Reply) : IDeviceProtocol;

    /// <summary>Bytes from the host side (serial input).</summary>
    public sealed record HostInput(ReadOnlyMemory<byte> Data) : IDeviceProtocol;

    /// <summary>The host pressed the ACPI power button (an AcpiPm model only). Reply: <see cref="PowerButtonPressed"/>.</summary>
    public sealed record PowerButton : IDeviceProtocol
    {
        public static readonly PowerButton Instance = new();
    }

    public sealed record PowerButtonPressed(string Name, bool Pressed);

    public sealed record GetStats : IDeviceProtocol
    {
        public static readonly GetStats Instance = new();
    }

    public sealed record Stats(string Name, long RegisterReads, long RegisterWrites, long InputBytes, long DroppedInput, int PendingInput)
    {
        /// <summary>Restarts of the actor under supervision.</summary>
        public int Restarts { get; init; }

        /// <summary>Failed messages retried after a restart, and retries that failed again.</summary>
        public long Retried { get; init; }

        public long RetryFailures { get; init; }
    }

    private sealed record RetryInput
    {
        public static readonly RetryInput Instance = new();
    }

    private sealed record HangOver(long Hang);

    /// <summary>What outlives one actor instance: the model, its lock, the last good state, the faults, the counters.</summary>
    public sealed class DeviceCell(IBusDevice model, Lock modelLock, Route route, FaultState? faults = null)
    {
        internal readonly IBusDevice Model = model;
        internal readonly Lock Lock = modelLock;
        internal readonly Route Route = route;
        internal readonly DeviceStateKeeper? Keeper = route == Route.Mailbox ? DeviceStateKeeper.For(model) : null;
        internal readonly FaultState Faults = faults ?? new(model.Name);
        internal readonly Queue<byte> PendingInput = new();
        internal object? LastGood;
        internal object? Retry;
        internal IActorRef? RetrySender;
        internal int RetryAttempts;
        internal long Reads, Writes, InputBytes, DroppedInput, Retried, RetryFailures, Hangs;
    }

    public const int MaxPendingInput = 64 * 1024;

    /// <summary>How often a failed message is retried after restarts before it is dropped.</summary>
    public const int MaxRetries = 3;
    private static readonly TimeSpan InputRetry = TimeSpan.FromMilliseconds(2);

    private readonly DeviceCell _cell;
    private readonly IBusDevice _model;
    private readonly Lock _lock;
    private readonly Queue<byte> _pendingInput;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private object? _current;

    public ITimerScheduler Timers { get; set; } = null!;

    public IStash Stash { get; set; } = null!;

    public DeviceActor(IBusDevice model, Lock modelLock, Route route = Route.Direct)
        : this(new DeviceCell(model, modelLock, route))
    {
    }

    /// <summary>For Props only (the cell outlives restarts).</summary>
    public DeviceActor(DeviceCell cell)
    {
        _cell = cell;
        _model = cell.Model;
        _lock = cell.Lock;
        _pendingInput = cell.PendingInput;
        if (_cell.Keeper is { } keeper && _cell.LastGood is null) lock (_lock) _cell.LastGood = keeper.Capture();
        BecomeServing();
    }

    /// <param name="faults">The fault bookkeeping, when the owner wants to read it (it outlives restarts).</param>
    public static Props Props(IBusDevice model, Lock modelLock, Route route = Route.Direct, FaultState? faults = null)
    {
        var cell = new DeviceCell(model, modelLock, route, faults);
        return Akka.Actor.Props.Create(() => new DeviceActor(cell));
    }

    private void BecomeServing()
    {
        Become(() =>
        {
            Receive<RegisterWrite>(m => Work(m, () => Write(m)));
            Receive<RegisterRead>(m => Work(m, () => Read(m)));
            Receive<TimerExpired>(m => Work(m, () => Timer(m)));
            Receive<HostInput>(m => Work(m, () => Input(m)));
            Receive<PowerButton>(m => Work(m, () => PressPowerButton()));
            Receive<RetryInput>(_ => DrainInput());
            Receive<HangOver>(_ => { });
            Control();
        });
    }

    private void BecomeHanging(long hang)
    {
        Become(() =>
        {
            Receive<HangOver>(m => m.Hang == hang, _ => EndHang());
            Receive<ClearFaults>(_ =>
            {
                _cell.Faults.Clear();
                Sender.Tell(_cell.Faults.Report());
                EndHang();
            });
            Receive<GetFaults>(_ => Sender.Tell(_cell.Faults.Report()));
            ReceiveAny(_ => Stash.Stash());
        });
    }

    private void EndHang()
    {
        Timers.Cancel(nameof(HangOver));
        _cell.Faults.HangEnded();
        BecomeServing();
        Stash.UnstashAll();
    }

    private void Control()
    {
        Receive<GetStats>(_ => Sender.Tell(new Stats(_model.Name, _cell.Reads, _cell.Writes, _cell.InputBytes, _cell.DroppedInput, _pendingInput.Count)
        {
            Restarts = _cell.Faults.Restarts,
            Retried = _cell.Retried,
            RetryFailures = _cell.RetryFailures,
        }));
        Receive<InjectFault>(m =>
        {
            _cell.Faults.Inject(m.Fault);
            _log.Warning("{0}: fault injected: {1}", _model.Name, m.Fault);
            Sender.Tell(_cell.Faults.Report());
            if (m.Fault is HangFault h)
            {
                long hang = ++_cell.Hangs;
                Timers.StartSingleTimer(nameof(HangOver), new HangOver(hang), h.Duration);
                BecomeHanging(hang);
            }
        });
        Receive<ClearFaults>(_ =>
        {
            _cell.Faults.Clear();
            Sender.Tell(_cell.Faults.Report());
        });
        Receive<GetFaults>(_ => Sender.Tell(_cell.Faults.Report()));
    }

    /// <summary>Runs one work message: faults first, then the model; on the Mailbox route the state after it is the last good state.</summary>
    private void Work(object message, Action handle)
    {
        _current = message;
        if (_cell.Faults.Any && _cell.Faults.BeforeMessage())
        {
            if (message is RegisterRead r) AnswerFloating(r);
            if (message is RegisterWrite { Done: { } done }) done.Complete([]);
        }
        else
        {
            handle();
            if (_cell.Keeper is { } keeper && message is RegisterWrite or RegisterRead or PowerButton)
            {
                lock (_lock) _cell.LastGood = keeper.Capture();
            }
        }
        if (ReferenceEquals(message, _cell.Retry)) _cell.Retry = null;
        _current = null;
    }

    private static void AnswerFloating(RegisterRead r)
    {
        Span<byte> ones = stackalloc byte[Math.Max(1, r.Reply.Length)];
        ones.Fill(0xff);
        r.Reply.Complete(ones);
    }

    private void Write(RegisterWrite m)
    {
        _cell.Writes++;
        lock (_lock) _model.Write(m.Offset, m.Data.Span);
        m.Done?.Complete([]);
    }

    private void Timer(TimerExpired m)
    {
        if (_model is not ActorVmm.Core.Machine.ITimedDevice timed) return;
        lock (_lock) timed.Advance(Math.Max(m.DeadlineNs, m.Clock.NowNanoseconds));
    }

    private void Read(RegisterRead m)
    {
        _cell.Reads++;
        Span<byte> data = stackalloc byte[m.Reply.Length];
        lock (_lock) _model.Read(m.Offset, data);
        m.Reply.Complete(data);
        DrainInput();
    }

    private void Input(HostInput m)
    {
        var span = m.Data.Span;
        int room = MaxPendingInput - _pendingInput.Count;
        int take = Math.Min(room, span.Length);
        for (int i = 0; i < take; i++) _pendingInput.Enqueue(span[i]);
        if (take < span.Length)
        {
            _cell.DroppedInput += span.Length - take;
            _log.Warning("{0}: host input backlog full, {1} bytes dropped", _model.Name, span.Length - take);
        }
        DrainInput();
    }

    private void PressPowerButton()
    {
        bool pressed = false;
        if (_model is AcpiPm pm)
        {
            lock (_lock) pm.PressPowerButton();
            pressed = true;
        }
        Sender.Tell(new PowerButtonPressed(_model.Name, pressed));
    }

    private void DrainInput()
    {
        if (_pendingInput.Count == 0) return;
        if (_model is not Uart16550 uart)
        {
            _cell.DroppedInput += _pendingInput.Count;
            _pendingInput.Clear();
            return;
        }
        lock (_lock)
        {
            // Only while the UART's backlog has room, so no byte is lost to a (simulated) overrun.
            while (_pendingInput.Count > 0 && uart.PendingInput < uart.InputBacklogCapacity)
            {
                uart.TryEnqueueInput(_pendingInput.Dequeue());
                _cell.InputBytes++;
            }
        }
        if (_pendingInput.Count > 0 && !Timers.IsTimerActive(nameof(RetryInput)))
            Timers.StartSingleTimer(nameof(RetryInput), RetryInput.Instance, InputRetry);
    }

    protected override void PreRestart(Exception reason, object message)
    {
        // The message that failed is retried first thing after the restart, up to MaxRetries times: under the VM
        // actor's strategy (3 restarts in 10 s) a message that keeps failing escalates before that (the VM restarts);
        // under a parent that restarts without limit it is dropped then (a read answered all-ones) and counted.
        var failed = _current ?? message;
        if (ReferenceEquals(failed, _cell.Retry))
        {
            _cell.RetryFailures++;
            if (++_cell.RetryAttempts >= MaxRetries)
            {
                if (failed is RegisterRead r) AnswerFloating(r);
                _log.Error("{0}: {1} failed {2} times; dropped", _model.Name, failed.GetType().Name, _cell.RetryAttempts + 1);
                _cell.Retry = null;
            }
        }
        else if (failed is RegisterWrite or RegisterRead or HostInput or PowerButton)
        {
            _cell.Retry = failed;
            _cell.RetrySender = Sender;
            _cell.RetryAttempts = 0;
        }
        if (_cell.Keeper is { } keeper && _cell.LastGood is { } good && reason is not InjectedFaultException)
        {
            // The failure came from inside the model, which may be half-way through the access: put it back.
            try
            {
                lock (_lock) keeper.Restore(good);
            }
            catch (ArgumentException e)
            {
                _log.Error("{0}: its last good state does not load ({1}); the model is kept as it is", _model.Name, e.Message);
            }
        }
        // Not base.PreRestart: it would stop children (none) and run PostStop, which answers the retried read.
        Stash.UnstashAll();
    }

    protected override void PostRestart(Exception reason)
    {
        _cell.Faults.Restarts++;
        _log.Warning("{0}: device actor restarted after {1}: {2} (restart {3}){4}", _model.Name, reason.GetType().Name, reason.Message,
            _cell.Faults.Restarts, _cell.Keeper is null && _cell.Route == Route.Mailbox ? "; this model has no snapshot, kept as it is" : "");
        if (_cell.Retry is { } retry)
        {
            _cell.Retried++;
            Stash.Prepend([new Envelope(retry, _cell.RetrySender)]);
            Stash.UnstashAll();
        }
    }

    protected override void PostStop()
    {
        // Stopped for good (escalation or teardown): a read being retried still gets its answer.
        if (_cell.Retry is RegisterRead r) AnswerFloating(r);
        if (_current is RegisterRead current && !ReferenceEquals(current, _cell.Retry)) AnswerFloating(current);
        if (_cell.Retry is RegisterWrite { Done: { } retryDone }) retryDone.Complete([]);
        if (_current is RegisterWrite { Done: { } done }) done.Complete([]);
        _cell.Retry = null;
        base.PostStop();
    }
}
