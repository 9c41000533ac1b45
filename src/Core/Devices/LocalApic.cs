// Local APIC: one per vCPU, Intel SDM vol. 3 ch. 11 (xAPIC and x2APIC).
//
// Interfaces: the xAPIC MMIO page (4 KiB at the APIC base, 32-bit accesses at 16-byte aligned offsets, through
// IBusDevice), the x2APIC MSRs 0x800-0x8ff, IA32_APIC_BASE (0x1b) and IA32_TSC_DEADLINE (0x6e0), all through
// ReadMsr/WriteMsr whose false return means #GP.
// Registers (xAPIC offset / x2APIC MSR): 0x020/0x802 ID, 0x030/0x803 version (0x00050014: version 0x14, six LVT
//   entries; bit 24 when EOI-broadcast suppression is offered), 0x080/0x808 TPR, 0x090 APR (xAPIC only),
//   0x0a0/0x80a PPR, 0x0b0/0x80b EOI, 0x0c0 RRD (xAPIC only, reads 0), 0x0d0/0x80d LDR (x2APIC: read-only,
//   derived from the ID), 0x0e0 DFR (xAPIC only), 0x0f0/0x80f SVR, 0x100-0x170 ISR, 0x180-0x1f0 TMR,
//   0x200-0x270 IRR, 0x280/0x828 ESR, 0x300/0x310 ICR (x2APIC: one 64-bit MSR 0x830), 0x320-0x370 LVT timer,
//   thermal, PMC, LINT0, LINT1, error, 0x380/0x838 initial count, 0x390/0x839 current count, 0x3e0/0x83e divide
//   configuration, x2APIC 0x83f SELF IPI.
//
// Emulated: IRR/ISR/TMR with priority classes (PPR from TPR and the highest ISR vector; an IRR vector is
// deliverable when its class is above PPR's), EOI (clears the highest ISR bit; a level-triggered vector is
// broadcast to the IOAPICs unless SVR bit 12 suppresses it, which is writable only when offered), ESR with its
// write-then-read latch and the illegal-vector and illegal-register errors (error LVT raised on a new error),
// software enable (SVR bit 8; while clear every LVT is masked and fixed interrupts are not accepted), the APIC
// base MSR with the disabled / xAPIC / x2APIC transitions of SDM 11.12.5 (#GP for the illegal ones, reset on
// disable), base relocation (the host maps the page where BaseAddress says), LINT0/LINT1 with fixed (edge or
// level with Remote IRR), NMI, SMI, INIT and ExtINT modes, the timer in one-shot, periodic and TSC-deadline
// modes with the divide configuration (the APIC timer clock is 1 GHz, one tick per ns before division, as KVM
// and QEMU), IPIs through the ICR and SELF IPI with fixed, lowest-priority, SMI, NMI, INIT (assert and
// de-assert), start-up, the three shorthands and physical / logical flat / logical cluster / x2APIC cluster
// destinations; an INIT resets the APIC as SDM 11.4.7.3 says.
// Outputs: IPIs go to an injected IInterruptSink (the host's router asks each APIC MatchesDestination and picks
// the lowest-priority target itself, using ProcessorPriority); NMI, SMI, INIT, start-up and "an interrupt may be pending" go
// to the CPU through IApicCpu; level EOIs go to an injected broadcast callback (the IOAPICs' Eoi).
// For the CPU: ExtIntPending (take the vector from the 8259, then AcknowledgeExtInt), HasInterrupt/Acknowledge.
// With the APIC globally disabled, LINT0 is the INTR pin and LINT1 the NMI pin, as on hardware. At power-up the
// BSP's LINT0 is ExtINT and unmasked (virtual-wire mode, as QEMU sets it for firmware that never programs it).
// Not emulated: CMCI LVT, APIC bus arbitration and the send/receive accept errors, focus processor checking
// (SVR bit 9 is stored only), delivery status (always idle: sends are instantaneous), remote read.
using System.Buffers.Binary;
using System.Numerics;
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

/// <summary>What the local APIC tells its CPU. Called synchronously from inside the APIC.</summary>
public interface IApicCpu
{
    /// <summary>A vectored or ExtINT interrupt may now be deliverable: re-check (and leave HLT).</summary>
    void SignalInterrupt();

    void SignalNmi();

    void SignalSmi();

    /// <summary>INIT: the CPU resets and waits for a start-up IPI (the APIC has already reset itself).</summary>
    void SignalInit();

    /// <summary>Start-up IPI: a CPU waiting for SIPI starts in real mode at vector &lt;&lt; 12.</summary>
    void SignalStartup(byte vector);
}

/// <summary>The local vector table entries, in register order (0x320 ... 0x370).</summary>
public enum ApicLvt
{
    Timer = 0,
    Thermal = 1,
    PerformanceCounter = 2,
    Lint0 = 3,
    Lint1 = 4,
    Error = 5,
}

/// <summary>What a router needs to know about a target APIC to match a message's destination.</summary>
public readonly record struct ApicDestinationInfo(uint ApicId, bool X2ApicMode, uint Ldr, uint Dfr, bool HardwareEnabled);

/// <summary>Saved local APIC state. Isr/Tmr/Irr have 8 words (256 bits); Lvt has 6 entries in ApicLvt order.</summary>
public sealed record LocalApicState(
    ulong ApicBase,
    byte XApicId,
    byte Tpr,
    uint Ldr,
    uint Dfr,
    uint Svr,
    uint[] Isr,
    uint[] Tmr,
    uint[] Irr,
    uint Esr,
    uint PendingErrors,
    ulong Icr,
    uint[] Lvt,
    uint InitialCount,
    uint DivideConfig,
    bool TimerArmed,
    long TimerStartNs,
    long TimerNextNs,
    ulong TscDeadline,
    bool Lint0Level,
    bool Lint1Level,
    bool ExtIntMessagePending);

