// The 8254 driven as the Intel 8254 datasheet describes, with time from a fake clock.
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

public sealed class Pit8254Tests
{
    private readonly FakeClock _clock = new();
    private readonly RecordingIrqLine _irq0 = new();
    private readonly Pit8254 _pit;

    public Pit8254Tests()
    {
        _pit = new Pit8254(_clock, _irq0);
    }

    private void AtTick(long tick) => _clock.NowNanoseconds = Pit8254.TimeOfTick(tick);

    private void Program(int counter, int rw, int mode, bool bcd = false) =>
        _pit.Out8(3, (byte)(counter << 6 | rw << 4 | mode << 1 | (bcd ? 1 : 0)));

    private void Load16(int counter, int count)
    {
        _pit.Out8((ulong)counter, (byte)count);
        _pit.Out8((ulong)counter, (byte)(count >> 8));
    }

    private int LatchAndRead16(int counter)
    {
        _pit.Out8(3, (byte)(counter << 6));
        int lo = _pit.In8((ulong)counter);
        return lo | _pit.In8((ulong)counter) << 8;
    }

    [Fact]
    public void Tick_conversion_is_exact()
    {
        Assert.Equal(1_193_182, Pit8254.TicksAt(1_000_000_000));
        Assert.Equal(3600L * 1_193_182, Pit8254.TicksAt(3600L * 1_000_000_000));
        for (long t = 0; t < 5000; t += 7)
        {
            long ns = Pit8254.TimeOfTick(t);
            Assert.Equal(t, Pit8254.TicksAt(ns));
            if (ns > 0)
                Assert.Equal(t - 1, Pit8254.TicksAt(ns - 1));
        }
    }

    [Fact]
    public void Mode2_rate_generator_gives_exactly_one_irq_per_period_with_no_drift()
    {
        Program(0, 3, 2);
        Load16(0, 1193);
        Assert.True(_irq0.Level); // OUT goes high with the mode 2 control word
        int programmed = _irq0.RisingEdges;
        Assert.Equal(Pit8254.TimeOfTick(1193), _pit.NextDeadlineNs);
        _pit.Advance(Pit8254.TimeOfTick(1193) - 1);
        Assert.Equal(programmed, _irq0.RisingEdges);
        // The host wakes at each deadline for one second of guest time.
        while (_pit.NextDeadlineNs is { } d && d <= 1_000_000_000)
            _pit.Advance(d);
        Assert.Equal(1_193_182 / 1193, _irq0.RisingEdges - programmed);
        // Irregular host wake-ups: edges still match the clock exactly (missed ones coalesce).
        var rng = new Random(5);
        long now = 1_000_000_000;
        int before = _irq0.RisingEdges;
        while (now < 3_000_000_000)
        {
            now += rng.Next(1, 900_000);
            _pit.Advance(now);
        }
        Assert.Equal(Pit8254.TicksAt(now) / 1193 - 1_193_182 / 1193, _irq0.RisingEdges - before);
    }

    [Fact]
    public void Mode2_count_reads_and_out_low_for_one_clock()
    {
        Program(0, 3, 2);
        Load16(0, 1000);
        int programmed = _irq0.RisingEdges;
        AtTick(100);
        Assert.Equal(900, LatchAndRead16(0));
        AtTick(998);
        Assert.Equal(2, LatchAndRead16(0));
        Assert.True(_pit.Out(0));
        AtTick(999);
        Assert.Equal(1, LatchAndRead16(0));
        Assert.False(_pit.Out(0));
        AtTick(1000);
        Assert.Equal(1000, LatchAndRead16(0));
        Assert.True(_pit.Out(0));
        Assert.Equal(1, _irq0.RisingEdges - programmed);
    }

    [Fact]
    public void Mode0_interrupt_on_terminal_count_then_wraps()
    {
        Program(0, 3, 0);
        Assert.False(_irq0.Level); // OUT goes low on the control word
        Load16(0, 500);
        AtTick(499);
        _pit.Advance(_clock.NowNanoseconds);
        Assert.False(_irq0.Level);
        Assert.Equal(1, LatchAndRead16(0));
        Assert.Equal(Pit8254.TimeOfTick(500), _pit.NextDeadlineNs);
        AtTick(500);
        _pit.Advance(_clock.NowNanoseconds);
        Assert.True(_irq0.Level);
        Assert.Equal(1, _irq0.RisingEdges);
        Assert.Null(_pit.NextDeadlineNs);
        AtTick(502);
        Assert.Equal(0xfffe, LatchAndRead16(0)); // counting continues through zero
        AtTick(100_000);
        _pit.Advance(_clock.NowNanoseconds);
        Assert.Equal(1, _irq0.RisingEdges); // one shot only
    }

