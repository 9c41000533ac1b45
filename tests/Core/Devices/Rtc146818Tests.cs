// The MC146818A driven as the Motorola datasheet and PC firmware use it, with a fake clock.
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

public sealed class Rtc146818Tests
{
    private const long Ms = 1_000_000;
    private const long S = 1_000_000_000;

    private readonly FakeClock _clock = new();
    private readonly RecordingIrqLine _irq = new();
    private readonly Rtc146818 _rtc;

    public Rtc146818Tests()
    {
        // A Thursday; 2024 is a leap year.
        _rtc = new Rtc146818(_clock, _irq, new DateTime(2024, 2, 29, 23, 59, 58));
    }

    private byte Get(int reg)
    {
        _rtc.Out8(0, (byte)reg);
        return _rtc.In8(1);
    }

    private void Set(int reg, byte value)
    {
        _rtc.Out8(0, (byte)reg);
        _rtc.Out8(1, value);
    }

    private void At(long ns)
    {
        _clock.NowNanoseconds = ns;
        _rtc.Advance(ns);
    }

    [Fact]
    public void Power_on_registers_and_bcd_time()
    {
        Assert.Equal(0x26, Get(Rtc146818.RegA));
        Assert.Equal(0x02, Get(Rtc146818.RegB));
        Assert.Equal(0x00, Get(Rtc146818.RegC));
        Assert.Equal(0x80, Get(Rtc146818.RegD));
        Assert.Equal(0x58, Get(0));
        Assert.Equal(0x59, Get(2));
        Assert.Equal(0x23, Get(4));
        Assert.Equal(0x05, Get(6)); // Thursday, Sunday = 1
        Assert.Equal(0x29, Get(7));
        Assert.Equal(0x02, Get(8));
        Assert.Equal(0x24, Get(9));
        Assert.Equal(0x20, Get(0x32));
    }

    [Fact]
    public void First_update_half_a_second_after_start_then_every_second_with_carries()
    {
        At(500 * Ms - 1);
        Assert.Equal(0x58, Get(0));
        At(500 * Ms);
        Assert.Equal(0x59, Get(0));
        At(1500 * Ms);
        Assert.Equal(0x00, Get(0));
        Assert.Equal(0x00, Get(2));
        Assert.Equal(0x00, Get(4));
        Assert.Equal(0x01, Get(7));
        Assert.Equal(0x03, Get(8));
        Assert.Equal(0x06, Get(6));
        // A long jump: 400 days and 3 seconds later, exactly.
        At(1500 * Ms + (400L * 86400 + 3) * S);
        Assert.Equal(new DateTime(2025, 4, 5, 0, 0, 3), _rtc.CurrentTime);
        Assert.Equal(((6 - 1 + 400) % 7) + 1, Get(6));
    }

    [Fact]
    public void Binary_and_12_hour_modes()
    {
        Set(Rtc146818.RegB, Rtc146818.B_SET | Rtc146818.B_DM); // binary, 12-hour
        Set(0, 59);
        Set(2, 59);
        Set(4, 0x80 | 11); // 11 PM
        Set(7, 31);
        Set(8, 12);
        Set(9, 99);
        Set(0x32, 19);
        Set(Rtc146818.RegB, Rtc146818.B_DM);
        At(500 * Ms);
        Assert.Equal(0, Get(0));
        Assert.Equal(12, Get(4)); // 12 AM
        Assert.Equal(1, Get(7));
        Assert.Equal(1, Get(8));
        Assert.Equal(0, Get(9));
        Assert.Equal(20, Get(0x32));
        At(500 * Ms + 12 * 3600 * S);
        Assert.Equal(0x80 | 12, Get(4)); // 12 PM
        At(500 * Ms + 13 * 3600 * S);
        Assert.Equal(0x80 | 1, Get(4));
    }

    [Fact]
    public void Uip_is_high_for_244us_before_each_update()
    {
        long update = 500 * Ms;
        _clock.NowNanoseconds = update - Rtc146818.UipNs - 1;
        Assert.Equal(0, Get(Rtc146818.RegA) & 0x80);
        _clock.NowNanoseconds = update - Rtc146818.UipNs;
        Assert.Equal(0x80, Get(Rtc146818.RegA) & 0x80);
        Assert.Equal(0x58, Get(0));
        _clock.NowNanoseconds = update - 1;
        Assert.Equal(0x80, Get(Rtc146818.RegA) & 0x80);
        _clock.NowNanoseconds = update;
        Assert.Equal(0, Get(Rtc146818.RegA) & 0x80);
        Assert.Equal(0x59, Get(0));
        _clock.NowNanoseconds = update + S - Rtc146818.UipNs;
        Assert.Equal(0x80, Get(Rtc146818.RegA) & 0x80);
    }