public sealed class LocalApic : IBusDevice
{
    public const ulong DefaultBase = 0xfee00000;
    public const ulong MmioSize = 0x1000;

    public const uint IA32_APIC_BASE = 0x1b;
    public const uint IA32_TSC_DEADLINE = 0x6e0;
    public const uint X2ApicMsrFirst = 0x800;
    public const uint X2ApicMsrLast = 0x8ff;

    /// <summary>IA32_APIC_BASE bits.</summary>
    public const ulong BaseBsp = 1ul << 8;
    public const ulong BaseExtd = 1ul << 10;
    public const ulong BaseEnable = 1ul << 11;

    // Register indices (xAPIC offset >> 4 == x2APIC MSR - 0x800).
    public const int ID = 0x02, VERSION = 0x03, TPR = 0x08, APR = 0x09, PPR = 0x0a, EOI = 0x0b, RRD = 0x0c,
        LDR = 0x0d, DFR = 0x0e, SVR = 0x0f, ISR0 = 0x10, TMR0 = 0x18, IRR0 = 0x20, ESR = 0x28, ICR_LOW = 0x30,
        ICR_HIGH = 0x31, LVT_TIMER = 0x32, LVT_LINT0 = 0x35, LVT_ERROR = 0x37, TIMER_ICR = 0x38, TIMER_CCR = 0x39,
        TIMER_DCR = 0x3e, SELF_IPI = 0x3f;

    /// <summary>ESR bits (SDM figure 11-9).</summary>
    public const uint EsrSendIllegalVector = 1u << 5;
    public const uint EsrReceivedIllegalVector = 1u << 6;
    public const uint EsrIllegalRegisterAddress = 1u << 7;

    /// <summary>LVT / ICR bits.</summary>
    public const uint LvtMasked = 1u << 16;
    public const uint LvtLevelTriggered = 1u << 15;
    public const uint LvtRemoteIrr = 1u << 14;
    public const uint SvrEnable = 1u << 8;
    public const uint SvrFocusDisable = 1u << 9;
    public const uint SvrSuppressEoiBroadcast = 1u << 12;

    private const int LvtCount = 6;
    private const uint LvtTimerPeriodic = 1u << 17;
    private const uint LvtTimerTscDeadline = 1u << 18;
    private const uint LvtTimerModeMask = 3u << 17;
    private const uint LvtDeliveryModeBits = 0x700;
    private const uint LvtPolarity = 1u << 13;
    private const uint ApicVersion = 0x00050014;

    private readonly uint _initialId;
    private readonly bool _bsp;
    private readonly long _tscFrequencyHz;
    private readonly bool _eoiSuppressionOffered;
    private readonly ulong _baseReservedMask;
    private readonly IClock _clock;
    private readonly IApicCpu _cpu;
    private readonly IInterruptSink _ipiSink;
    private readonly Action<byte> _eoiBroadcast;

    private ulong _apicBase;
    private byte _xapicId;
    private byte _tpr;
    private uint _ldr;
    private uint _dfr;
    private uint _svr;
    private readonly uint[] _isr = new uint[8];
    private readonly uint[] _tmr = new uint[8];
    private readonly uint[] _irr = new uint[8];
    private uint _esr;
    private uint _pendingErrors;
    private ulong _icr;
    private readonly uint[] _lvt = new uint[LvtCount];
    private uint _initialCount;
    private uint _divideConfig;
    private bool _timerArmed;
    private long _timerStartNs;
    private long _timerNextNs;
    private ulong _tscDeadline;
    private bool _lint0Level;
    private bool _lint1Level;
    private bool _extIntMessagePending;

