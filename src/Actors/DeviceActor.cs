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
using Akka.Actor;
using Akka.Event;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;

namespace ActorVmm.Actors;

public sealed class DeviceActor : ReceiveActor, IWithTimers
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

    public sealed record GetStats : IDeviceProtocol
    {
        public static readonly GetStats Instance = new();
    }

    public sealed record Stats(string Name, long RegisterReads, long RegisterWrites, long InputBytes, long DroppedInput, int PendingInput);

    private sealed record RetryInput
    {
        public static readonly RetryInput Instance = new();
    }

    public const int MaxPendingInput = 64 * 1024;
    private static readonly TimeSpan InputRetry = TimeSpan.FromMilliseconds(2);

    private readonly IBusDevice _model;
    private readonly Lock _lock;
    private readonly Queue<byte> _pendingInput = new();
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private long _reads, _writes, _inputBytes, _droppedInput;

    public ITimerScheduler Timers { get; set; } = null!;

    public DeviceActor(IBusDevice model, Lock modelLock)
    {
        _model = model;
        _lock = modelLock;

        Receive<RegisterWrite>(m =>
        {
            _writes++;
            try
            {
                lock (_lock) _model.Write(m.Offset, m.Data.Span);
            }
            finally
            {
                m.Done?.Complete([]);
            }
        });
        Receive<TimerExpired>(m =>
        {
            if (_model is not ActorVmm.Core.Machine.ITimedDevice timed) return;
            lock (_lock) timed.Advance(Math.Max(m.DeadlineNs, m.Clock.NowNanoseconds));
        });
        Receive<RegisterRead>(m =>
        {
            _reads++;
            Span<byte> data = stackalloc byte[m.Reply.Length];
            try
            {
                lock (_lock) _model.Read(m.Offset, data);
            }
            catch
            {
                data.Fill(0xff);
                m.Reply.Complete(data);
                throw;
            }
            m.Reply.Complete(data);
            DrainInput();
        });
        Receive<HostInput>(m =>
        {
            var span = m.Data.Span;
            int room = MaxPendingInput - _pendingInput.Count;
            int take = Math.Min(room, span.Length);
            for (int i = 0; i < take; i++) _pendingInput.Enqueue(span[i]);
            if (take < span.Length)
            {
                _droppedInput += span.Length - take;
                _log.Warning("{0}: host input backlog full, {1} bytes dropped", _model.Name, span.Length - take);
            }
            DrainInput();
        });
        Receive<RetryInput>(_ => DrainInput());
        Receive<GetStats>(_ => Sender.Tell(new Stats(_model.Name, _reads, _writes, _inputBytes, _droppedInput, _pendingInput.Count)));
    }

    public static Props Props(IBusDevice model, Lock modelLock) => Akka.Actor.Props.Create(() => new DeviceActor(model, modelLock));

    private void DrainInput()
    {
        if (_pendingInput.Count == 0) return;
        if (_model is not Uart16550 uart)
        {
            _droppedInput += _pendingInput.Count;
            _pendingInput.Clear();
            return;
        }
        lock (_lock)
        {
            // Only while the UART's backlog has room, so no byte is lost to a (simulated) overrun.
            while (_pendingInput.Count > 0 && uart.PendingInput < uart.InputBacklogCapacity)
            {
                uart.TryEnqueueInput(_pendingInput.Dequeue());
                _inputBytes++;
            }
        }
        if (_pendingInput.Count > 0 && !Timers.IsTimerActive(nameof(RetryInput)))
            Timers.StartSingleTimer(nameof(RetryInput), RetryInput.Instance, InputRetry);
    }
}
