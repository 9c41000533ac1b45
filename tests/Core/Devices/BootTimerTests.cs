// Boot timer tests: a hand-wound clock and a recording callback.
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

public sealed class BootTimerTests
{
    private readonly ManualClock _clock = new() { NowNanoseconds = 1_000 };
    private readonly List<(byte Value, long Elapsed)> _reports = [];
    private readonly BootTimer _timer;

    public BootTimerTests() => _timer = new BootTimer(_clock, (v, e) => _reports.Add((v, e)));

    [Fact]
    public void Writes_report_the_value_and_time_since_construction()
    {
        _clock.NowNanoseconds = 5_001_000;
        _timer.Write8(0, 7);
        _clock.NowNanoseconds = 125_001_000;
        _timer.Write8(0, BootTimer.BootCompleteMagic);
        _clock.NowNanoseconds = 130_001_000;
        _timer.Write8(0, BootTimer.BootCompleteMagic);
        Assert.Equal([((byte)7, 5_000_000L), (BootTimer.BootCompleteMagic, 125_000_000L), (BootTimer.BootCompleteMagic, 130_000_000L)], _reports);
        Assert.Equal(125_000_000L, _timer.BootCompleteElapsedNs); // the first completion is kept
        Assert.Equal(3, _timer.Writes);
    }

    [Fact]
    public void Restart_times_from_the_reset()
    {
        _timer.Write8(0, BootTimer.BootCompleteMagic);
        _clock.NowNanoseconds = 50_000;
        _timer.Restart();
        Assert.Null(_timer.BootCompleteElapsedNs);
        _clock.NowNanoseconds = 80_000;
        _timer.Write8(0, 1);
        Assert.Equal((1, 30_000L), _reports[^1]);
    }

    [Fact]
    public void Bad_accesses_are_counted_and_not_reported()
    {
        _timer.Write16(0, 0x7b7b);
        _timer.Write8(1, 0x7b);
        Assert.Equal(0xffu, _timer.Read8(1));
        Assert.Equal(0, _timer.Read8(0));
        Assert.Empty(_reports);
        Assert.Equal(3, _timer.BadAccesses);
    }

    [Fact]
    public void State_round_trips_and_is_validated()
    {
        _clock.NowNanoseconds = 9_000;
        _timer.Write8(0, BootTimer.BootCompleteMagic);
        var state = _timer.GetState();
        var copy = new BootTimer(_clock, (_, _) => { });
        copy.FromState(state);
        Assert.Equal(state, copy.GetState());
        Assert.Throws<ArgumentException>(() => copy.FromState(state with { Writes = -1 }));
        Assert.Throws<ArgumentException>(() => copy.FromState(new BootTimerState(0, 0, 5)));
    }

    [Fact]
    public void Random_guest_never_throws()
    {
        var rng = new Random(3);
        for (int i = 0; i < 20_000; i++)
        {
            _clock.Advance(rng.Next(100));
            _timer.RandomAccess(rng, 4);
        }
        Assert.Equal(_timer.Writes, _reports.Count);
        Assert.All(_reports, r => Assert.True(r.Elapsed >= 0));
    }
}
