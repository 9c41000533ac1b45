// HPET tests: registers driven as the IA-PC HPET specification 1.0a describes, with a hand-wound clock.
// At the default 10 ns period one tick is 10 ns.
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

public sealed class HpetTests
{
    private readonly ManualClock _clock = new();
    private readonly LineRecorder _ioapic = new();
    private readonly LineRecorder _pic = new();
    private readonly Hpet _hpet;

    public HpetTests() => _hpet = new Hpet(_clock, _ioapic.Set, _pic.Set);

    private static ulong Tn(int n, ulong reg) => Hpet.TimerBlock + Hpet.TimerStride * (ulong)n + reg;

    private void Enable(ulong extra = 0) => _hpet.Write64(Hpet.GEN_CONF, Hpet.ENABLE_CNF | extra);

    private void RunTo(long ns)
    {
        _clock.NowNanoseconds = ns;
        _hpet.Advance(ns);
    }

    [Fact]
    public void Capabilities_report_vendor_revision_timers_and_period()
    {
        Assert.Equal(0x0098_9680_8086_a201UL, _hpet.Read64(Hpet.GCAP_ID));
        Assert.Equal(0x8086_a201u, _hpet.Read32(Hpet.GCAP_ID));
        Assert.Equal(10_000_000u, _hpet.Read32(Hpet.GCAP_ID + 4));
        _hpet.Write64(Hpet.GCAP_ID, 0);
        Assert.Equal(0x0098_9680_8086_a201UL, _hpet.Read64(Hpet.GCAP_ID));
        Assert.Equal(1, _hpet.BadAccesses);
    }

    [Fact]
    public void Timer_capabilities_offer_64_bit_everywhere_and_periodic_on_timer_0()
    {
        Assert.Equal(0x00ff_0104_0000_0030UL, _hpet.Read64(Tn(0, 0)));
        Assert.Equal(0x00ff_0104_0000_0020UL, _hpet.Read64(Tn(1, 0)));
        Assert.Equal(0x00ff_0104_0000_0020UL, _hpet.Read64(Tn(2, 0)));
        _hpet.Write64(Tn(1, 0), Hpet.Tn_TYPE_CNF | Hpet.Tn_FSB_EN_CNF);
        Assert.Equal(0UL, _hpet.Read64(Tn(1, 0)) & (Hpet.Tn_TYPE_CNF | Hpet.Tn_FSB_EN_CNF));
        Assert.Equal(ulong.MaxValue, _hpet.Read64(Tn(0, 8))); // comparators reset to all ones
    }

    [Fact]
    public void A_qemu_pc_hpet_offers_periodic_mode_on_every_timer_and_only_route_2()
    {
        var hpet = new Hpet(_clock, _ioapic.Set, _pic.Set, routeCapability: 1u << 2, periodicTimers: Hpet.TimerCount);
        for (int n = 0; n < Hpet.TimerCount; n++) Assert.Equal(0x0000_0004_0000_0030UL, hpet.Read64(Tn(n, 0)));
        hpet.Write64(Tn(2, 0), Hpet.Tn_TYPE_CNF | (20UL << 9));
        Assert.Equal(0x0000_0004_0000_0038UL, hpet.Read64(Tn(2, 0))); // periodic taken, route 20 refused
        Assert.Throws<ArgumentOutOfRangeException>(() => new Hpet(_clock, _ioapic.Set, periodicTimers: 4));
    }

    [Fact]
    public void Main_counter_runs_only_while_enabled_and_is_writable_while_halted()
    {
        _clock.NowNanoseconds = 5000;
        Assert.Equal(0UL, _hpet.Read64(Hpet.MAIN_CNT));
        Enable();
        _clock.NowNanoseconds = 6000;
        Assert.Equal(100UL, _hpet.Read64(Hpet.MAIN_CNT));
        _hpet.Write64(Hpet.MAIN_CNT, 5); // ignored while running
        Assert.Equal(1, _hpet.BadAccesses);
        _hpet.Write64(Hpet.GEN_CONF, 0);
        _clock.NowNanoseconds = 9000;
        Assert.Equal(100UL, _hpet.Read64(Hpet.MAIN_CNT));

        _hpet.Write64(Hpet.MAIN_CNT, 0x1_2345_6789);
        _hpet.Write32(Hpet.MAIN_CNT, 0x10);
        Assert.Equal(0x1_0000_0010UL, _hpet.Read64(Hpet.MAIN_CNT));
        Assert.Equal(0x10u, _hpet.Read32(Hpet.MAIN_CNT));
        Assert.Equal(1u, _hpet.Read32(Hpet.MAIN_CNT + 4));
    }