    [Fact]
    public void Set_bit_stops_updates_and_clears_uie_and_uip()
    {
        Set(Rtc146818.RegB, Rtc146818.B_UIE | Rtc146818.B_24H);
        Set(Rtc146818.RegB, Rtc146818.B_SET | Rtc146818.B_UIE | Rtc146818.B_24H);
        Assert.Equal(Rtc146818.B_SET | Rtc146818.B_24H, Get(Rtc146818.RegB));
        _clock.NowNanoseconds = 500 * Ms - 10;
        Assert.Equal(0, Get(Rtc146818.RegA) & 0x80);
        At(10 * S);
        Assert.Equal(0x58, Get(0));
        Assert.Equal(0, Get(Rtc146818.RegC) & Rtc146818.C_UF);
        Set(0, 0x30);
        Set(Rtc146818.RegB, Rtc146818.B_24H);
        At(10 * S + 500 * Ms); // the divider kept its phase: updates at n + 0.5 s
        Assert.Equal(0x31, Get(0));
    }

    [Fact]
    public void Divider_reset_holds_and_release_delays_first_update_by_half_a_second()
    {
        Set(Rtc146818.RegA, 0x76);
        At(5 * S);
        Assert.Equal(0x58, Get(0));
        Assert.Equal(0, Get(Rtc146818.RegC));
        Set(Rtc146818.RegA, 0x26);
        At(5 * S + 500 * Ms - 1);
        Assert.Equal(0x58, Get(0));
        At(5 * S + 500 * Ms);
        Assert.Equal(0x59, Get(0));
    }

    [Fact]
    public void Update_ended_interrupt_and_register_c_clear_on_read()
    {
        Set(Rtc146818.RegB, Rtc146818.B_UIE | Rtc146818.B_24H);
        Assert.Equal(500 * Ms, _rtc.NextDeadlineNs);
        At(500 * Ms);
        Assert.True(_irq.Level);
        Assert.Null(_rtc.NextDeadlineNs); // nothing changes until C is read
        // PF is set too (the default 1024 Hz rate runs) but PIE is off, so it does not count for IRQF.
        Assert.Equal(Rtc146818.C_IRQF | Rtc146818.C_PF | Rtc146818.C_UF, Get(Rtc146818.RegC));
        Assert.False(_irq.Level);
        Assert.Equal(0, Get(Rtc146818.RegC));
        Assert.Equal(1500 * Ms, _rtc.NextDeadlineNs);
        Set(Rtc146818.RegC, 0xff); // read-only
        Assert.Equal(0, Get(Rtc146818.RegC));
    }

    [Fact]
    public void Uf_is_set_without_uie_but_irq_stays_low()
    {
        At(600 * Ms);
        Assert.False(_irq.Level);
        Assert.Equal(Rtc146818.C_UF, Get(Rtc146818.RegC) & ~Rtc146818.C_PF);
    }

    [Fact]
    public void Alarm_fires_at_matching_second_only()
    {
        Set(1, 0x05);
        Set(3, 0x00);
        Set(5, 0x00);
        Set(Rtc146818.RegB, Rtc146818.B_AIE | Rtc146818.B_24H);
        // 23:59:58 -> 00:00:05 is the 7th update (at 6.5 s).
        At(5500 * Ms);
        Assert.False(_irq.Level);
        At(6500 * Ms);
        Assert.True(_irq.Level);
        Assert.Equal(Rtc146818.C_IRQF | Rtc146818.C_AF | Rtc146818.C_UF, Get(Rtc146818.RegC) & ~Rtc146818.C_PF);
        At(7500 * Ms);
        Assert.False(_irq.Level);
        Assert.Equal(Rtc146818.C_UF, Get(Rtc146818.RegC) & ~Rtc146818.C_PF);
        // A day later (one long step) it matches again.
        At(6500 * Ms + 86400 * S);
        Assert.True(_irq.Level);
    }

