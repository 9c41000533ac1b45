// Fault injection, a product feature (DESIGN.md §6): any device actor or vCPU actor can be told to throw,
// hang, slow down or drop messages, by an InjectFault message (from TestKit, from the VM actor on behalf of
// the control socket) and cleared with ClearFaults. The faults apply to the actor's work messages (register
// accesses, host input, run slices), never to the control messages that inject, clear or report.
//   Throw(EveryMessage: false)  the next work message throws InjectedFaultException before it touches the
//                               model; the supervisor restarts the actor and the message is retried once
//   Throw(EveryMessage: true)   every work message throws: the restarts exhaust the supervision budget and
//                               the failure escalates (docs/actors.md, "Supervision")
//   Hang(Duration)              the actor processes nothing for Duration; what arrives waits and runs after
//   Slow(PerMessage)            each work message takes PerMessage longer (the actor's thread is held)
//   Drop(Count, Fraction, Seed, Skip)
//                               after the next Skip work messages (0: none) have passed untouched, the next
//                               Count work messages (or each with probability Fraction, from a seeded
//                               generator so runs repeat) are lost; a lost register read is answered all-ones
//                               at once, as the bus floats and as the read timeout would answer it. Skip picks
//                               one message of a known guest program (the fault matrix drops the 5th PIT
//                               message, the first latched-count read, with Skip 4)
// A fault belongs to one actor of one machine generation: a VM restart builds actors without faults.
// Faults are values; FaultState is the per-actor bookkeeping, kept outside the actor instance so it
// survives a supervised restart.
namespace ActorVmm.Actors;

/// <summary>A fault an actor can be told to simulate.</summary>
public abstract record Fault
{
    /// <summary>How the fault is named on the control socket ("throw", "hang", "slow", "drop").</summary>
    public abstract string Kind { get; }
}

/// <summary>Throw on the next work message, or on every one.</summary>
public sealed record ThrowFault(bool EveryMessage = false) : Fault
{
    public override string Kind => "throw";

    public override string ToString() => EveryMessage ? "throw on every message" : "throw once";
}

/// <summary>Process nothing for <paramref name="Duration"/>.</summary>
public sealed record HangFault(TimeSpan Duration) : Fault
{
    public override string Kind => "hang";

    public override string ToString() => $"hang for {Duration.TotalMilliseconds:0.###} ms";
}

/// <summary>Each work message takes <paramref name="PerMessage"/> longer.</summary>
public sealed record SlowFault(TimeSpan PerMessage) : Fault
{
    public override string Kind => "slow";

    public override string ToString() => $"slow each message by {PerMessage.TotalMilliseconds:0.###} ms";
}

/// <summary>
/// Lose the next <paramref name="Count"/> work messages, or each with probability <paramref name="Fraction"/> (Count 0),
/// after letting the next <paramref name="Skip"/> work messages pass.
/// </summary>
public sealed record DropFault(int Count = 0, double Fraction = 0, int Seed = 1, int Skip = 0) : Fault
{
    /// <summary>Work messages that pass before the drop applies (at least 0).</summary>
    public int Skip { get; init; } = Skip >= 0 ? Skip : throw new ArgumentOutOfRangeException(nameof(Skip), Skip, "drop: skip must be at least 0");

    public override string Kind => "drop";

    public override string ToString()
    {
        string what = Count > 0 ? $"drop the next {Count} messages" : $"drop {Fraction:P0} of messages";
        return Skip > 0 ? $"{what} after {Skip} passed" : what;
    }
}

/// <summary>Raised by an actor told to throw; the supervisor treats it like any other failure.</summary>
public sealed class InjectedFaultException(string actor) : Exception($"{actor}: injected fault");

/// <summary>Protocol shared by every actor that takes faults (device and vCPU actors).</summary>
public interface IFaultProtocol;

/// <summary>Simulate <paramref name="Fault"/> from now on (replaces a fault of the same kind). Reply: <see cref="FaultReport"/>.</summary>
public sealed record InjectFault(Fault Fault) : IFaultProtocol;