    [Fact]
    public void One_shot_edge_timer_pulses_its_route_once()
    {
        _hpet.Write64(Tn(1, 0), Hpet.Tn_INT_ENB_CNF | (16UL << 9));
        _hpet.Write64(Tn(1, 8), 500);
        Assert.Null(_hpet.NextDeadlineNs); // main counter halted
        Enable();
        Assert.Equal(5000L, _hpet.NextDeadlineNs);
        RunTo(4999);
        Assert.Equal(0, _ioapic.Rises(16));
        RunTo(5000);
        Assert.Equal(1, _ioapic.Rises(16));
        Assert.False(_ioapic.IsHigh(16));
        Assert.Null(_hpet.NextDeadlineNs);
        RunTo(1_000_000_000);
        Assert.Equal(1, _ioapic.Rises(16));
        Assert.Equal(0UL, _hpet.Read64(Hpet.GINTR_STA)); // edge timers set no status
    }

    [Fact]
    public void Periodic_timer_uses_val_set_for_the_comparator_and_collapses_missed_periods()
    {
        _hpet.Write64(Tn(0, 0), Hpet.Tn_INT_ENB_CNF | Hpet.Tn_TYPE_CNF | Hpet.Tn_VAL_SET_CNF | (2UL << 9));
        _hpet.Write64(Tn(0, 8), 100); // comparator and period
        Assert.Equal(0UL, _hpet.Read64(Tn(0, 0)) & Hpet.Tn_VAL_SET_CNF);
        _hpet.Write64(Tn(0, 8), 100); // period only
        Enable();
        RunTo(1000);
        RunTo(2000);
        RunTo(3000);
        Assert.Equal(3, _ioapic.Rises(2));
        Assert.Equal(400UL, _hpet.Read64(Tn(0, 8)));
        RunTo(10_500); // 1050 ticks: several periods missed, one interrupt
        Assert.Equal(4, _ioapic.Rises(2));
        Assert.Equal(1100UL, _hpet.Read64(Tn(0, 8)));
        Assert.Equal(11_000L, _hpet.NextDeadlineNs);
    }

    [Fact]
    public void Linux_legacy_periodic_setup_drives_pic_irq0_and_ioapic_input_2()
    {
        // As Linux's hpet_set_periodic: ENABLE | PERIODIC | SETVAL | 32BIT, then the start and the period.
        _hpet.Write32(Tn(0, 0), (uint)(Hpet.Tn_INT_ENB_CNF | Hpet.Tn_TYPE_CNF | Hpet.Tn_VAL_SET_CNF | Hpet.Tn_32MODE_CNF));
        _hpet.Write32(Tn(0, 8), 1000);
        _hpet.Write32(Tn(0, 8), 1000);
        _hpet.Write32(Hpet.GEN_CONF, (uint)(Hpet.ENABLE_CNF | Hpet.LEG_RT_CNF));
        Assert.True(_hpet.LegacyReplacement);
        for (int i = 1; i <= 5; i++) RunTo(i * 10_000L);
        Assert.Equal(5, _ioapic.Rises(2));
        Assert.Equal(5, _pic.Rises(0));
        Assert.Equal(0, _ioapic.Rises(0));
    }

    [Fact]
    public void Legacy_replacement_sends_timer_1_to_irq8()
    {
        _hpet.Write64(Tn(1, 0), Hpet.Tn_INT_ENB_CNF | (20UL << 9));
        _hpet.Write64(Tn(1, 8), 10);
        Enable(Hpet.LEG_RT_CNF);
        RunTo(100);
        Assert.Equal(1, _ioapic.Rises(8));
        Assert.Equal(1, _pic.Rises(8));
        Assert.Equal(0, _ioapic.Rises(20));
    }

