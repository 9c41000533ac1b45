// String instructions (with REP/REPE/REPNE, interruptible in chunks), port I/O as exits, CPUID, and the
// system instructions a protected-mode kernel uses: descriptor-table loads and stores, LLDT/LTR, control
// registers, LMSW/SMSW/CLTS, cache and TLB no-ops.
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    /// <summary>Iterations of a REP string instruction per step; the rest runs after pending events are checked.</summary>
    private const int RepChunk = 4096;

    private void StringOp(in Instruction i)
    {
        var m = i.Mnemonic;
        int size = m switch
        {
            Mnemonic.Movsb or Mnemonic.Cmpsb or Mnemonic.Scasb or Mnemonic.Lodsb or Mnemonic.Stosb or Mnemonic.Insb or Mnemonic.Outsb => 1,
            Mnemonic.Movsw or Mnemonic.Cmpsw or Mnemonic.Scasw or Mnemonic.Lodsw or Mnemonic.Stosw or Mnemonic.Insw or Mnemonic.Outsw => 2,
            Mnemonic.Movsq or Mnemonic.Cmpsq or Mnemonic.Scasq or Mnemonic.Lodsq or Mnemonic.Stosq => 8,
            _ => 4,
        };
        // The address size (SI/ESI/RSI, DI/EDI/RDI and the CX/ECX/RCX counter) comes from the operand kinds.
        ulong amask = StringAddressMask(i.Op0Kind) & StringAddressMask(i.Op1Kind);
        long step = (_flags & DF) != 0 ? -size : size;
        bool rep = i.HasRepPrefix || i.HasRepePrefix || i.HasRepnePrefix;
        bool compare = m is Mnemonic.Cmpsb or Mnemonic.Cmpsw or Mnemonic.Cmpsd or Mnemonic.Cmpsq or Mnemonic.Scasb or Mnemonic.Scasw
            or Mnemonic.Scasd or Mnemonic.Scasq;
        bool isIo = m is Mnemonic.Insb or Mnemonic.Insw or Mnemonic.Insd or Mnemonic.Outsb or Mnemonic.Outsw or Mnemonic.Outsd;
        ushort port = (ushort)Gpr[2];
        if (isIo) CheckIo();
        Register srcSegReg = i.MemorySegment;
        int bits = size * 8;

        int iterations = 0;
        bool repe = i.HasRepePrefix, repne = i.HasRepnePrefix, movsReadFaulted = false;
        try
        {
            StringLoop();
        }
        catch (CpuFault) when (_model286 && !ProtectedMode && size == 2)
        {
            // Observed on a real 80286 (SingleStepTests vectors): when a word access at offset 0xFFFF faults, the
            // iteration's index registers have already advanced, and under REP CX has dropped by two.
            bool usesSi = m is not (Mnemonic.Stosw or Mnemonic.Scasw or Mnemonic.Insw);
            bool usesDi = m is not (Mnemonic.Lodsw or Mnemonic.Outsw) && !movsReadFaulted; // MOVSW stops at a faulting read
            if (usesSi) AdvanceIndex(6, step, amask);
            if (usesDi) AdvanceIndex(7, step, amask);
            if (rep) Gpr[1] = (Gpr[1] & ~amask) | ((Gpr[1] - 2) & amask);
            throw;
        }

        void StringLoop()
        {
            while (true)
            {
                if (rep && (Gpr[1] & amask) == 0) break;
                ulong si = Gpr[6] & amask, di = Gpr[7] & amask;
                switch (m)
                {
                    case Mnemonic.Movsb or Mnemonic.Movsw or Mnemonic.Movsd or Mnemonic.Movsq:
                        {
                            movsReadFaulted = true;
                            ulong v = ReadSeg(ref Sreg(RegIndex[(int)srcSegReg]), srcSegReg == Register.SS ? ExSS : ExGP, si, size);
                            movsReadFaulted = false;
                            WriteSeg(ref Es, ExGP, di, v, size);
                            AdvanceIndex(6, step, amask);
                            AdvanceIndex(7, step, amask);
                            break;
                        }
                    case Mnemonic.Cmpsb or Mnemonic.Cmpsw or Mnemonic.Cmpsd or Mnemonic.Cmpsq:
                        {
                            ulong a = ReadSeg(ref Sreg(RegIndex[(int)srcSegReg]), srcSegReg == Register.SS ? ExSS : ExGP, si, size);
                            ulong b = ReadSeg(ref Es, ExGP, di, size);
                            SetLazy(LazyOp.Sub, a, b, (a - b) & SizeMask(bits), bits);
                            AdvanceIndex(6, step, amask);
                            AdvanceIndex(7, step, amask);
                            break;
                        }
                    case Mnemonic.Scasb or Mnemonic.Scasw or Mnemonic.Scasd or Mnemonic.Scasq:
                        {
                            ulong a = Gpr[0] & SizeMask(bits);
                            ulong b = ReadSeg(ref Es, ExGP, di, size);
                            SetLazy(LazyOp.Sub, a, b, (a - b) & SizeMask(bits), bits);
                            AdvanceIndex(7, step, amask);
                            break;
                        }
                    case Mnemonic.Lodsb or Mnemonic.Lodsw or Mnemonic.Lodsd or Mnemonic.Lodsq:
                        {
                            ulong v = ReadSeg(ref Sreg(RegIndex[(int)srcSegReg]), srcSegReg == Register.SS ? ExSS : ExGP, si, size);
                            WriteReg(size switch { 1 => Register.AL, 2 => Register.AX, 4 => Register.EAX, _ => Register.RAX }, v);
                            AdvanceIndex(6, step, amask);
                            break;
                        }
                    case Mnemonic.Stosb or Mnemonic.Stosw or Mnemonic.Stosd or Mnemonic.Stosq:
                        WriteSeg(ref Es, ExGP, di, Gpr[0] & SizeMask(bits), size);
                        AdvanceIndex(7, step, amask);
                        break;
                    case Mnemonic.Insb or Mnemonic.Insw or Mnemonic.Insd:
                        {
                            // The destination is checked before the port is read, so a fault does not lose input.
                            CheckSegment(ref Es, ExGP, di, size, write: true);
                            Span<byte> data = stackalloc byte[4];
                            _exits.PortRead(port, data[..size]);
                            WriteSeg(ref Es, ExGP, di, BitConverter.ToUInt32(data), size);
                            AdvanceIndex(7, step, amask);
                            break;
                        }
                    default: // Outs
                        {
                            ulong v = ReadSeg(ref Sreg(RegIndex[(int)srcSegReg]), srcSegReg == Register.SS ? ExSS : ExGP, si, size);
                            Span<byte> data = stackalloc byte[4];
                            BitConverter.TryWriteBytes(data, (uint)v);
                            _exits.PortWrite(port, data[..size]);
                            SyncMemoryMap(); // a chipset register may have remapped memory (PAM)
                            AdvanceIndex(6, step, amask);
                            break;
                        }
                }
                if (!rep) return;
                Gpr[1] = amask == 0xffff ? (Gpr[1] & ~amask) | ((Gpr[1] - 1) & amask) : (Gpr[1] - 1) & amask;
                if (compare)
                {
                    bool zf = GetZf();
                    if (repe && !zf) return;
                    if (repne && zf) return;
                }
                if ((Gpr[1] & amask) == 0) return;
                if (++iterations >= RepChunk)
                {
                    _nextRip = Rip; // resume this instruction at the next step
                    return;
                }
            }
        }
    }

    private static ulong StringAddressMask(OpKind kind) => kind switch
    {
        OpKind.MemorySegSI or OpKind.MemoryESDI or OpKind.MemorySegDI => 0xffffUL,
        OpKind.MemorySegESI or OpKind.MemoryESEDI or OpKind.MemorySegEDI => 0xffff_ffffUL,
        _ => ulong.MaxValue,
    };

    /// <summary>Steps SI/DI by the address size: a 32-bit index zero-extends into the 64-bit register.</summary>
    private void AdvanceIndex(int reg, long step, ulong amask)
        => Gpr[reg] = amask == 0xffff ? (Gpr[reg] & ~amask) | ((Gpr[reg] + (ulong)step) & amask) : (Gpr[reg] + (ulong)step) & amask;

    /// <summary>I/O permission: CPL ≤ IOPL in protected mode (the TSS I/O bitmap is not implemented yet).</summary>
    private void CheckIo()
    {
        if (ProtectedMode && Cpl > (int)((_flags >> 12) & 3)) throw new CpuFault(ExGP, 0);
    }

    private void PortIn(in Instruction i)
    {
        CheckIo();
        int size = RegBits[(int)i.Op0Register] / 8;
        ushort port = i.Op1Kind == OpKind.Register ? (ushort)Gpr[2] : i.Immediate8;
        Span<byte> data = stackalloc byte[4];
        data.Clear();
        _exits.PortRead(port, data[..size]);
        WriteReg(i.Op0Register, BitConverter.ToUInt32(data));
    }

    private void PortOut(in Instruction i)
    {
        CheckIo();
        int size = RegBits[(int)i.Op1Register] / 8;
        ushort port = i.Op0Kind == OpKind.Register ? (ushort)Gpr[2] : i.Immediate8;
        Span<byte> data = stackalloc byte[4];
        BitConverter.TryWriteBytes(data, (uint)ReadReg(i.Op1Register));
        _exits.PortWrite(port, data[..size]);
        SyncMemoryMap(); // a chipset register (PCI config: the i440FX PAM) may have remapped memory
    }

    /// <summary>
    /// CPUID: an Intel family 6 model that advertises exactly what this CPU implements, and a brand string saying
    /// what it is. Leaf 1 EDX: FPU, PSE, TSC, MSR, PAE, CX8, SEP, MTRR, PGE, CMOV, PAT, CLFSH, MMX, FXSR, SSE, SSE2; ECX: SSE3, SSSE3,
    /// CX16, SSE4.1, SSE4.2, MOVBE, POPCNT (and x2APIC with a local APIC). Leaf 0x80000001:
    /// SYSCALL, NX, RDTSCP, LM and LAHF/SAHF in 64-bit mode. Leaf 0x80000008: 40-bit physical and 48-bit linear
    /// addresses. APIC (leaf 1 EDX bit 9) and the initial APIC ID (EBX[31:24]) when a local APIC is wired to the CPU
    /// (<see cref="TaskPriority"/>). Not BMI1/BMI2, AVX, XSAVE or MONITOR/MWAIT. Basic leaves above the maximum return the highest basic leaf, as Intel does.
    /// </summary>
    private void Cpuid()
    {
        uint leaf = (uint)Gpr[0];
        uint a = 0, b = 0, c = 0, d = 0;
        switch (leaf)
        {
            case 0:
                a = 1;
                b = 0x756e_6547; // "Genu"
                d = 0x4965_6e69; // "ineI"
                c = 0x6c65_746e; // "ntel"
                break;
            case 1:
                a = 0x0000_0663;               // family 6, model 6, stepping 3
                b = (ApicId << 24) | (8 << 8); // initial APIC ID, CLFLUSH line size 8 x 8 = 64 bytes
                if (TaskPriority is not null) d |= 1u << 9; // APIC: a local APIC is wired to this CPU
                d |= (1u << 0) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) | (1u << 11) | (1u << 12) | (1u << 13) | (1u << 15)
                    | (1u << 16) | (1u << 19) | (1u << 23) | (1u << 24) | (1u << 25) | (1u << 26); // FPU, PSE, TSC, MSR, PAE, CX8, SEP, MTRR, PGE, CMOV, PAT, CLFSH, MMX, FXSR, SSE, SSE2
                c = (1u << 0) | (1u << 9) | (1u << 13) | (1u << 19) | (1u << 20) | (1u << 22) | (1u << 23); // SSE3, SSSE3, CMPXCHG16B, SSE4.1, SSE4.2, MOVBE, POPCNT
                if (TaskPriority is not null) c |= 1u << 21; // x2APIC: the wired local APIC has the x2APIC MSRs
                break;
            case 0x8000_0000:
                a = 0x8000_0008;
                break;
            case 0x8000_0001:
                c = (1u << 0) | (1u << 5);                               // LAHF/SAHF in 64-bit mode, ABM (LZCNT)
                d = (1u << 11) | (1u << 20) | (1u << 27) | (1u << 29);  // SYSCALL, NX, RDTSCP, LM
                break;
            case 0x8000_0002 or 0x8000_0003 or 0x8000_0004:
                {
                    var brand = "ActorVmm soft CPU\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"u8;
                    int o = (int)(leaf - 0x8000_0002) * 16;
                    a = BitConverter.ToUInt32(brand[o..]);
                    b = BitConverter.ToUInt32(brand[(o + 4)..]);
                    c = BitConverter.ToUInt32(brand[(o + 8)..]);
                    d = BitConverter.ToUInt32(brand[(o + 12)..]);
                    break;
                }
            case 0x8000_0005 or 0x8000_0006 or 0x8000_0007:
                break; // no cache or power-management information
            case 0x8000_0008:
                a = 0x3028; // 48-bit linear, 40-bit physical addresses
                break;
            default:
                if (leaf < 0x8000_0000) goto case 1;
                break;
        }
        Gpr[0] = a;
        Gpr[3] = b;
        Gpr[1] = c;
        Gpr[2] = d;
    }

    /// <summary>System instructions; false when the instruction is not implemented (the caller raises #ExUD).</summary>
    private bool SystemInstruction(in Instruction i)
    {
        switch (i.Mnemonic)
        {
            // The serializing instructions (SDM vol. 3 §9.3) first drop code other vCPUs wrote (Serialize, SoftCpu.Smp.cs).
            case Mnemonic.Lgdt or Mnemonic.Lidt:
                {
                    RequireCpl0();
                    Serialize();
                    ushort limit = (ushort)ReadMem(i, 16);
                    ulong b = ReadMem(i, Mode64 ? 64 : 32, 2); // 64-bit mode: an 8-byte base whatever the operand size
                    if (!Mode64 && OperandBytes(i) == 2) b &= 0xff_ffff;
                    if (Mode64 && !IsCanonical(b)) throw new CpuFault(ExGP, 0);
                    if (i.Mnemonic == Mnemonic.Lgdt) Gdtr = new() { Base = b, Limit = limit };
                    else Idtr = new() { Base = b, Limit = limit };
                    return true;
                }
            case Mnemonic.Sgdt or Mnemonic.Sidt:
                {
                    var t = i.Mnemonic == Mnemonic.Sgdt ? Gdtr : Idtr;
                    WriteMem(i, t.Limit, 16);
                    if (Mode64) WriteMem(i, t.Base, 64, 2);
                    else WriteMem(i, (uint)t.Base, 32, 2);
                    return true;
                }
            case Mnemonic.Lldt:
                {
                    RequireProtectedMode();
                    RequireCpl0();
                    Serialize();
                    ushort sel = (ushort)ReadOp(i, 0, 16);
                    if ((sel & 0xfffc) == 0)
                    {
                        Ldtr = new() { Selector = sel };
                        return true;
                    }
                    if ((sel & 4) != 0) throw new CpuFault(ExGP, (uint)(sel & 0xfffc));
                    var seg = DescriptorToSegment(sel, LoadDescriptor(sel, ExGP));
                    if ((seg.Attributes & 0x1f) != 0x02) throw new CpuFault(ExGP, (uint)(sel & 0xfffc));
                    if (!seg.Present) throw new CpuFault(ExNP, (uint)(sel & 0xfffc));
                    if (LongMode) seg.Base |= SystemDescriptorHighBase(sel);
                    Ldtr = seg;
                    return true;
                }
            case Mnemonic.Ltr:
                {
                    RequireProtectedMode();
                    RequireCpl0();
                    Serialize();
                    ushort sel = (ushort)ReadOp(i, 0, 16);
                    if ((sel & 0xfffc) == 0 || (sel & 4) != 0) throw new CpuFault(ExGP, (uint)(sel & 0xfffc));
                    ulong d = LoadDescriptor(sel, ExGP);
                    var seg = DescriptorToSegment(sel, d);
                    int type = seg.Attributes & 0x1f;
                    // An available 16- or 32-bit TSS; in IA-32e mode only an available 64-bit TSS (type 9, 16-byte descriptor).
                    if (LongMode ? type != 0x09 : type is not (0x01 or 0x09)) throw new CpuFault(ExGP, (uint)(sel & 0xfffc));
                    if (!seg.Present) throw new CpuFault(ExNP, (uint)(sel & 0xfffc));
                    if (LongMode) seg.Base |= SystemDescriptorHighBase(sel);
                    // Mark the TSS busy in its descriptor and in the cache.
                    ulong addr = Gdtr.Base + (uint)(sel & 0xfff8) + 5;
                    WriteSystem(addr, ReadSystem(addr, 1) | 0x02, 1);
                    seg.Attributes |= 0x02;
                    Tr = seg;
                    return true;
                }
            case Mnemonic.Lar or Mnemonic.Lsl or Mnemonic.Verr or Mnemonic.Verw: SegmentQuery(i); return true;
            case Mnemonic.Sldt: WriteOp(i, 0, Ldtr.Selector, OpBits(i)); return true;
            case Mnemonic.Str: WriteOp(i, 0, Tr.Selector, OpBits(i)); return true;
            case Mnemonic.Smsw: WriteOp(i, 0, Cr0 & (OpBits(i) == 16 ? 0xffffUL : 0xffff_ffffUL), OpBits(i)); return true;
            case Mnemonic.Lmsw:
                {
                    RequireCpl0();
                    ulong v = ReadOp(i, 0, 16) & 0xf;
                    // LMSW can set PE but never clear it.
                    WriteCr0((Cr0 & ~0xeUL) | v | (Cr0 & 1));
                    return true;
                }
            case Mnemonic.Clts: RequireCpl0(); Cr0 &= ~8UL; return true;
            case Mnemonic.Invd or Mnemonic.Wbinvd: RequireCpl0(); Serialize(); return true;
            case Mnemonic.Invlpg:
                {
                    RequireCpl0();
                    Serialize();
                    ref var seg = ref MemorySegment(i, out byte fv);
                    ulong offset = EffectiveOffset(i);
                    InvalidatePage(Mode64 ? Linear64(ref seg, fv, offset) : (seg.Base + offset) & 0xffff_ffff);
                    return true;
                }
            default:
                return MsrInstruction(i);
        }
    }

    private void RequireCpl0()
    {
        if (Cpl != 0) throw new CpuFault(ExGP, 0);
    }

    private void RequireProtectedMode()
    {
        if (!ProtectedMode) throw new CpuFault(ExUD, null);
    }

    private void MoveControlRegister(in Instruction i)
    {
        RequireCpl0();
        if (i.Op0Register.IsCR()) Serialize(); // MOV to a control register serializes
        var r0 = i.Op0Register;
        var r1 = i.Op1Register;
        if (r0.IsCR())
        {
            ulong v = ReadReg(r1);
            switch (r0)
            {
                case Register.CR0: WriteCr0(v); break;
                case Register.CR2: Cr2 = v; break;
                case Register.CR3:
                    if (LongMode && (v >> 52) != 0) throw new CpuFault(ExGP, 0); // beyond the physical-address width (no PCID)
                    Cr3 = LongMode ? v : v & 0xffff_ffff;
                    FlushTlb(keepGlobal: true);
                    break;
                case Register.CR4:
                    // TSD (2), PSE (4), PAE (5), PGE (7), OSFXSR (9) and OSXMMEXCPT (10) are implemented; other bits are reserved here.
                    if ((v & ~0x6b4UL) != 0) throw new CpuFault(ExGP, 0);
                    if (LongMode && (v & 0x20) == 0) throw new CpuFault(ExGP, 0); // PAE cannot be cleared in IA-32e mode
                    Cr4 = v;
                    FlushTlb(keepGlobal: false);
                    break;
                case Register.CR8:
                    if ((v & ~0xfUL) != 0) throw new CpuFault(ExGP, 0);
                    Cr8 = v;
                    if (TaskPriority is { } tpr) tpr.Tpr = (uint)v << 4;
                    break;
                default: throw new CpuFault(ExUD, null);
            }
            return;
        }
        if (r1.IsCR())
        {
            ulong v = r1 switch
            {
                Register.CR0 => Cr0,
                Register.CR2 => Cr2,
                Register.CR3 => Cr3,
                Register.CR4 => Cr4,
                Register.CR8 => TaskPriority is { } tpr ? (tpr.Tpr >> 4) & 0xf : Cr8,
                _ => throw new CpuFault(ExUD, null),
            };
            WriteReg(r0, v);
            return;
        }
        // Debug registers: DR0-3 and DR7 are stored (hardware breakpoints are not acted on yet); DR6 records
        // single-step traps; DR4/DR5 alias DR6/DR7 (CR4.DE is not offered); DR8-15 do not exist (#UD).
        if (r0.IsDR())
        {
            int n = DebugRegisterIndex(r0);
            ulong v = ReadReg(r1);
            if (n >= 6 && (v >> 32) != 0) throw new CpuFault(ExGP, 0);
            _debugRegisters[n] = n switch
            {
                6 => (v & 0xe00f) | 0xffff_0ff0,  // B0-B3, BD, BS, BT; the rest reads as 1
                7 => (v & 0xffff_2bff) | 0x400,   // bit 10 reads as 1, bits 11, 12, 14, 15 as 0
                _ => v,
            };
            return;
        }
        WriteReg(r0, _debugRegisters[DebugRegisterIndex(r1)]);
    }

    private static int DebugRegisterIndex(Register r)
    {
        int n = r - Register.DR0;
        if (n > 7) throw new CpuFault(ExUD, null);
        return n is 4 or 5 ? n + 2 : n;
    }

    /// <summary>DR0-DR7 (DR4/DR5 are never used: they alias DR6/DR7); DR6 and DR7 start at their reset values.</summary>
    private readonly ulong[] _debugRegisters = [0, 0, 0, 0, 0, 0, 0xffff_0ff0, 0x400];

    private void WriteCr0(ulong v)
    {
        if ((v >> 32) != 0) throw new CpuFault(ExGP, 0);
        v = (v & 0xe005_003f) | 0x10; // ET is hardwired to 1
        if ((v & 0x8000_0000) != 0 && (v & 1) == 0) throw new CpuFault(ExGP, 0); // PG without PE
        if ((v & 0x2000_0000) != 0 && (v & 0x4000_0000) == 0) throw new CpuFault(ExGP, 0); // NW without CD
        bool pagingOn = (v & 0x8000_0000) != 0, wasOn = (Cr0 & 0x8000_0000) != 0;
        if (pagingOn && !wasOn && (Efer & EferLme) != 0)
        {
            // Activating IA-32e mode: needs PAE, and a code segment that is not a 64-bit one yet.
            if ((Cr4 & 0x20) == 0 || (_cs.Attributes & 0x2000) != 0) throw new CpuFault(ExGP, 0);
            Efer |= EferLma;
        }
        else if (!pagingOn && wasOn && LongMode)
        {
            // Leaving IA-32e mode is only allowed from compatibility mode.
            if (Mode64) throw new CpuFault(ExGP, 0);
            Efer &= ~EferLma;
        }
        Cr0 = v;
        FlushTlb(keepGlobal: false);
    }
}
