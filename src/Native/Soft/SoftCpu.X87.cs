// The x87 FPU (Intel SDM vol. 1 ch. 8, vol. 2 for each instruction): eight 80-bit physical registers addressed
// relative to TOP, the control word (rounding, precision, exception masks), the status word (flags, C0-C3, TOP, ES,
// B), the tag word (kept as a valid/empty bit per register; the 2-bit tags are derived from the contents when an
// environment is stored), and the last instruction/operand pointers and opcode of the last non-control instruction.
// Arithmetic is Float80's exact extended precision.
//
// Exceptions: each instruction collects its flags in an X87Env; masked ones get the masked response, unmasked
// ones set ES and B and, for IE/DE/ZE (and OE/UE on stores to memory), leave the destination and TOP untouched;
// unmasked OE/UE on a register destination store the exponent-adjusted result. The exception is reported as #MF
// (vector 16) at the next waiting x87 instruction or WAIT when CR0.NE = 1. With CR0.NE = 0 the PC's FERR# → IRQ 13
// path is not modelled: the exception stays pending in the status word and execution continues, as on a PC whose
// IGNNE# is asserted. CR0.EM or CR0.TS make every x87 instruction raise #NM (WAIT: MP and TS, in SoftCpu.Exec.cs).
//
// Power-on and RESET load FCW 0x0040, FSW 0, FTW 0x5555 (every register valid, +0.0), pointers 0 (SDM vol. 3
// table 9-1); INIT leaves the x87 state as it was. FNINIT loads FCW 0x037F and empties the stack.
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    internal const byte ExMF = 16;

    private const ushort FswEs = 0x80, FswSf = 0x40, FswC0 = 0x100, FswC1 = 0x200, FswC2 = 0x400, FswC3 = 0x4000, FswB = 0x8000;
    private const ushort FswCc = FswC0 | FswC1 | FswC2 | FswC3;

    private readonly Float80[] _fpr = new Float80[8]; // physical registers R0-R7
    private int _ftop;
    private ushort _fcw = 0x0040;
    private ushort _fsw;          // TOP lives in _ftop
    private byte _fvalid = 0xff;  // bit n: physical register n is not empty
    private ulong _fip, _fdp;
    private ushort _fcs, _fds, _fop;

    /// <summary>Power-on / RESET state of the x87 (SDM vol. 3 table 9-1). INIT does not change the x87 state.</summary>
    internal void ResetX87()
    {
        Array.Clear(_fpr);
        _ftop = 0;
        _fcw = 0x0040;
        _fsw = 0;
        _fvalid = 0xff;
        _fip = _fdp = 0;
        _fcs = _fds = _fop = 0;
    }

    /// <summary>The x87 control word.</summary>
    internal ushort X87ControlWord => _fcw;

    /// <summary>The x87 status word, TOP included.</summary>
    internal ushort X87StatusWord => (ushort)((_fsw & ~0x3800) | (_ftop << 11));

    /// <summary>The full 2-bit tag word as FNSTENV stores it, computed from the register contents.</summary>
    internal ushort X87TagWord
    {
        get
        {
            int tw = 0;
            for (int r = 0; r < 8; r++) tw |= TagOf(r) << (2 * r);
            return (ushort)tw;
        }
    }

    /// <summary>ST(<paramref name="i"/>) as stored (the test harness and FXSAVE read it).</summary>
    internal Float80 X87Register(int i) => _fpr[(_ftop + i) & 7];

    /// <summary>True when ST(<paramref name="i"/>) is empty.</summary>
    internal bool X87Empty(int i) => ((_fvalid >> ((_ftop + i) & 7)) & 1) == 0;

    private int TagOf(int physical)
    {
        if (((_fvalid >> physical) & 1) == 0) return 3;
        var v = _fpr[physical];
        return v.Classify() switch
        {
            X87Class.Normal => 0,
            X87Class.Zero => 1,
            _ => 2,
        };
    }

    private ref Float80 St(int i) => ref _fpr[(_ftop + i) & 7];

    private void SetSt(int i, Float80 v)
    {
        int p = (_ftop + i) & 7;
        _fpr[p] = v;
        _fvalid |= (byte)(1 << p);
    }

    private void X87Push(Float80 v)
    {
        _ftop = (_ftop - 1) & 7;
        SetSt(0, v);
    }

    private void X87Pop()
    {
        _fvalid &= (byte)~(1 << _ftop);
        _ftop = (_ftop + 1) & 7;
    }

    private X87Env CurrentEnv() => X87Env.FromControlWord(_fcw);

    private void SetC1(bool on) => _fsw = (ushort)(on ? _fsw | FswC1 : _fsw & ~FswC1);

    private void SetConditionCodes(bool c3, bool c2, bool c1, bool c0)
        => _fsw = (ushort)((_fsw & ~FswCc) | (c3 ? FswC3 : 0) | (c2 ? FswC2 : 0) | (c1 ? FswC1 : 0) | (c0 ? FswC0 : 0));

    /// <summary>Records raised exceptions in the status word; an unmasked one sets ES and B.</summary>
    private void X87Raise(X87Exceptions flags)
    {
        _fsw |= (ushort)flags;
        if ((flags & ~(X87Exceptions)(_fcw & 0x3f) & X87Exceptions.All) != 0) _fsw |= FswEs | FswB;
    }

    /// <summary>Sets C1 from the rounding and records the flags; true when the result may be written.</summary>
    private bool X87Finish(in X87Env env, bool memoryDestination = false)
    {
        SetC1(env.RoundedUp && (env.Flags & X87Exceptions.Precision) != 0);
        X87Raise(env.Flags);
        var blocking = X87Exceptions.Invalid | X87Exceptions.Denormal | X87Exceptions.ZeroDivide;
        if (memoryDestination) blocking |= X87Exceptions.Overflow | X87Exceptions.Underflow;
        return (env.Unmasked & blocking) == 0;
    }

    /// <summary>Stack overflow or underflow: IE and SF, C1 = 1 for overflow. True when IE is masked (the masked response follows).</summary>
    private bool X87StackFault(bool overflow)
    {
        _fsw |= FswSf;
        SetC1(overflow);
        X87Raise(X87Exceptions.Invalid);
        return (_fcw & 1) != 0;
    }

    private bool PushWouldOverflow => ((_fvalid >> ((_ftop - 1) & 7)) & 1) != 0;

    // ---- Entry: #NM, pending exceptions, pointers.

    private enum X87Kind : byte
    {
        None,
        /// <summary>Arithmetic and data movement: waits, and updates the instruction/operand pointers.</summary>
        Arith,
        /// <summary>Control instructions that wait (FLDCW, FLDENV, FRSTOR and the WAIT forms of the FN* stores).</summary>
        Control,
        /// <summary>FNINIT, FNCLEX, FNSTCW, FNSTSW, FNSTENV, FNSAVE and the 8087/287 no-ops: no wait.</summary>
        NoWait,
    }

    private static X87Kind KindOf(Mnemonic m) => m switch
    {
        Mnemonic.Fninit or Mnemonic.Fnclex or Mnemonic.Fnstcw or Mnemonic.Fnstsw or Mnemonic.Fnstenv or Mnemonic.Fnsave
            or Mnemonic.Fneni or Mnemonic.Fndisi or Mnemonic.Fnsetpm => X87Kind.NoWait,
        Mnemonic.Finit or Mnemonic.Fclex or Mnemonic.Fstcw or Mnemonic.Fstsw or Mnemonic.Fstenv or Mnemonic.Fsave
            or Mnemonic.Fldcw or Mnemonic.Fldenv or Mnemonic.Frstor => X87Kind.Control,
        Mnemonic.Fld or Mnemonic.Fst or Mnemonic.Fstp or Mnemonic.Fstpnce or Mnemonic.Fild or Mnemonic.Fist or Mnemonic.Fistp
            or Mnemonic.Fisttp or Mnemonic.Fbld or Mnemonic.Fbstp or Mnemonic.Fldz or Mnemonic.Fld1 or Mnemonic.Fldpi
            or Mnemonic.Fldl2e or Mnemonic.Fldl2t or Mnemonic.Fldlg2 or Mnemonic.Fldln2 or Mnemonic.Fxch or Mnemonic.Fadd
            or Mnemonic.Faddp or Mnemonic.Fiadd or Mnemonic.Fsub or Mnemonic.Fsubp or Mnemonic.Fisub or Mnemonic.Fsubr
            or Mnemonic.Fsubrp or Mnemonic.Fisubr or Mnemonic.Fmul or Mnemonic.Fmulp or Mnemonic.Fimul or Mnemonic.Fdiv
            or Mnemonic.Fdivp or Mnemonic.Fidiv or Mnemonic.Fdivr or Mnemonic.Fdivrp or Mnemonic.Fidivr or Mnemonic.Fcom
            or Mnemonic.Fcomp or Mnemonic.Fcompp or Mnemonic.Fucom or Mnemonic.Fucomp or Mnemonic.Fucompp or Mnemonic.Ficom
            or Mnemonic.Ficomp or Mnemonic.Fcomi or Mnemonic.Fcomip or Mnemonic.Fucomi or Mnemonic.Fucomip or Mnemonic.Ftst
            or Mnemonic.Fxam or Mnemonic.Fchs or Mnemonic.Fabs or Mnemonic.Fsqrt or Mnemonic.Frndint or Mnemonic.Fscale
            or Mnemonic.Fxtract or Mnemonic.Fprem or Mnemonic.Fprem1 or Mnemonic.F2xm1 or Mnemonic.Fyl2x or Mnemonic.Fyl2xp1
            or Mnemonic.Fptan or Mnemonic.Fpatan or Mnemonic.Fsin or Mnemonic.Fcos or Mnemonic.Fsincos or Mnemonic.Fcmovb
            or Mnemonic.Fcmove or Mnemonic.Fcmovbe or Mnemonic.Fcmovu or Mnemonic.Fcmovnb or Mnemonic.Fcmovne
            or Mnemonic.Fcmovnbe or Mnemonic.Fcmovnu or Mnemonic.Ffree or Mnemonic.Ffreep or Mnemonic.Fincstp
            or Mnemonic.Fdecstp or Mnemonic.Fnop => X87Kind.Arith,
        _ => X87Kind.None,
    };

    /// <summary>WAIT/FWAIT: #NM when CR0.MP and CR0.TS, else #MF for a pending unmasked x87 exception (CR0.NE = 1).</summary>
    private void X87Wait()
    {
        if ((Cr0 & 0xa) == 0xa) throw new CpuFault(ExNM, null);
        X87CheckPending();
    }

    /// <summary>True when WAIT must look at the x87 (an unmasked exception is pending): keeps Step's check to one test.</summary>
    private bool X87ErrorPending => (_fsw & FswEs) != 0;

    private void X87CheckPending()
    {
        if ((_fsw & FswEs) != 0 && (Cr0 & 0x20) != 0) throw new CpuFault(ExMF, null);
    }

    private void X87RecordPointers(in Instruction i)
    {
        _fip = Rip;
        _fcs = _cs.Selector;
        _fop = X87Opcode();
        if (i.Op0Kind == OpKind.Memory || (i.OpCount > 1 && i.Op1Kind == OpKind.Memory))
        {
            ulong off = EffectiveOffset(i);
            if (!Mode64) off &= AddressBits(i) == 16 ? 0xffffUL : 0xffff_ffffUL;
            _fdp = off;
            _fds = Sreg(RegIndex[(int)i.MemorySegment]).Selector;
        }
    }

    /// <summary>The 11-bit FOP: the low three bits of the D8-DF opcode byte and the ModR/M byte, read from the code.</summary>
    private ushort X87Opcode()
    {
        ulong linear = Mode64 ? Rip : (_cs.Base + (uint)Rip) & 0xffff_ffff;
        for (ulong k = 0; k < 15; k++)
        {
            // Prefixes (legacy and REX) never lie in D8-DF, so the first such byte is the opcode.
            byte b = (byte)ReadLinear((linear + k) & LinearMask, 1);
            if (b is >= 0xd8 and <= 0xdf) return (ushort)(((b & 7) << 8) | (byte)ReadLinear((linear + k + 1) & LinearMask, 1));
        }
        return 0;
    }

    // ---- Dispatch.

    /// <summary>Executes an x87 instruction; false when <paramref name="i"/> is not one (the caller raises #UD).</summary>
    private bool X87Instruction(in Instruction i)
    {
        var m = i.Mnemonic;
        var kind = KindOf(m);
        if (kind == X87Kind.None) return false;
        if ((Cr0 & 0xc) != 0) throw new CpuFault(ExNM, null); // EM or TS
        if (kind != X87Kind.NoWait) X87CheckPending();
        if (kind == X87Kind.Arith) X87RecordPointers(i);
        switch (m)
        {
            case Mnemonic.Fld: Fld(i); break;
            case Mnemonic.Fst: Fst(i, pop: false); break;
            case Mnemonic.Fstp or Mnemonic.Fstpnce: Fst(i, pop: true); break;
            case Mnemonic.Fild or Mnemonic.Fbld: Fld(i); break;
            case Mnemonic.Fist: Fist(i, pop: false, truncate: false); break;
            case Mnemonic.Fistp: Fist(i, pop: true, truncate: false); break;
            case Mnemonic.Fisttp: Fist(i, pop: true, truncate: true); break;
            case Mnemonic.Fbstp: Fbstp(i); break;
            case Mnemonic.Fldz: FldConstant(Float80.Zero); break;
            case Mnemonic.Fld1: FldConstant(Float80.One); break;
            case Mnemonic.Fldpi: FldConstant(Float80.Pi(CurrentEnv().Rounding)); break;
            case Mnemonic.Fldl2e: FldConstant(Float80.Log2E(CurrentEnv().Rounding)); break;
            case Mnemonic.Fldl2t: FldConstant(Float80.Log2Ten(CurrentEnv().Rounding)); break;
            case Mnemonic.Fldlg2: FldConstant(Float80.Log10Two(CurrentEnv().Rounding)); break;
            case Mnemonic.Fldln2: FldConstant(Float80.LnTwo(CurrentEnv().Rounding)); break;
            case Mnemonic.Fxch: Fxch(StIndex(i)); break;

            case Mnemonic.Fadd or Mnemonic.Faddp or Mnemonic.Fiadd: Arith(i, ArithOp.Add); break;
            case Mnemonic.Fsub or Mnemonic.Fsubp or Mnemonic.Fisub: Arith(i, ArithOp.Sub); break;
            case Mnemonic.Fsubr or Mnemonic.Fsubrp or Mnemonic.Fisubr: Arith(i, ArithOp.SubR); break;
            case Mnemonic.Fmul or Mnemonic.Fmulp or Mnemonic.Fimul: Arith(i, ArithOp.Mul); break;
            case Mnemonic.Fdiv or Mnemonic.Fdivp or Mnemonic.Fidiv: Arith(i, ArithOp.Div); break;
            case Mnemonic.Fdivr or Mnemonic.Fdivrp or Mnemonic.Fidivr: Arith(i, ArithOp.DivR); break;

            case Mnemonic.Fcom or Mnemonic.Ficom: Fcom(i, unordered: false, pops: 0); break;
            case Mnemonic.Fcomp or Mnemonic.Ficomp: Fcom(i, unordered: false, pops: 1); break;
            case Mnemonic.Fcompp: Fcom(i, unordered: false, pops: 2); break;
            case Mnemonic.Fucom: Fcom(i, unordered: true, pops: 0); break;
            case Mnemonic.Fucomp: Fcom(i, unordered: true, pops: 1); break;
            case Mnemonic.Fucompp: Fcom(i, unordered: true, pops: 2); break;
            case Mnemonic.Fcomi: Fcomi(i, unordered: false, pop: false); break;
            case Mnemonic.Fcomip: Fcomi(i, unordered: false, pop: true); break;
            case Mnemonic.Fucomi: Fcomi(i, unordered: true, pop: false); break;
            case Mnemonic.Fucomip: Fcomi(i, unordered: true, pop: true); break;
            case Mnemonic.Ftst: Fcom(i, unordered: false, pops: 0, zero: true); break;
            case Mnemonic.Fxam: Fxam(); break;

            case Mnemonic.Fchs or Mnemonic.Fabs:
                if (X87Empty(0))
                {
                    if (X87StackFault(overflow: false)) SetSt(0, Float80.Indefinite);
                    break;
                }
                SetC1(false);
                SetSt(0, m == Mnemonic.Fchs ? St(0).Negate() : St(0).Abs());
                break;
            case Mnemonic.Fsqrt: Unary(Float80.Sqrt); break;
            case Mnemonic.Frndint: Unary(Float80.RoundToInteger); break;
            case Mnemonic.F2xm1: Unary(Float80.Exp2M1); break;
            case Mnemonic.Fsin: Ftrig(Float80.TrigSin); break;
            case Mnemonic.Fcos: Ftrig(Float80.TrigCos); break;
            case Mnemonic.Fptan: Ftrig(Float80.TrigTan); break;
            case Mnemonic.Fsincos: Fsincos(); break;
            case Mnemonic.Fscale: Binary01(Float80.Scale, intoSt1: false); break;
            case Mnemonic.Fyl2x: Binary01(Float80.YLog2X, intoSt1: true); break;
            case Mnemonic.Fyl2xp1: Binary01(Float80.YLog2XP1, intoSt1: true); break;
            case Mnemonic.Fpatan: Binary01(Patan, intoSt1: true); break;
            case Mnemonic.Fxtract: Fxtract(); break;
            case Mnemonic.Fprem: Fprem(ieee: false); break;
            case Mnemonic.Fprem1: Fprem(ieee: true); break;

            case Mnemonic.Fcmovb: Fcmov(i, GetCf()); break;
            case Mnemonic.Fcmovnb: Fcmov(i, !GetCf()); break;
            case Mnemonic.Fcmove: Fcmov(i, GetZf()); break;
            case Mnemonic.Fcmovne: Fcmov(i, !GetZf()); break;
            case Mnemonic.Fcmovbe: Fcmov(i, GetCf() || GetZf()); break;
            case Mnemonic.Fcmovnbe: Fcmov(i, !(GetCf() || GetZf())); break;
            case Mnemonic.Fcmovu: Fcmov(i, GetPf()); break;
            case Mnemonic.Fcmovnu: Fcmov(i, !GetPf()); break;

            case Mnemonic.Ffree: _fvalid &= (byte)~(1 << ((_ftop + StIndex(i)) & 7)); break;
            case Mnemonic.Ffreep:
                _fvalid &= (byte)~(1 << ((_ftop + StIndex(i)) & 7));
                X87Pop();
                break;
            case Mnemonic.Fincstp: _ftop = (_ftop + 1) & 7; SetC1(false); break;
            case Mnemonic.Fdecstp: _ftop = (_ftop - 1) & 7; SetC1(false); break;
            case Mnemonic.Fnop or Mnemonic.Fneni or Mnemonic.Fndisi or Mnemonic.Fnsetpm: break; // the 8087/287 controls are no-ops since the 387

            case Mnemonic.Fninit or Mnemonic.Finit: Fninit(); break;
            case Mnemonic.Fnclex or Mnemonic.Fclex: _fsw &= unchecked((ushort)~(0x3f | FswSf | FswEs | FswB)); break;
            case Mnemonic.Fldcw:
                _fcw = ControlWordFrom(ReadMem(i, 16));
                UpdateErrorSummary();
                break;
            case Mnemonic.Fnstcw or Mnemonic.Fstcw: WriteMem(i, _fcw, 16); break;
            case Mnemonic.Fnstsw or Mnemonic.Fstsw:
                if (i.Op0Kind == OpKind.Register) WriteReg(Register.AX, X87StatusWord);
                else WriteMem(i, X87StatusWord, 16);
                break;
            case Mnemonic.Fnstenv or Mnemonic.Fstenv:
                X87ProbeWrite(i, EnvBytes(i));
                StoreEnvironment(i);
                _fcw |= 0x3f; // FNSTENV masks every exception after storing
                break;
            case Mnemonic.Fldenv: LoadEnvironment(i, registers: false); break;
            case Mnemonic.Fnsave or Mnemonic.Fsave: Fnsave(i); break;
            case Mnemonic.Frstor: LoadEnvironment(i, registers: true); break;
            default: return false;
        }
        return true;
    }

    /// <summary>The ST(i) operand of a register form (the one that is not ST(0) when both are named).</summary>
    private static int StIndex(in Instruction i)
    {
        for (int n = i.OpCount - 1; n >= 0; n--)
        {
            if (i.GetOpKind(n) == OpKind.Register && i.GetOpRegister(n) is >= Register.ST0 and <= Register.ST7 and var r && r != Register.ST0)
                return r - Register.ST0;
        }
        return i.OpCount > 0 && i.GetOpKind(0) == OpKind.Register && i.GetOpRegister(0) is >= Register.ST0 and <= Register.ST7
            ? i.GetOpRegister(0) - Register.ST0
            : 1; // FXCH, FCOM, FUCOM without an operand name ST(1)
    }

    private void Fninit()
    {
        _fcw = 0x037f;
        _fsw = 0;
        _ftop = 0;
        _fvalid = 0;
        _fip = _fdp = 0;
        _fcs = _fds = _fop = 0;
    }

    /// <summary>The control word as loaded: bits 6 (reserved) reads as 1; bits 7 and 13-15 as 0; bit 12 (the 287's infinity control) is kept.</summary>
    private static ushort ControlWordFrom(ulong v) => (ushort)((v & 0x1f3f) | 0x40);

    /// <summary>ES and B summarize the unmasked pending exceptions (after FLDCW, FLDENV, FRSTOR).</summary>
    private void UpdateErrorSummary()
    {
        if ((_fsw & ~_fcw & 0x3f) != 0) _fsw |= FswEs | FswB;
        else _fsw &= unchecked((ushort)~(FswEs | FswB));
    }

    // ---- Loads and stores.

    private Float80 ReadM80(in Instruction i, ulong extra = 0)
        => new((ushort)ReadMem(i, 16, extra + 8), ReadMem(i, 64, extra));

    private void WriteM80(in Instruction i, Float80 v, ulong extra = 0)
    {
        WriteMem(i, v.Significand, 64, extra);
        WriteMem(i, v.SignExponent, 16, extra + 8);
    }

    /// <summary>Reads a memory source operand as a Float80 (conversions raise IE for an SNaN and DE for a denormal).</summary>
    private Float80 ReadFloatOperand(in Instruction i, ref X87Env env) => i.MemorySize switch
    {
        MemorySize.Float32 => Float80.FromSingle((uint)ReadMem(i, 32), ref env),
        MemorySize.Float64 => Float80.FromDouble(ReadMem(i, 64), ref env),
        _ => ReadOperandRaw(i, out _),
    };

    /// <summary>
    /// A memory source operand of an arithmetic or compare instruction, converted exactly with an SNaN left signaling
    /// (the operation applies the NaN rules) and a denormal single or double reported in <paramref name="denormal"/>
    /// (DE counts only if the other operand is not a NaN).
    /// </summary>
    private Float80 ReadOperandRaw(in Instruction i, out bool denormal)
    {
        denormal = false;
        switch (i.MemorySize)
        {
            case MemorySize.Float32:
                {
                    uint bits = (uint)ReadMem(i, 32);
                    denormal = (bits & 0x7f80_0000) == 0 && (bits & 0x007f_ffff) != 0;
                    return Float80.FromSingleRaw(bits);
                }
            case MemorySize.Float64:
                {
                    ulong bits = ReadMem(i, 64);
                    denormal = (bits & 0x7ff0_0000_0000_0000) == 0 && (bits & 0x000f_ffff_ffff_ffff) != 0;
                    return Float80.FromDoubleRaw(bits);
                }
            default:
                return ReadExactOperand(i);
        }
    }

    private Float80 ReadExactOperand(in Instruction i) => i.MemorySize switch
    {
        MemorySize.Float80 => ReadM80(i),
        MemorySize.Int16 => Float80.FromInt64((short)ReadMem(i, 16)),
        MemorySize.Int32 => Float80.FromInt64((int)ReadMem(i, 32)),
        MemorySize.Int64 => Float80.FromInt64((long)ReadMem(i, 64)),
        MemorySize.Bcd => Float80.FromBcd(ReadMem(i, 64), (ushort)ReadMem(i, 16, 8)),
        _ => throw new CpuFault(ExUD, null),
    };

    private void Fld(in Instruction i)
    {
        var env = CurrentEnv();
        Float80 v;
        bool fromRegister = i.Op0Kind == OpKind.Register;
        bool emptySource = false;
        if (fromRegister)
        {
            int s = StIndex(i);
            emptySource = X87Empty(s);
            v = St(s);
        }
        else
        {
            v = ReadFloatOperand(i, ref env);
        }
        if (PushWouldOverflow)
        {
            if (X87StackFault(overflow: true)) X87Push(Float80.Indefinite);
            return;
        }
        if (emptySource)
        {
            if (X87StackFault(overflow: false)) X87Push(Float80.Indefinite);
            return;
        }
        if ((env.Unmasked & X87Exceptions.Invalid) != 0)
        {
            X87Finish(env);
            return;
        }
        X87Finish(env); // an unmasked DE (denormal single or double) still loads, as on silicon
        X87Push(v);
    }

    private void FldConstant(Float80 v)
    {
        if (PushWouldOverflow)
        {
            if (X87StackFault(overflow: true)) X87Push(Float80.Indefinite);
            return;
        }
        SetC1(false);
        X87Push(v);
    }

    private void Fst(in Instruction i, bool pop)
    {
        bool toRegister = i.Op0Kind == OpKind.Register;
        if (X87Empty(0))
        {
            if (!X87StackFault(overflow: false)) return;
            if (toRegister) SetSt(StIndex(i), Float80.Indefinite);
            else
            {
                switch (i.MemorySize)
                {
                    case MemorySize.Float32: WriteMem(i, 0xffc0_0000, 32); break;
                    case MemorySize.Float64: WriteMem(i, 0xfff8_0000_0000_0000, 64); break;
                    default: X87ProbeWrite(i, 10); WriteM80(i, Float80.Indefinite); break;
                }
            }
            if (pop) X87Pop();
            return;
        }
        var v = St(0);
        if (toRegister)
        {
            SetC1(false);
            SetSt(StIndex(i), v);
            if (pop) X87Pop();
            return;
        }
        var env = CurrentEnv();
        switch (i.MemorySize)
        {
            case MemorySize.Float32:
                {
                    uint bits = Float80.ToSingle(v, ref env);
                    if (!X87Finish(env, memoryDestination: true)) return;
                    WriteMem(i, bits, 32);
                    break;
                }
            case MemorySize.Float64:
                {
                    ulong bits = Float80.ToDouble(v, ref env);
                    if (!X87Finish(env, memoryDestination: true)) return;
                    WriteMem(i, bits, 64);
                    break;
                }
            default:
                SetC1(false);
                X87ProbeWrite(i, 10);
                WriteM80(i, v);
                break;
        }
        if (pop) X87Pop();
    }

    private void Fist(in Instruction i, bool pop, bool truncate)
    {
        int bits = i.MemorySize switch
        {
            MemorySize.Int16 => 16,
            MemorySize.Int32 => 32,
            _ => 64,
        };
        if (X87Empty(0))
        {
            if (!X87StackFault(overflow: false)) return;
            WriteMem(i, 1UL << (bits - 1), bits);
            if (pop) X87Pop();
            return;
        }
        var env = CurrentEnv();
        long v = Float80.ToInt(St(0), bits, truncate, ref env);
        if (!X87Finish(env, memoryDestination: true)) return;
        WriteMem(i, (ulong)v & SizeMask(bits), bits);
        if (pop) X87Pop();
    }

    private void Fbstp(in Instruction i)
    {
        if (X87Empty(0))
        {
            if (!X87StackFault(overflow: false)) return;
            X87ProbeWrite(i, 10);
            WriteMem(i, 0xc000_0000_0000_0000, 64);
            WriteMem(i, 0xffff, 16, 8);
            X87Pop();
            return;
        }
        var env = CurrentEnv();
        var (low, high) = Float80.ToBcd(St(0), ref env);
        if (!X87Finish(env, memoryDestination: true)) return;
        X87ProbeWrite(i, 10);
        WriteMem(i, low, 64);
        WriteMem(i, high, 16, 8);
        X87Pop();
    }

    private void Fxch(int s)
    {
        if (X87Empty(0) || X87Empty(s))
        {
            if (!X87StackFault(overflow: false)) return;
            if (X87Empty(0)) SetSt(0, Float80.Indefinite);
            if (X87Empty(s)) SetSt(s, Float80.Indefinite);
        }
        else
        {
            SetC1(false);
        }
        var t = St(0);
        St(0) = St(s);
        St(s) = t;
    }

    private void Fcmov(in Instruction i, bool condition)
    {
        int s = StIndex(i);
        if (X87Empty(0) || X87Empty(s))
        {
            if (X87StackFault(overflow: false)) SetSt(0, Float80.Indefinite); // whatever the condition
            return;
        }
        SetC1(false);
        if (condition) SetSt(0, St(s));
    }

    // ---- Arithmetic.

    private enum ArithOp : byte
    {
        Add,
        Sub,
        SubR,
        Mul,
        Div,
        DivR,
    }

    private void Arith(in Instruction i, ArithOp op)
    {
        var env = CurrentEnv();
        int dst, src = -1;
        Float80 b = default;
        bool memory = i.OpCount == 1 && i.Op0Kind == OpKind.Memory;
        bool denormalSource = false;
        if (memory)
        {
            dst = 0;
            b = ReadOperandRaw(i, out denormalSource);
        }
        else if (i.OpCount == 2)
        {
            dst = i.Op0Register - Register.ST0;
            src = i.Op1Register - Register.ST0;
        }
        else
        {
            dst = 1; // FADDP etc. without operands: ST(1) op ST(0), pop
            src = 0;
        }
        bool pop = i.Mnemonic is Mnemonic.Faddp or Mnemonic.Fsubp or Mnemonic.Fsubrp or Mnemonic.Fmulp or Mnemonic.Fdivp or Mnemonic.Fdivrp;
        if (X87Empty(dst) || (src >= 0 && X87Empty(src)))
        {
            if (!X87StackFault(overflow: false)) return;
            SetSt(dst, Float80.Indefinite);
            if (pop) X87Pop();
            return;
        }
        var a = St(dst);
        if (src >= 0) b = St(src);
        if (denormalSource && !a.IsNaN && !a.IsUnsupported)
        {
            env.Flags |= X87Exceptions.Denormal; // a denormal single or double, normal once converted
            if (!X87Finish(env)) return;
        }
        Float80 r = op switch
        {
            ArithOp.Add => Float80.Add(a, b, ref env),
            ArithOp.Sub => Float80.Subtract(a, b, ref env),
            ArithOp.SubR => Float80.Subtract(b, a, ref env),
            ArithOp.Mul => Float80.Multiply(a, b, ref env),
            ArithOp.Div => Float80.Divide(a, b, ref env),
            _ => Float80.Divide(b, a, ref env),
        };
        if (!X87Finish(env)) return;
        SetSt(dst, r);
        if (pop) X87Pop();
    }

    private static Float80 Patan(Float80 x, Float80 y, ref X87Env env) => Float80.Atan2(y, x, ref env);

    private delegate Float80 UnaryOp(Float80 a, ref X87Env env);

    private delegate Float80 BinaryOp(Float80 a, Float80 b, ref X87Env env);

    private void Unary(UnaryOp op)
    {
        if (X87Empty(0))
        {
            if (X87StackFault(overflow: false)) SetSt(0, Float80.Indefinite);
            return;
        }
        var env = CurrentEnv();
        var r = op(St(0), ref env);
        if (!X87Finish(env)) return;
        SetSt(0, r);
    }

    /// <summary>
    /// FSCALE (ST(0) = op(ST(0), ST(1))) and FYL2X/FYL2XP1/FPATAN (ST(1) = op(ST(0), ST(1)), then pop).
    /// </summary>
    private void Binary01(BinaryOp op, bool intoSt1)
    {
        if (X87Empty(0) || X87Empty(1))
        {
            if (!X87StackFault(overflow: false)) return;
            SetSt(intoSt1 ? 1 : 0, Float80.Indefinite);
            if (intoSt1) X87Pop();
            return;
        }
        var env = CurrentEnv();
        var r = op(St(0), St(1), ref env);
        if (!X87Finish(env)) return;
        if (intoSt1)
        {
            SetSt(1, r);
            X87Pop();
        }
        else
        {
            SetSt(0, r);
        }
    }

    private void Ftrig(int function)
    {
        if (X87Empty(0) || (function == Float80.TrigTan && PushWouldOverflow))
        {
            bool overflow = !X87Empty(0);
            if (!X87StackFault(overflow)) return;
            SetSt(0, Float80.Indefinite);
            if (function == Float80.TrigTan) X87Push(Float80.Indefinite);
            return;
        }
        var x = St(0);
        if (x.Classify() is X87Class.Normal or X87Class.Denormal && !Float80.TrigArgument(x, out _, out _))
        {
            SetConditionCodes((_fsw & FswC3) != 0, c2: true, c1: false, (_fsw & FswC0) != 0); // out of range: C2 = 1, ST(0) unchanged
            return;
        }
        var env = CurrentEnv();
        var r = Float80.Trig(x, function, ref env);
        _fsw &= unchecked((ushort)~FswC2);
        if (!X87Finish(env)) return;
        SetSt(0, r);
        if (function == Float80.TrigTan) X87Push(r.IsNaN ? r : Float80.One); // a NaN operand leaves the NaN in both
    }

    private void Fsincos()
    {
        if (X87Empty(0) || PushWouldOverflow)
        {
            bool overflow = !X87Empty(0);
            if (!X87StackFault(overflow)) return;
            SetSt(0, Float80.Indefinite);
            X87Push(Float80.Indefinite);
            return;
        }
        var x = St(0);
        if (x.Classify() is X87Class.Normal or X87Class.Denormal && !Float80.TrigArgument(x, out _, out _))
        {
            SetConditionCodes((_fsw & FswC3) != 0, c2: true, c1: false, (_fsw & FswC0) != 0);
            return;
        }
        var env = CurrentEnv();
        var s = Float80.Trig(x, Float80.TrigSin, ref env);
        var c = Float80.Trig(x, Float80.TrigCos, ref env);
        _fsw &= unchecked((ushort)~FswC2);
        if (!X87Finish(env)) return;
        SetSt(0, s);
        X87Push(c);
    }

    private void Fxtract()
    {
        if (X87Empty(0) || PushWouldOverflow)
        {
            bool overflow = !X87Empty(0);
            if (!X87StackFault(overflow)) return;
            SetSt(0, Float80.Indefinite);
            X87Push(Float80.Indefinite);
            return;
        }
        var env = CurrentEnv();
        var (exponent, significand) = Float80.Extract(St(0), ref env);
        if (!X87Finish(env)) return;
        SetSt(0, exponent);
        X87Push(significand);
    }

    private void Fprem(bool ieee)
    {
        if (X87Empty(0) || X87Empty(1))
        {
            if (X87StackFault(overflow: false)) SetSt(0, Float80.Indefinite);
            return;
        }
        var env = CurrentEnv();
        var r = Float80.Remainder(St(0), St(1), ieee, ref env, out bool complete, out int q);
        X87Raise(env.Flags);
        if ((env.Unmasked & (X87Exceptions.Invalid | X87Exceptions.Denormal)) != 0) return;
        bool invalid = (env.Flags & X87Exceptions.Invalid) != 0;
        SetConditionCodes(c3: !invalid && (q & 2) != 0, c2: !complete, c1: !invalid && (q & 1) != 0, c0: !invalid && (q & 4) != 0);
        SetSt(0, r);
    }

    // ---- Compares and FXAM.

    private void Fcom(in Instruction i, bool unordered, int pops, bool zero = false)
    {
        var env = CurrentEnv();
        Float80 b;
        int src = -1;
        bool denormalSource = false;
        if (zero) b = Float80.Zero;
        else if (i.OpCount >= 1 && i.GetOpKind(i.OpCount - 1) == OpKind.Memory) b = ReadOperandRaw(i, out denormalSource);
        else
        {
            src = pops == 2 ? 1 : StIndex(i);
            b = default;
        }
        if (X87Empty(0) || (src >= 0 && X87Empty(src)))
        {
            // The condition codes say unordered even when IE is unmasked (silicon); only the pops wait for a mask.
            bool masked = X87StackFault(overflow: false);
            SetConditionCodes(true, true, false, true);
            if (masked) for (int k = 0; k < pops; k++) X87Pop();
            return;
        }
        if (src >= 0) b = St(src);
        if (denormalSource && !St(0).IsNaN && !St(0).IsUnsupported && !b.IsNaN) env.Flags |= X87Exceptions.Denormal;
        var rel = Float80.Compare(St(0), b, unordered, ref env);
        X87Raise(env.Flags);
        SetConditionCodes(rel is X87Compare.Equal or X87Compare.Unordered, rel == X87Compare.Unordered, false, rel is X87Compare.Less or X87Compare.Unordered);
        if ((env.Unmasked & (X87Exceptions.Invalid | X87Exceptions.Denormal)) != 0) return; // codes set, no pop
        for (int k = 0; k < pops; k++) X87Pop();
    }

    private void Fcomi(in Instruction i, bool unordered, bool pop)
    {
        int s = StIndex(i);
        if (X87Empty(0) || X87Empty(s))
        {
            bool masked = X87StackFault(overflow: false);
            SetArith(ZF | PF | CF); // unordered, even when IE is unmasked
            if (pop && masked) X87Pop();
            return;
        }
        var env = CurrentEnv();
        var rel = Float80.Compare(St(0), St(s), unordered, ref env);
        SetC1(false);
        X87Raise(env.Flags);
        uint f = rel switch
        {
            X87Compare.Greater => 0,
            X87Compare.Less => CF,
            X87Compare.Equal => ZF,
            _ => ZF | PF | CF,
        };
        SetArith(f); // OF, SF and AF are cleared; set even when the exception is unmasked
        if ((env.Unmasked & (X87Exceptions.Invalid | X87Exceptions.Denormal)) != 0) return;
        if (pop) X87Pop();
    }

    private void Fxam()
    {
        var v = St(0);
        (bool c3, bool c2, bool c0) = X87Empty(0) ? (true, false, true) : v.Classify() switch
        {
            X87Class.Unsupported => (false, false, false),
            X87Class.NaN => (false, false, true),
            X87Class.Normal => (false, true, false),
            X87Class.Infinity => (false, true, true),
            X87Class.Zero => (true, false, false),
            _ => (true, true, false), // denormal
        };
        SetConditionCodes(c3, c2, v.IsNegative, c0);
    }

    // ---- Environment and state images.

    private static int EnvBytes(in Instruction i)
        => i.Code is Code.Fnstenv_m14byte or Code.Fstenv_m14byte or Code.Fldenv_m14byte or Code.Fnsave_m94byte or Code.Fsave_m94byte
            or Code.Frstor_m94byte ? 14 : 28;

    /// <summary>
    /// Checks that the whole of a multi-part store can be written (segment and paging) before any of it is, so a
    /// fault leaves memory as it was.
    /// </summary>
    private void X87ProbeWrite(in Instruction i, int size)
    {
        ref var seg = ref MemorySegment(i, out byte fv);
        ulong off = EffectiveOffset(i);
        ulong linear;
        if (Mode64) linear = Linear64(ref seg, fv, off);
        else
        {
            off &= AddressBits(i) == 16 ? 0xffffUL : 0xffff_ffffUL;
            CheckSegment(ref seg, fv, off, size, write: true);
            linear = (seg.Base + off) & 0xffff_ffff;
        }
        if (!PagingEnabled) return;
        Translate(linear, Access.Write);
        Translate((linear + (ulong)size - 1) & LinearMask, Access.Write);
    }

    private void StoreEnvironment(in Instruction i)
    {
        bool bytes14 = EnvBytes(i) == 14;
        ushort fsw = X87StatusWord, ftw = X87TagWord;
        if (ProtectedMode)
        {
            if (bytes14)
            {
                WriteMem(i, _fcw, 16);
                WriteMem(i, fsw, 16, 2);
                WriteMem(i, ftw, 16, 4);
                WriteMem(i, (ushort)_fip, 16, 6);
                WriteMem(i, _fcs, 16, 8);
                WriteMem(i, (ushort)_fdp, 16, 10);
                WriteMem(i, _fds, 16, 12);
            }
            else
            {
                WriteMem(i, 0xffff_0000u | _fcw, 32);
                WriteMem(i, 0xffff_0000u | fsw, 32, 4);
                WriteMem(i, 0xffff_0000u | ftw, 32, 8);
                WriteMem(i, (uint)_fip, 32, 12);
                WriteMem(i, _fcs | ((uint)_fop << 16), 32, 16);
                WriteMem(i, (uint)_fdp, 32, 20);
                WriteMem(i, 0xffff_0000u | _fds, 32, 24);
            }
            return;
        }
        // Real mode: 20- (or 32-) bit linear pointers, split as the SDM's real-mode layouts (vol. 1 figs. 8-10, 8-12).
        uint ip = (uint)(((ulong)_fcs << 4) + _fip), dp = (uint)(((ulong)_fds << 4) + _fdp);
        if (bytes14)
        {
            WriteMem(i, _fcw, 16);
            WriteMem(i, fsw, 16, 2);
            WriteMem(i, ftw, 16, 4);
            WriteMem(i, (ushort)ip, 16, 6);
            WriteMem(i, (ushort)(((ip >> 16) & 0xf) << 12 | _fop), 16, 8);
            WriteMem(i, (ushort)dp, 16, 10);
            WriteMem(i, (ushort)(((dp >> 16) & 0xf) << 12), 16, 12);
        }
        else
        {
            WriteMem(i, 0xffff_0000u | _fcw, 32);
            WriteMem(i, 0xffff_0000u | fsw, 32, 4);
            WriteMem(i, 0xffff_0000u | ftw, 32, 8);
            WriteMem(i, 0xffff_0000u | (ushort)ip, 32, 12);
            WriteMem(i, ((ip >> 16) << 12) | _fop, 32, 16);
            WriteMem(i, 0xffff_0000u | (ushort)dp, 32, 20);
            WriteMem(i, (dp >> 16) << 12, 32, 24);
        }
    }

    private void Fnsave(in Instruction i)
    {
        int env = EnvBytes(i);
        X87ProbeWrite(i, env + 80);
        StoreEnvironment(i);
        for (int r = 0; r < 8; r++) WriteM80(i, St(r), (ulong)(env + 10 * r));
        Fninit();
    }

    /// <summary>FLDENV and FRSTOR: everything is read before anything changes.</summary>
    private void LoadEnvironment(in Instruction i, bool registers)
    {
        bool bytes14 = EnvBytes(i) == 14;
        int env = bytes14 ? 14 : 28;
        int step = bytes14 ? 2 : 4;
        ushort fcw = (ushort)ReadMem(i, 16), fsw = (ushort)ReadMem(i, 16, (ulong)step), ftw = (ushort)ReadMem(i, 16, (ulong)(2 * step));
        ulong fip, fdp;
        ushort fcs, fds, fop;
        if (ProtectedMode)
        {
            if (bytes14)
            {
                fip = ReadMem(i, 16, 6);
                fcs = (ushort)ReadMem(i, 16, 8);
                fdp = ReadMem(i, 16, 10);
                fds = (ushort)ReadMem(i, 16, 12);
                fop = _fop;
            }
            else
            {
                fip = ReadMem(i, 32, 12);
                uint w = (uint)ReadMem(i, 32, 16);
                fcs = (ushort)w;
                fop = (ushort)((w >> 16) & 0x7ff);
                fdp = ReadMem(i, 32, 20);
                fds = (ushort)ReadMem(i, 16, 24);
            }
        }
        else
        {
            fcs = fds = 0;
            if (bytes14)
            {
                ulong w = ReadMem(i, 16, 8);
                fip = ReadMem(i, 16, 6) | ((w >> 12) << 16);
                fop = (ushort)(w & 0x7ff);
                fdp = ReadMem(i, 16, 10) | ((ReadMem(i, 16, 12) >> 12) << 16);
            }
            else
            {
                ulong w = ReadMem(i, 32, 16);
                fip = ReadMem(i, 16, 12) | ((w >> 12) << 16);
                fop = (ushort)(w & 0x7ff);
                fdp = ReadMem(i, 16, 20) | ((ReadMem(i, 32, 24) >> 12) << 16);
            }
        }
        Span<Float80> regs = stackalloc Float80[8];
        if (registers)
        {
            for (int r = 0; r < 8; r++) regs[r] = ReadM80(i, (ulong)(env + 10 * r));
        }
        _fcw = ControlWordFrom(fcw);
        _fsw = fsw;
        _ftop = (fsw >> 11) & 7;
        byte valid = 0;
        for (int r = 0; r < 8; r++) if (((ftw >> (2 * r)) & 3) != 3) valid |= (byte)(1 << r);
        _fvalid = valid;
        _fip = fip;
        _fcs = fcs;
        _fdp = fdp;
        _fds = fds;
        _fop = fop;
        if (registers)
        {
            for (int r = 0; r < 8; r++) _fpr[(_ftop + r) & 7] = regs[r];
        }
    }

    /// <summary>
    /// FXSAVE's x87 part (SDM vol. 1 table 10-2): bytes 0-31 (FCW, FSW, abridged FTW, FOP, FIP/FCS, FDP/FDS, or the
    /// 64-bit FIP and FDP of the REX.W form; bytes 24-31, MXCSR and its mask, are left alone) and ST0-ST7 in
    /// bytes 32-159, 16 bytes each (10 used, the rest written as zero).
    /// </summary>
    internal void SaveX87ToFxsave(Span<byte> area, bool rexW)
    {
        if (area.Length < 160) throw new ArgumentException("an FXSAVE area is 512 bytes", nameof(area));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(area, _fcw);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(area[2..], X87StatusWord);
        area[4] = _fvalid;
        area[5] = 0;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(area[6..], _fop);
        if (rexW)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(area[8..], _fip);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(area[16..], _fdp);
        }
        else
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(area[8..], (uint)_fip);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(area[12..], _fcs);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(area[14..], 0);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(area[16..], (uint)_fdp);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(area[20..], _fds);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(area[22..], 0);
        }
        for (int r = 0; r < 8; r++)
        {
            var slot = area.Slice(32 + 16 * r, 16);
            slot.Clear();
            var v = St(r);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(slot, v.Significand);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(slot[8..], v.SignExponent);
        }
    }

    /// <summary>FXRSTOR's x87 part: the inverse of <see cref="SaveX87ToFxsave"/> (the abridged tag word gives valid/empty).</summary>
    internal void LoadX87FromFxsave(ReadOnlySpan<byte> area, bool rexW)
    {
        if (area.Length < 160) throw new ArgumentException("an FXSAVE area is 512 bytes", nameof(area));
        _fcw = ControlWordFrom(System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(area));
        ushort fsw = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(area[2..]);
        _fsw = fsw;
        _ftop = (fsw >> 11) & 7;
        _fvalid = area[4];
        _fop = (ushort)(System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(area[6..]) & 0x7ff);
        if (rexW)
        {
            _fip = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(area[8..]);
            _fdp = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(area[16..]);
        }
        else
        {
            _fip = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(area[8..]);
            _fcs = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(area[12..]);
            _fdp = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(area[16..]);
            _fds = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(area[20..]);
        }
        for (int r = 0; r < 8; r++)
        {
            var slot = area.Slice(32 + 16 * r, 10);
            _fpr[(_ftop + r) & 7] = new Float80(
                System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(slot[8..]),
                System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(slot));
        }
    }
}
