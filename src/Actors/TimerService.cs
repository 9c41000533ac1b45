// The timer service of one machine (DESIGN.md §4, §6): delivers the deadlines of device models hosted by device
// actors (kernel-irqchip=split and off: PIT, RTC, ACPI PM, HPET, and in off the local APICs) on host time, with
// sub-millisecond precision. Akka's scheduler ticks every 10 ms, too coarse for a PIT or APIC timer; this is one
// dedicated thread that sleeps until the earliest deadline and delivers it by the device's route: on the Mailbox
// route it tells the device's actor TimerExpired, which advances the model under its lock; on the Direct route it
// kicks the vCPUs, which advance the model at their next instruction-batch boundary, as the kernel-irqchip=on kernel
// does its own timers (so a running guest never sees a Direct device's timer change state between two of its
// instructions: the apic guest's handler reads RTC register C and then EOIs, and expects no new interrupt between).
// The model then re-arms its slot.
// Waiting: an OS wait (SemaphoreSlim, millisecond resolution) until about SpinThresholdNs before the deadline, then
// a spin on the clock for the rest, so a deadline is delivered within microseconds of its time when the thread has a
// CPU, at the cost of at most SpinThresholdNs of spinning per deadline. On a host with more runnable threads than
// CPUs the OS may not run this thread for milliseconds: a running vCPU runs the due deadlines of Direct-route
// devices at its batch boundaries without being kicked (IUserspaceIrqchip.RunDueTimers); the kick matters for a halted one. A slot whose deadline moves earlier wakes
// the thread (TimerSlot.Changed). Lateness (delivery time minus deadline) is recorded for measurement
// (docs/actors.md).
// In deterministic mode there is no timer thread: the vCPU runs due deadlines itself in lock-step with the
// instruction clock (IUserspaceIrqchip.RunDueTimers).
using System.Diagnostics;
using Akka.Actor;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Machine;

namespace ActorVmm.Actors;

public sealed class TimerService : IDisposable
{
    /// <summary>How close to a deadline the thread stops sleeping and spins (the OS wait is millisecond-granular).</summary>
    public const long SpinThresholdNs = 1_200_000;

    /// <summary>How long a delivered deadline may stay armed, unacted on, before it is delivered again.</summary>
    public const long RedeliverNs = 20_000_000;

    private readonly IClock _clock;
    private readonly (TimerSlot Slot, Action<long, IClock> Deliver)[] _entries;
    private readonly SemaphoreSlim _signal = new(0, int.MaxValue);
    private readonly Thread _thread;
    private readonly long[] _fired;
    private volatile bool _stopping;
    private readonly Lock _statsLock = new();
    private readonly List<long> _lateness = [];

    /// <param name="clock">The VM clock the deadlines are in.</param>
    /// <param name="entries">Each device's timer slot and what to do when it expires (given the deadline and the clock).</param>
    public TimerService(IClock clock, IReadOnlyList<(TimerSlot Slot, Action<long, IClock> Deliver)> entries, string name = "timers")
    {
        _clock = clock;
        _entries = [.. entries];
        _fired = new long[_entries.Length];
        Array.Fill(_fired, long.MinValue);
        foreach (var (slot, _) in _entries) slot.Changed = Wake;
        _thread = new Thread(Loop) { IsBackground = true, Name = name, Priority = ThreadPriority.AboveNormal };
        _thread.Start();
    }

    /// <summary>Delivery to a device actor (Mailbox route): TimerExpired.</summary>
    public static Action<long, IClock> ToActor(IActorRef actor)
        => (deadline, clock) => actor.Tell(new DeviceActor.TimerExpired(deadline, clock), ActorRefs.NoSender);

    /// <summary>Deadlines delivered so far.</summary>
    public long Delivered { get; private set; }

    /// <summary>Lateness of the deliveries so far (ns after the deadline, by the VM clock), at most the last 100,000.</summary>
    public long[] Lateness()
    {
        lock (_statsLock) return [.. _lateness];
    }

    /// <summary>Deliveries and their lateness in µs (median, 99th percentile, maximum), for the log.</summary>
    public string Summary()
    {
        var l = Lateness();
        if (l.Length == 0) return "no deadlines delivered";
        Array.Sort(l);
        return FormattableString.Invariant(
            $"{Delivered} deadlines delivered, lateness median {l[l.Length / 2] / 1e3:F1} µs, p99 {l[(int)(l.Length * 0.99)] / 1e3:F1} µs, max {l[^1] / 1e3:F1} µs");
    }

    private void Wake()
    {
        if (_stopping) return;
        try
        {
            _signal.Release();
        }
        catch (ObjectDisposedException)
        {
            // the service stopped between the check and the release
        }
    }

    private void Loop()
    {
        while (!_stopping)
        {
            long next = long.MaxValue;
            int due = -1;
            for (int i = 0; i < _entries.Length; i++)
            {
                long d = _entries[i].Slot.DeadlineNs;
                // A deadline already delivered and not yet re-armed by the actor is not delivered twice (unless the
                // actor has had RedeliverNs to act on it: then it is sent again, in case the message was lost).
                if (d == _fired[i] && _clock.NowNanoseconds - d < RedeliverNs) continue;
                if (d < next)
                {
                    next = d;
                    due = i;
                }
            }
            long now = _clock.NowNanoseconds;
            if (due < 0 || next - now > SpinThresholdNs)
            {
                long waitMs = due < 0 ? 50 : Math.Clamp((next - now - SpinThresholdNs) / 1_000_000, 1, 50);
                try
                {
                    _signal.Wait(TimeSpan.FromMilliseconds(waitMs));
                }
                catch (ObjectDisposedException)
                {
                    return;
                }
                continue;
            }
            if (now < next)
            {
                // The last stretch: spin on the clock (not yielding: on a busy host a yield gives the CPU away for a
                // whole time slice), noticing a new earlier deadline.
                if (_signal.CurrentCount > 0) _signal.Wait(0);
                Thread.SpinWait(64);
                continue;
            }
            _fired[due] = next;
            Delivered++;
            lock (_statsLock)
            {
                if (_lateness.Count < 100_000) _lateness.Add(now - next);
            }
            _entries[due].Deliver(next, _clock);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        foreach (var (slot, _) in _entries) slot.Changed = null;
        _signal.Release();
        _thread.Join(TimeSpan.FromSeconds(2));
        _signal.Dispose();
    }
}