    [Fact]
    public void Mode0_first_byte_stops_count_and_sets_out_low()
    {
        Program(0, 3, 0);
        Load16(0, 10);
        AtTick(20);
        Assert.True(_pit.Out(0));
        _pit.Out8(0, 50);
        Assert.False(_pit.Out(0));
        AtTick(200);
        Assert.False(_pit.Out(0));
        _pit.Out8(0, 0);
        AtTick(249);
        Assert.False(_pit.Out(0));
        AtTick(250);
        Assert.True(_pit.Out(0));
    }

    [Fact]
    public void Mode3_square_wave_even_count()
    {
        Program(0, 3, 3);
        Load16(0, 10);
        int programmed = _irq0.RisingEdges;
        int[] expected = [10, 8, 6, 4, 2, 10, 8, 6, 4, 2, 10];
        bool[] outs = [true, true, true, true, true, false, false, false, false, false, true];
        for (int t = 0; t < expected.Length; t++)
        {
            AtTick(t);
            Assert.Equal(expected[t], LatchAndRead16(0));
            Assert.Equal(outs[t], _pit.Out(0));
        }
        _pit.Advance(_clock.NowNanoseconds);
        Assert.Equal(1, _irq0.RisingEdges - programmed);
    }

    [Fact]
    public void Mode3_square_wave_odd_count_high_longer()
    {
        Program(0, 3, 3);
        Load16(0, 7);
        // Datasheet: odd N: first clock -1, then -2; after OUT falls, reload, first clock -3, then -2.
        int[] expected = [7, 6, 4, 2, 7, 4, 2, 7];
        bool[] outs = [true, true, true, true, false, false, false, true];
        for (int t = 0; t < expected.Length; t++)
        {
            AtTick(t);
            Assert.Equal(expected[t], LatchAndRead16(0));
            Assert.Equal(outs[t], _pit.Out(0));
        }
    }

    [Fact]
    public void Mode4_software_strobe_one_clock_low()
    {
        Program(0, 3, 4);
        Load16(0, 50);
        int programmed = _irq0.RisingEdges;
        AtTick(49);
        Assert.True(_pit.Out(0));
        AtTick(50);
        Assert.False(_pit.Out(0));
        Assert.Equal(Pit8254.TimeOfTick(51), _pit.NextDeadlineNs);
        AtTick(51);
        Assert.True(_pit.Out(0));
        _pit.Advance(_clock.NowNanoseconds);
        Assert.Equal(1, _irq0.RisingEdges - programmed);
        AtTick(60_000);
        _pit.Advance(_clock.NowNanoseconds);
        Assert.Equal(1, _irq0.RisingEdges - programmed);
        Assert.Null(_pit.NextDeadlineNs);
    }

    [Fact]
    public void Mode1_one_shot_triggered_by_gate2()
    {
        Program(2, 3, 1);
        Load16(2, 100);
        AtTick(500);
        Assert.True(_pit.Out(2)); // waits for a trigger
        Assert.Equal(0x20, _pit.Port61.In8(0) & 0x20);
        _pit.Port61.Out8(0, 0x01); // gate rises: trigger
        Assert.False(_pit.Out(2));
        Assert.Equal(0x00, _pit.Port61.In8(0) & 0x20);
        AtTick(599);
        Assert.Equal(1, LatchAndRead16(2));
        AtTick(600);
        Assert.True(_pit.Out(2));
        // Retrigger: a new rising edge restarts the one-shot.
        _pit.Port61.Out8(0, 0x00);
        AtTick(650);
        _pit.Port61.Out8(0, 0x01);
        AtTick(700);
        Assert.False(_pit.Out(2));
        AtTick(750);
        Assert.True(_pit.Out(2));
    }

    [Fact]
    public void Mode5_hardware_strobe()
    {
        Program(2, 3, 5);
        Load16(2, 10);
        AtTick(30);
        Assert.True(_pit.Out(2));
        _pit.Port61.Out8(0, 0x01);
        AtTick(40);
        Assert.False(_pit.Out(2));
        AtTick(41);
        Assert.True(_pit.Out(2));
    }

    [Fact]
    public void Mode0_gate_low_pauses_counting()
    {
        _pit.Port61.Out8(0, 0x01);
        Program(2, 3, 0);
        Load16(2, 1000);
        AtTick(300);
        _pit.Port61.Out8(0, 0x00);
        AtTick(5000);
        Assert.Equal(700, LatchAndRead16(2));
        _pit.Port61.Out8(0, 0x01);
        AtTick(5699);
        Assert.False(_pit.Out(2));
        AtTick(5700);
        Assert.True(_pit.Out(2));
    }

