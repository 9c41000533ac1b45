// The software x86 CPU: ActorVmm's stand-in for the kernel's CPU where no hypervisor exists, and the
// instruction emulator the vmm(4) backend will use for MMIO exits.
//
// Modes: real mode (with an 80286 model), 16- and 32-bit protected mode with full segmentation, and IA-32e
// mode (64-bit and compatibility mode, SoftCpu.Long.cs); 32-bit, PAE and 4-level paging with NX
// (SoftCpu.Paging.cs); the general-purpose integer instruction set; the x87 FPU (SoftCpu.X87.cs, Float80.cs);
// port I/O and MMIO as inline exits; HLT, CLI/STI with the interrupt shadow, exceptions with their error codes,
// double and triple fault; MMX and SSE-SSE4.2 (SoftCpu.Mmx.cs, Sse*.cs). Not yet: virtual-8086 mode, task switches, the TSS I/O permission bitmap (IN/OUT at CPL > IOPL raise
// #GP(0)). Everything not implemented raises #UD. docs/cpu.md has the full inventory.
//
// Structure: state lives in plain fields (registers as a ulong array, segment caches as SegmentRegister,
// flags as lazy flags — see SoftCpu.Flags.cs). Instructions are decoded by Iced once and cached per guest
// physical page (DecodeCache); a write to a page that holds cached code drops that page's cache (with several
// vCPUs, other vCPUs' caches too: SmpCoherence, SoftCpu.Smp.cs, which also makes LOCK forms atomic). Execution
// dispatches on the mnemonic to width-generic handlers grouped by family (SoftCpu.Exec*.cs).
// Architectural faults are thrown as CpuFault inside an instruction and caught at the instruction boundary,
// where they are delivered through the IDT; the common path allocates nothing.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Memory;
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public enum StepOutcome
{
    /// <summary>An instruction retired (or an interrupt was delivered).</summary>
    Retired,
    /// <summary>The instruction raised an exception, which was delivered through the IDT.</summary>
    Exception,
    /// <summary>HLT: the CPU waits for an interrupt.</summary>
    Halted,
    /// <summary>Triple fault: the CPU is in shutdown.</summary>
    Shutdown,
}

/// <summary>The local APIC's TPR, for MOV to and from CR8 (kernel-irqchip=on: the soft kernel's LAPIC).</summary>
internal interface ITaskPriority
{
    uint Tpr { get; set; }
}

/// <summary>An architectural exception as raised, before delivery.</summary>
public readonly record struct ExceptionRecord(byte Vector, uint? ErrorCode);

/// <summary>Raised inside an instruction for an architectural fault; caught at the instruction boundary.</summary>
internal sealed class CpuFault(byte vector, uint? errorCode) : Exception
{
    public byte Vector { get; } = vector;
    public uint? ErrorCode { get; } = errorCode;
}

public sealed unsafe partial class SoftCpu
{
    // Exception vectors.
    internal const byte ExDE = 0, ExDB = 1, ExNMI = 2, ExBP = 3, ExOF = 4, ExBR = 5, ExUD = 6, ExNM = 7, ExDF = 8, ExTS = 10, ExNP = 11, ExSS = 12, ExGP = 13, ExPF = 14, ExAC = 17;

    private readonly GuestMemory _memory;
    private readonly IExitHandler _exits;
    private readonly DecodeCache _decodeCache;

    // Architectural state.
    internal readonly ulong[] Gpr = new ulong[16];
    internal ulong Rip;
    internal SegmentRegister Es, Ss, Ds, Fs, Gs, Ldtr, Tr;
    private SegmentRegister _cs;

    /// <summary>CS. Setting it changes the mode the fetch cache was built for, so it drops that cache.</summary>
    internal SegmentRegister Cs
    {
        get => _cs;
        set
        {
            _cs = value;
            _fetchValid = false;
        }
    }
    internal DescriptorTableRegister Gdtr, Idtr;
    internal ulong Cr0, Cr2, Cr3, Cr4, Cr8, Efer, ApicBase;

    /// <summary>Instruction pointer of the instruction after the one executing (handlers set it for jumps).</summary>
    private ulong _nextRip;
    private bool _interruptShadow;
    private bool _halted;
    private bool _shutdown;
    private ExceptionRecord? _lastException;

