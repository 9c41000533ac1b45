// Motorola MC146818A real-time clock with CMOS RAM, as in the PC/AT, plus the 128-byte upper bank.
//
// Ports (one device over 0x70-0x73, offsets 0-3): 0 index (bit 7 = NMI mask, remembered in NmiMasked; bits 6-0
// select byte 0-127; reads 0xff), 1 data; 2 upper-bank index (bits 6-0 select byte 128-255), 3 upper data.
// Registers: 0x00-0x09 seconds, seconds alarm, minutes, minutes alarm, hours, hours alarm, day of week, day of
// month, month, year; 0x0a A (UIP, DV2-0, RS3-0), 0x0b B (SET, PIE, AIE, UIE, SQWE, DM, 24/12, DSE), 0x0c C
// (IRQF, PF, AF, UF; read clears), 0x0d D (VRT, always 1); 0x0e-0xff battery-backed RAM (0x32: century,
// kept up to date by the update cycle as QEMU and PC firmware expect).
// Emulated: BCD or binary, 12- or 24-hour time; one update cycle per second (the first 500 ms after the divider
// leaves reset) with UIP high for the 244 us before each update; SET stops updates (and clears UIE, per the
// datasheet); DV=010 runs, DV=11x holds the divider in reset, any other DV also holds (this part has a 32.768 kHz
// crystal only); alarm with don't-care bytes (0xc0-0xff); periodic interrupt at the register A rate; IRQ8 is
// IRQF (a level that falls when register C is read). All timing is computed exactly from nowNs (32.768 kHz
// divider arithmetic), so nothing drifts. Time values the guest writes out of range are normalised at the next
// update; the day of week advances by whole days independently of the date, as on the chip.
// Not emulated: daylight-saving switching (DSE is stored, ignored), the square-wave output pin (SQWE stored).
// Accesses must be one byte; other widths are counted in BadAccesses (reads 0xff).
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

/// <summary>Saved state of the RTC. <see cref="Cmos"/> holds all 256 bytes.</summary>
public sealed record Rtc146818State(
    byte[] Cmos,
    byte Index,
    byte UpperIndex,
    bool NmiMasked,
    long DividerBaseNs,
    long UpdatesDone,
    long PeriodicSeen,
    long LastNs,
    bool IrqLevel);

/// <summary>The MC146818A RTC/CMOS at 0x70-0x73.</summary>
public sealed class Rtc146818 : IBusDevice
{
    public const int RegSeconds = 0x00;
    public const int RegSecondsAlarm = 0x01;
    public const int RegMinutes = 0x02;
    public const int RegMinutesAlarm = 0x03;
    public const int RegHours = 0x04;
    public const int RegHoursAlarm = 0x05;
    public const int RegDayOfWeek = 0x06;
    public const int RegDayOfMonth = 0x07;
    public const int RegMonth = 0x08;
    public const int RegYear = 0x09;
    public const int RegA = 0x0a;
    public const int RegB = 0x0b;
    public const int RegC = 0x0c;
    public const int RegD = 0x0d;
    public const int RegEquipment = 0x14;
    public const int RegCentury = 0x32;
    /// <summary>SeaBIOS reads the CPU count minus one here (CMOS_BIOS_SMP_COUNT).</summary>
    public const int RegSmpCount = 0x5f;

    public const byte A_UIP = 0x80;
    public const byte B_SET = 0x80;
    public const byte B_PIE = 0x40;
    public const byte B_AIE = 0x20;
    public const byte B_UIE = 0x10;
    public const byte B_DM = 0x04;
    public const byte B_24H = 0x02;
    public const byte C_IRQF = 0x80;
    public const byte C_PF = 0x40;
    public const byte C_AF = 0x20;
    public const byte C_UF = 0x10;
    public const byte D_VRT = 0x80;

    /// <summary>How long UIP is high before each update.</summary>
    public const long UipNs = 244_000;

    private const long SecondNs = 1_000_000_000;
    private const long FirstUpdateNs = 500_000_000;

