// ACPI fixed-hardware power management registers as on the PIIX4 PM function (QEMU's pc machine), and the
// ACPI reset register at 0xcf9 (ResetControlRegister).
//
// AcpiPm is one 12-byte I/O block (base port configurable, 0x600 on QEMU pc) with this offset scheme:
//   0-1 PM1a_STS: TMR_STS 0, BM_STS 4, GBL_STS 5, PWRBTN_STS 8, SLPBTN_STS 9, RTC_STS 10, WAK_STS 15 (write 1 to clear)
//   2-3 PM1a_EN:  TMR_EN 0, GBL_EN 5, PWRBTN_EN 8, SLPBTN_EN 9, RTC_EN 10
//   4-5 PM1a_CNT: SCI_EN 0, BM_RLD 1, GBL_RLS 2 (write-only), SLP_TYP 10-12, SLP_EN 13 (write-only)
//   6-7 reserved (read 0)
//   8-11 PM_TMR:  24-bit free-running count at 3.579545 MHz (FADT: PM_TMR_LEN 4, TMR_VAL_EXT = 0), read-only
// So PM1a_EVT_BLK = base (PM1_EVT_LEN 4), PM1a_CNT_BLK = base + 4 (PM1_CNT_LEN 2), PM_TMR_BLK = base + 8.
// Accesses of 1, 2 or 4 bytes anywhere inside the block are taken byte lane by byte lane; anything else is
// counted in BadAccesses (reads 0xff).
// Emulated: the PM timer, computed exactly from nowNs; TMR_STS set each time bit 23 of the counter toggles; SCI
// (IRQ9 on PIIX4) = SCI_EN and any of (TMR, GBL, PWRBTN, SLPBTN, RTC) with both status and enable set, driven as a
// level; the power button as host input; SLP_EN with SLP_TYP equal to the S5 value -> IMachineControl PowerOff.
// The S5 value defaults to 0, what QEMU's PIIX4 DSDT (_S5 = 0) and its PM1a_CNT handler use (SLP_TYP 0 = soft
// off); machines whose DSDT says otherwise pass theirs. SCI_EN is set at reset by default (a machine with no
// SMI_CMD port is always in ACPI mode) and stays writable, as in QEMU.
// Without its timer (hasTimer: false; a machine whose kernel has the PM timer, as vmm(4) has it at 0x408 while
// bhyve's userspace has PM1 event/control at 0x400-0x405) the block is PM1 event/control alone: TMR_STS never sets,
// there is no deadline, and the PM_TMR bytes read all-ones (nothing answers there); the machine maps only bytes 0-5.
// Not emulated: S1-S4 sleep (SLP_EN with another SLP_TYP is counted in IgnoredSleepRequests), GPE blocks, the
// global lock (GBL_RLS is accepted and ignored), bus-master status.
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

public sealed record AcpiPmState(ushort Status, ushort Enable, ushort Control, long TimerToggles, long LastNs, bool SciLevel);

/// <summary>PM1a event/control and PM timer block.</summary>
public sealed class AcpiPm : IBusDevice
{
    public const int BlockLength = 12;
    public const int Pm1EventOffset = 0;
    public const int Pm1ControlOffset = 4;
    public const int PmTimerOffset = 8;
    public const int Pm1EventLength = 4;
    public const int Pm1ControlLength = 2;
    public const int PmTimerLength = 4;
    public const long TimerHz = 3_579_545;

    public const ushort TMR_STS = 1 << 0;
    public const ushort BM_STS = 1 << 4;
    public const ushort GBL_STS = 1 << 5;
    public const ushort PWRBTN_STS = 1 << 8;
    public const ushort SLPBTN_STS = 1 << 9;
    public const ushort RTC_STS = 1 << 10;
    public const ushort WAK_STS = 1 << 15;
    public const ushort TMR_EN = 1 << 0;
    public const ushort GBL_EN = 1 << 5;
    public const ushort PWRBTN_EN = 1 << 8;
    public const ushort SLPBTN_EN = 1 << 9;
    public const ushort RTC_EN = 1 << 10;
    public const ushort SCI_EN = 1 << 0;
    public const ushort BM_RLD = 1 << 1;
    public const ushort GBL_RLS = 1 << 2;
    public const ushort SLP_EN = 1 << 13;
    public const int SLP_TYP_SHIFT = 10;

    private const ushort StatusMask = TMR_STS | BM_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS | WAK_STS;
    private const ushort EnableMask = TMR_EN | GBL_EN | PWRBTN_EN | SLPBTN_EN | RTC_EN;
    private const ushort ControlMask = SCI_EN | BM_RLD | 7 << SLP_TYP_SHIFT;
    private const ushort SciSources = TMR_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS;