    [Fact]
    public void Alarm_dont_care_bytes()
    {
        Set(1, 0x30);
        Set(3, 0xc0);
        Set(5, 0xff);
        Set(Rtc146818.RegB, Rtc146818.B_AIE | Rtc146818.B_24H);
        int hits = 0;
        for (int i = 0; i < 160; i++)
        {
            At(500 * Ms + i * S);
            if ((Get(Rtc146818.RegC) & Rtc146818.C_AF) != 0)
                hits++;
        }
        Assert.Equal(3, hits); // 23:59:59 onwards for 160 s: 00:00:30, 00:01:30, 00:02:30
        Set(1, 0xc0);
        Set(3, 0xc0);
        At(500 * Ms + 160 * S);
        Assert.Equal(Rtc146818.C_IRQF | Rtc146818.C_AF | Rtc146818.C_UF, Get(Rtc146818.RegC) & ~Rtc146818.C_PF);
    }

    [Fact]
    public void Periodic_interrupt_rate_from_register_a_is_exact()
    {
        Set(Rtc146818.RegB, Rtc146818.B_PIE | Rtc146818.B_24H);
        int count = 0;
        long now = 0;
        while (_rtc.NextDeadlineNs is { } d && d <= S)
        {
            Assert.True(d > now);
            now = d;
            At(d);
            if (_irq.Level)
            {
                count++;
                Assert.Equal(Rtc146818.C_PF, Get(Rtc146818.RegC) & Rtc146818.C_PF);
            }
        }
        Assert.Equal(1024, count); // RS = 0110: 976.5625 us
        // RS = 0011: 122.070 us (8192 Hz); RS = 0001: 3.90625 ms (256 Hz, same as 1000).
        Set(Rtc146818.RegA, 0x23);
        long start = _clock.NowNanoseconds;
        long? next = _rtc.NextDeadlineNs;
        Assert.NotNull(next);
        Assert.InRange(next!.Value - start, 1, 122_071);
        Set(Rtc146818.RegA, 0x21);
        Get(Rtc146818.RegC);
        At(2 * S);
        Get(Rtc146818.RegC);
        Assert.Equal(2 * S + 3_906_250, _rtc.NextDeadlineNs);
    }

    [Fact]
    public void Periodic_flag_without_pie_does_not_raise_irq()
    {
        At(10 * Ms);
        Assert.False(_irq.Level);
        Assert.Equal(Rtc146818.C_PF, Get(Rtc146818.RegC));
        Set(Rtc146818.RegA, 0x20); // RS = 0: no periodic
        At(20 * Ms);
        Assert.Equal(0, Get(Rtc146818.RegC));
    }

    [Fact]
    public void Nvram_both_banks_and_nmi_mask()
    {
        Set(0x40, 0xa5);
        Assert.Equal(0xa5, Get(0x40));
        _rtc.Out8(2, 0x40);
        _rtc.Out8(3, 0x5a);
        Assert.Equal(0x5a, _rtc.In8(3));
        Assert.Equal(0xa5, Get(0x40));
        Assert.Equal(0x5a, _rtc.PeekCmos(0xc0));
        _rtc.Out8(0, 0x8f);
        Assert.True(_rtc.NmiMasked);
        _rtc.Out8(1, 0x11);
        Assert.Equal(0x11, _rtc.PeekCmos(0x0f));
        _rtc.Out8(0, 0x0f);
        Assert.False(_rtc.NmiMasked);
        Assert.Equal(0xff, _rtc.In8(0));
    }

    [Fact]
    public void Memory_size_and_cpu_bytes_as_seabios_reads_them()
    {
        _rtc.SetEquipment(0x02);
        _rtc.SetMemorySize(128UL << 20, 1UL << 30);
        _rtc.SetCpuCount(4);
        Assert.Equal(640, _rtc.PeekCmos(0x15) | _rtc.PeekCmos(0x16) << 8);
        Assert.Equal(0xffff, _rtc.PeekCmos(0x17) | _rtc.PeekCmos(0x18) << 8); // 127 MiB in KiB, capped
        Assert.Equal(0xffff, _rtc.PeekCmos(0x30) | _rtc.PeekCmos(0x31) << 8);
        Assert.Equal((128 - 16) * 16, _rtc.PeekCmos(0x34) | _rtc.PeekCmos(0x35) << 8);
        Assert.Equal(16384, _rtc.PeekCmos(0x5b) | _rtc.PeekCmos(0x5c) << 8 | _rtc.PeekCmos(0x5d) << 16);
        Assert.Equal(3, _rtc.PeekCmos(0x5f));
        Assert.Equal(0x02, Get(0x14));
        int sum = 0;
        for (int i = 0x10; i <= 0x2d; i++)
            sum += _rtc.PeekCmos(i);
        Assert.Equal(sum, _rtc.PeekCmos(0x2e) << 8 | _rtc.PeekCmos(0x2f));
        _rtc.SetMemorySize(32UL << 20, 0);
        Assert.Equal(31 * 1024, _rtc.PeekCmos(0x17) | _rtc.PeekCmos(0x18) << 8);
        Assert.Equal(16 * 16, _rtc.PeekCmos(0x34) | _rtc.PeekCmos(0x35) << 8);
        Assert.Throws<ArgumentOutOfRangeException>(() => _rtc.SetCpuCount(0));
    }

