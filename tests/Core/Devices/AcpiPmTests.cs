// ACPI PM1 and PM_TMR driven as the ACPI specification (4.8.3) describes, with a fake clock.
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

public sealed class AcpiPmTests
{
    private readonly FakeClock _clock = new();
    private readonly RecordingIrqLine _sci = new();
    private readonly RecordingMachineControl _machine = new();
    private readonly AcpiPm _pm;

    public AcpiPmTests()
    {
        _pm = new AcpiPm(_clock, _sci, _machine);
    }

    [Fact]
    public void Block_layout_matches_qemu_pc()
    {
        Assert.Equal(0x600, _pm.Pm1aEventBlock);
        Assert.Equal(0x604, _pm.Pm1aControlBlock);
        Assert.Equal(0x608, _pm.PmTimerBlock);
        var other = new AcpiPm(_clock, _sci, _machine, basePort: 0xb000);
        Assert.Equal(0xb008, other.PmTimerBlock);
        Assert.Throws<ArgumentOutOfRangeException>(() => new AcpiPm(_clock, _sci, _machine, s5SleepType: 8));
    }

    [Fact]
    public void Pm_timer_counts_at_3_579545_mhz_and_wraps_at_24_bits()
    {
        Assert.Equal(0u, _pm.In32(8));
        _clock.NowNanoseconds = 1_000_000_000;
        Assert.Equal(3_579_545u, _pm.In32(8));
        _clock.NowNanoseconds = AcpiPm.TimeOfTick(0x1000000 + 5);
        Assert.Equal(5u, _pm.In32(8));
        Assert.Equal(5, _pm.In16(8));
        Assert.Equal(0, _pm.In8(11)); // upper byte is zero for a 24-bit timer
        // Linux's acpi_pm read: three reads close together are monotonic and consistent.
        _clock.NowNanoseconds = 10_123_456_789;
        uint a = _pm.In32(8);
        _clock.NowNanoseconds += 280;
        uint b = _pm.In32(8);
        Assert.Equal(1u, b - a);
    }

    [Fact]
    public void Timer_overflow_sets_tmr_sts_and_sci_when_enabled()
    {
        _pm.Out16(2, AcpiPm.TMR_EN);
        Assert.Equal(AcpiPm.TMR_EN, _pm.In16(2));
        long toggle = AcpiPm.TimeOfTick(1 << 23);
        Assert.Equal(toggle, _pm.NextDeadlineNs);
        _pm.Advance(toggle - 1);
        Assert.False(_sci.Level);
        _pm.Advance(toggle);
        Assert.True(_sci.Level);
        Assert.Equal(AcpiPm.TMR_STS, _pm.In16(0) & AcpiPm.TMR_STS);
        Assert.Null(_pm.NextDeadlineNs);
        _pm.Out16(0, AcpiPm.TMR_STS); // write 1 to clear
        Assert.False(_sci.Level);
        Assert.Equal(0, _pm.In16(0));
        Assert.Equal(AcpiPm.TimeOfTick(2 << 23), _pm.NextDeadlineNs);
    }

    [Fact]
    public void Status_sets_without_enable_but_no_sci()
    {
        _pm.Advance(AcpiPm.TimeOfTick(3 << 23));
        Assert.False(_sci.Level);
        Assert.Equal(AcpiPm.TMR_STS, _pm.In16(0));
        _pm.Out16(2, AcpiPm.TMR_EN);
        Assert.True(_sci.Level); // enabling a pending status raises SCI
    }

    [Fact]
    public void Sci_en_clear_means_no_sci()
    {
        var pm = new AcpiPm(_clock, _sci, _machine, sciEnabledAtReset: false);
        Assert.Equal(0, pm.In16(4));
        pm.Out16(2, AcpiPm.PWRBTN_EN);
        pm.PressPowerButton();
        Assert.False(_sci.Level);
        pm.Out16(4, AcpiPm.SCI_EN);
        Assert.True(_sci.Level);
    }

    [Fact]
    public void Power_button_raises_sci_and_w1c_clears_only_written_bits()
    {
        Assert.Equal(AcpiPm.SCI_EN, _pm.In16(4));
        _pm.Out16(2, AcpiPm.PWRBTN_EN | AcpiPm.TMR_EN);
        _pm.PressPowerButton();
        _pm.Advance(AcpiPm.TimeOfTick(1 << 23));
        Assert.True(_sci.Level);
        Assert.Equal(AcpiPm.PWRBTN_STS | AcpiPm.TMR_STS, _pm.In16(0));
        _pm.Out16(0, AcpiPm.TMR_STS);
        Assert.Equal(AcpiPm.PWRBTN_STS, _pm.In16(0));
        Assert.True(_sci.Level);
        _pm.Out8(1, 0x01); // byte write to the high status byte clears PWRBTN_STS
        Assert.Equal(0, _pm.In16(0));
        Assert.False(_sci.Level);
    }