    private readonly IClock _clock;
    private readonly IIrqLine _irq;
    private readonly byte[] _cmos = new byte[256];
    private byte _index;
    private byte _upperIndex;
    private long _dividerBaseNs;
    private long _updatesDone;
    private long _periodicSeen;
    private long _lastNs;
    private bool _irqLevel;

    /// <param name="start">The calendar time the clock shows at the clock's current instant.</param>
    public Rtc146818(IClock clock, IIrqLine irq8, DateTime start)
    {
        _clock = clock;
        _irq = irq8;
        _lastNs = Math.Max(0, clock.NowNanoseconds);
        _dividerBaseNs = _lastNs;
        _cmos[RegA] = 0x26;
        _cmos[RegB] = B_24H;
        _cmos[RegD] = D_VRT;
        WriteTime(start, dayOfWeek: (int)start.DayOfWeek + 1);
        UpdateChecksum();
    }

    public string Name => "rtc";

    public long BadAccesses { get; private set; }

    /// <summary>Bit 7 of the last write to port 0x70: 1 masks NMI.</summary>
    public bool NmiMasked { get; private set; }

    /// <summary>The IRQ8 output as last driven.</summary>
    public bool IrqLevel => _irqLevel;

    private bool Running => (_cmos[RegA] & 0x70) == 0x20;

    private bool Binary => (_cmos[RegB] & B_DM) != 0;

    private bool Hour24 => (_cmos[RegB] & B_24H) != 0;

    // ---- machine builder ----

    /// <summary>
    /// Fills the memory-size bytes as QEMU's pc machine does for SeaBIOS: 0x15/0x16 base memory (640 KiB),
    /// 0x17/0x18 and 0x30/0x31 KiB above 1 MiB (max 65535), 0x34/0x35 64 KiB units above 16 MiB below 4 GiB
    /// (max 65535), 0x5b-0x5d 64 KiB units above 4 GiB; then the 0x10-0x2d checksum at 0x2e/0x2f.
    /// </summary>
    public void SetMemorySize(ulong ramBelow4G, ulong ramAbove4G)
    {
        SetWord(0x15, 640);
        ulong ext = ramBelow4G > 1024 * 1024 ? (ramBelow4G - 1024 * 1024) / 1024 : 0;
        SetWord(0x17, (ushort)Math.Min(ext, 0xffff));
        SetWord(0x30, (ushort)Math.Min(ext, 0xffff));
        ulong above16 = ramBelow4G > 16 * 1024 * 1024 ? (ramBelow4G - 16 * 1024 * 1024) / 65536 : 0;
        SetWord(0x34, (ushort)Math.Min(above16, 0xffff));
        ulong high = Math.Min(ramAbove4G / 65536, 0xffffff);
        _cmos[0x5b] = (byte)high;
        _cmos[0x5c] = (byte)(high >> 8);
        _cmos[0x5d] = (byte)(high >> 16);
        UpdateChecksum();
    }

    /// <summary>CPU count for SeaBIOS (stored minus one at 0x5f).</summary>
    public void SetCpuCount(int cpus)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(cpus, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(cpus, 256);
        _cmos[RegSmpCount] = (byte)(cpus - 1);
    }

    /// <summary>
    /// The boot order as QEMU's pc machine stores it for SeaBIOS, one nibble per device (1 floppy, 2 hard disk,
    /// 3 CD-ROM, 4 network): the first two in 0x3d (first in bits 3:0), the third in 0x38 bits 7:4, whose bit 0
    /// (set: skip the floppy boot-signature check) stays clear. <paramref name="order"/> is QEMU's -boot order
    /// string, at most three of a, b, c, d, n ("cad" is QEMU's default).
    /// </summary>
    public void SetBootOrder(string order)
    {
        ArgumentNullException.ThrowIfNull(order);
        if (order.Length > 3) throw new ArgumentException($"boot order '{order}': at most three devices", nameof(order));
        Span<int> nibbles = stackalloc int[3];
        for (int i = 0; i < order.Length; i++)
        {
            nibbles[i] = order[i] switch
            {
                'a' or 'b' => 1,
                'c' => 2,
                'd' => 3,
                'n' => 4,
                _ => throw new ArgumentException($"boot order '{order}': '{order[i]}' is not a, b, c, d or n", nameof(order)),
            };
        }
        _cmos[0x3d] = (byte)(nibbles[1] << 4 | nibbles[0]);
        _cmos[0x38] = (byte)((_cmos[0x38] & 0x0f) | nibbles[2] << 4);
    }