    [Fact]
    public void Bad_accesses_counted()
    {
        Span<byte> two = stackalloc byte[2];
        _rtc.Read(1, two);
        _rtc.Write(4, [0]);
        Assert.Equal(0xff, two[0]);
        Assert.Equal(2, _rtc.BadAccesses);
    }

    [Fact]
    public void Out_of_range_time_is_normalised_at_the_next_update()
    {
        Set(Rtc146818.RegB, Rtc146818.B_SET | Rtc146818.B_24H);
        Set(0, 0x99);
        Set(8, 0x13);
        Assert.Equal(0x99, Get(0)); // stored as written
        Set(Rtc146818.RegB, Rtc146818.B_24H);
        At(500 * Ms);
        Assert.Equal(0x00, Get(0));
        Assert.Equal(0x12, Get(8) & 0xff); // month clamped to December then carried
    }

    [Fact]
    public void State_round_trips()
    {
        Set(Rtc146818.RegB, Rtc146818.B_PIE | Rtc146818.B_UIE | Rtc146818.B_24H);
        Set(0x50, 0x77);
        At(2300 * Ms);
        _rtc.Out8(0, 0x85);
        var state = _rtc.GetState();
        var other = new Rtc146818(_clock, new RecordingIrqLine(), DateTime.UnixEpoch);
        other.FromState(state);
        var again = other.GetState();
        Assert.Equal(state.Cmos, again.Cmos);
        Assert.Equal(state with { Cmos = again.Cmos }, again);
        At(3300 * Ms);
        other.Advance(3300 * Ms);
        Assert.Equal(_rtc.CurrentTime, other.CurrentTime);
        Assert.Equal(_rtc.NextDeadlineNs, other.NextDeadlineNs);
        Assert.Throws<ArgumentException>(() => other.FromState(state with { Cmos = new byte[10] }));
        Assert.Throws<ArgumentException>(() => other.FromState(state with { Index = 0x80 }));
    }

    [Fact]
    public void Random_sequences_never_throw()
    {
        var rng = new Random(99);
        for (int run = 0; run < 50; run++)
        {
            var clock = new FakeClock();
            var rtc = new Rtc146818(clock, new RecordingIrqLine(), new DateTime(1999, 12, 31, 23, 59, 59));
            for (int i = 0; i < 300; i++)
            {
                clock.NowNanoseconds += rng.Next(4) == 0 ? (long)rng.Next(0, 100_000) * S : rng.Next(0, 5_000_000);
                switch (rng.Next(4))
                {
                    case 0: rtc.Out8((ulong)rng.Next(5), (byte)rng.Next(256)); break;
                    case 1: rtc.In8((ulong)rng.Next(5)); break;
                    case 2: rtc.Out8(0, (byte)rng.Next(0x10)); rtc.Out8(1, (byte)rng.Next(256)); break;
                    default:
                        rtc.Advance(clock.NowNanoseconds);
                        if (rtc.NextDeadlineNs is { } d)
                            Assert.True(d > clock.NowNanoseconds);
                        break;
                }
            }
            _ = rtc.CurrentTime;
            new Rtc146818(clock, NullIrqLine.Instance, DateTime.UnixEpoch).FromState(rtc.GetState());
        }
    }

    [Theory]
    [InlineData("cad", 0x12, 0x30)] // QEMU's default: hard disk, floppy, CD-ROM
    [InlineData("d", 0x03, 0x00)]
    [InlineData("nc", 0x24, 0x00)]
    public void The_boot_order_is_stored_as_qemus_pc_machine_stores_it_for_seabios(string order, byte at3d, byte at38)
    {
        _rtc.SetBootOrder(order);
        Assert.Equal(at3d, _rtc.PeekCmos(0x3d));
        Assert.Equal(at38, _rtc.PeekCmos(0x38));
        Assert.Throws<ArgumentException>(() => _rtc.SetBootOrder("x"));
        Assert.Throws<ArgumentException>(() => _rtc.SetBootOrder("cadn"));
    }
}
