// HPET: IA-PC High Precision Event Timer, specification 1.0a, with three timers.
//
// Registers (MMIO 1 KiB, normally at 0xfed00000; 32- or 64-bit accesses aligned to their width):
//   0x000 GCAP_ID     REV_ID 1, NUM_TIM_CAP (timers - 1), COUNT_SIZE_CAP (64-bit), LEG_RT_CAP, VENDOR_ID 0x8086,
//                     COUNTER_CLK_PERIOD in fs (bits 63:32; default 10,000,000 fs = 100 MHz, QEMU's value)
//   0x010 GEN_CONF    ENABLE_CNF (bit 0: the main counter runs, timers may interrupt), LEG_RT_CNF (bit 1)
//   0x020 GINTR_STA   Tn_INT_STS for level-triggered timers, write 1 to clear
//   0x0f0 MAIN_CNT    the main counter; writable while halted
//   0x100 + 0x20*n    Tn_CONF_CAP: Tn_INT_TYPE_CNF (1 level), Tn_INT_ENB_CNF, Tn_TYPE_CNF (periodic),
//                     Tn_PER_INT_CAP (timer 0, or the first periodicTimers), Tn_SIZE_CAP (64-bit), Tn_VAL_SET_CNF, Tn_32MODE_CNF,
//                     Tn_INT_ROUTE_CNF (bits 13:9), Tn_INT_ROUTE_CAP (bits 63:32)
//   0x108 + 0x20*n    Tn_COMPARATOR
//   0x110 + 0x20*n    Tn_FSB_INT_ROUTE (FSB delivery is not offered: reads 0, writes ignored)
//
// Emulated: the main counter derived from time (counter = value at start + elapsed ns / period), one-shot and
// periodic comparators (a periodic comparator advances by the last value written without Tn_VAL_SET_CNF;
// a write with Tn_VAL_SET_CNF set sets the comparator itself), 32-bit timers (Tn_32MODE_CNF: comparator and
// match on the counter's low 32 bits; a 32-bit one-shot timer also interrupts when those bits wrap), edge
// interrupts (a pulse) and level interrupts (Tn_INT_STS set, line held until the guest clears the status),
// legacy replacement (timer 0 to 8259 IRQ0 and IOAPIC input 2, timer 1 to 8259 IRQ8 and IOAPIC input 8, as the
// specification's table says; the host disconnects the PIT and RTC interrupts while LegacyReplacement is set),
// and IOAPIC routing to the inputs Tn_INT_ROUTE_CAP allows (a route outside the capability is not taken).
// Only timers with Tn_INT_ENB_CNF set are evaluated. Timers are deadlines: NextDeadlineNs / Advance(now);
// register accesses catch up to the clock first, so the guest never sees a stale counter or status.
// Not emulated: FSB (MSI) delivery, 32-bit main counter mode.
using System.Buffers.Binary;
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

public sealed record HpetTimerState(ulong Config, ulong Comparator, ulong Period);

/// <summary>Saved HPET state. The counter is CounterBase at BaseNs, running from then if enabled.</summary>
public sealed record HpetState(
    ulong GeneralConfig, ulong InterruptStatus, ulong CounterBase, long BaseNs, ulong CheckedCounter, HpetTimerState[] Timers);

public sealed class Hpet : IBusDevice
{
    public const ulong DefaultBase = 0xfed00000;
    public const ulong MmioSize = 0x400;
    public const int TimerCount = 3;
    /// <summary>QEMU's period: 10 ns (100 MHz). The specification allows at most 100,000,000 fs.</summary>
    public const uint DefaultPeriodFs = 10_000_000;
    /// <summary>IOAPIC inputs 2, 8 and 16-23, as QEMU offers on its q35 machine.</summary>
    public const uint DefaultRouteCapability = 0x00ff0104;

    public const ulong GCAP_ID = 0x000;
    public const ulong GEN_CONF = 0x010;
    public const ulong GINTR_STA = 0x020;
    public const ulong MAIN_CNT = 0x0f0;
    public const ulong TimerBlock = 0x100;
    public const ulong TimerStride = 0x20;

    public const ulong ENABLE_CNF = 1 << 0;
    public const ulong LEG_RT_CNF = 1 << 1;