    /// <summary>Equipment byte 0x14 (bit 1: FPU present; bits 5-4: 00 = VGA; bit 0 and 7-6: floppies).</summary>
    public void SetEquipment(byte value)
    {
        _cmos[RegEquipment] = value;
        UpdateChecksum();
    }

    /// <summary>Any other CMOS byte (boot order and the like); not the clock registers 0x00-0x0d.</summary>
    public void SetCmosByte(int index, byte value)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(index, 0x0e);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(index, 0xff);
        _cmos[index] = value;
        if (index is >= 0x10 and <= 0x2d)
            UpdateChecksum();
    }

    /// <summary>A CMOS byte as stored (for the builder's checks and tests; no side effects).</summary>
    public byte PeekCmos(int index) => _cmos[index & 0xff];

    private void SetWord(int index, ushort value)
    {
        _cmos[index] = (byte)value;
        _cmos[index + 1] = (byte)(value >> 8);
    }

    private void UpdateChecksum()
    {
        int sum = 0;
        for (int i = 0x10; i <= 0x2d; i++)
            sum += _cmos[i];
        _cmos[0x2e] = (byte)(sum >> 8);
        _cmos[0x2f] = (byte)sum;
    }

    // ---- time ----

    /// <summary>When IRQ8 could next rise (periodic, update-ended or alarm), or null.</summary>
    public long? NextDeadlineNs
    {
        get
        {
            if (_irqLevel || !Running)
                return null;
            long? best = null;
            byte b = _cmos[RegB];
            int periodCycles = PeriodCycles();
            if ((b & B_PIE) != 0 && periodCycles != 0)
                best = _dividerBaseNs + CyclesToNs((_periodicSeen + 1) * periodCycles);
            if ((b & (B_UIE | B_AIE)) != 0 && (b & B_SET) == 0)
            {
                long update = _dividerBaseNs + FirstUpdateNs + _updatesDone * SecondNs;
                best = best is { } p ? Math.Min(p, update) : update;
            }
            return best;
        }
    }

    public void Advance(long nowNs) => Settle(nowNs);

    /// <summary>The calendar time the registers show now (decoded, normalised), for the host and tests.</summary>
    public DateTime CurrentTime
    {
        get
        {
            Settle(_clock.NowNanoseconds);
            return ReadTime();
        }
    }

    /// <summary>Periodic rate in 32.768 kHz cycles, or 0 for none (RS3-0 = 0).</summary>
    private int PeriodCycles()
    {
        int rs = _cmos[RegA] & 0x0f;
        if (rs == 0)
            return 0;
        return rs < 3 ? 1 << (rs + 6) : 1 << (rs - 1);
    }

    private static long NsToCycles(long ns) => ns <= 0 ? 0 : (long)((Int128)ns * 32768 / SecondNs);

    private static long CyclesToNs(long cycles) => (long)(((Int128)cycles * SecondNs + 32767) / 32768);

    private long UpdatesDue(long now) =>
        now - _dividerBaseNs < FirstUpdateNs ? 0 : (now - _dividerBaseNs - FirstUpdateNs) / SecondNs + 1;

    private long PeriodicDue(long now)
    {
        int period = PeriodCycles();
        return period == 0 ? 0 : NsToCycles(now - _dividerBaseNs) / period;
    }

    private long Settle(long nowNs)
    {
        long now = Math.Max(nowNs, _lastNs);
        _lastNs = now;
        if (Running)
        {
            long due = UpdatesDue(now);
            long n = due - _updatesDone;
            if (n > 0)
            {
                if ((_cmos[RegB] & B_SET) == 0)
                    RunUpdates(n);
                _updatesDone = due;
            }
            long periodic = PeriodicDue(now);
            if (periodic > _periodicSeen)
            {
                _cmos[RegC] |= C_PF;
                _periodicSeen = periodic;
            }
        }
        DriveIrq();
        return now;
    }

    private void DriveIrq()
    {
        byte c = (byte)(_cmos[RegC] & 0x70);
        if ((c & _cmos[RegB] & (B_PIE | B_AIE | B_UIE)) != 0)
            c |= C_IRQF;
        _cmos[RegC] = c;
        bool level = (c & C_IRQF) != 0;
        if (level != _irqLevel)
        {
            _irqLevel = level;
            _irq.Set(level);
        }
    }

    private void RunUpdates(long n)
    {
        DateTime before = ReadTime();
        DateTime after;
        try
        {
            after = before.AddSeconds(n);
        }
        catch (ArgumentOutOfRangeException)
        {
            after = before;
        }
        int dow = Dec(_cmos[RegDayOfWeek]);
        if (dow is < 1 or > 7)
            dow = 1;
        int days = (int)((after.Date - before.Date).Days % 7);
        if (AlarmMatches(before, n))
            _cmos[RegC] |= C_AF;
        _cmos[RegC] |= C_UF;
        WriteTime(after, (dow - 1 + days) % 7 + 1);
    }

    /// <summary>Whether any of the <paramref name="n"/> updates after <paramref name="before"/> hits the alarm.</summary>
    private bool AlarmMatches(DateTime before, long n)
    {
        byte sa = _cmos[RegSecondsAlarm], ma = _cmos[RegMinutesAlarm], ha = _cmos[RegHoursAlarm];
        int sod = (int)before.TimeOfDay.TotalSeconds;
        long steps = Math.Min(n, 86400);
        for (long i = 1; i <= steps; i++)
        {
            int t = (int)((sod + i) % 86400);
            if (Matches(sa, Enc(t % 60)) && Matches(ma, Enc(t / 60 % 60)) && Matches(ha, EncHour(t / 3600)))
                return true;
        }
        return false;

        static bool Matches(byte alarm, byte value) => (alarm & 0xc0) == 0xc0 || alarm == value;
    }

    private int Dec(byte v) => Binary ? v : (v >> 4) * 10 + (v & 0x0f);

    private byte Enc(int v) => Binary ? (byte)v : (byte)((v / 10) << 4 | v % 10);

    private byte EncHour(int hour24)
    {
        if (Hour24)
            return Enc(hour24);
        int h12 = hour24 % 12 == 0 ? 12 : hour24 % 12;
        return (byte)(Enc(h12) | (hour24 >= 12 ? 0x80 : 0));
    }

    private DateTime ReadTime()
    {
        int sec = Math.Clamp(Dec(_cmos[RegSeconds]), 0, 59);
        int min = Math.Clamp(Dec(_cmos[RegMinutes]), 0, 59);
        byte hb = _cmos[RegHours];
        int hour = Hour24
            ? Math.Clamp(Dec(hb), 0, 23)
            : Math.Clamp(Dec((byte)(hb & 0x7f)), 1, 12) % 12 + ((hb & 0x80) != 0 ? 12 : 0);
        int century = Dec(_cmos[RegCentury]);
        if (century is < 1 or > 99)
            century = 20;
        int year = Math.Clamp(century * 100 + Math.Clamp(Dec(_cmos[RegYear]), 0, 99), 1, 9999);
        int month = Math.Clamp(Dec(_cmos[RegMonth]), 1, 12);
        int day = Math.Clamp(Dec(_cmos[RegDayOfMonth]), 1, DateTime.DaysInMonth(year, month));
        return new DateTime(year, month, day, hour, min, sec, DateTimeKind.Unspecified);
    }

    private void WriteTime(DateTime t, int dayOfWeek)
    {
        _cmos[RegSeconds] = Enc(t.Second);
        _cmos[RegMinutes] = Enc(t.Minute);
        _cmos[RegHours] = EncHour(t.Hour);
        _cmos[RegDayOfWeek] = Enc(dayOfWeek);
        _cmos[RegDayOfMonth] = Enc(t.Day);
        _cmos[RegMonth] = Enc(t.Month);
        _cmos[RegYear] = Enc(t.Year % 100);
        _cmos[RegCentury] = Enc(t.Year / 100);
    }

    // ---- bus ----

    public void Read(ulong offset, Span<byte> data)
    {
        if (data.Length != 1 || offset > 3)
        {
            BadAccesses++;
            data.Fill(0xff);
            return;
        }
        data[0] = offset switch
        {
            1 => ReadRegister(_index),
            3 => _cmos[0x80 | _upperIndex],
            _ => 0xff,
        };
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.Length != 1 || offset > 3)
        {
            BadAccesses++;
            return;
        }
        byte value = data[0];
        switch (offset)
        {
            case 0:
                NmiMasked = (value & 0x80) != 0;
                _index = (byte)(value & 0x7f);
                break;
            case 1:
                WriteRegister(_index, value);
                break;
            case 2:
                _upperIndex = (byte)(value & 0x7f);
                break;
            default:
                _cmos[0x80 | _upperIndex] = value;
                break;
        }
    }

    private byte ReadRegister(int index)
    {
        long now = Settle(_clock.NowNanoseconds);
        switch (index)
        {
            case RegA:
                {
                    byte a = _cmos[RegA];
                    if (Running && (_cmos[RegB] & B_SET) == 0)
                    {
                        long next = _dividerBaseNs + FirstUpdateNs + _updatesDone * SecondNs;
                        if (next - now <= UipNs)
                            a |= A_UIP;
                    }
                    return a;
                }
            case RegC:
                {
                    byte c = _cmos[RegC];
                    _cmos[RegC] = 0;
                    DriveIrq();
                    return c;
                }
            case RegD:
                return D_VRT;
            default:
                return _cmos[index];
        }
    }

    private void WriteRegister(int index, byte value)
    {
        long now = Settle(_clock.NowNanoseconds);
        switch (index)
        {
            case RegA:
                {
                    bool wasRunning = Running;
                    _cmos[RegA] = (byte)(value & 0x7f);
                    if (Running && !wasRunning)
                    {
                        // Divider released: the first update comes 500 ms later; the periodic chain restarts.
                        _dividerBaseNs = now;
                        _updatesDone = 0;
                    }
                    _periodicSeen = Running ? PeriodicDue(now) : 0;
                    break;
                }
            case RegB:
                if ((value & B_SET) != 0)
                    value &= unchecked((byte)~B_UIE);
                _cmos[RegB] = value;
                break;
            case RegC:
            case RegD:
                // Read-only.
                break;
            default:
                _cmos[index] = value;
                break;
        }
        DriveIrq();
    }

    // ---- state ----

    public Rtc146818State GetState() =>
        new((byte[])_cmos.Clone(), _index, _upperIndex, NmiMasked, _dividerBaseNs, _updatesDone, _periodicSeen, _lastNs, _irqLevel);

    /// <summary>Loads a saved state; an invalid record is refused with <see cref="ArgumentException"/>.</summary>
    public void FromState(Rtc146818State state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Cmos is null || state.Cmos.Length != 256)
            throw new ArgumentException("RTC: CMOS image must be 256 bytes", nameof(state));
        if (state.Index > 0x7f || state.UpperIndex > 0x7f)
            throw new ArgumentException("RTC: index out of range", nameof(state));
        if (state.UpdatesDone < 0 || state.PeriodicSeen < 0 || state.LastNs < 0 || state.DividerBaseNs > state.LastNs)
            throw new ArgumentException("RTC: time values out of range", nameof(state));
        state.Cmos.CopyTo(_cmos, 0);
        _cmos[RegA] &= 0x7f;
        _index = state.Index;
        _upperIndex = state.UpperIndex;
        NmiMasked = state.NmiMasked;
        _dividerBaseNs = state.DividerBaseNs;
        _updatesDone = state.UpdatesDone;
        _periodicSeen = state.PeriodicSeen;
        _lastNs = state.LastNs;
        _irqLevel = state.IrqLevel;
        _irq.Set(_irqLevel);
    }
}