    private readonly IClock _clock;
    private readonly IIrqLine _sci;
    private readonly IMachineControl _machine;
    private ushort _sts;
    private ushort _en;
    private ushort _cnt;
    private long _toggles;
    private long _lastNs;
    private bool _sciLevel;

    /// <param name="basePort">Where the machine maps the block (for the FADT; offsets are relative).</param>
    /// <param name="s5SleepType">The SLP_TYP value the DSDT's _S5 package gives.</param>
    /// <param name="hasTimer">False: PM1 event/control only (another party, the kernel, has the PM timer).</param>
    public AcpiPm(IClock clock, IIrqLine sci, IMachineControl machine, ushort basePort = 0x600, int s5SleepType = 0,
        bool sciEnabledAtReset = true, bool hasTimer = true)
    {
        HasTimer = hasTimer;
        ArgumentOutOfRangeException.ThrowIfGreaterThan(basePort, 0x10000 - BlockLength);
        ArgumentOutOfRangeException.ThrowIfLessThan(s5SleepType, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(s5SleepType, 7);
        _clock = clock;
        _sci = sci;
        _machine = machine;
        BasePort = basePort;
        S5SleepType = s5SleepType;
        _cnt = sciEnabledAtReset ? SCI_EN : (ushort)0;
        _lastNs = Math.Max(0, clock.NowNanoseconds);
        _toggles = TicksAt(_lastNs) >> 23;
    }

    public string Name => "acpi-pm";

    public ushort BasePort { get; }

    /// <summary>Whether the block has its PM timer (bytes 8-11); false: PM1 event/control only.</summary>
    public bool HasTimer { get; }

    /// <summary>The bytes of the block a machine maps: all 12, or the 6 of PM1 event/control without the timer.</summary>
    public int MappedLength => HasTimer ? BlockLength : Pm1ControlOffset + Pm1ControlLength;

    public int S5SleepType { get; }

    /// <summary>FADT PM1a_EVT_BLK.</summary>
    public ushort Pm1aEventBlock => BasePort;

    /// <summary>FADT PM1a_CNT_BLK.</summary>
    public ushort Pm1aControlBlock => (ushort)(BasePort + Pm1ControlOffset);

    /// <summary>FADT PM_TMR_BLK (24-bit timer: leave TMR_VAL_EXT clear).</summary>
    public ushort PmTimerBlock => (ushort)(BasePort + PmTimerOffset);

    public long BadAccesses { get; private set; }

    public long IgnoredSleepRequests { get; private set; }

    public bool SciLevel => _sciLevel;

    public static long TicksAt(long nowNs) => nowNs <= 0 ? 0 : (long)((Int128)nowNs * TimerHz / 1_000_000_000);

    public static long TimeOfTick(long tick) => tick <= 0 ? 0 : (long)(((Int128)tick * 1_000_000_000 + TimerHz - 1) / TimerHz);

    /// <summary>The PM_TMR value at <paramref name="nowNs"/>.</summary>
    public static uint TimerValueAt(long nowNs) => (uint)(TicksAt(nowNs) & 0xffffff);

    /// <summary>When TMR_STS next sets while it would raise SCI, or null.</summary>
    public long? NextDeadlineNs =>
        HasTimer && !_sciLevel && (_en & TMR_EN) != 0 && (_cnt & SCI_EN) != 0 && (_sts & TMR_STS) == 0
            ? TimeOfTick((_toggles + 1) << 23)
            : null;

    public void Advance(long nowNs) => Settle(nowNs);

    /// <summary>Host input: the power button was pressed (PWRBTN_STS; SCI if enabled).</summary>
    public void PressPowerButton()
    {
        Settle(_clock.NowNanoseconds);
        _sts |= PWRBTN_STS;
        DriveSci();
    }

    private long Settle(long nowNs)
    {
        long now = Math.Max(nowNs, _lastNs);
        _lastNs = now;
        long toggles = TicksAt(now) >> 23;
        if (toggles > _toggles)
        {
            _toggles = toggles;
            if (HasTimer) _sts |= TMR_STS;
        }
        DriveSci();
        return now;
    }

    private void DriveSci()
    {
        bool level = (_cnt & SCI_EN) != 0 && (_sts & _en & SciSources) != 0;
        if (level != _sciLevel)
        {
            _sciLevel = level;
            _sci.Set(level);
        }
    }

    private static bool Valid(ulong offset, int width) =>
        width is 1 or 2 or 4 && offset < BlockLength && offset + (ulong)width <= BlockLength;

    public void Read(ulong offset, Span<byte> data)
    {
        if (!Valid(offset, data.Length))
        {
            BadAccesses++;
            data.Fill(0xff);
            return;
        }
        long now = Settle(_clock.NowNanoseconds);
        uint tmr = TimerValueAt(now);
        Span<byte> image = stackalloc byte[BlockLength];
        image[0] = (byte)_sts;
        image[1] = (byte)(_sts >> 8);
        image[2] = (byte)_en;
        image[3] = (byte)(_en >> 8);
        image[4] = (byte)_cnt;
        image[5] = (byte)(_cnt >> 8);
        if (HasTimer)
        {
            image[8] = (byte)tmr;
            image[9] = (byte)(tmr >> 8);
            image[10] = (byte)(tmr >> 16);
        }
        else
        {
            image[PmTimerOffset..].Fill(0xff); // no timer here: nothing drives these bytes
        }
        image.Slice((int)offset, data.Length).CopyTo(data);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (!Valid(offset, data.Length))
        {
            BadAccesses++;
            return;
        }
        Settle(_clock.NowNanoseconds);
        for (int i = 0; i < data.Length; i++)
        {
            int lane = (int)offset + i;
            int shift = (lane & 1) * 8;
            ushort value = (ushort)(data[i] << shift);
            ushort laneMask = (ushort)(0xff << shift);
            switch (lane >> 1)
            {
                case 0:
                    _sts &= (ushort)~(value & StatusMask);
                    break;
                case 1:
                    _en = (ushort)((_en & ~laneMask) | (value & laneMask & EnableMask));
                    break;
                case 2:
                    _cnt = (ushort)((_cnt & ~laneMask) | (value & laneMask & ControlMask));
                    if ((value & SLP_EN) != 0)
                        Sleep((_cnt >> SLP_TYP_SHIFT) & 7);
                    break;
                default:
                    // Reserved bytes and PM_TMR are read-only.
                    break;
            }
        }
        DriveSci();
    }

    private void Sleep(int type)
    {
        if (type == S5SleepType)
            _machine.RequestStop(new MachineStopRequest(MachineStopReason.PowerOff));
        else
            IgnoredSleepRequests++;
    }

    public AcpiPmState GetState() => new(_sts, _en, _cnt, _toggles, _lastNs, _sciLevel);

    /// <summary>Loads a saved state; an invalid record is refused with <see cref="ArgumentException"/>.</summary>
    public void FromState(AcpiPmState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if ((state.Status & ~StatusMask) != 0 || (state.Enable & ~EnableMask) != 0 || (state.Control & ~ControlMask) != 0)
            throw new ArgumentException("ACPI PM: reserved register bits set", nameof(state));
        if (state.LastNs < 0 || state.TimerToggles != TicksAt(state.LastNs) >> 23)
            throw new ArgumentException("ACPI PM: timer state does not match its time", nameof(state));
        _sts = state.Status;
        _en = state.Enable;
        _cnt = state.Control;
        _toggles = state.TimerToggles;
        _lastNs = state.LastNs;
        _sciLevel = state.SciLevel;
        _sci.Set(_sciLevel);
    }
}

/// <summary>
/// The reset control register at 0xcf9 (PIIX RCR; the FADT RESET_REG with RESET_VALUE 0x06): bit 1 SYS_RST and
/// bit 3 FULL_RST are stored and read back; a write with bit 2 (RST_CPU) set resets the machine through
/// IMachineControl (0x06 and 0x0e both do). One byte at offset 0 only; other accesses are counted (reads 0xff).
/// The port sits inside the PCI configuration address range 0xcf8-0xcfb: the machine must route byte accesses
/// at 0xcf9 here and wider ones to the PCI host bridge.
/// </summary>
public sealed class ResetControlRegister(IMachineControl machine) : IBusDevice
{
    public const ushort Port = 0xcf9;
    public const byte ResetValue = 0x06;
    public const byte SYS_RST = 0x02;
    public const byte RST_CPU = 0x04;
    public const byte FULL_RST = 0x08;

    private byte _value;

    public string Name => "reset-control";

    public long BadAccesses { get; private set; }

    public void Read(ulong offset, Span<byte> data)
    {
        if (data.Length != 1 || offset != 0)
        {
            BadAccesses++;
            data.Fill(0xff);
            return;
        }
        data[0] = _value;
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.Length != 1 || offset != 0)
        {
            BadAccesses++;
            return;
        }
        _value = (byte)(data[0] & (SYS_RST | FULL_RST));
        if ((data[0] & RST_CPU) != 0)
            machine.RequestStop(new MachineStopRequest(MachineStopReason.Reset));
    }

    public byte GetState() => _value;

    public void FromState(byte value) => _value = (byte)(value & (SYS_RST | FULL_RST));
}