    [Fact]
    public void Mode2_gate_low_forces_out_high_and_rising_gate_reloads()
    {
        _pit.Port61.Out8(0, 0x01);
        Program(2, 3, 2);
        Load16(2, 100);
        AtTick(99);
        Assert.False(_pit.Out(2));
        _pit.Port61.Out8(0, 0x00);
        Assert.True(_pit.Out(2));
        AtTick(150);
        _pit.Port61.Out8(0, 0x01);
        AtTick(160);
        Assert.Equal(90, LatchAndRead16(2));
    }

    [Fact]
    public void Mode2_rewritten_count_takes_effect_at_end_of_period()
    {
        Program(0, 3, 2);
        Load16(0, 100);
        int programmed = _irq0.RisingEdges;
        AtTick(30);
        Load16(0, 40);
        Assert.Equal(70, LatchAndRead16(0));
        _pit.Out8(3, 0xe2); // read-back status of counter 0: NULL COUNT still set
        Assert.Equal(0x40, _pit.In8(0) & 0x40);
        AtTick(100);
        Assert.Equal(40, LatchAndRead16(0));
        AtTick(130);
        Assert.Equal(10, LatchAndRead16(0));
        _pit.Out8(3, 0xe2);
        Assert.Equal(0x00, _pit.In8(0) & 0x40);
        AtTick(140);
        _pit.Advance(_clock.NowNanoseconds);
        Assert.Equal(2, _irq0.RisingEdges - programmed);
    }

    [Fact]
    public void Modes_6_and_7_alias_2_and_3_but_status_shows_what_was_written()
    {
        Program(0, 3, 6);
        Load16(0, 10);
        AtTick(9);
        Assert.False(_pit.Out(0)); // mode 2: OUT low for the clock at count 1
        Assert.Equal(1, LatchAndRead16(0));
        _pit.Out8(3, 0xe2);
        Assert.Equal(0x30 | 6 << 1, _pit.In8(0)); // OUT low, count loaded, mode bits 110
        Program(1, 3, 7);
        Load16(1, 10);
        AtTick(9 + 5);
        Assert.False(_pit.Out(1)); // mode 3: second half of the period
        AtTick(9 + 10);
        Assert.True(_pit.Out(1));
    }

    [Fact]
    public void Bcd_counting()
    {
        Program(0, 3, 0, bcd: true);
        Load16(0, 0x1000);
        AtTick(1);
        Assert.Equal(0x0999, LatchAndRead16(0));
        AtTick(999);
        Assert.Equal(0x0001, LatchAndRead16(0));
        Assert.False(_pit.Out(0));
        AtTick(1000);
        Assert.True(_pit.Out(0));
        AtTick(1001);
        Assert.Equal(0x9999, LatchAndRead16(0));
        // BCD count 0 is 10000 clocks.
        Program(1, 3, 2, bcd: true);
        Load16(1, 0);
        AtTick(1001 + 1);
        Assert.Equal(0x9999, LatchAndRead16(1));
    }

    [Fact]
    public void Lsb_only_and_msb_only_access()
    {
        Program(0, 1, 2);
        _pit.Out8(0, 200);
        AtTick(50);
        Assert.Equal(150, _pit.In8(0));
        Assert.Equal(150, _pit.In8(0)); // one byte per read, no flip-flop
        Program(1, 2, 2);
        _pit.Out8(1, 0x02); // count 0x200
        AtTick(50 + 0x100);
        Assert.Equal(0x01, _pit.In8(1));
    }

    [Fact]
    public void Latched_count_is_held_until_read_and_second_latch_ignored()
    {
        Program(0, 3, 2);
        Load16(0, 5000);
        AtTick(1000);
        _pit.Out8(3, 0x00);
        AtTick(2000);
        _pit.Out8(3, 0x00); // ignored: already latched
        Assert.Equal(4000 & 0xff, _pit.In8(0));
        AtTick(3000);
        Assert.Equal(4000 >> 8, _pit.In8(0));
        // Unlatched: the live count.
        Assert.Equal(2000, _pit.In8(0) | _pit.In8(0) << 8);
    }

    [Fact]
    public void Read_back_status_then_count()
    {
        _pit.Port61.Out8(0, 0x01); // GATE2 high
        Program(2, 3, 4, bcd: false);
        _pit.Out8(3, 0xe8); // read-back: status only, counter 2
        // NULL COUNT set, OUT high (mode 4 before load), RW=3, mode 4.
        Assert.Equal(0x80 | 0x40 | 0x30 | 4 << 1, _pit.In8(2));
        Load16(2, 300);
        AtTick(100);
        _pit.Out8(3, 0xc8); // latch count and status of counter 2
        Assert.Equal(0x80 | 0x30 | 4 << 1, _pit.In8(2));
        Assert.Equal(200, _pit.In8(2) | _pit.In8(2) << 8);
        // Read-back for several counters at once.
        Program(0, 3, 2);
        Load16(0, 1000);
        AtTick(150);
        _pit.Out8(3, 0xea); // status of counters 0 and 2
        Assert.Equal(0x80 | 0x30 | 2 << 1, _pit.In8(0));
        Assert.Equal(0x80 | 0x30 | 4 << 1, _pit.In8(2));
    }