    /// <param name="apicId">The initial APIC ID (xAPIC uses its low 8 bits; x2APIC all 32).</param>
    /// <param name="bsp">Sets IA32_APIC_BASE.BSP and puts LINT0 in virtual-wire (ExtINT) mode at power-up.</param>
    /// <param name="tscFrequencyHz">TSC rate for TSC-deadline mode (TSC = ns * rate / 1e9); 0 offers no TSC-deadline mode.</param>
    /// <param name="clock">Time for register reads and writes (current count, arming).</param>
    /// <param name="cpu">Where NMI/SMI/INIT/SIPI and interrupt-pending signals go.</param>
    /// <param name="ipiSink">Where IPIs go (the router); self-IPIs are accepted directly.</param>
    /// <param name="eoiBroadcast">EOI broadcast of a level-triggered vector (to the IOAPICs).</param>
    /// <param name="offerEoiBroadcastSuppression">Advertise version bit 24 and let SVR bit 12 be set.</param>
    /// <param name="physicalAddressBits">MAXPHYADDR: base bits at or above it are reserved (#GP).</param>
    public LocalApic(uint apicId, bool bsp, long tscFrequencyHz, IClock clock, IApicCpu cpu, IInterruptSink ipiSink,
        Action<byte> eoiBroadcast, bool offerEoiBroadcastSuppression = false, int physicalAddressBits = 52)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tscFrequencyHz);
        ArgumentOutOfRangeException.ThrowIfLessThan(physicalAddressBits, 32);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(physicalAddressBits, 52);
        _initialId = apicId;
        _bsp = bsp;
        _tscFrequencyHz = tscFrequencyHz;
        _clock = clock;
        _cpu = cpu;
        _ipiSink = ipiSink;
        _eoiBroadcast = eoiBroadcast;
        _eoiSuppressionOffered = offerEoiBroadcastSuppression;
        _baseReservedMask = 0xffUL | (1UL << 9) | ~((1UL << physicalAddressBits) - 1);
        PowerOnReset();
    }

    public string Name => $"lapic{_initialId}";

    /// <summary>Bad MMIO accesses (width, offset, reserved registers, page not decoded) and #GP-ing MSR accesses.</summary>
    public long BadAccesses { get; private set; }

    /// <summary>Fixed interrupts dropped because the APIC was disabled (globally or by software).</summary>
    public long DroppedInterrupts { get; private set; }

    public ulong ApicBaseMsr => _apicBase;

    /// <summary>The physical address of the xAPIC page.</summary>
    public ulong BaseAddress => _apicBase & ~0xfffUL & ~_baseReservedMask;

    public bool HardwareEnabled => (_apicBase & BaseEnable) != 0;

    public bool X2ApicMode => (_apicBase & (BaseEnable | BaseExtd)) == (BaseEnable | BaseExtd);

    /// <summary>True when the xAPIC page decodes (enabled, not x2APIC): the host routes BaseAddress to this model.</summary>
    public bool MmioEnabled => HardwareEnabled && !X2ApicMode;

    public bool SoftwareEnabled => (_svr & SvrEnable) != 0;

    /// <summary>The APIC ID in the current mode (x2APIC: the initial 32-bit ID; otherwise the xAPIC ID register).</summary>
    public uint ApicId => X2ApicMode ? _initialId : _xapicId;

    public bool TscDeadlineSupported => _tscFrequencyHz > 0;

    /// <summary>Processor priority (SDM 11.8.3.1), which a router may use for lowest-priority arbitration.</summary>
    public byte ProcessorPriority
    {
        get
        {
            int isrv = HighestBit(_isr);
            int isrClass = isrv < 0 ? 0 : isrv & 0xf0;
            return (_tpr & 0xf0) >= isrClass ? _tpr : (byte)isrClass;
        }
    }

    public byte TaskPriority => _tpr;

    public ApicDestinationInfo DestinationInfo => new(ApicId, X2ApicMode, CurrentLdr, _dfr, HardwareEnabled);

    /// <summary>The 8259's INTR reaches the CPU: take the vector with an INTA cycle, then call AcknowledgeExtInt.</summary>
    public bool ExtIntPending
    {
        get
        {
            if (!HardwareEnabled) return _lint0Level;
            uint lint0 = _lvt[(int)ApicLvt.Lint0];
            bool wired = (lint0 & LvtMasked) == 0 && ((lint0 & LvtDeliveryModeBits) >> 8) == (uint)ApicDeliveryMode.ExtInt;
            return _extIntMessagePending || (wired && _lint0Level);
        }
    }

    /// <summary>The timer's next expiry in ns, or null when it cannot raise an interrupt (disarmed or masked).</summary>
    public long? NextDeadlineNs => _timerArmed && (_lvt[(int)ApicLvt.Timer] & LvtMasked) == 0 ? _timerNextNs : null;

    /// <summary>True when <paramref name="msr"/> is one the CPU forwards to the APIC.</summary>
    public static bool HandlesMsr(uint msr)
        => msr is IA32_APIC_BASE or IA32_TSC_DEADLINE || (msr >= X2ApicMsrFirst && msr <= X2ApicMsrLast);

    /// <summary>TSC value at <paramref name="nowNs"/> for a TSC running at <paramref name="frequencyHz"/>.</summary>
    public static ulong TscAt(long nowNs, long frequencyHz)
        => (ulong)((UInt128)(ulong)Math.Max(nowNs, 0) * (ulong)frequencyHz / 1_000_000_000UL);

    /// <summary>
    /// Does a message with this destination reach <paramref name="target"/>? Shorthands compare
    /// <see cref="ApicMessage.SourceApicId"/> with the target's ID; a globally disabled APIC accepts nothing.
    /// </summary>
    public static bool MatchesDestination(in ApicMessage message, in ApicDestinationInfo target)
    {
        if (!target.HardwareEnabled) return false;
        switch (message.Shorthand)
        {
            case ApicShorthand.Self:
                return target.ApicId == message.SourceApicId;
            case ApicShorthand.AllIncludingSelf:
                return true;
            case ApicShorthand.AllExcludingSelf:
                return target.ApicId != message.SourceApicId;
        }
        if (message.IsBroadcast) return true;
        if (!message.LogicalDestination)
        {
            return message.X2ApicDestination || target.X2ApicMode
                ? target.ApicId == message.Destination
                : (target.ApicId & 0xff) == (message.Destination & 0xff);
        }
        if (target.X2ApicMode)
        {
            // x2APIC logical: cluster in bits 31:16, a bit mask of the 16 members in bits 15:0.
            return message.Destination >> 16 == target.Ldr >> 16 && (message.Destination & target.Ldr & 0xffff) != 0;
        }
        byte dest = (byte)message.Destination;
        byte logicalId = (byte)(target.Ldr >> 24);
        if (target.Dfr >> 28 == 0xf) return (dest & logicalId) != 0; // flat model
        return dest >> 4 == logicalId >> 4 && (dest & logicalId & 0xf) != 0; // cluster model
    }

    /// <summary>This APIC's answer to <see cref="MatchesDestination(in ApicMessage, in ApicDestinationInfo)"/>.</summary>
    public bool Matches(in ApicMessage message) => MatchesDestination(message, DestinationInfo);

    // ---------------------------------------------------------------- interrupt acceptance

    /// <summary>A message the router found this APIC to be a destination of.</summary>
    public void AcceptMessage(in ApicMessage message)
    {
        if (!HardwareEnabled) return;
        switch (message.DeliveryMode)
        {
            case ApicDeliveryMode.Fixed:
            case ApicDeliveryMode.LowestPriority:
                AcceptInterrupt(message.Vector, message.LevelTriggered);
                break;
            case ApicDeliveryMode.Nmi:
                _cpu.SignalNmi();
                break;
            case ApicDeliveryMode.Smi:
                _cpu.SignalSmi();
                break;
            case ApicDeliveryMode.Init:
                // An INIT level de-assert (level 0, level-triggered) only synchronised arbitration IDs.
                if (message.LevelTriggered && !message.Level) return;
                InitReset();
                _cpu.SignalInit();
                break;
            case ApicDeliveryMode.StartUp:
                _cpu.SignalStartup(message.Vector);
                break;
            case ApicDeliveryMode.ExtInt:
                _extIntMessagePending = true;
                _cpu.SignalInterrupt();
                break;
            default:
                DroppedInterrupts++;
                break;
        }
    }

    /// <summary>A fixed interrupt (IOAPIC, MSI, IPI, local source): sets IRR, and TMR for level-triggered ones.</summary>
    public void AcceptInterrupt(byte vector, bool levelTriggered)
    {
        if (!HardwareEnabled || !SoftwareEnabled)
        {
            DroppedInterrupts++;
            return;
        }
        if (vector < 16)
        {
            RecordError(EsrReceivedIllegalVector);
            return;
        }
        SetBit(_irr, vector, true);
        SetBit(_tmr, vector, levelTriggered);
        _cpu.SignalInterrupt();
    }

    /// <summary>The highest IRR vector whose priority class is above PPR's, if any.</summary>
    public bool HasInterrupt(out byte vector)
    {
        int irrv = HardwareEnabled ? HighestBit(_irr) : -1;
        if (irrv >= 0 && (irrv & 0xf0) > (ProcessorPriority & 0xf0))
        {
            vector = (byte)irrv;
            return true;
        }
        vector = 0;
        return false;
    }

    /// <summary>
    /// The CPU takes the interrupt: the vector moves from IRR to ISR. With nothing deliverable (TPR raised in the
    /// meantime) the answer is the spurious vector and ISR is untouched, as on hardware.
    /// </summary>
    public byte Acknowledge()
    {
        if (!HasInterrupt(out byte vector)) return (byte)_svr;
        SetBit(_irr, vector, false);
        SetBit(_isr, vector, true);
        return vector;
    }

    /// <summary>The CPU ran the INTA cycle for an ExtINT message (the 8259 drops its own INTR level).</summary>
    public void AcknowledgeExtInt() => _extIntMessagePending = false;

    /// <summary>Drives the LINT0 or LINT1 pin (<paramref name="pin"/> 0 or 1).</summary>
    public void SetLint(int pin, bool level)
    {
        if ((uint)pin > 1)
        {
            BadAccesses++;
            return;
        }
        ref bool current = ref pin == 0 ? ref _lint0Level : ref _lint1Level;
        bool rising = level && !current;
        current = level;
        if (!HardwareEnabled)
        {
            // Without an APIC, LINT0 is INTR and LINT1 is NMI.
            if (pin == 0 && level) _cpu.SignalInterrupt();
            if (pin == 1 && rising) _cpu.SignalNmi();
            return;
        }
        var lvt = pin == 0 ? ApicLvt.Lint0 : ApicLvt.Lint1;
        uint entry = _lvt[(int)lvt];
        if ((entry & LvtMasked) != 0) return;
        var mode = (ApicDeliveryMode)((entry & LvtDeliveryModeBits) >> 8);
        if (mode == ApicDeliveryMode.ExtInt)
        {
            if (level) _cpu.SignalInterrupt();
        }
        else if (mode == ApicDeliveryMode.Fixed && (entry & LvtLevelTriggered) != 0)
        {
            TryDeliverLevelLint(lvt);
        }
        else if (rising)
        {
            DeliverLvt(lvt, levelTriggered: false);
        }
    }

    /// <summary>A thermal-sensor or performance-counter-overflow event, delivered as its LVT entry says.</summary>
    public void RaiseLocalInterrupt(ApicLvt source)
    {
        if (source is not (ApicLvt.Thermal or ApicLvt.PerformanceCounter))
        {
            BadAccesses++;
            return;
        }
        if (HardwareEnabled) DeliverLvt(source, levelTriggered: false);
    }

    // ---------------------------------------------------------------- timer

    /// <summary>Fires the timer if its deadline is at or before <paramref name="nowNs"/>.</summary>
    public void Advance(long nowNs)
    {
        if (!_timerArmed || nowNs < _timerNextNs) return;
        uint lvt = _lvt[(int)ApicLvt.Timer];
        uint mode = lvt & LvtTimerModeMask;
        if (mode == LvtTimerPeriodic && _initialCount != 0)
        {
            long period = TimerPeriodNs;
            long missed = (nowNs - _timerNextNs) / period;
            _timerNextNs += (missed + 1) * period;
        }
        else
        {
            _timerArmed = false;
            if (mode == LvtTimerTscDeadline) _tscDeadline = 0;
        }
        if ((lvt & LvtMasked) == 0) AcceptLocal((byte)lvt);
    }

    private long Divisor
    {
        get
        {
            uint v = (_divideConfig & 3) | ((_divideConfig >> 1) & 4);
            return v == 7 ? 1 : 2L << (int)v;
        }
    }

    private long TimerPeriodNs => _initialCount * Divisor;

    private bool InTscDeadlineMode => (_lvt[(int)ApicLvt.Timer] & LvtTimerModeMask) == LvtTimerTscDeadline;

    private uint CurrentCount(long nowNs)
    {
        if (!_timerArmed || InTscDeadlineMode || _initialCount == 0) return 0;
        long ticks = (nowNs - _timerStartNs) / Divisor;
        if ((_lvt[(int)ApicLvt.Timer] & LvtTimerModeMask) == LvtTimerPeriodic)
            return (uint)(_initialCount - ticks % _initialCount);
        return ticks >= _initialCount ? 0 : (uint)(_initialCount - ticks);
    }

    private void WriteInitialCount(uint value)
    {
        long now = _clock.NowNanoseconds;
        Advance(now);
        if (InTscDeadlineMode) return; // ignored in TSC-deadline mode
        _initialCount = value;
        _timerArmed = value != 0;
        _timerStartNs = now;
        _timerNextNs = now + TimerPeriodNs;
    }

    private void WriteDivideConfig(uint value)
    {
        long now = _clock.NowNanoseconds;
        Advance(now);
        uint current = CurrentCount(now);
        _divideConfig = value & 0xb;
        if (!_timerArmed || InTscDeadlineMode) return;
        // Keep the current count; the rest of the count runs at the new rate.
        long elapsedTicks = _initialCount - current;
        _timerStartNs = now - elapsedTicks * Divisor;
        _timerNextNs = now + (long)current * Divisor;
    }

    private void WriteTscDeadline(ulong value)
    {
        long now = _clock.NowNanoseconds;
        Advance(now);
        if (!InTscDeadlineMode) return; // ignored in the other modes
        _tscDeadline = value;
        _timerArmed = value != 0;
        if (!_timerArmed) return;
        // The first ns at which the TSC has reached the deadline.
        UInt128 ns = ((UInt128)value * 1_000_000_000UL + (ulong)_tscFrequencyHz - 1) / (ulong)_tscFrequencyHz;
        _timerNextNs = ns > long.MaxValue ? long.MaxValue : (long)ns;
        Advance(now);
    }

    // ---------------------------------------------------------------- MMIO (xAPIC)

    public void Read(ulong offset, Span<byte> data)
    {
        uint value;
        if (!MmioEnabled || data.Length != 4 || (offset & 0xf) != 0 || offset >= MmioSize)
        {
            BadAccesses++;
            data.Fill(0xff);
            return;
        }
        if (!TryReadRegister((int)(offset >> 4), x2apic: false, out ulong v))
        {
            BadAccesses++;
            RecordError(EsrIllegalRegisterAddress);
            v = 0;
        }
        value = (uint)v;
        BinaryPrimitives.WriteUInt32LittleEndian(data, value);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (!MmioEnabled || data.Length != 4 || (offset & 0xf) != 0 || offset >= MmioSize)
        {
            BadAccesses++;
            return;
        }
        if (!TryWriteRegister((int)(offset >> 4), BinaryPrimitives.ReadUInt32LittleEndian(data), x2apic: false))
        {
            BadAccesses++;
        }
    }

    // ---------------------------------------------------------------- MSRs

    /// <summary>RDMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC register. False means #GP.</summary>
    public bool ReadMsr(uint msr, out ulong value)
    {
        value = 0;
        if (msr == IA32_APIC_BASE)
        {
            value = _apicBase;
            return true;
        }
        if (msr == IA32_TSC_DEADLINE)
        {
            if (!TscDeadlineSupported) return Gp();
            value = InTscDeadlineMode ? _tscDeadline : 0;
            return true;
        }
        if (msr < X2ApicMsrFirst || msr > X2ApicMsrLast || !X2ApicMode) return Gp();
        int index = (int)(msr - X2ApicMsrFirst);
        if (index == EOI || index == SELF_IPI) return Gp(); // write-only
        return TryReadRegister(index, x2apic: true, out value) || Gp();
    }

    /// <summary>WRMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC register. False means #GP.</summary>
    public bool WriteMsr(uint msr, ulong value)
    {
        if (msr == IA32_APIC_BASE) return WriteApicBase(value) || Gp();
        if (msr == IA32_TSC_DEADLINE)
        {
            if (!TscDeadlineSupported) return Gp();
            WriteTscDeadline(value);
            return true;
        }
        if (msr < X2ApicMsrFirst || msr > X2ApicMsrLast || !X2ApicMode) return Gp();
        int index = (int)(msr - X2ApicMsrFirst);
        if (index != ICR_LOW && value >> 32 != 0) return Gp();
        return TryWriteRegister(index, value, x2apic: true) || Gp();
    }

    private bool Gp()
    {
        BadAccesses++;
        return false;
    }

    private bool WriteApicBase(ulong value)
    {
        if ((value & _baseReservedMask) != 0) return false;
        bool enable = (value & BaseEnable) != 0, extd = (value & BaseExtd) != 0;
        bool wasEnabled = HardwareEnabled, wasX2 = X2ApicMode;
        if (extd && !enable) return false;          // invalid state
        if (extd && !wasEnabled) return false;      // disabled -> x2APIC
        if (wasX2 && enable && !extd) return false; // x2APIC -> xAPIC
        ulong newBase = (value & ~(BaseBsp | _baseReservedMask)) | (_bsp ? BaseBsp : 0);
        _apicBase = newBase;
        if (wasEnabled && !enable)
        {
            // Going disabled loses the APIC's programming (SDM 11.4.3); the base MSR keeps what was written.
            ResetRegisters(powerOn: true);
        }
        if (!wasX2 && X2ApicMode) _ldr = X2ApicLdr(_initialId);
        return true;
    }

    // ---------------------------------------------------------------- register file

    private uint CurrentLdr => X2ApicMode ? X2ApicLdr(_initialId) : _ldr;

    private static uint X2ApicLdr(uint id) => ((id >> 4) << 16) | (1u << (int)(id & 0xf));

    private uint Version => ApicVersion | (_eoiSuppressionOffered ? 1u << 24 : 0);

    private bool TryReadRegister(int index, bool x2apic, out ulong value)
    {
        value = 0;
        switch (index)
        {
            case ID: value = x2apic ? _initialId : (uint)_xapicId << 24; return true;
            case VERSION: value = Version; return true;
            case TPR: value = _tpr; return true;
            case APR: if (x2apic) return false; value = ArbitrationPriority(); return true;
            case PPR: value = ProcessorPriority; return true;
            case EOI: return true; // write-only: xAPIC reads 0
            case RRD: return !x2apic;
            case LDR: value = CurrentLdr; return true;
            case DFR: if (x2apic) return false; value = _dfr; return true;
            case SVR: value = _svr; return true;
            case ESR: value = _esr; return true;
            case ICR_LOW: value = x2apic ? _icr : (uint)_icr; return true;
            case ICR_HIGH: if (x2apic) return false; value = (uint)(_icr >> 32); return true;
            case TIMER_ICR: value = _initialCount; return true;
            case TIMER_CCR: value = CurrentCount(_clock.NowNanoseconds); return true;
            case TIMER_DCR: value = _divideConfig; return true;
        }
        if (index >= ISR0 && index < ISR0 + 8) { value = _isr[index - ISR0]; return true; }
        if (index >= TMR0 && index < TMR0 + 8) { value = _tmr[index - TMR0]; return true; }
        if (index >= IRR0 && index < IRR0 + 8) { value = _irr[index - IRR0]; return true; }
        if (index >= LVT_TIMER && index <= LVT_ERROR) { value = _lvt[index - LVT_TIMER]; return true; }
        return false;
    }

    /// <summary>False: xAPIC illegal register (ESR bit 7 set here) or x2APIC #GP.</summary>
    private bool TryWriteRegister(int index, ulong value, bool x2apic)
    {
        uint v = (uint)value;
        switch (index)
        {
            case ID:
                if (x2apic) return false;
                _xapicId = (byte)(v >> 24);
                return true;
            case TPR:
                if (x2apic && v > 0xff) return false;
                _tpr = (byte)v;
                if (HasInterrupt(out _)) _cpu.SignalInterrupt();
                return true;
            case EOI:
                if (x2apic && v != 0) return false;
                EndOfInterrupt();
                return true;
            case LDR:
                if (x2apic) return false;
                _ldr = v & 0xff000000;
                return true;
            case DFR:
                if (x2apic) return false;
                _dfr = v | 0x0fffffff;
                return true;
            case SVR:
                uint svrMask = 0x3ffu | (_eoiSuppressionOffered ? SvrSuppressEoiBroadcast : 0);
                if (x2apic && (v & ~svrMask) != 0) return false;
                WriteSvr(v & svrMask);
                return true;
            case ESR:
                if (x2apic && v != 0) return false;
                _esr = _pendingErrors;
                _pendingErrors = 0;
                return true;
            case ICR_LOW:
                if (x2apic)
                {
                    // Reserved in x2APIC: 12 (delivery status), 13, 16-17, 20-31.
                    if ((value & 0xfff33000UL) != 0) return false;
                    _icr = value & 0xffffffff_000ccfffUL;
                }
                else
                {
                    _icr = (_icr & 0xffffffff00000000UL) | (v & 0x000ccfff);
                }
                SendIpi();
                return true;
            case ICR_HIGH:
                if (x2apic) return false;
                _icr = (_icr & 0xffffffffUL) | ((ulong)(v & 0xff000000) << 32);
                return true;
            case TIMER_ICR:
                WriteInitialCount(v);
                return true;
            case TIMER_DCR:
                if (x2apic && (v & ~0xbu) != 0) return false;
                WriteDivideConfig(v);
                return true;
            case SELF_IPI:
                if (!x2apic || v > 0xff) return false;
                if (v < 16) RecordError(EsrSendIllegalVector);
                else AcceptInterrupt((byte)v, levelTriggered: false);
                return true;
        }
        if (index >= LVT_TIMER && index <= LVT_ERROR)
        {
            var lvt = (ApicLvt)(index - LVT_TIMER);
            uint mask = LvtWritableMask(lvt);
            if (x2apic && (v & ~mask) != 0) return false;
            WriteLvt(lvt, v & mask);
            return true;
        }
        bool exists = TryReadRegister(index, x2apic, out _);
        if (!x2apic)
        {
            // Writes to read-only registers are ignored; a reserved offset is an illegal register address.
            if (!exists) RecordError(EsrIllegalRegisterAddress);
        }
        return false;
    }

    private uint LvtWritableMask(ApicLvt lvt) => lvt switch
    {
        ApicLvt.Timer => 0xffu | LvtMasked | LvtTimerPeriodic | (TscDeadlineSupported ? LvtTimerTscDeadline : 0),
        ApicLvt.Thermal or ApicLvt.PerformanceCounter => 0xffu | LvtDeliveryModeBits | LvtMasked,
        ApicLvt.Lint0 or ApicLvt.Lint1 => 0xffu | LvtDeliveryModeBits | LvtPolarity | LvtLevelTriggered | LvtMasked,
        _ => 0xffu | LvtMasked,
    };

    private void WriteLvt(ApicLvt lvt, uint value)
    {
        if (!SoftwareEnabled) value |= LvtMasked;
        int i = (int)lvt;
        uint old = _lvt[i];
        if (lvt == ApicLvt.Timer)
        {
            long now = _clock.NowNanoseconds;
            Advance(now); // expiries up to now happen under the old entry
            if ((value & LvtTimerModeMask) == LvtTimerModeMask) value &= ~LvtTimerModeMask; // reserved mode: one-shot
            bool wasDeadline = (old & LvtTimerModeMask) == LvtTimerTscDeadline;
            bool isDeadline = (value & LvtTimerModeMask) == LvtTimerTscDeadline;
            _lvt[i] = value;
            if (wasDeadline != isDeadline)
            {
                // Switching to or from TSC-deadline mode disarms the timer.
                _timerArmed = false;
                _initialCount = 0;
                _tscDeadline = 0;
            }
            return;
        }
        _lvt[i] = value | (old & LvtRemoteIrr);
        if (lvt is ApicLvt.Lint0 or ApicLvt.Lint1)
        {
            if ((value & LvtLevelTriggered) == 0) _lvt[i] &= ~LvtRemoteIrr;
            // An unmasked pin that is already asserted takes effect now.
            bool level = lvt == ApicLvt.Lint0 ? _lint0Level : _lint1Level;
            if (level && (value & LvtMasked) == 0)
            {
                var mode = (ApicDeliveryMode)((value & LvtDeliveryModeBits) >> 8);
                if (mode == ApicDeliveryMode.ExtInt) _cpu.SignalInterrupt();
                else if (mode == ApicDeliveryMode.Fixed && (value & LvtLevelTriggered) != 0) TryDeliverLevelLint(lvt);
            }
        }
    }

    private void WriteSvr(uint value)
    {
        long now = _clock.NowNanoseconds;
        Advance(now);
        _svr = value;
        if (!SoftwareEnabled)
        {
            for (int i = 0; i < LvtCount; i++) _lvt[i] |= LvtMasked;
        }
    }

    private uint ArbitrationPriority()
    {
        int isrv = Math.Max(HighestBit(_isr), 0), irrv = Math.Max(HighestBit(_irr), 0);
        int tprClass = _tpr & 0xf0;
        if (tprClass >= (irrv & 0xf0) && tprClass > (isrv & 0xf0)) return _tpr;
        return (uint)Math.Max(Math.Max(tprClass, isrv & 0xf0), irrv & 0xf0);
    }

    private void EndOfInterrupt()
    {
        int vector = HighestBit(_isr);
        if (vector < 0) return;
        SetBit(_isr, vector, false);
        if (GetBit(_tmr, vector))
        {
            for (var lvt = ApicLvt.Lint0; lvt <= ApicLvt.Lint1; lvt++)
            {
                uint entry = _lvt[(int)lvt];
                if ((entry & LvtRemoteIrr) != 0 && (byte)entry == vector)
                {
                    _lvt[(int)lvt] = entry & ~LvtRemoteIrr;
                    TryDeliverLevelLint(lvt);
                }
            }
            if ((_svr & SvrSuppressEoiBroadcast) == 0) _eoiBroadcast((byte)vector);
        }
        if (HasInterrupt(out _)) _cpu.SignalInterrupt();
    }

    private void SendIpi()
    {
        uint low = (uint)_icr;
        var mode = (ApicDeliveryMode)((low >> 8) & 7);
        byte vector = (byte)low;
        var shorthand = (ApicShorthand)((low >> 18) & 3);
        if (mode is ApicDeliveryMode.Fixed or ApicDeliveryMode.LowestPriority && vector < 16)
        {
            RecordError(EsrSendIllegalVector);
            return;
        }
        if ((int)mode == 3)
        {
            BadAccesses++; // reserved delivery mode: nothing is sent
            return;
        }
        bool x2 = X2ApicMode;
        var message = new ApicMessage(
            Vector: vector,
            DeliveryMode: mode,
            LogicalDestination: (low & (1u << 11)) != 0,
            Destination: x2 ? (uint)(_icr >> 32) : (uint)(_icr >> 56),
            LevelTriggered: (low & (1u << 15)) != 0,
            Level: (low & (1u << 14)) != 0 || (low & (1u << 15)) == 0,
            Shorthand: shorthand,
            X2ApicDestination: x2,
            SourceApicId: ApicId);
        if (shorthand == ApicShorthand.Self) AcceptMessage(message);
        else _ipiSink.Deliver(message);
    }

    private void DeliverLvt(ApicLvt lvt, bool levelTriggered)
    {
        uint entry = _lvt[(int)lvt];
        if ((entry & LvtMasked) != 0) return;
        var mode = lvt is ApicLvt.Timer or ApicLvt.Error
            ? ApicDeliveryMode.Fixed
            : (ApicDeliveryMode)((entry & LvtDeliveryModeBits) >> 8);
        switch (mode)
        {
            case ApicDeliveryMode.Fixed:
                if (lvt == ApicLvt.Error && (byte)entry < 16) return; // no error loop on an illegal error vector
                AcceptLocal((byte)entry, levelTriggered);
                break;
            case ApicDeliveryMode.Nmi:
                _cpu.SignalNmi();
                break;
            case ApicDeliveryMode.Smi:
                _cpu.SignalSmi();
                break;
            case ApicDeliveryMode.Init:
                InitReset();
                _cpu.SignalInit();
                break;
            default:
                BadAccesses++; // ExtINT (outside LINT0/1) and the reserved modes deliver nothing
                break;
        }
    }

    private void TryDeliverLevelLint(ApicLvt lvt)
    {
        uint entry = _lvt[(int)lvt];
        bool level = lvt == ApicLvt.Lint0 ? _lint0Level : _lint1Level;
        if (!level || (entry & (LvtMasked | LvtRemoteIrr)) != 0) return;
        if ((byte)entry >= 16 && SoftwareEnabled) _lvt[(int)lvt] = entry | LvtRemoteIrr;
        AcceptLocal((byte)entry, levelTriggered: true);
    }

    private void AcceptLocal(byte vector, bool levelTriggered = false) => AcceptInterrupt(vector, levelTriggered);

    private void RecordError(uint bit)
    {
        bool isNew = (_pendingErrors & bit) == 0;
        _pendingErrors |= bit;
        if (isNew && HardwareEnabled) DeliverLvt(ApicLvt.Error, levelTriggered: false);
    }

    // ---------------------------------------------------------------- reset and state

    /// <summary>Power-up / RESET state (SDM 11.4.7.1): xAPIC mode, enabled, base 0xfee00000.</summary>
    public void PowerOnReset()
    {
        _apicBase = DefaultBase | BaseEnable | (_bsp ? BaseBsp : 0);
        ResetRegisters(powerOn: true);
    }

    /// <summary>INIT (SDM 11.4.7.3): as power-up, but the APIC ID and IA32_APIC_BASE (so the mode) are kept.</summary>
    public void InitReset() => ResetRegisters(powerOn: false);

    private void ResetRegisters(bool powerOn)
    {
        if (powerOn) _xapicId = (byte)_initialId;
        _tpr = 0;
        _ldr = X2ApicMode ? X2ApicLdr(_initialId) : 0;
        _dfr = 0xffffffff;
        _svr = 0xff;
        Array.Clear(_isr);
        Array.Clear(_tmr);
        Array.Clear(_irr);
        _esr = 0;
        _pendingErrors = 0;
        _icr = 0;
        for (int i = 0; i < LvtCount; i++) _lvt[i] = LvtMasked;
        if (powerOn && _bsp) _lvt[(int)ApicLvt.Lint0] = (uint)ApicDeliveryMode.ExtInt << 8; // virtual wire
        _initialCount = 0;
        _divideConfig = 0;
        _timerArmed = false;
        _timerStartNs = 0;
        _timerNextNs = 0;
        _tscDeadline = 0;
        _extIntMessagePending = false;
    }

    public LocalApicState GetState() => new(
        _apicBase, _xapicId, _tpr, _ldr, _dfr, _svr,
        (uint[])_isr.Clone(), (uint[])_tmr.Clone(), (uint[])_irr.Clone(),
        _esr, _pendingErrors, _icr, (uint[])_lvt.Clone(), _initialCount, _divideConfig,
        _timerArmed, _timerStartNs, _timerNextNs, _tscDeadline, _lint0Level, _lint1Level, _extIntMessagePending);

    /// <summary>Restores a saved state; throws <see cref="ArgumentException"/> naming the bad field.</summary>
    public void FromState(LocalApicState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        static void Check(bool ok, string what)
        {
            if (!ok) throw new ArgumentException($"local APIC state: {what}", nameof(state));
        }
        Check(state.Isr is { Length: 8 } && state.Tmr is { Length: 8 } && state.Irr is { Length: 8 }, "ISR, TMR and IRR need 8 words each");
        Check(state.Lvt is { Length: LvtCount }, $"LVT needs {LvtCount} entries");
        Check((state.ApicBase & _baseReservedMask) == 0, $"APIC base 0x{state.ApicBase:x} sets reserved bits");
        Check((state.ApicBase & (BaseEnable | BaseExtd)) != BaseExtd, "APIC base has x2APIC set while disabled");
        Check(((state.ApicBase & BaseBsp) != 0) == _bsp, "APIC base BSP bit does not match this APIC");
        Check(state.DivideConfig <= 0xb && (state.DivideConfig & 4) == 0, $"divide configuration 0x{state.DivideConfig:x} is invalid");
        for (int i = 0; i < LvtCount; i++)
        {
            var lvt = (ApicLvt)i;
            uint allowed = LvtWritableMask(lvt) | (lvt is ApicLvt.Lint0 or ApicLvt.Lint1 ? LvtRemoteIrr : 0);
            Check((state.Lvt[i] & ~allowed) == 0, $"LVT {lvt} 0x{state.Lvt[i]:x} sets bits that cannot be written");
        }
        uint svrMask = 0x3ffu | (_eoiSuppressionOffered ? SvrSuppressEoiBroadcast : 0);
        Check((state.Svr & ~svrMask) == 0, $"SVR 0x{state.Svr:x} sets reserved bits");
        Check(!state.TimerArmed || state.TimerNextNs >= state.TimerStartNs, "timer deadline precedes its start");
        Check(state.TscDeadline == 0 || TscDeadlineSupported, "TSC deadline set without a TSC frequency");

        _apicBase = state.ApicBase;
        _xapicId = state.XApicId;
        _tpr = state.Tpr;
        _ldr = state.Ldr;
        _dfr = state.Dfr | 0x0fffffff;
        _svr = state.Svr;
        state.Isr.CopyTo(_isr, 0);
        state.Tmr.CopyTo(_tmr, 0);
        state.Irr.CopyTo(_irr, 0);
        _esr = state.Esr & 0xff;
        _pendingErrors = state.PendingErrors & 0xff;
        _icr = state.Icr;
        state.Lvt.CopyTo(_lvt, 0);
        _initialCount = state.InitialCount;
        _divideConfig = state.DivideConfig;
        _timerArmed = state.TimerArmed;
        _timerStartNs = state.TimerStartNs;
        _timerNextNs = state.TimerNextNs;
        _tscDeadline = state.TscDeadline;
        _lint0Level = state.Lint0Level;
        _lint1Level = state.Lint1Level;
        _extIntMessagePending = state.ExtIntMessagePending;
    }

    // ---------------------------------------------------------------- 256-bit vector registers

    private static void SetBit(uint[] reg, int vector, bool value)
    {
        uint bit = 1u << (vector & 31);
        if (value) reg[vector >> 5] |= bit;
        else reg[vector >> 5] &= ~bit;
    }

    private static bool GetBit(uint[] reg, int vector) => (reg[vector >> 5] & (1u << (vector & 31))) != 0;

    private static int HighestBit(uint[] reg)
    {
        for (int i = 7; i >= 0; i--)
        {
            if (reg[i] != 0) return i * 32 + 31 - BitOperations.LeadingZeroCount(reg[i]);
        }
        return -1;
    }
}