    [Fact]
    public void Slp_en_with_s5_powers_off_and_slp_en_reads_zero()
    {
        _pm.Out16(4, (ushort)(AcpiPm.SCI_EN | 5 << AcpiPm.SLP_TYP_SHIFT));
        Assert.Empty(_machine.Requests);
        Assert.Equal(AcpiPm.SCI_EN | 5 << AcpiPm.SLP_TYP_SHIFT, _pm.In16(4));
        _pm.Out16(4, (ushort)(AcpiPm.SCI_EN | 1 << AcpiPm.SLP_TYP_SHIFT | AcpiPm.SLP_EN)); // S3: not emulated
        Assert.Empty(_machine.Requests);
        Assert.Equal(1, _pm.IgnoredSleepRequests);
        // Linux acpi_hw_legacy_sleep: write SLP_TYP, then SLP_TYP | SLP_EN.
        _pm.Out16(4, AcpiPm.SCI_EN);
        _pm.Out16(4, AcpiPm.SCI_EN | AcpiPm.SLP_EN);
        Assert.Equal([new MachineStopRequest(MachineStopReason.PowerOff)], _machine.Requests);
        Assert.Equal(0, _pm.In16(4) & AcpiPm.SLP_EN);
    }

    [Fact]
    public void Configured_s5_value_is_honoured()
    {
        var pm = new AcpiPm(_clock, _sci, _machine, s5SleepType: 7);
        pm.Out16(4, AcpiPm.SLP_EN);
        Assert.Empty(_machine.Requests);
        pm.Out8(5, (byte)((7 << AcpiPm.SLP_TYP_SHIFT | AcpiPm.SLP_EN) >> 8));
        Assert.Single(_machine.Requests);
    }

    [Fact]
    public void Pm_timer_is_read_only_and_bad_accesses_counted()
    {
        _clock.NowNanoseconds = 1_000_000;
        uint t = _pm.In32(8);
        _pm.Write(8, [0, 0, 0, 0]);
        Assert.Equal(t, _pm.In32(8));
        Span<byte> three = stackalloc byte[3];
        _pm.Read(0, three);
        Assert.Equal(0xff, three[0]);
        _pm.Write(10, [0, 0, 0, 0]);
        _pm.Read(12, three[..1]);
        Assert.Equal(3, _pm.BadAccesses);
        Assert.Equal(0, _pm.In16(6));
    }

    [Fact]
    public void Reset_control_register_resets_on_rst_cpu()
    {
        var rcr = new ResetControlRegister(_machine);
        rcr.Out8(0, 0x02);
        Assert.Empty(_machine.Requests);
        Assert.Equal(0x02, rcr.In8(0));
        rcr.Out8(0, 0x06);
        rcr.Out8(0, 0x0e);
        Assert.Equal(2, _machine.Requests.Count);
        Assert.All(_machine.Requests, r => Assert.Equal(MachineStopReason.Reset, r.Reason));
        Assert.Equal(0x0a, rcr.In8(0));
        rcr.Write(0, [0, 0]);
        Assert.Equal(1, rcr.BadAccesses);
    }

    [Fact]
    public void State_round_trips()
    {
        _pm.Out16(2, AcpiPm.TMR_EN | AcpiPm.PWRBTN_EN);
        _pm.Advance(AcpiPm.TimeOfTick(5 << 23) + 17);
        var state = _pm.GetState();
        var other = new AcpiPm(_clock, new RecordingIrqLine(), _machine);
        other.FromState(state);
        Assert.Equal(state, other.GetState());
        Assert.Equal(_pm.NextDeadlineNs, other.NextDeadlineNs);
        Assert.Throws<ArgumentException>(() => other.FromState(state with { Control = 0xffff }));
        Assert.Throws<ArgumentException>(() => other.FromState(state with { TimerToggles = 0 }));
    }

    [Fact]
    public void Random_accesses_never_throw()
    {
        var rng = new Random(1997);
        for (int i = 0; i < 20_000; i++)
        {
            _clock.NowNanoseconds += rng.Next(0, 50_000_000);
            int width = rng.Next(0, 6);
            var buf = new byte[width];
            rng.NextBytes(buf);
            // Keep away from SLP_EN so the run does not stop at the first power-off.
            if (rng.Next(2) == 0)
                _pm.Read((ulong)rng.Next(0, 14), buf);
            else
                _pm.Write((ulong)rng.Next(0, 14), buf);
            if (rng.Next(10) == 0)
                _pm.Advance(_clock.NowNanoseconds);
        }
        new AcpiPm(_clock, NullIrqLine.Instance, _machine).FromState(_pm.GetState());
    }
}
