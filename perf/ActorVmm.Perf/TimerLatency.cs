// `-- timers`: how late deadlines are delivered by the machine's TimerService and by Akka's scheduler, measured in
// the same run on the same host (report the ratio, and whether the host was loaded). A chain of deadlines, each
// 0.5-4 ms after the previous delivery (fixed seed), is delivered to a callback (TimerService, as on the Direct
// route) and to an actor (Akka's timer scheduler (IWithTimers)); lateness = delivery time - deadline on one monotonic clock.
using Akka.Actor;
using ActorVmm.Actors;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Machine;

namespace ActorVmm.Perf;

public static class TimerLatency
{
    private const int Deadlines = 400;

    public static void Run()
    {
        var clock = new HostClock();
        Print("TimerService", MeasureTimerService(clock));
        Print("Akka scheduler", MeasureAkka(clock));
    }

    private static void Print(string what, long[] lateness)
    {
        Array.Sort(lateness);
        Console.WriteLine(FormattableString.Invariant(
            $"{what,-15} {lateness.Length} deadlines: lateness median {lateness[lateness.Length / 2] / 1e3,8:F1} µs, p90 {lateness[(int)(lateness.Length * 0.9)] / 1e3,8:F1} µs, p99 {lateness[(int)(lateness.Length * 0.99)] / 1e3,8:F1} µs, max {lateness[^1] / 1e3,8:F1} µs"));
    }

    private static long[] MeasureTimerService(HostClock clock)
    {
        var random = new Random(1);
        var slot = new TimerSlot();
        var lateness = new List<long>();
        var done = new ManualResetEventSlim();
        using var service = new TimerService(clock, [(slot, (deadline, c) =>
        {
            long now = c.NowNanoseconds;
            lateness.Add(now - deadline);
            if (lateness.Count >= Deadlines) { slot.Set(null); done.Set(); return; }
            slot.Set(now + random.Next(500_000, 4_000_000));
        })]);
        slot.Set(clock.NowNanoseconds + 1_000_000);
        done.Wait(TimeSpan.FromMinutes(2));
        return [.. lateness];
    }

    private sealed class Receiver : ReceiveActor, IWithTimers
    {
        private readonly HostClock clock;
        private readonly List<long> lateness;
        private readonly ManualResetEventSlim done;

        public Receiver(HostClock clock, List<long> lateness, ManualResetEventSlim done)
        {
            this.clock = clock;
            this.lateness = lateness;
            this.done = done;
            Receive<long>(OnDeadline);
        }

        public ITimerScheduler Timers { get; set; } = null!;

        private readonly Random _random = new(1);

        protected override void PreStart() => Schedule(clock.NowNanoseconds, 1_000_000);

        private void OnDeadline(long deadline)
        {
            long now = clock.NowNanoseconds;
            lateness.Add(now - deadline);
            if (lateness.Count >= Deadlines)
            {
                done.Set();
                return;
            }
            Schedule(now, _random.Next(500_000, 4_000_000));
        }

        private void Schedule(long now, long delayNs)
            => Timers.StartSingleTimer("next", now + delayNs, TimeSpan.FromTicks(delayNs / 100));
    }

    private static long[] MeasureAkka(HostClock clock)
    {
        using var system = ActorSystem.Create("timers");
        var lateness = new List<long>();
        var done = new ManualResetEventSlim();
        system.ActorOf(Props.Create(() => new Receiver(clock, lateness, done)));
        done.Wait(TimeSpan.FromMinutes(2));
        system.Terminate().Wait(TimeSpan.FromSeconds(5));
        return [.. lateness];
    }
}