    [Fact]
    public void Port61_refresh_bit_toggles_every_18_clocks_and_keeps_written_bits()
    {
        _pit.Port61.Out8(0, 0xff);
        AtTick(0);
        Assert.Equal(0x0f, _pit.Port61.In8(0) & 0xcf);
        int toggles = 0;
        int last = _pit.Port61.In8(0) & 0x10;
        for (long t = 0; t < 18 * 100; t++)
        {
            AtTick(t);
            int bit = _pit.Port61.In8(0) & 0x10;
            Assert.Equal((t / 18 & 1) != 0 ? 0x10 : 0, bit);
            if (bit != last)
                toggles++;
            last = bit;
        }
        Assert.Equal(99, toggles);
    }

    [Fact]
    public void Linux_style_calibration_polls_out2()
    {
        // pit_calibrate_tsc: gate on, speaker off, counter 2 mode 0 with 0xffff, wait for OUT2 via 0x61 bit 5.
        _pit.Port61.Out8(0, (byte)((_pit.Port61.In8(0) & ~0x02) | 0x01));
        _pit.Out8(3, 0xb0);
        _pit.Out8(2, 0xff);
        _pit.Out8(2, 0xff);
        long polls = 0;
        while ((_pit.Port61.In8(0) & 0x20) == 0)
        {
            _clock.NowNanoseconds += 1000;
            polls++;
        }
        Assert.Equal((double)Pit8254.TimeOfTick(0xffff), _clock.NowNanoseconds, 1000.0);
        Assert.InRange(polls, 54_900, 54_930);
    }

    [Fact]
    public void Bad_accesses_are_counted()
    {
        Span<byte> two = stackalloc byte[2];
        _pit.Read(0, two);
        Assert.Equal(0xff, two[0]);
        _pit.Write(4, [1]);
        _pit.Port61.Write(1, [1]);
        Assert.Equal(0xff, _pit.In8(3));
        Assert.Equal(3, _pit.BadAccesses);
    }

    [Fact]
    public void State_round_trips()
    {
        Program(0, 3, 2);
        Load16(0, 1234);
        _pit.Port61.Out8(0, 0x03);
        Program(2, 3, 3);
        Load16(2, 77);
        AtTick(5000);
        _pit.Out8(3, 0x80);
        _pit.In8(2);
        Load16(0, 99);
        var state = _pit.GetState();
        var other = new Pit8254(_clock, new RecordingIrqLine());
        other.FromState(state);
        Assert.Equal(state, other.GetState());
        AtTick(9999);
        Assert.Equal(_pit.In8(2), other.In8(2));
        _pit.Out8(3, 0x00);
        other.Out8(3, 0x00);
        Assert.Equal(_pit.In8(0) | _pit.In8(0) << 8, other.In8(0) | other.In8(0) << 8);
        Assert.Throws<ArgumentException>(() => other.FromState(state with { Counter1 = state.Counter1 with { Mode = 8 } }));
        Assert.Throws<ArgumentException>(() => other.FromState(state with { Port61 = 0 }));
    }

    [Fact]
    public void Random_sequences_never_throw_and_deadlines_are_not_in_the_past()
    {
        var rng = new Random(77);
        for (int run = 0; run < 100; run++)
        {
            var clock = new FakeClock();
            var pit = new Pit8254(clock, new RecordingIrqLine());
            for (int i = 0; i < 400; i++)
            {
                clock.NowNanoseconds += rng.Next(0, 3) == 0 ? 0 : rng.Next(1, 2_000_000);
                switch (rng.Next(5))
                {
                    case 0: pit.Out8((ulong)rng.Next(5), (byte)rng.Next(256)); break;
                    case 1: pit.In8((ulong)rng.Next(5)); break;
                    case 2: pit.Port61.Out8(0, (byte)rng.Next(256)); break;
                    case 3: pit.Port61.In8(0); break;
                    default:
                        pit.Advance(clock.NowNanoseconds);
                        if (pit.NextDeadlineNs is { } d)
                            Assert.True(d > clock.NowNanoseconds);
                        break;
                }
            }
            new Pit8254(clock, NullIrqLine.Instance).FromState(pit.GetState());
        }
    }
}