/// <summary>Clear every injected fault. Reply: <see cref="FaultReport"/>.</summary>
public sealed record ClearFaults : IFaultProtocol
{
    public static readonly ClearFaults Instance = new();
}

/// <summary>Ask for the fault bookkeeping. Reply: <see cref="FaultReport"/>.</summary>
public sealed record GetFaults : IFaultProtocol
{
    public static readonly GetFaults Instance = new();
}

/// <summary>An actor's faults now and what they did: thrown, hangs, slowed and dropped messages, restarts.</summary>
public sealed record FaultReport(string Actor, IReadOnlyList<Fault> Active, long Thrown, long Hangs, long Slowed, long Dropped, int Restarts);

/// <summary>The faults of one actor and their counters; outlives restarts of the actor instance. Touched only by that actor.</summary>
public sealed class FaultState(string actor)
{
    private ThrowFault? _throw;
    private HangFault? _hang;
    private SlowFault? _slow;
    private DropFault? _drop;
    private int _dropLeft;
    private int _dropSkipLeft;
    private Random? _dropRandom;

    public string Actor { get; } = actor;
    public long Thrown { get; private set; }
    public long Hangs { get; private set; }
    public long Slowed { get; private set; }
    public long Dropped { get; private set; }
    public int Restarts { get; set; }

    public bool Any => _throw is not null || _hang is not null || _slow is not null || _drop is not null;

    public void Inject(Fault fault)
    {
        switch (fault)
        {
            case ThrowFault t: _throw = t; break;
            case HangFault h:
                _hang = h;
                Hangs++;
                break;
            case SlowFault s: _slow = s; break;
            case DropFault d:
                _drop = d;
                _dropLeft = d.Count;
                _dropSkipLeft = d.Skip;
                _dropRandom = d.Count > 0 ? null : new Random(d.Seed);
                break;
            default: throw new ArgumentException($"unknown fault {fault}", nameof(fault));
        }
    }

    public void Clear()
    {
        _throw = null;
        _hang = null;
        _slow = null;
        _drop = null;
    }

    public FaultReport Report() => new(Actor, [.. new Fault?[] { _throw, _hang, _slow, _drop }.OfType<Fault>()], Thrown, Hangs, Slowed, Dropped, Restarts);

    /// <summary>The injected hang is over (its time ran out, or the faults were cleared).</summary>
    public void HangEnded() => _hang = null;

    /// <summary>The faults of a vCPU's slice: throw, then slow (drop does not apply to the slice chain).</summary>
    /// <exception cref="InjectedFaultException">A throw fault fired.</exception>
    public void BeforeSlice()
    {
        ThrowIfInjected();
        if (_slow is { } s)
        {
            Slowed++;
            Thread.Sleep(s.PerMessage);
        }
    }

    /// <summary>The drop fault alone, for a vCPU's control messages. True: the message is dropped.</summary>
    public bool BeforeControlMessage() => TakeDrop();

    private void ThrowIfInjected()
    {
        if (_throw is { } t)
        {
            if (!t.EveryMessage) _throw = null;
            Thrown++;
            throw new InjectedFaultException(Actor);
        }
    }

    private bool TakeDrop()
    {
        if (_drop is not { } d) return false;
        if (_dropSkipLeft > 0)
        {
            _dropSkipLeft--;
            return false;
        }
        bool drop;
        if (d.Count > 0)
        {
            drop = _dropLeft > 0;
            if (drop && --_dropLeft == 0) _drop = null;
        }
        else
        {
            drop = _dropRandom!.NextDouble() < d.Fraction;
        }
        if (drop) Dropped++;
        return drop;
    }

    /// <summary>Runs the per-message faults in order throw, slow, drop. True: the message is dropped.</summary>
    /// <exception cref="InjectedFaultException">A throw fault fired.</exception>
    public bool BeforeMessage()
    {
        ThrowIfInjected();
        if (_slow is { } s)
        {
            Slowed++;
            Thread.Sleep(s.PerMessage);
        }
        return TakeDrop();
    }
}
