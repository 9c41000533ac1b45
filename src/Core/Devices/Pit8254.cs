// Intel 8254 programmable interval timer, as wired in the PC, with system control port B (0x61).
//
// Ports: this device at 0x40-0x43 (offsets 0-2: counter 0-2 data, offset 3: control word); Port61 is a
// separate one-port IBusDevice view of the same chip for 0x61. Map both with ONE shared lock.
//   0x61 read: bit 0 GATE2, bit 1 SPKR data enable, bits 2-3 as written (parity/IOCHK check enables),
//   bit 4 refresh request toggle (flips every 18 PIT clocks, ~15.085 us), bit 5 OUT2, bits 6-7 read 0.
//   0x61 write: bits 0-3 stored; bit 0 drives GATE2.
// Clock: 1.193182 MHz; every counter value is computed from nowNs (ticks = floor(now * 1193182 / 1e9)), so
// nothing drifts however the host advances. Counter 0's OUT drives IRQ0; counters 0 and 1 have GATE tied high.
// Emulated: all six modes (6 and 7 alias 2 and 3), binary and BCD, LSB / MSB / LSB-then-MSB access with
// independent read and write flip-flops, counter latch and read-back (count and status, with NULL COUNT),
// gate behaviour per mode (pause in 0/4, trigger in 1/5, stop-and-reload in 2/3), a count rewritten in modes
// 2/3 taking effect at the end of the current period (mode 3: the full period, not the half-cycle), and in
// modes 1/5 at the next trigger.
// Simplifications: the count is loaded at the write itself (no extra CLK of load delay); count 1 in modes 2/3
// (illegal per the datasheet) runs as 2; channel 1 (DRAM refresh) counts but drives nothing; no speaker audio.
// IRQ0 follows OUT0; a rising edge of OUT0 the host did not Advance to in time is delivered as a low-high pulse
// at the next Advance (several missed edges coalesce into one, as lost ticks do on hardware). NextDeadlineNs is
// the next rising edge of OUT0, the only transition the edge-triggered IRQ0 input acts on.
// Byte accesses only; other widths are answered as hardware would (reads 0xff) and counted in BadAccesses.
// A clock that runs backwards is treated as standing still.
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

/// <summary>Saved state of one 8254 counter.</summary>
public sealed record Pit8254CounterState(
    int Mode,
    int Rw,
    bool Bcd,
    ushort CountRegister,
    bool Loaded,
    bool Triggered,
    long LoadTick,
    long? PausedAtTick,
    ushort? PendingCount,
    long PendingAtElapsed,
    bool NullCount,
    bool WriteLsbDone,
    byte WriteLsb,
    bool ReadMsbNext,
    bool CountLatched,
    ushort LatchValue,
    bool StatusLatched,
    byte StatusValue,
    bool Gate,
    long EdgesSeen);

/// <summary>Saved state of the PIT and port 0x61.</summary>
public sealed record Pit8254State(
    Pit8254CounterState Counter0,
    Pit8254CounterState Counter1,
    Pit8254CounterState Counter2,
    byte Port61,
    bool Irq0Level,
    long LastTick);

/// <summary>The 8254 PIT at 0x40-0x43 with port 0x61 as <see cref="Port61"/>.</summary>
public sealed class Pit8254 : IBusDevice
{
    /// <summary>Input clock of every counter, in Hz.</summary>
    public const long ClockHz = 1_193_182;

    /// <summary>PIT clocks per DRAM refresh request on the PC (15.085 us).</summary>
    public const int RefreshTicks = 18;

    private readonly IClock _clock;
    private readonly IIrqLine _irq0;
    private readonly Counter[] _counters = [new(true), new(true), new(false)];
    private byte _port61;
    private bool _irq0Level;
    private long _lastTick;

    public Pit8254(IClock clock, IIrqLine irq0)
    {
        _clock = clock;
        _irq0 = irq0;
        Port61 = new Port61View(this);
    }

    public string Name => "pit";

    /// <summary>System control port B (0x61).</summary>
    public IBusDevice Port61 { get; }

    public long BadAccesses { get; private set; }