    /// <summary>Set while the CPU makes an implicit supervisor access (descriptor tables, TSS, IDT): paging checks it as CPL 0.</summary>
    private bool _systemAccess;
    private ulong _retired;

    // Pending external events (set from other threads through SoftVcpu).
    private int _pendingVector = -1;
    private bool _pendingNmi;

    // Last RAM region hit by a data access: most accesses stay in one region.
    private ulong _ramStart, _ramEnd;
    private byte* _ramHost;
    private bool _ramReadOnly;

    public SoftCpu(GuestMemory memory, IExitHandler exits)
    {
        _memory = memory;
        _exits = exits;
        _decodeCache = new DecodeCache(memory);
        SetSystemRegisters(SystemRegisters.PowerOn());
        Rflags = 0x2;
        Gpr[2] = 0x600; // EDX at reset: family/model/stepping
    }

    /// <summary>Where RDTSC reads time from. Defaults to host time at 1 GHz (nanoseconds).</summary>
    public Func<ulong> TimeStampCounter { get; set; } = HostTsc;

    /// <summary>The TSC frequency advertised in CPUID leaf 0x15/0x16 terms (Hz).</summary>
    public const ulong TscFrequencyHz = 1_000_000_000;

    public ulong InstructionsRetired => _retired;

    /// <summary>The local APIC's task-priority register as CR8 sees it (TPR bits 7:4 = CR8 bits 3:0); null without a local APIC.</summary>
    internal ITaskPriority? TaskPriority { get; set; }

    /// <summary>The initial APIC ID CPUID reports (leaf 1 EBX bits 31:24).</summary>
    internal uint ApicId { get; set; }

    public ExceptionRecord? LastException => _lastException;

    public void ClearLastException() => _lastException = null;

    public bool IsHalted => _halted;

    public bool IsShutdown => _shutdown;

    /// <summary>True when an external interrupt could be taken now (IF=1, no interrupt shadow).</summary>
    public bool InterruptWindowOpen => (_flags & IF) != 0 && !_interruptShadow;

    /// <summary>Makes an external interrupt pending; delivered at the next boundary where IF=1 and no shadow.</summary>
    internal void RaiseExternalInterrupt(byte vector) => _pendingVector = vector;

    internal bool HasPendingExternalInterrupt => _pendingVector >= 0;

    internal void RaiseNmi() => _pendingNmi = true;

    private static ulong HostTsc() => (ulong)(Stopwatch.GetTimestamp() * (1_000_000_000.0 / Stopwatch.Frequency));

    public CpuRegisters GetRegisters()
    {
        var r = new CpuRegisters();
        for (int i = 0; i < 16; i++) r[i] = Gpr[i];
        r.Rip = Rip;
        r.Rflags = Rflags;
        return r;
    }

    public void SetRegisters(in CpuRegisters r)
    {
        var copy = r;
        for (int i = 0; i < 16; i++) Gpr[i] = copy[i];
        Rip = r.Rip;
        Rflags = r.Rflags;
        _halted = false;
    }

    public SystemRegisters GetSystemRegisters() => new()
    {
        Cs = Cs, Ds = Ds, Es = Es, Fs = Fs, Gs = Gs, Ss = Ss, Tr = Tr, Ldtr = Ldtr,
        Gdtr = Gdtr, Idtr = Idtr,
        Cr0 = Cr0, Cr2 = Cr2, Cr3 = Cr3, Cr4 = Cr4, Cr8 = Cr8, Efer = Efer, ApicBase = ApicBase,
    };

    public void SetSystemRegisters(in SystemRegisters s)
    {
        Cs = s.Cs; Ds = s.Ds; Es = s.Es; Fs = s.Fs; Gs = s.Gs; Ss = s.Ss; Tr = s.Tr; Ldtr = s.Ldtr;
        Gdtr = s.Gdtr; Idtr = s.Idtr;
        Cr0 = s.Cr0; Cr2 = s.Cr2; Cr3 = s.Cr3; Cr4 = s.Cr4; Cr8 = s.Cr8; Efer = s.Efer; ApicBase = s.ApicBase;
        _decodeCache.Clear();
        FlushTlb(keepGlobal: false);
    }