    [Fact]
    public void Level_timer_holds_its_line_until_the_status_is_cleared()
    {
        _hpet.Write64(Tn(2, 0), Hpet.Tn_INT_ENB_CNF | Hpet.Tn_INT_TYPE_CNF | (20UL << 9));
        _hpet.Write64(Tn(2, 8), 50);
        Enable();
        RunTo(500);
        Assert.Equal(4UL, _hpet.Read64(Hpet.GINTR_STA));
        Assert.True(_ioapic.IsHigh(20));
        _hpet.Write64(Hpet.GINTR_STA, 1); // other bit: no effect
        Assert.True(_ioapic.IsHigh(20));
        _hpet.Write64(Hpet.GINTR_STA, 4);
        Assert.False(_ioapic.IsHigh(20));
        Assert.Equal(0UL, _hpet.Read64(Hpet.GINTR_STA));
    }

    [Fact]
    public void Disabling_the_hpet_drops_level_lines()
    {
        _hpet.Write64(Tn(2, 0), Hpet.Tn_INT_ENB_CNF | Hpet.Tn_INT_TYPE_CNF | (17UL << 9));
        _hpet.Write64(Tn(2, 8), 1);
        Enable();
        RunTo(10);
        Assert.True(_ioapic.IsHigh(17));
        _hpet.Write64(Hpet.GEN_CONF, 0);
        Assert.False(_ioapic.IsHigh(17));
    }

    [Fact]
    public void Status_is_current_when_read_without_an_advance()
    {
        _hpet.Write64(Tn(2, 0), Hpet.Tn_INT_ENB_CNF | Hpet.Tn_INT_TYPE_CNF | (18UL << 9));
        _hpet.Write64(Tn(2, 8), 3);
        Enable();
        _clock.NowNanoseconds = 40;
        Assert.Equal(4UL, _hpet.Read64(Hpet.GINTR_STA));
        Assert.True(_ioapic.IsHigh(18));
    }

    [Fact]
    public void Thirty_two_bit_mode_truncates_and_one_shot_also_fires_on_wrap()
    {
        _hpet.Write64(Tn(1, 0), Hpet.Tn_32MODE_CNF | Hpet.Tn_INT_ENB_CNF | (16UL << 9));
        Assert.Equal(0xffff_ffffUL, _hpet.Read64(Tn(1, 8)));
        _hpet.Write32(Tn(1, 8) + 4, 0x1234); // upper half ignored in 32-bit mode
        _hpet.Write32(Tn(1, 8), 0x10);
        Assert.Equal(0x10UL, _hpet.Read64(Tn(1, 8)));

        _hpet.Write64(Hpet.MAIN_CNT, 0xffff_ff00);
        Enable();
        Assert.Equal(2560L, _hpet.NextDeadlineNs); // the wrap, 0x100 ticks away
        RunTo(2560);
        Assert.Equal(1, _ioapic.Rises(16));
        Assert.Equal(2720L, _hpet.NextDeadlineNs); // then the match at low bits 0x10
        RunTo(2720);
        Assert.Equal(2, _ioapic.Rises(16));
    }

    [Fact]
    public void A_route_outside_the_capability_is_not_taken()
    {
        _hpet.Write64(Tn(0, 0), 16UL << 9);
        _hpet.Write64(Tn(0, 0), 3UL << 9);
        Assert.Equal(16UL << 9, _hpet.Read64(Tn(0, 0)) & Hpet.Tn_INT_ROUTE_CNF);
        Assert.Equal(1, _hpet.BadAccesses);
    }

    [Fact]
    public void Bad_widths_and_offsets_are_counted_and_read_as_ones()
    {
        Assert.Equal(0xffffu, _hpet.Read16(Hpet.GCAP_ID));
        Assert.Equal(0xffff_ffffu, _hpet.Read32(0x2));
        Assert.Equal(ulong.MaxValue, _hpet.Read64(0x4));
        Assert.Equal(0xffff_ffffu, _hpet.Read32(0x400));
        _hpet.Write8(Hpet.GEN_CONF, 1);
        Assert.False(_hpet.Enabled);
        Assert.Equal(0u, _hpet.Read32(0x30)); // reserved register inside the block
        Assert.Equal(6, _hpet.BadAccesses);
    }

