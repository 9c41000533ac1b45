// The Mailbox route (DESIGN.md §5): a vCPU reaches a device through its actor's mailbox. Writes are posted
// with Tell and the vCPU goes on at once. A read posts a RegisterRead carrying a reply slot and waits on
// that slot: a ManualResetEventSlim that spins briefly before it blocks, reused per vCPU thread, so a read
// costs one Tell, one spin/wake and no Ask machinery (no temporary actor, no Task, no timer). Because the
// vCPU thread posts its writes and reads to one mailbox in program order, and a mailbox is FIFO per
// sender, a read never overtakes an earlier write. A read that gets no answer within ReadTimeout (the
// device actor is gone or stuck) is answered all-ones, like an empty bus, and counted; the slot is then
// abandoned so a late answer cannot land in a later read. When the device actor is stopped for good (a
// supervision escalation, docs/actors.md), the VM actor calls DeviceGone: every read waiting is answered
// all-ones at once and later reads get all-ones without waiting, until the machine is rebuilt.
// waits until the actor has done it, so the guest's next instruction sees its effects at a fixed point.
using Akka.Actor;
using ActorVmm.Core.Bus;

namespace ActorVmm.Actors;

/// <summary>Where a device actor puts the bytes of one read; the reading vCPU thread waits on it.</summary>
public sealed class ReadReplySlot
{
    private readonly ManualResetEventSlim _done = new(false, spinCount: 2000);
    private byte[] _buffer = new byte[16];
    private int _length;

    /// <summary>The width of the read being answered.</summary>
    public int Length => _length;

    internal void Prepare(int length)
    {
        if (_buffer.Length < length) _buffer = new byte[length];
        _length = length;
        _done.Reset();
    }

    /// <summary>Called by the device actor: the read's data. Only the first <see cref="Length"/> bytes count.</summary>
    public void Complete(ReadOnlySpan<byte> data)
    {
        data[..Math.Min(data.Length, _length)].CopyTo(_buffer);
        _done.Set();
    }

    /// <summary>Answers the read as an empty bus does (all-ones).</summary>
    public void CompleteFloating()
    {
        _buffer.AsSpan(0, _length).Fill(0xff);
        _done.Set();
    }

    internal bool Wait(TimeSpan timeout) => _done.Wait(timeout);

    internal void CopyTo(Span<byte> destination) => _buffer.AsSpan(0, destination.Length).CopyTo(destination);
}

public sealed class MailboxEndpoint(string name, IActorRef device, TimeSpan? readTimeout = null, bool waitForWrites = false) : BusEndpoint(name, Route.Mailbox)
{
    /// <summary>Writes wait until the device actor has done them (deterministic mode: effects at a fixed instruction).</summary>
    public bool WaitForWrites { get; } = waitForWrites;

    [ThreadStatic]
    private static ReadReplySlot? t_slot;

    private long _timedOutReads;

    public IActorRef Device { get; } = device;

    /// <summary>
    /// How long a read waits for the device actor. Default 10 s: the timeout detects a device actor that is gone
    /// or stuck, not a slow one; at 1 s a loaded 2-core host now and then lost a guest's UART byte to all-ones.
    /// </summary>
    public TimeSpan ReadTimeout { get; } = readTimeout ?? TimeSpan.FromSeconds(10);

    /// <summary>Reads the device actor did not answer in time (answered all-ones).</summary>
    public long TimedOutReads => Interlocked.Read(ref _timedOutReads);

    /// <summary>Reads answered all-ones because the device actor was gone.</summary>
    public long GoneReads => Interlocked.Read(ref _goneReads);

    private readonly Lock _waitingLock = new();
    private readonly List<ReadReplySlot> _waiting = new(1);
    private volatile bool _gone;
    private long _goneReads;

    /// <summary>The device actor has stopped for good: answer the reads waiting on it, and all later ones, with all-ones.</summary>
    public void DeviceGone()
    {
        _gone = true;
        lock (_waitingLock)
        {
            foreach (var slot in _waiting) slot.CompleteFloating();
        }
    }

    public override void Read(ulong offset, Span<byte> data)
    {
        if (_gone)
        {
            Interlocked.Increment(ref _goneReads);
            data.Fill(0xff);
            return;
        }
        var slot = t_slot ??= new ReadReplySlot();
        slot.Prepare(data.Length);
        lock (_waitingLock) _waiting.Add(slot);
        Device.Tell(new DeviceActor.RegisterRead(offset, slot), ActorRefs.NoSender);
        bool answered = slot.Wait(ReadTimeout);
        lock (_waitingLock) _waiting.Remove(slot);
        if (answered)
        {
            slot.CopyTo(data);
            return;
        }
        t_slot = null;
        Interlocked.Increment(ref _timedOutReads);
        data.Fill(0xff);
    }

    public override void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (!WaitForWrites)
        {
            Device.Tell(new DeviceActor.RegisterWrite(offset, data.ToArray()), ActorRefs.NoSender);
            return;
        }
        var slot = t_slot ??= new ReadReplySlot();
        slot.Prepare(0);
        Device.Tell(new DeviceActor.RegisterWrite(offset, data.ToArray(), slot), ActorRefs.NoSender);
        if (slot.Wait(ReadTimeout)) return;
        t_slot = null;
        Interlocked.Increment(ref _timedOutReads);
    }
}