    public const ulong Tn_INT_TYPE_CNF = 1 << 1;
    public const ulong Tn_INT_ENB_CNF = 1 << 2;
    public const ulong Tn_TYPE_CNF = 1 << 3;
    public const ulong Tn_PER_INT_CAP = 1 << 4;
    public const ulong Tn_SIZE_CAP = 1 << 5;
    public const ulong Tn_VAL_SET_CNF = 1 << 6;
    public const ulong Tn_32MODE_CNF = 1 << 8;
    public const ulong Tn_INT_ROUTE_CNF = 0x1f << 9;
    public const ulong Tn_FSB_EN_CNF = 1 << 14;
    public const ulong Tn_FSB_INT_DEL_CAP = 1 << 15;

    private const ulong TimerWritable = Tn_INT_TYPE_CNF | Tn_INT_ENB_CNF | Tn_TYPE_CNF | Tn_VAL_SET_CNF | Tn_32MODE_CNF | Tn_INT_ROUTE_CNF;

    private readonly IClock _clock;
    private readonly Action<int, bool> _setIoApicInput;
    private readonly Action<int, bool>? _setPicInput;
    private readonly uint _periodFs;
    private readonly uint _routeCapability;
    private readonly int _periodicTimers;

    private ulong _config;
    private ulong _status;
    private ulong _counterBase;
    private long _baseNs;
    private ulong _checked;
    private readonly ulong[] _timerConfig = new ulong[TimerCount];
    private readonly ulong[] _comparator = new ulong[TimerCount];
    private readonly ulong[] _period = new ulong[TimerCount];
    /// <summary>The IOAPIC input each timer's level output currently holds high, or -1.</summary>
    private readonly int[] _assertedInput = new int[TimerCount];
    /// <summary>Whether that assertion also holds the 8259 input (legacy replacement).</summary>
    private readonly bool[] _assertedLegacy = new bool[TimerCount];