    /// <summary>PIT clocks elapsed at <paramref name="nowNs"/>.</summary>
    public static long TicksAt(long nowNs) => nowNs <= 0 ? 0 : (long)((Int128)nowNs * ClockHz / 1_000_000_000);

    /// <summary>The first nanosecond at which <paramref name="tick"/> clocks have elapsed.</summary>
    public static long TimeOfTick(long tick) => tick <= 0 ? 0 : (long)(((Int128)tick * 1_000_000_000 + ClockHz - 1) / ClockHz);

    /// <summary>When OUT0 next rises (the host should call <see cref="Advance"/> then), or null.</summary>
    public long? NextDeadlineNs
    {
        get
        {
            long? d = _counters[0].NextEdgeTick();
            return d is { } t ? TimeOfTick(t) : null;
        }
    }

    /// <summary>Brings the counters to <paramref name="nowNs"/> and drives IRQ0.</summary>
    public void Advance(long nowNs) => Settle(nowNs);

    /// <summary>OUT of counter <paramref name="counter"/> now (for tests and the speaker).</summary>
    public bool Out(int counter)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(counter);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(counter, 2);
        return _counters[counter].Out(Settle(_clock.NowNanoseconds));
    }

    public void Read(ulong offset, Span<byte> data)
    {
        if (data.Length != 1 || offset > 3)
        {
            BadAccesses++;
            data.Fill(0xff);
            return;
        }
        long tick = Settle(_clock.NowNanoseconds);
        // The control word register cannot be read (the 8254 floats the bus).
        data[0] = offset == 3 ? (byte)0xff : _counters[offset].ReadByte(tick);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.Length != 1 || offset > 3)
        {
            BadAccesses++;
            return;
        }
        long tick = Settle(_clock.NowNanoseconds);
        byte value = data[0];
        if (offset < 3)
            _counters[offset].WriteByte(value, tick);
        else
            WriteControl(value, tick);
        DriveIrq(0);
    }

    private void WriteControl(byte value, long tick)
    {
        int sc = value >> 6;
        int rw = (value >> 4) & 3;
        if (sc == 3)
        {
            // Read-back: bit 5 = !COUNT, bit 4 = !STATUS, bits 3-1 select counters 2-0.
            for (int i = 0; i < 3; i++)
            {
                if ((value & (2 << i)) == 0)
                    continue;
                if ((value & 0x20) == 0)
                    _counters[i].LatchCount(tick);
                if ((value & 0x10) == 0)
                    _counters[i].LatchStatus(tick);
            }
            return;
        }
        if (rw == 0)
            _counters[sc].LatchCount(tick);
        else
            _counters[sc].Program((value >> 1) & 7, rw, (value & 1) != 0);
    }

    private long Settle(long nowNs)
    {
        long tick = Math.Max(TicksAt(nowNs), _lastTick);
        _lastTick = tick;
        long edges = _counters[0].Settle(tick);
        _counters[1].Settle(tick);
        _counters[2].Settle(tick);
        DriveIrq(edges);
        return tick;
    }

    private void DriveIrq(long newEdges)
    {
        if (newEdges > 0)
        {
            if (_irq0Level)
                _irq0.Set(false);
            _irq0.Set(true);
            _irq0Level = true;
        }
        bool level = _counters[0].Out(_lastTick);
        if (level != _irq0Level)
        {
            _irq0Level = level;
            _irq0.Set(level);
        }
    }

    public Pit8254State GetState() =>
        new(_counters[0].Save(), _counters[1].Save(), _counters[2].Save(), _port61, _irq0Level, _lastTick);

    /// <summary>Loads a saved state; an invalid record is refused with <see cref="ArgumentException"/>.</summary>
    public void FromState(Pit8254State state)
    {
        ArgumentNullException.ThrowIfNull(state);
        Counter.Validate(state.Counter0, "counter 0", state.LastTick);
        Counter.Validate(state.Counter1, "counter 1", state.LastTick);
        Counter.Validate(state.Counter2, "counter 2", state.LastTick);
        if (state.LastTick < 0)
            throw new ArgumentException($"8254: last tick {state.LastTick} is negative", nameof(state));
        if (!state.Counter0.Gate || !state.Counter1.Gate || state.Counter2.Gate != ((state.Port61 & 1) != 0))
            throw new ArgumentException("8254: gates disagree with the PC wiring and port 0x61", nameof(state));
        _counters[0].Load(state.Counter0);
        _counters[1].Load(state.Counter1);
        _counters[2].Load(state.Counter2);
        _port61 = (byte)(state.Port61 & 0x0f);
        _lastTick = state.LastTick;
        _irq0Level = state.Irq0Level;
        _irq0.Set(_irq0Level);
    }

    private byte ReadPort61()
    {
        long tick = Settle(_clock.NowNanoseconds);
        int value = _port61 & 0x0f;
        if ((tick / RefreshTicks & 1) != 0)
            value |= 0x10;
        if (_counters[2].Out(tick))
            value |= 0x20;
        return (byte)value;
    }

    private void WritePort61(byte value)
    {
        long tick = Settle(_clock.NowNanoseconds);
        _port61 = (byte)(value & 0x0f);
        _counters[2].SetGate((value & 1) != 0, tick);
    }

    private sealed class Port61View(Pit8254 pit) : IBusDevice
    {
        public string Name => "port61";

        public void Read(ulong offset, Span<byte> data)
        {
            if (data.Length != 1 || offset != 0)
            {
                pit.BadAccesses++;
                data.Fill(0xff);
                return;
            }
            data[0] = pit.ReadPort61();
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            if (data.Length != 1 || offset != 0)
            {
                pit.BadAccesses++;
                return;
            }
            pit.WritePort61(data[0]);
        }
    }

    private static int FromBcd(int v) => ((v >> 12 & 0xf) * 1000 + (v >> 8 & 0xf) * 100 + (v >> 4 & 0xf) * 10 + (v & 0xf)) % 10000;

    private static int ToBcd(int v) => (v / 1000 % 10) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | v % 10;

    /// <summary>One counter. "Elapsed" is the number of clocks counted since the count was loaded.</summary>
    private sealed class Counter(bool gate)
    {
        // Power-on state is undefined on the chip; mode 0 unloaded keeps every OUT low, matching IRQ0 idle.
        private int _mode;
        private int _rw = 3;
        private bool _bcd;
        private ushort _cr;
        private bool _loaded;
        private bool _triggered;
        private long _loadTick;
        private long? _pausedAt;
        private ushort? _pending;
        private long _pendingAt;
        private bool _nullCount = true;
        private bool _writeLsbDone;
        private byte _writeLsb;
        private bool _readMsbNext;
        private bool _countLatched;
        private ushort _latch;
        private bool _statusLatched;
        private byte _status;
        private bool _gate = gate;
        private long _edgesSeen;

        private int Mode => _mode >= 6 ? _mode - 4 : _mode;

        private int Modulus => _bcd ? 10000 : 65536;

        /// <summary>The programmed count as a number of clocks (0 means the full range).</summary>
        private int Period
        {
            get
            {
                int n = _bcd ? FromBcd(_cr) : _cr;
                return n == 0 ? Modulus : n;
            }
        }

        /// <summary>Period for the repeating modes, where 1 is illegal and runs as 2.</summary>
        private int RepeatPeriod => Math.Max(Period, 2);

        private bool Counting => _loaded && (_triggered || (Mode != 1 && Mode != 5));

        private long Elapsed(long tick) => Counting ? Math.Max(0, (_pausedAt ?? tick) - _loadTick) : 0;

        private long Edges(long d)
        {
            if (!Counting)
                return 0;
            return Mode switch
            {
                0 or 1 => d >= Period ? 1 : 0,
                4 or 5 => d >= Period + 1 ? 1 : 0,
                _ => d / RepeatPeriod,
            };
        }

        /// <summary>Applies a pending count and returns the OUT rising edges since the last call.</summary>
        public long Settle(long tick)
        {
            long edges = 0;
            if (_pending is { } next && (Mode == 2 || Mode == 3) && Counting && _pausedAt is null && Elapsed(tick) >= _pendingAt)
            {
                edges += Edges(_pendingAt) - _edgesSeen;
                _loadTick += _pendingAt;
                _cr = next;
                _pending = null;
                _nullCount = false;
                _edgesSeen = 0;
            }
            long e = Edges(Elapsed(tick));
            edges += Math.Max(0, e - _edgesSeen);
            _edgesSeen = e;
            return edges;
        }

        /// <summary>The tick of the next OUT rising edge, or null.</summary>
        public long? NextEdgeTick()
        {
            if (!Counting || _pausedAt is not null)
                return null;
            long d = _edgesSeen; // edges already delivered
            long next = Mode switch
            {
                0 or 1 => d == 0 ? Period : -1,
                4 or 5 => d == 0 ? Period + 1 : -1,
                _ => (d + 1) * RepeatPeriod,
            };
            return next < 0 ? null : _loadTick + next;
        }

        public bool Out(long tick)
        {
            if (!_loaded)
                return _mode != 0;
            long d = Elapsed(tick);
            switch (Mode)
            {
                case 0:
                    return d >= Period;
                case 1:
                    return !_triggered || d >= Period;
                case 2:
                    return _pausedAt is not null || d % RepeatPeriod != RepeatPeriod - 1;
                case 3:
                    return _pausedAt is not null || d % RepeatPeriod < (RepeatPeriod + 1) / 2;
                case 4:
                    return d != Period;
                default:
                    return !_triggered || d != Period;
            }
        }

        private int CountValue(long tick)
        {
            long value;
            if (!Counting)
            {
                value = Period;
            }
            else
            {
                long d = Elapsed(tick);
                switch (Mode)
                {
                    case 2:
                        value = RepeatPeriod - d % RepeatPeriod;
                        break;
                    case 3:
                        {
                            int p = RepeatPeriod;
                            int high = (p + 1) / 2;
                            long phase = d % p;
                            bool highHalf = phase < high;
                            long k = highHalf ? phase : phase - high;
                            if ((p & 1) == 0)
                                value = p - 2 * k;
                            else if (k == 0)
                                value = p;
                            else
                                value = highHalf ? p - 1 - 2 * (k - 1) : p - 1 - 2 * k;
                            break;
                        }
                    default:
                        value = Period - d % Modulus;
                        break;
                }
            }
            int m = Modulus;
            int v = (int)(((value % m) + m) % m);
            return _bcd ? ToBcd(v) : v;
        }

        private byte StatusByte(long tick) =>
            (byte)((Out(tick) ? 0x80 : 0) | (_nullCount ? 0x40 : 0) | _rw << 4 | _mode << 1 | (_bcd ? 1 : 0));

        public void LatchCount(long tick)
        {
            if (_countLatched)
                return;
            _countLatched = true;
            _latch = (ushort)CountValue(tick);
            _readMsbNext = false;
        }

        public void LatchStatus(long tick)
        {
            if (_statusLatched)
                return;
            _statusLatched = true;
            _status = StatusByte(tick);
        }

        public void Program(int mode, int rw, bool bcd)
        {
            _mode = mode;
            _rw = rw;
            _bcd = bcd;
            _loaded = false;
            _triggered = false;
            _pausedAt = null;
            _pending = null;
            _nullCount = true;
            _writeLsbDone = false;
            _readMsbNext = false;
            _countLatched = false;
            _statusLatched = false;
            _edgesSeen = 0;
        }

        public byte ReadByte(long tick)
        {
            if (_statusLatched)
            {
                _statusLatched = false;
                return _status;
            }
            int value = _countLatched ? _latch : CountValue(tick);
            byte result;
            bool done;
            switch (_rw)
            {
                case 1:
                    result = (byte)value;
                    done = true;
                    break;
                case 2:
                    result = (byte)(value >> 8);
                    done = true;
                    break;
                default:
                    result = _readMsbNext ? (byte)(value >> 8) : (byte)value;
                    done = _readMsbNext;
                    _readMsbNext = !_readMsbNext;
                    break;
            }
            if (done)
                _countLatched = false;
            return result;
        }

        public void WriteByte(byte value, long tick)
        {
            ushort count;
            switch (_rw)
            {
                case 1:
                    count = value;
                    break;
                case 2:
                    count = (ushort)(value << 8);
                    break;
                default:
                    if (!_writeLsbDone)
                    {
                        _writeLsbDone = true;
                        _writeLsb = value;
                        // Mode 0: writing the first byte stops the count and sets OUT low.
                        if (Mode == 0)
                        {
                            _loaded = false;
                            _edgesSeen = 0;
                        }
                        return;
                    }
                    _writeLsbDone = false;
                    count = (ushort)(_writeLsb | value << 8);
                    break;
            }
            LoadCount(count, tick);
        }

        private void LoadCount(ushort count, long tick)
        {
            _nullCount = true;
            switch (Mode)
            {
                case 2 or 3 when _loaded:
                    _pending = count;
                    long p = RepeatPeriod;
                    _pendingAt = (Elapsed(tick) / p + 1) * p;
                    return;
                case 1 or 5:
                    if (_triggered)
                    {
                        _pending = count;
                    }
                    else
                    {
                        _cr = count;
                    }
                    _loaded = true;
                    return;
                default:
                    _cr = count;
                    _loaded = true;
                    _loadTick = tick;
                    _pausedAt = _gate ? null : tick;
                    _pending = null;
                    _nullCount = false;
                    _edgesSeen = 0;
                    return;
            }
        }

        public void SetGate(bool level, long tick)
        {
            if (level == _gate)
                return;
            _gate = level;
            switch (Mode)
            {
                case 0 or 4:
                    if (!_loaded)
                        break;
                    if (level && _pausedAt is { } at)
                    {
                        _loadTick += tick - at;
                        _pausedAt = null;
                    }
                    else if (!level)
                    {
                        _pausedAt = tick;
                    }
                    break;
                case 1 or 5:
                    if (level && _loaded)
                    {
                        if (_pending is { } next)
                        {
                            _cr = next;
                            _pending = null;
                        }
                        _triggered = true;
                        _loadTick = tick;
                        _nullCount = false;
                        _edgesSeen = 0;
                    }
                    break;
                default:
                    if (!_loaded)
                        break;
                    if (level)
                    {
                        if (_pending is { } next)
                        {
                            _cr = next;
                            _pending = null;
                        }
                        _loadTick = tick;
                        _pausedAt = null;
                        _nullCount = false;
                        _edgesSeen = 0;
                    }
                    else
                    {
                        _pausedAt = tick;
                    }
                    break;
            }
        }

        public Pit8254CounterState Save() => new(_mode, _rw, _bcd, _cr, _loaded, _triggered, _loadTick, _pausedAt,
            _pending, _pendingAt, _nullCount, _writeLsbDone, _writeLsb, _readMsbNext, _countLatched, _latch,
            _statusLatched, _status, _gate, _edgesSeen);

        public static void Validate(Pit8254CounterState s, string what, long lastTick)
        {
            ArgumentNullException.ThrowIfNull(s, what);
            if (s.Mode is < 0 or > 7)
                throw new ArgumentException($"8254 {what}: mode {s.Mode} is not 0-7", what);
            if (s.Rw is < 1 or > 3)
                throw new ArgumentException($"8254 {what}: access mode {s.Rw} is not 1-3", what);
            if (s.LoadTick < 0 || s.LoadTick > lastTick || s.PausedAtTick is < 0 || s.PendingAtElapsed < 0 || s.EdgesSeen < 0)
                throw new ArgumentException($"8254 {what}: tick values out of range", what);
        }

        public void Load(Pit8254CounterState s)
        {
            _mode = s.Mode;
            _rw = s.Rw;
            _bcd = s.Bcd;
            _cr = s.CountRegister;
            _loaded = s.Loaded;
            _triggered = s.Triggered;
            _loadTick = s.LoadTick;
            _pausedAt = s.PausedAtTick;
            _pending = s.PendingCount;
            _pendingAt = s.PendingAtElapsed;
            _nullCount = s.NullCount;
            _writeLsbDone = s.WriteLsbDone;
            _writeLsb = s.WriteLsb;
            _readMsbNext = s.ReadMsbNext;
            _countLatched = s.CountLatched;
            _latch = s.LatchValue;
            _statusLatched = s.StatusLatched;
            _status = s.StatusValue;
            _gate = s.Gate;
            _edgesSeen = s.EdgesSeen;
        }
    }
}