    [Fact]
    public void Timer_without_interrupt_enable_has_no_deadline()
    {
        _hpet.Write64(Tn(0, 8), 100);
        Enable();
        Assert.Null(_hpet.NextDeadlineNs);
        RunTo(10_000);
        Assert.Equal(0, _hpet.Fires);
    }

    [Fact]
    public void State_round_trips_and_the_copy_behaves_the_same()
    {
        _hpet.Write64(Tn(0, 0), Hpet.Tn_INT_ENB_CNF | Hpet.Tn_TYPE_CNF | Hpet.Tn_VAL_SET_CNF | (2UL << 9));
        _hpet.Write64(Tn(0, 8), 100);
        _hpet.Write64(Tn(2, 0), Hpet.Tn_INT_ENB_CNF | Hpet.Tn_INT_TYPE_CNF | (20UL << 9));
        _hpet.Write64(Tn(2, 8), 150);
        Enable();
        RunTo(1500);
        var state = _hpet.GetState();

        var lines = new LineRecorder();
        var copy = new Hpet(_clock, lines.Set);
        copy.FromState(state);
        var again = copy.GetState();
        Assert.Equal(state with { Timers = [] }, again with { Timers = [] });
        Assert.Equal(state.Timers, again.Timers);
        Assert.True(lines.IsHigh(20)); // the level line is re-driven
        Assert.Equal(_hpet.NextDeadlineNs, copy.NextDeadlineNs);
        Assert.Equal(_hpet.CounterAt(5000), copy.CounterAt(5000));
        _clock.NowNanoseconds = 2000;
        copy.Advance(2000);
        Assert.Equal(1, lines.Rises(2));
    }

    [Fact]
    public void FromState_rejects_bad_records()
    {
        var good = _hpet.GetState();
        Assert.Throws<ArgumentException>(() => _hpet.FromState(good with { GeneralConfig = 4 }));
        Assert.Throws<ArgumentException>(() => _hpet.FromState(good with { InterruptStatus = 8 }));
        Assert.Throws<ArgumentException>(() => _hpet.FromState(good with { Timers = good.Timers[..2] }));
        Assert.Throws<ArgumentException>(() => _hpet.FromState(good with { CounterBase = 5 }));
        var timers = good.Timers.ToArray();
        timers[1] = timers[1] with { Config = timers[1].Config | Hpet.Tn_TYPE_CNF };
        Assert.Throws<ArgumentException>(() => _hpet.FromState(good with { Timers = timers }));
    }

    [Fact]
    public void Random_guest_never_throws_and_lines_stay_consistent()
    {
        var rng = new Random(99);
        for (int i = 0; i < 100_000; i++)
        {
            _clock.Advance(rng.Next(0, 200));
            switch (rng.Next(4))
            {
                case 0:
                    _hpet.RandomAccess(rng, 0x400);
                    break;
                case 1:
                    ulong reg = (ulong)rng.Next(0x80) << 3;
                    ulong value = rng.Next(2) == 0 ? (ulong)rng.Next(0x4000) : (ulong)rng.NextInt64();
                    if (rng.Next(2) == 0) _hpet.Write64(reg, value);
                    else _hpet.Write32(reg + (ulong)(rng.Next(2) * 4), (uint)value);
                    break;
                case 2:
                    _hpet.Read64((ulong)rng.Next(0x80) << 3);
                    break;
                default:
                    _hpet.Advance(_clock.NowNanoseconds);
                    break;
            }
            long? d = _hpet.NextDeadlineNs;
            Assert.True(d is null || d >= 0);
        }
        // Every line the model raised it either still holds for a level timer or has lowered again.
        foreach (var (line, high) in _ioapic.Levels)
            Assert.True(!high || _hpet.GetState().InterruptStatus != 0, $"input {line} left high without a status bit");
        new Hpet(_clock, _ioapic.Set).FromState(_hpet.GetState());
    }
}