    /// <param name="clock">Time for register accesses.</param>
    /// <param name="setIoApicInput">Drives an IOAPIC input (GSI): routed timers and legacy inputs 2 and 8.</param>
    /// <param name="setPicInput">Drives an 8259 input in legacy replacement mode (IRQ0, IRQ8); null without a PIC.</param>
    /// <param name="routeCapability">Tn_INT_ROUTE_CAP: the IOAPIC inputs a timer may be routed to (bit n = input n).</param>
    /// <param name="periodicTimers">How many timers, from timer 0, offer periodic mode (the specification requires
    /// timer 0 only; QEMU offers it on all three).</param>
    public Hpet(IClock clock, Action<int, bool> setIoApicInput, Action<int, bool>? setPicInput = null,
        uint periodFs = DefaultPeriodFs, uint routeCapability = DefaultRouteCapability, int periodicTimers = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(periodicTimers, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(periodicTimers, TimerCount);
        if (periodFs == 0 || periodFs > 100_000_000)
            throw new ArgumentOutOfRangeException(nameof(periodFs), $"HPET period {periodFs} fs must be 1..100,000,000");
        _clock = clock;
        _setIoApicInput = setIoApicInput;
        _setPicInput = setPicInput;
        _periodFs = periodFs;
        _routeCapability = routeCapability;
        _periodicTimers = periodicTimers;
        Array.Fill(_assertedInput, -1);
        Reset();
    }

    public string Name => "hpet";

    /// <summary>Accesses with a bad width, alignment or offset, writes to read-only registers, unroutable timers.</summary>
    public long BadAccesses { get; private set; }

    /// <summary>Timer matches that raised (or would raise, while masked) an interrupt.</summary>
    public long Fires { get; private set; }

    public bool Enabled => (_config & ENABLE_CNF) != 0;

    /// <summary>True while timers 0 and 1 replace the PIT and RTC interrupts (the host then disconnects those).</summary>
    public bool LegacyReplacement => (_config & LEG_RT_CNF) != 0;

    public uint PeriodFs => _periodFs;

    public ulong Capabilities
        => 1 | ((ulong)(TimerCount - 1) << 8) | (1 << 13) | (1 << 15) | (0x8086UL << 16) | ((ulong)_periodFs << 32);

    public void Reset()
    {
        long now = _clock.NowNanoseconds;
        _config = 0;
        _status = 0;
        _counterBase = 0;
        _baseNs = now;
        _checked = 0;
        for (int n = 0; n < TimerCount; n++)
        {
            _timerConfig[n] = TimerCaps(n);
            _comparator[n] = ulong.MaxValue;
            _period[n] = 0;
        }
        UpdateLines();
    }

    /// <summary>The main counter at <paramref name="nowNs"/>.</summary>
    public ulong CounterAt(long nowNs) => Enabled ? _counterBase + Ticks(nowNs - _baseNs) : _counterBase;

    /// <summary>The earliest time a timer matches, or null when no enabled timer can.</summary>
    public long? NextDeadlineNs
    {
        get
        {
            if (!Enabled) return null;
            ulong? best = null;
            for (int n = 0; n < TimerCount; n++)
            {
                if ((_timerConfig[n] & Tn_INT_ENB_CNF) == 0) continue;
                ulong? c = NextMatch(n);
                if (c is ulong v && (best is null || v < best)) best = v;
            }
            if (best is not ulong target) return null;
            Int128 ns = (Int128)(((UInt128)(target - _counterBase) * _periodFs + 999_999) / 1_000_000) + _baseNs;
            return ns > long.MaxValue ? null : (long)ns;
        }
    }

    /// <summary>Processes every timer match up to <paramref name="nowNs"/>.</summary>
    public void Advance(long nowNs)
    {
        if (!Enabled) return;
        ulong cur = CounterAt(nowNs);
        if (cur == _checked) return;
        ulong from = _checked;
        _checked = cur;
        for (int n = 0; n < TimerCount; n++)
        {
            if ((_timerConfig[n] & Tn_INT_ENB_CNF) != 0 && Crossed(n, from, cur)) Fire(n);
        }
        UpdateLines();
    }

    public void Read(ulong offset, Span<byte> data)
    {
        if (!ValidAccess(offset, data.Length))
        {
            BadAccesses++;
            data.Fill(0xff);
            return;
        }
        Advance(_clock.NowNanoseconds);
        ulong reg = offset & ~7UL;
        ulong value = ReadRegister(reg);
        if (data.Length == 8) BinaryPrimitives.WriteUInt64LittleEndian(data, value);
        else BinaryPrimitives.WriteUInt32LittleEndian(data, (uint)(value >> (int)((offset & 4) * 8)));
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (!ValidAccess(offset, data.Length))
        {
            BadAccesses++;
            return;
        }
        long now = _clock.NowNanoseconds;
        Advance(now);
        ulong reg = offset & ~7UL;
        ulong value, mask;
        if (data.Length == 8)
        {
            value = BinaryPrimitives.ReadUInt64LittleEndian(data);
            mask = ulong.MaxValue;
        }
        else
        {
            int shift = (int)((offset & 4) * 8);
            value = (ulong)BinaryPrimitives.ReadUInt32LittleEndian(data) << shift;
            mask = 0xffffffffUL << shift;
        }
        WriteRegister(reg, value, mask, now);
        UpdateLines();
    }

    public HpetState GetState() => new(_config, _status, _counterBase, _baseNs, _checked,
        Enumerable.Range(0, TimerCount).Select(n => new HpetTimerState(_timerConfig[n], _comparator[n], _period[n])).ToArray());

    /// <summary>Restores a saved state and re-drives the level lines it implies; throws naming a bad field.</summary>
    public void FromState(HpetState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if ((state.GeneralConfig & ~(ENABLE_CNF | LEG_RT_CNF)) != 0)
            throw new ArgumentException($"HPET configuration 0x{state.GeneralConfig:x} sets reserved bits", nameof(state));
        if (state.InterruptStatus >> TimerCount != 0)
            throw new ArgumentException($"HPET interrupt status 0x{state.InterruptStatus:x} names missing timers", nameof(state));
        if (state.CheckedCounter < state.CounterBase)
            throw new ArgumentException("HPET checked counter precedes the counter base", nameof(state));
        if (state.Timers is null || state.Timers.Length != TimerCount)
            throw new ArgumentException($"HPET state needs {TimerCount} timers", nameof(state));
        for (int n = 0; n < TimerCount; n++)
        {
            var t = state.Timers[n] ?? throw new ArgumentException($"HPET timer {n} state is missing", nameof(state));
            if ((t.Config & ~WritableMask(n)) != TimerCaps(n))
                throw new ArgumentException($"HPET timer {n} configuration 0x{t.Config:x} does not match this timer's capabilities", nameof(state));
        }
        for (int n = 0; n < TimerCount; n++) DriveLine(n, -1);
        _config = state.GeneralConfig;
        _status = state.InterruptStatus;
        _counterBase = state.CounterBase;
        _baseNs = state.BaseNs;
        _checked = state.CheckedCounter;
        for (int n = 0; n < TimerCount; n++)
        {
            _timerConfig[n] = state.Timers[n].Config;
            _comparator[n] = state.Timers[n].Comparator;
            _period[n] = state.Timers[n].Period;
        }
        UpdateLines();
    }

    // ---------------------------------------------------------------- registers

    private static bool ValidAccess(ulong offset, int width)
        => offset < MmioSize && (width == 4 || width == 8) && offset % (ulong)width == 0;

    private ulong TimerCaps(int n)
        => ((ulong)_routeCapability << 32) | Tn_SIZE_CAP | (n < _periodicTimers ? Tn_PER_INT_CAP : 0);

    private ulong WritableMask(int n) => n < _periodicTimers ? TimerWritable : TimerWritable & ~Tn_TYPE_CNF;

    private ulong ReadRegister(ulong reg)
    {
        switch (reg)
        {
            case GCAP_ID: return Capabilities;
            case GEN_CONF: return _config;
            case GINTR_STA: return _status;
            case MAIN_CNT: return CounterAt(_clock.NowNanoseconds);
        }
        if (TryTimerRegister(reg, out int n, out ulong r))
        {
            return r switch
            {
                0x00 => _timerConfig[n],
                0x08 => _comparator[n],
                _ => 0, // Tn_FSB_INT_ROUTE: FSB delivery not offered
            };
        }
        BadAccesses++;
        return 0;
    }

    private void WriteRegister(ulong reg, ulong value, ulong mask, long now)
    {
        switch (reg)
        {
            case GEN_CONF:
                WriteGeneralConfig((_config & ~mask) | (value & mask), now);
                return;
            case GINTR_STA:
                _status &= ~(value & mask);
                return;
            case MAIN_CNT:
                if (Enabled)
                {
                    BadAccesses++; // the specification wants the counter halted before it is written
                    return;
                }
                _counterBase = (_counterBase & ~mask) | (value & mask);
                _checked = _counterBase;
                return;
        }
        if (TryTimerRegister(reg, out int n, out ulong r))
        {
            if (r == 0x00) WriteTimerConfig(n, (_timerConfig[n] & ~mask) | (value & mask));
            else if (r == 0x08) WriteComparator(n, value, mask);
            return; // Tn_FSB_INT_ROUTE: ignored
        }
        BadAccesses++; // GCAP_ID and reserved space
    }

    private bool TryTimerRegister(ulong reg, out int n, out ulong r)
    {
        n = (int)((reg - TimerBlock) / TimerStride);
        r = (reg - TimerBlock) % TimerStride;
        return reg >= TimerBlock && n < TimerCount && r <= 0x10;
    }

    private void WriteGeneralConfig(ulong value, long now)
    {
        value &= ENABLE_CNF | LEG_RT_CNF;
        bool wasEnabled = Enabled;
        bool enable = (value & ENABLE_CNF) != 0;
        if (wasEnabled && !enable)
        {
            _counterBase = CounterAt(now);
            _checked = _counterBase;
        }
        else if (!wasEnabled && enable)
        {
            _baseNs = now;
            _checked = _counterBase;
        }
        _config = value;
    }

    private void WriteTimerConfig(int n, ulong value)
    {
        ulong writable = WritableMask(n);
        ulong old = _timerConfig[n];
        ulong next = (value & writable) | TimerCaps(n);
        // A route the capability does not allow is not taken: the old route stays.
        int route = (int)((next & Tn_INT_ROUTE_CNF) >> 9);
        if ((_routeCapability & (1u << route)) == 0)
        {
            next = (next & ~Tn_INT_ROUTE_CNF) | (old & Tn_INT_ROUTE_CNF);
            if (((old ^ value) & Tn_INT_ROUTE_CNF) != 0) BadAccesses++;
        }
        if ((next & Tn_32MODE_CNF) != 0)
        {
            _comparator[n] = (uint)_comparator[n];
            _period[n] = (uint)_period[n];
        }
        // Edge timers have no status to keep.
        if ((next & Tn_INT_TYPE_CNF) == 0) _status &= ~(1UL << n);
        _timerConfig[n] = next;
    }

    private void WriteComparator(int n, ulong value, ulong mask)
    {
        ulong config = _timerConfig[n];
        bool is32 = (config & Tn_32MODE_CNF) != 0;
        if (is32)
        {
            mask &= 0xffffffffUL; // the upper half of a 32-bit comparator ignores writes
            if (mask == 0) return;
        }
        bool periodic = (config & Tn_TYPE_CNF) != 0;
        if (!periodic || (config & Tn_VAL_SET_CNF) != 0)
            _comparator[n] = (_comparator[n] & ~mask) | (value & mask);
        _period[n] = (_period[n] & ~mask) | (value & mask);
        if (is32)
        {
            _comparator[n] = (uint)_comparator[n];
            _period[n] = (uint)_period[n];
        }
        _timerConfig[n] = config & ~Tn_VAL_SET_CNF;
    }

    // ---------------------------------------------------------------- matching

    private ulong Ticks(long ns) => ns <= 0 ? 0 : (ulong)((UInt128)(ulong)ns * 1_000_000 / _periodFs);

    private bool Is32(int n) => (_timerConfig[n] & Tn_32MODE_CNF) != 0;

    private bool IsPeriodic(int n) => (_timerConfig[n] & Tn_TYPE_CNF) != 0;

    /// <summary>The first counter value after the checked point at which timer n matches (or, 32-bit one-shot, wraps).</summary>
    private ulong? NextMatch(int n)
    {
        ulong from = _checked;
        if (!Is32(n))
            return _comparator[n] > from ? _comparator[n] : null;
        ulong dist = (uint)((uint)_comparator[n] - (uint)from);
        if (dist == 0) dist = 1UL << 32;
        ulong match = from + dist;
        if (!IsPeriodic(n))
        {
            ulong wrap = (from | 0xffffffffUL) + 1;
            if (wrap != 0 && wrap < match) match = wrap;
        }
        return match < from ? null : match;
    }

    /// <summary>Did timer n match in (from, to]? Advances a periodic comparator past <paramref name="to"/>.</summary>
    private bool Crossed(int n, ulong from, ulong to)
    {
        ulong distance = to - from;
        if (!Is32(n))
        {
            ulong cmp = _comparator[n];
            if (cmp <= from || cmp > to) return false;
            if (IsPeriodic(n) && _period[n] != 0)
                _comparator[n] = cmp + ((to - cmp) / _period[n] + 1) * _period[n];
            return true;
        }
        ulong dist = (uint)((uint)_comparator[n] - (uint)from);
        if (dist == 0) dist = 1UL << 32;
        bool matched = dist <= distance;
        if (matched && IsPeriodic(n) && _period[n] != 0)
        {
            ulong hit = from + dist;
            _comparator[n] = (uint)(_comparator[n] + ((to - hit) / _period[n] + 1) * _period[n]);
        }
        ulong wrap = (from | 0xffffffffUL) + 1;
        bool wrapped = !IsPeriodic(n) && wrap != 0 && wrap <= to;
        return matched || wrapped;
    }

    private void Fire(int n)
    {
        Fires++;
        if ((_timerConfig[n] & Tn_INT_TYPE_CNF) != 0)
        {
            _status |= 1UL << n; // the line follows in UpdateLines
            return;
        }
        int input = RouteOf(n);
        if (input < 0) return;
        SetInput(n, input, true);
        SetInput(n, input, false);
    }

    /// <summary>The IOAPIC input timer n drives, or -1 when it has none.</summary>
    private int RouteOf(int n)
    {
        if (LegacyReplacement && n < 2) return n == 0 ? 2 : 8;
        int route = (int)((_timerConfig[n] & Tn_INT_ROUTE_CNF) >> 9);
        return (_routeCapability & (1u << route)) != 0 ? route : -1;
    }

    private void SetInput(int n, int ioapicInput, bool level)
    {
        _setIoApicInput(ioapicInput, level);
        if (LegacyReplacement && n < 2) _setPicInput?.Invoke(n == 0 ? 0 : 8, level);
    }

    /// <summary>Level outputs are a function of state: enabled, level type, Tn_INT_ENB_CNF and Tn_INT_STS.</summary>
    private void UpdateLines()
    {
        for (int n = 0; n < TimerCount; n++)
        {
            ulong c = _timerConfig[n];
            bool high = Enabled && (c & Tn_INT_TYPE_CNF) != 0 && (c & Tn_INT_ENB_CNF) != 0 && (_status & (1UL << n)) != 0;
            DriveLine(n, high ? RouteOf(n) : -1);
        }
    }

    private void DriveLine(int n, int input)
    {
        bool legacy = LegacyReplacement && n < 2;
        if (_assertedInput[n] == input && (input < 0 || _assertedLegacy[n] == legacy)) return;
        if (_assertedInput[n] >= 0)
        {
            _setIoApicInput(_assertedInput[n], false);
            if (_assertedLegacy[n]) _setPicInput?.Invoke(n == 0 ? 0 : 8, false);
        }
        _assertedInput[n] = input;
        _assertedLegacy[n] = input >= 0 && legacy;
        if (input >= 0)
        {
            _setIoApicInput(input, true);
            if (legacy) _setPicInput?.Invoke(n == 0 ? 0 : 8, true);
        }
    }
}