    /// <summary>Current privilege level.</summary>
    internal int Cpl => ProtectedMode ? _cs.Selector & 3 : 0;

    internal bool ProtectedMode => (Cr0 & 1) != 0;

    internal const ulong EferSce = 1, EferLme = 0x100, EferLma = 0x400, EferNxe = 0x800;

    /// <summary>IA-32e mode (EFER.LMA): 4-level paging and 64-bit interrupt delivery, in 64-bit or compatibility mode.</summary>
    internal bool LongMode
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => (Efer & EferLma) != 0;
    }

    /// <summary>64-bit mode: IA-32e mode with a 64-bit code segment (CS.L). Segment bases other than FS/GS and all limits are ignored.</summary>
    internal bool Mode64
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => (Efer & EferLma) != 0 && (_cs.Attributes & 0x2000) != 0;
    }

    /// <summary>Linear addresses are 64 bits wide (canonical 48-bit) in IA-32e mode, 32 bits otherwise.</summary>
    private ulong LinearMask => (Efer & EferLma) != 0 ? ulong.MaxValue : 0xffff_ffffUL;

    /// <summary>True when bits 63:47 of <paramref name="address"/> are all equal (48-bit linear addresses).</summary>
    internal static bool IsCanonical(ulong address) => (ulong)(((long)address << 16) >> 16) == address;

    /// <summary>
    /// 80286 compatibility model (default off: the 386+/Pentium behaviour, verified against the host CPU). Verified
    /// against the SingleStepTests 80286 real-mode vectors (a Harris 80C286). Differences from the default model:
    /// <list type="bullet">
    /// <item>FLAGS bits 12-15 read as 0 and cannot be set in real mode (PUSHF, POPF, IRET).</item>
    /// <item>LOCK is accepted on any instruction (the 386+ raises #UD).</item>
    /// <item>386+ instructions, 0x66/0x67 overrides, FS/GS (prefix or MOV Sreg) raise #UD.</item>
    /// <item>An instruction longer than 10 bytes raises #GP (the 386+ allows 15).</item>
    /// <item>A real-mode segment-limit overrun (word at offset 0xFFFF) is #GP for SS accesses too (386+: #SS).</item>
    /// <item>A word string instruction faulting at offset 0xFFFF has already advanced its index registers (MOVSW:
    /// only SI when the read faults) and, under REP, CX by two.</item>
    /// <item>SHR with a count above 1 leaves OF clear (the 386+ sets it from the original sign).</item>
    /// </list>
    /// Shared by both: shift counts are masked to 5 bits; faults push the faulting instruction's CS:IP (its first
    /// prefix), INT n/INT3/INTO the next one; physical addresses do not wrap at 1 MB (A20 on).
    /// </summary>
    internal bool Model286
    {
        get => _model286;
        set
        {
            _model286 = value;
            _decodeCache.SetLenient16(value);
            _fetchValid = false;
        }
    }

    private bool _model286;

    /// <summary>Default operand/address size of the code segment: 32 when CS.D is set.</summary>
    private int CodeBitness => Mode64 ? 64 : ProtectedMode && (_cs.Attributes & 0x4000) != 0 ? 32 : 16;

    /// <summary>Executes one instruction, or delivers one pending event.</summary>
    public StepOutcome Step()
    {
        if (_shutdown) return StepOutcome.Shutdown;

        // Events at the instruction boundary: ExNMI, then external interrupts.
        if (_pendingNmi && !_interruptShadow)
        {
            _pendingNmi = false;
            _halted = false;
            return DeliverEvent(ExNMI, null, EventKind.External);
        }
        if (_pendingVector >= 0 && (_flags & IF) != 0 && !_interruptShadow)
        {
            byte vector = (byte)_pendingVector;
            _pendingVector = -1;
            _halted = false;
            return DeliverEvent(vector, null, EventKind.External);
        }
        if (_halted) return StepOutcome.Halted;

        // Single-step: TF set when the instruction starts means a #DB trap after it (SDM vol. 3 §18.3.1.4),
        // unless it faulted, was a software interrupt (whose handler runs with TF clear), or loaded SS (the
        // MOV SS/POP SS shadow holds debug traps off for one instruction; the trap then follows the next one).
        bool singleStep = (_flags & TF) != 0;
        _interruptShadow = false;
        _softwareInterruptTaken = false;
        try
        {
            ref readonly var d = ref Fetch();
            _nextRip = (Rip + (ulong)d.Insn.Length) & _fetchIpMask;
            ExecuteDecoded(in d);
            Rip = _nextRip;
            _retired++;
            if (singleStep && !_softwareInterruptTaken && !(_interruptShadow && _ssShadow))
            {
                _debugRegisters[6] |= 0x4000; // DR6.BS
                return DeliverEvent(ExDB, null, EventKind.Trap);
            }
            return _halted ? StepOutcome.Halted : StepOutcome.Retired;
        }
        catch (CpuFault fault)
        {
            return DeliverFault(fault);
        }
    }

    private StepOutcome DeliverFault(CpuFault fault)
    {
        // A real-mode 286 reports a segment-limit overrun (word at offset 0xFFFF) as #GP, SS included.
        if (_model286 && !ProtectedMode && fault.Vector == ExSS) return DeliverEvent(ExGP, fault.ErrorCode, EventKind.Fault);
        return DeliverEvent(fault.Vector, fault.ErrorCode, EventKind.Fault);
    }

    /// <summary>True when an event waits that the next instruction boundary must look at (Step's checks), or TF single-steps.</summary>
    private bool EventDue => _pendingNmi || (_pendingVector >= 0 && (_flags & IF) != 0) || _halted || _shutdown || (_flags & TF) != 0;

    // _ssShadow: the interrupt shadow, when set, came from a load of SS (it also holds debug traps off); only read
    // together with _interruptShadow, which every instruction boundary clears.
    private bool _ssShadow, _softwareInterruptTaken;

    /// <summary>
    /// Runs until <paramref name="budget"/> instructions retired, HLT, shutdown, or <paramref name="stop"/> is set.
    /// Instructions run in a tight loop while no event is due; boundaries with an event go through <see cref="Step"/>.
    /// Only the generic handlers can make an event due inside the loop (HLT, STI/POPF/IRET changing IF or TF, a
    /// delivered exception): pending interrupts and NMIs are raised between runs, and the FastForm handlers touch
    /// none of it, so <see cref="EventDue"/> is looked at after generic instructions and faults only.
    /// </summary>
    internal StepOutcome Run(long budget, ref int stop)
    {
        SyncMemoryMap(); // another thread (a device actor) may have remapped guest memory since the last batch
        while (budget > 0)
        {
            if (EventDue)
            {
                var outcome = Step();
                budget--;
                if (outcome is StepOutcome.Halted or StepOutcome.Shutdown) return outcome;
                if ((budget & 0x3ff) == 0 && Volatile.Read(ref stop) != 0) return StepOutcome.Retired;
                continue;
            }
            ulong start = _retired;
            try
            {
                var burst = RunBurst(budget, ref stop);
                budget -= (long)(_retired - start);
                if (burst == Burst.Halted) return StepOutcome.Halted;
                if (burst == Burst.Stopped) return StepOutcome.Retired;
            }
            catch (CpuFault fault)
            {
                budget -= (long)(_retired - start) + 1;
                if (DeliverFault(fault) == StepOutcome.Shutdown) return StepOutcome.Shutdown;
            }
        }
        return StepOutcome.Retired;
    }

    /// <summary>
    /// The tight loop of <see cref="Run"/>, without exception handling of its own (so the JIT keeps its locals in
    /// registers): runs until the budget is spent or an event is due, HLT, or <paramref name="stop"/> is seen set. The
    /// caller counts what retired from <see cref="InstructionsRetired"/>; a fault propagates to it.
    /// </summary>
    private Burst RunBurst(long budget, ref int stop)
    {
        while (budget > 0)
        {
            _interruptShadow = false;
            ref readonly var d = ref Fetch();
            _nextRip = (Rip + (ulong)d.Insn.Length) & _fetchIpMask;
            if (d.Fast.Kind != FastKind.None)
            {
                ExecuteFast(in d.Fast, in d.Insn);
                Rip = _nextRip;
                _retired++;
                if ((--budget & 0x3ff) == 0 && Volatile.Read(ref stop) != 0) return Burst.Stopped;
                continue;
            }
            Execute(in d.Insn);
            Rip = _nextRip;
            _retired++;
            if (_halted) return Burst.Halted;
            if ((--budget & 0x3ff) == 0 && Volatile.Read(ref stop) != 0) return Burst.Stopped;
            if (EventDue) return Burst.More;
        }
        return Burst.More;
    }

    private enum Burst
    {
        /// <summary>The budget is spent or an event is due: back to <see cref="Run"/>'s loop.</summary>
        More,
        Halted,
        Stopped,
    }

    private ulong IpMask => CodeBitness switch
    {
        64 => ulong.MaxValue,
        32 => 0xffff_ffffUL,
        _ => 0xffffUL,
    };

    // Fetch cache: the linear code page the last instruction came from, its decoded page, and the values of the
    // mode they were checked under. Valid until CS changes, the TLB is flushed (CR0/CR3/CR4/EFER writes, INVLPG)
    // or cached code is dropped (a CPU store into cached code, WritePhysical; DecodeCache.Clear through
    // SetSystemRegisters, which flushes the TLB too, or SyncMemoryMap): whatever drops decoded code clears
    // _fetchValid, because Fetch does not look at DecodeCache.Generation. Instructions in the last 14 bytes of a page, which may run into
    // the next one, always take the full path.
    private bool _fetchValid;
    private ulong _fetchPageLinear, _fetchBase, _fetchLimit, _fetchLinearMask, _fetchIpMask = 0xffff;
    private DecodeCache.Page? _fetchPage;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref readonly DecodedInstruction Fetch()
    {
        if (_fetchValid && Rip <= _fetchLimit)
        {
            ulong linear = (_fetchBase + Rip) & _fetchLinearMask;
            int offset = (int)(linear & 0xfff);
            if (linear - (ulong)offset == _fetchPageLinear && offset <= 0x1000 - 15)
            {
                int index = _fetchPage!.Index[offset];
                if (index != 0)
                {
                    ref readonly var cached = ref _fetchPage.Items[index - 1];
                    if (cached.Insn.Code != Code.INVALID) return ref cached;
                }
            }
        }
        return ref FetchSlow();
    }

    private ref readonly DecodedInstruction FetchSlow()
    {
        bool mode64 = Mode64;
        _fetchValid = false;
        _fetchIpMask = IpMask;
        ulong linear;
        if (mode64)
        {
            linear = Rip;
            if (!IsCanonical(linear)) throw new CpuFault(ExGP, 0);
        }
        else
        {
            uint eip = (uint)Rip;
            if (eip > _cs.Limit) throw new CpuFault(ExGP, 0);
            linear = (_cs.Base + eip) & 0xffff_ffff;
        }
        ulong pa = linear;
        if (PagingEnabled)
        {
            // An instruction that may run into the next page is decoded from bytes gathered through both
            // translations and not cached (the next page need not follow in physical memory).
            if ((linear & 0xfff) > 0x1000 - 15) return ref FetchAcrossPages(linear);
            pa = Translate(linear, Access.Fetch);
        }
        ref readonly var insn = ref _decodeCache.Get(pa, CodeBitness, out bool ok);
        if (!ok) throw new CpuFault(ExGP, 0); // fetch from unbacked memory: no RAM behind CS:EIP
        if (insn.Insn.Code == Code.INVALID) throw new CpuFault(ExUD, null);
        if (_model286)
        {
            Check286(in insn.Insn);
            return ref insn;
        }
        _fetchPage = _decodeCache.LastPage;
        _fetchPageLinear = linear & ~0xfffUL;
        _fetchBase = mode64 ? 0 : _cs.Base;
        _fetchLimit = mode64 ? ulong.MaxValue : _cs.Limit;
        _fetchLinearMask = mode64 ? ulong.MaxValue : 0xffff_ffffUL;
        _fetchValid = _fetchPage is not null;
        return ref insn;
    }

    private Instruction _crossPageInstruction;
    private DecodedInstruction _crossPageDecoded;

    private ref readonly DecodedInstruction FetchAcrossPages(ulong linear)
    {
        Span<byte> bytes = stackalloc byte[15];
        int inFirst = (int)(0x1000 - (linear & 0xfff));
        ulong pa = Translate(linear, Access.Fetch);
        for (int i = 0; i < inFirst; i++) bytes[i] = (byte)ReadPhysical(pa + (ulong)i, 1);
        var first = Decoder.Create(CodeBitness, new ByteArrayCodeReader(bytes[..inFirst].ToArray()), DecoderOptions.None);
        first.IP = linear;
        first.Decode(out _crossPageInstruction);
        if (first.LastError == DecoderError.NoMoreBytes)
        {
            // The instruction continues on the next page: that page must be mapped and executable too.
            ulong pa2 = Translate((linear + (ulong)inFirst) & LinearMask, Access.Fetch);
            for (int i = inFirst; i < 15; i++) bytes[i] = (byte)ReadPhysical(pa2 + (ulong)(i - inFirst), 1);
            var both = Decoder.Create(CodeBitness, new ByteArrayCodeReader(bytes.ToArray()), DecoderOptions.None);
            both.IP = linear;
            both.Decode(out _crossPageInstruction);
        }
        if (_crossPageInstruction.Code == Code.INVALID) throw new CpuFault(ExUD, null);
        _crossPageDecoded = new DecodedInstruction(_crossPageInstruction);
        return ref _crossPageDecoded;
    }

    /// <summary>
    /// 80286 model: instructions the 286 does not have (386+ opcodes, operand/address-size overrides, FS/GS) are
    /// #UD, and an instruction longer than 10 bytes is #GP.
    /// </summary>
    private static void Check286(in Instruction insn)
    {
        if (insn.Length > 10) throw new CpuFault(ExGP, 0);
        foreach (var feature in insn.Code.CpuidFeatures())
        {
            if (feature is not (CpuidFeature.INTEL8086 or CpuidFeature.INTEL8086_ONLY or CpuidFeature.INTEL186 or CpuidFeature.INTEL286
                or CpuidFeature.INTEL286_ONLY))
                throw new CpuFault(ExUD, null);
        }
        if (insn.SegmentPrefix is Register.FS or Register.GS) throw new CpuFault(ExUD, null);
        if (insn.MemoryBase.IsGPR32() || insn.MemoryIndex.IsGPR32()) throw new CpuFault(ExUD, null);
        for (int k = 0; k < insn.OpCount; k++)
        {
            var kind = insn.GetOpKind(k);
            if (kind == OpKind.Register && insn.GetOpRegister(k).IsGPR32()) throw new CpuFault(ExUD, null);
            if (kind is OpKind.MemorySegESI or OpKind.MemorySegEDI or OpKind.MemoryESEDI) throw new CpuFault(ExUD, null);
        }
    }

    private enum EventKind
    {
        Fault,
        /// <summary>A trap raised after the instruction completed (single-step #DB): RIP is already the next instruction.</summary>
        Trap,
        External,
        SoftwareInt,
    }

    private static bool IsContributory(byte v) => v is ExDE or ExTS or ExNP or ExSS or ExGP;

    private StepOutcome DeliverEvent(byte vector, uint? errorCode, EventKind kind)
    {
        if (kind is EventKind.Fault or EventKind.Trap) _lastException = new ExceptionRecord(vector, errorCode);
        try
        {
            DeliverThroughIdt(vector, errorCode, kind == EventKind.SoftwareInt, kind == EventKind.External);
            return kind is EventKind.Fault or EventKind.Trap ? StepOutcome.Exception : StepOutcome.Retired;
        }
        catch (CpuFault second)
        {
            _lastException = new ExceptionRecord(second.Vector, second.ErrorCode);
            if (vector == ExDF)
            {
                _shutdown = true;
                return StepOutcome.Shutdown;
            }
            bool makesDouble = (IsContributory(vector) && IsContributory(second.Vector))
                || (vector == ExPF && (IsContributory(second.Vector) || second.Vector == ExPF));
            byte next = makesDouble ? ExDF : second.Vector;
            uint? code = makesDouble ? 0u : second.ErrorCode;
            return DeliverEvent(next, code, EventKind.Fault) == StepOutcome.Shutdown ? StepOutcome.Shutdown : StepOutcome.Exception;
        }
    }

    /// <summary>
    /// Software interrupt from INT n / INT3 / INTO, delivered with the return address after the instruction.
    /// ICEBP (INT1) is delivered like a hardware #DB: no gate-privilege check.
    /// </summary>
    private void SoftwareInterrupt(byte vector, bool icebp = false)
    {
        Rip = _nextRip;
        DeliverThroughIdt(vector, null, software: !icebp, external: false);
        _nextRip = Rip;
        _softwareInterruptTaken = true;
    }

    private void DeliverThroughIdt(byte vector, uint? errorCode, bool software, bool external)
    {
        if (!ProtectedMode)
        {
            DeliverRealMode(vector);
            return;
        }
        if (LongMode)
        {
            DeliverLongMode(vector, errorCode, software, external);
            return;
        }
        uint ext = external ? 1u : 0u;
        uint idtOffset = (uint)vector * 8;
        if (idtOffset + 7 > Idtr.Limit) throw new CpuFault(ExGP, idtOffset + 2 + ext);
        ulong gate = ReadSystem64(Idtr.Base + idtOffset);
        int type = (int)(gate >> 40) & 0x1f;
        int gateDpl = (int)(gate >> 45) & 3;
        bool present = ((gate >> 47) & 1) != 0;
        if (type is not (0x0e or 0x0f or 0x06 or 0x07)) throw new CpuFault(ExGP, idtOffset + 2 + ext);
        if (software && gateDpl < Cpl) throw new CpuFault(ExGP, idtOffset + 2);
        if (!present) throw new CpuFault(ExNP, idtOffset + 2 + ext);
        bool gate32 = (type & 0x08) != 0;
        bool trapGate = (type & 1) != 0;
        ushort selector = (ushort)(gate >> 16);
        uint offset = (uint)(gate & 0xffff) | (uint)((gate >> 32) & 0xffff0000);
        if (!gate32) offset &= 0xffff;

        if ((selector & 0xfffc) == 0) throw new CpuFault(ExGP, ext);
        var codeDesc = LoadDescriptor(selector, ExGP, ext);
        var cs = DescriptorToSegment(selector, codeDesc);
        int dpl = (cs.Attributes >> 5) & 3;
        bool isCode = (cs.Attributes & 0x18) == 0x18;
        if (!isCode || dpl > Cpl) throw new CpuFault(ExGP, (uint)(selector & 0xfffc) + ext);
        if (!cs.Present) throw new CpuFault(ExNP, (uint)(selector & 0xfffc) + ext);
        bool conforming = (cs.Attributes & 0x04) != 0;

        uint flags = (uint)Rflags;
        ushort oldCs = _cs.Selector;
        uint oldEip = (uint)Rip;
        if (!conforming && dpl < Cpl)
        {
            // Inter-privilege: switch to the inner stack named in the TSS.
            var (newSs, newEsp) = ReadTssStack(dpl, ext);
            ushort oldSs = Ss.Selector;
            uint oldEsp = (uint)Gpr[4];
            var ssDesc = LoadDescriptor(newSs, ExTS, ext);
            var ss = DescriptorToSegment(newSs, ssDesc);
            if ((newSs & 3) != dpl || ((ss.Attributes >> 5) & 3) != dpl || (ss.Attributes & 0x1a) != 0x12)
                throw new CpuFault(ExTS, (uint)(newSs & 0xfffc) + ext);
            if (!ss.Present) throw new CpuFault(ExSS, (uint)(newSs & 0xfffc) + ext);
            SetAccessed(newSs);
            Ss = ss;
            Gpr[4] = newEsp;
            cs.Selector = (ushort)((selector & 0xfffc) | dpl);
            PushGate(gate32, oldSs);
            PushGate(gate32, oldEsp);
        }
        else
        {
            cs.Selector = (ushort)((selector & 0xfffc) | Cpl);
        }
        PushGate(gate32, flags);
        PushGate(gate32, oldCs);
        PushGate(gate32, oldEip);
        if (errorCode is uint code) PushGate(gate32, code);
        if (offset > cs.Limit) throw new CpuFault(ExGP, ext);
        SetAccessed(selector);
        Cs = cs;
        Rip = offset;
        _flags &= ~(TF | NT | RF | VM);
        if (!trapGate) _flags &= ~IF;
        _halted = false;
    }

    private void PushGate(bool gate32, uint value)
    {
        if (gate32) Push(value, 4);
        else Push(value & 0xffff, 2);
    }

    private void DeliverRealMode(byte vector)
    {
        uint offset = (uint)vector * 4;
        if (offset + 3 > Idtr.Limit) throw new CpuFault(ExGP, 0);
        uint entry = (uint)ReadSystem32(Idtr.Base + offset);
        Push(Rflags & 0xffff, 2);
        Push(_cs.Selector, 2);
        Push(Rip & 0xffff, 2);
        Cs = SegmentRegister.RealMode((ushort)(entry >> 16), code: true);
        Rip = entry & 0xffff;
        _flags &= ~(IF | TF | AC_ | RF);
        _halted = false;
    }

    private (ushort Ss, uint Esp) ReadTssStack(int dpl, uint ext)
    {
        int type = Tr.Attributes & 0xf;
        if (!Tr.Present || (type != 0x9 && type != 0xb && type != 0x1 && type != 0x3)) throw new CpuFault(ExTS, (uint)(Tr.Selector & 0xfffc) + ext);
        bool tss32 = (type & 0x8) != 0;
        uint offset = tss32 ? (uint)(4 + dpl * 8) : (uint)(2 + dpl * 4);
        uint size = tss32 ? 6u : 4u;
        if (offset + size - 1 > Tr.Limit) throw new CpuFault(ExTS, (uint)(Tr.Selector & 0xfffc) + ext);
        if (tss32)
            return ((ushort)ReadSystem32(Tr.Base + offset + 4), (uint)ReadSystem32(Tr.Base + offset));
        return ((ushort)ReadSystem16(Tr.Base + offset + 2), (ushort)ReadSystem16(Tr.Base + offset));
    }

    private void Push(ulong value, int size)
    {
        if (Mode64)
        {
            ulong rsp = Gpr[4] - (ulong)size;
            WriteLinear(StackLinear64(rsp), value, size);
            Gpr[4] = rsp;
            return;
        }
        bool stack32 = (Ss.Attributes & 0x4000) != 0;
        ulong sp = Gpr[4];
        ulong newSp = stack32 ? (uint)(sp - (ulong)size) : (sp & ~0xffffUL) | ((sp - (ulong)size) & 0xffff);
        ulong offset = stack32 ? (uint)newSp : newSp & 0xffff;
        WriteSeg(ref Ss, ExSS, offset, value, size);
        Gpr[4] = newSp;
    }

    private ulong Pop(int size)
    {
        if (Mode64)
        {
            ulong v = ReadLinear(StackLinear64(Gpr[4]), size);
            Gpr[4] += (ulong)size;
            return v;
        }
        bool stack32 = (Ss.Attributes & 0x4000) != 0;
        ulong sp = Gpr[4];
        ulong offset = stack32 ? (uint)sp : sp & 0xffff;
        ulong value = ReadSeg(ref Ss, ExSS, offset, size);
        Gpr[4] = stack32 ? (uint)(sp + (ulong)size) : (sp & ~0xffffUL) | ((sp + (ulong)size) & 0xffff);
        return value;
    }

    /// <summary>Reads the stack at ESP + <paramref name="delta"/> without popping.</summary>
    private ulong PeekStack(ulong delta, int size)
    {
        if (Mode64) return ReadLinear(StackLinear64(Gpr[4] + delta), size);
        bool stack32 = (Ss.Attributes & 0x4000) != 0;
        ulong offset = stack32 ? (uint)(Gpr[4] + delta) : (Gpr[4] + delta) & 0xffff;
        return ReadSeg(ref Ss, ExSS, offset, size);
    }
}
