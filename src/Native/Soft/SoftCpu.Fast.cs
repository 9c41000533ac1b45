// The interpreter's fast path. When an instruction is decoded into the cache, the commonest forms — register
// and immediate moves and arithmetic, loads and stores, LEA, PUSH/POP of a register, near JMP/CALL/RET and Jcc —
// are also described in a compact FastForm: operand register indexes and width resolved, immediates masked,
// branch displacements computed. Those run here without the mnemonic switch and Iced's per-operand accessors;
// everything else (and any form with an AH-BH operand) goes through Execute. The semantics are the generic
// handlers' (same flags, same faults); the silicon differential tests run every form through this path.
// The hot kinds at 32 and 64 bits dispatch on FastForm.Handler (kind and width in one byte) to handlers specialised
// for their width (generic over a width struct, so the JIT folds masks and sizes); the rest share ExecuteFastGeneric.
using System.Runtime.CompilerServices;
using Iced.Intel;

namespace ActorVmm.Native.Soft;

/// <summary>A decoded instruction as the cache keeps it: Iced's form and the fast path's description of it.</summary>
internal readonly struct DecodedInstruction(in Instruction insn)
{
    public readonly Instruction Insn = insn;
    public readonly FastForm Fast = FastForm.Analyze(insn);
}

internal enum FastKind : byte
{
    None,
    MovRR,
    MovRI,
    AluRR,
    AluRI,
    AluRM,
    AluMR,
    AluMI,
    IncDecR,
    Load,
    Store,
    StoreImm,
    Lea,
    PushR,
    PopR,
    Jcc,
    JmpRel,
    CallRel,
    Ret,
    MovzxRR,
    MovzxRM,
    MovsxRR,
    MovsxRM,
    ShiftRI,
    SetccR,
    CmovRR,
    CmovRM,
}

/// <summary>The operation of an ALU form: ADD, OR, ADC, SBB, AND, SUB, XOR, CMP (the opcode order), and TEST.</summary>
internal enum FastAlu : byte
{
    Add,
    Or,
    Adc,
    Sbb,
    And,
    Sub,
    Xor,
    Cmp,
    Test,
    Inc,
    Dec,
}

internal readonly struct FastForm
{
    public readonly FastKind Kind;
    public readonly FastAlu Op;
    public readonly byte Dst, Src, Bits, Cc;
    /// <summary>Kind and width in one byte for the dispatch: (Kind &lt;&lt; 2) | log2(Bits / 8).</summary>
    public readonly byte Handler;
    /// <summary>Immediate (masked to the operand width), branch displacement from the next instruction, or shift count.</summary>
    public readonly ulong Value;

    // The memory operand, resolved: base and index register numbers (NoReg: none; RipBase: RIP-relative, whose
    // displacement is then from the next instruction), index shift, address size, segment and its fault vector.
    public const byte NoReg = 0xff, RipBase = 0x10;
    public readonly byte MemBase, MemIndex, MemShift, MemAddrBits, MemSeg, MemFault;
    public readonly ulong Disp;

    private FastForm(FastKind kind, FastAlu op, int dst, int src, int bits, ulong value, int cc = 0)
    {
        Kind = kind;
        Op = op;
        Dst = (byte)dst;
        Src = (byte)src;
        Bits = (byte)bits;
        Value = value;
        Cc = (byte)cc;
        MemBase = MemIndex = NoReg;
        Handler = HandlerOf(kind, bits);
    }

    /// <summary>The dispatch byte of a kind at a width (8, 16, 32 or 64 bits).</summary>
    public static byte HandlerOf(FastKind kind, int bits) => (byte)(((int)kind << 2) | (bits switch { 64 => 3, 32 => 2, 16 => 1, _ => 0 }));

    /// <summary>The same form with the memory operand of <paramref name="i"/> resolved; None when it cannot be.</summary>
    private FastForm(in FastForm f, in Instruction i)
    {
        this = f;
        var b = i.MemoryBase;
        var x = i.MemoryIndex;
        int addrBits;
        if (b is Register.RIP or Register.EIP)
        {
            MemBase = RipBase;
            Disp = i.MemoryDisplacement64 - i.NextIP;
            addrBits = b == Register.RIP ? 64 : 32;
        }
        else
        {
            MemBase = NoReg;
            Disp = i.MemoryDisplacement64;
            addrBits = 0;
            if (b != Register.None)
            {
                if (!Gpr(b, out int bi, out int bb) || bb == 8) { this = default; return; }
                MemBase = (byte)bi;
                addrBits = bb;
            }
            if (x != Register.None)
            {
                if (!Gpr(x, out int xi, out int xb) || xb == 8) { this = default; return; }
                addrBits = xb;
            }
            if (addrBits == 0) addrBits = i.CodeSize == CodeSize.Code64 ? 64 : i.MemoryDisplSize == 2 ? 16 : 32;
        }
        if (x != Register.None)
        {
            Gpr(x, out int xi2, out _);
            MemIndex = (byte)xi2;
            MemShift = (byte)System.Numerics.BitOperations.Log2((uint)i.MemoryIndexScale);
        }
        else
        {
            MemIndex = NoReg;
        }
        MemAddrBits = (byte)addrBits;
        var seg = i.MemorySegment;
        MemSeg = (byte)(seg - Register.ES);
        MemFault = seg == Register.SS ? SoftCpu.ExSS : SoftCpu.ExGP;
        if (addrBits == 16) Disp &= 0xffff;
    }

    private static FastForm WithMemory(FastForm f, in Instruction i) => new(f, i);

    private static ulong Mask(int bits) => bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;

    /// <summary>A general-purpose register usable here: index and width, or false (AH-BH, not a GPR).</summary>
    private static bool Gpr(Register r, out int index, out int bits)
    {
        index = 0;
        bits = 0;
        if (r >= Register.AL && r <= Register.R15L)
        {
            int n = r - Register.AL;
            if (n is >= 4 and <= 7) return false; // AH, CH, DH, BH
            index = n < 4 ? n : n - 4;
            bits = 8;
            return true;
        }
        if (r >= Register.AX && r <= Register.R15W) { index = r - Register.AX; bits = 16; return true; }
        if (r >= Register.EAX && r <= Register.R15D) { index = r - Register.EAX; bits = 32; return true; }
        if (r >= Register.RAX && r <= Register.R15) { index = r - Register.RAX; bits = 64; return true; }
        return false;
    }

    private static FastAlu? AluOf(Mnemonic m) => m switch
    {
        Mnemonic.Add => FastAlu.Add,
        Mnemonic.Or => FastAlu.Or,
        Mnemonic.Adc => FastAlu.Adc,
        Mnemonic.Sbb => FastAlu.Sbb,
        Mnemonic.And => FastAlu.And,
        Mnemonic.Sub => FastAlu.Sub,
        Mnemonic.Xor => FastAlu.Xor,
        Mnemonic.Cmp => FastAlu.Cmp,
        Mnemonic.Test => FastAlu.Test,
        _ => null,
    };

    public static FastForm Analyze(in Instruction i)
    {
        var m = i.Mnemonic;
        // LOCK forms (and XCHG with memory, which has no fast form) must stay on Execute: with several vCPUs it runs
        // them atomically (SoftCpu.Smp.cs).
        if (i.Code == Code.INVALID || i.HasLockPrefix) return default;
        int opCount = i.OpCount;
        var k0 = opCount > 0 ? i.Op0Kind : OpKind.Register;
        var k1 = opCount > 1 ? i.Op1Kind : OpKind.Register;
        bool memory = k0 == OpKind.Memory || k1 == OpKind.Memory;
        int memBits = memory ? i.MemorySize.GetSize() * 8 : 0;
        switch (m)
        {
            case Mnemonic.Mov when opCount == 2:
                {
                    if (k0 == OpKind.Register && Gpr(i.Op0Register, out int d, out int bits))
                    {
                        if (k1 == OpKind.Register && Gpr(i.Op1Register, out int s, out int sb) && sb == bits)
                            return new FastForm(FastKind.MovRR, 0, d, s, bits, 0);
                        if (k1 is OpKind.Immediate8 or OpKind.Immediate16 or OpKind.Immediate32 or OpKind.Immediate64 or OpKind.Immediate32to64)
                            return new FastForm(FastKind.MovRI, 0, d, 0, bits, i.GetImmediate(1) & Mask(bits));
                        if (k1 == OpKind.Memory && memBits == bits) return WithMemory(new FastForm(FastKind.Load, 0, d, 0, bits, 0), i);
                        return default;
                    }
                    if (k0 == OpKind.Memory)
                    {
                        if (k1 == OpKind.Register && Gpr(i.Op1Register, out int s, out int sbits) && memBits == sbits)
                            return WithMemory(new FastForm(FastKind.Store, 0, 0, s, sbits, 0), i);
                        if (k1 is OpKind.Immediate8 or OpKind.Immediate16 or OpKind.Immediate32 or OpKind.Immediate32to64)
                            return WithMemory(new FastForm(FastKind.StoreImm, 0, 0, 0, memBits, i.GetImmediate(1) & Mask(memBits)), i);
                    }
                    return default;
                }
            case Mnemonic.Add or Mnemonic.Or or Mnemonic.Adc or Mnemonic.Sbb or Mnemonic.And or Mnemonic.Sub or Mnemonic.Xor or Mnemonic.Cmp
                or Mnemonic.Test when opCount == 2:
                {
                    var op = AluOf(m)!.Value;
                    bool imm = k1 is OpKind.Immediate8 or OpKind.Immediate16 or OpKind.Immediate32 or OpKind.Immediate8to16
                        or OpKind.Immediate8to32 or OpKind.Immediate8to64 or OpKind.Immediate32to64;
                    if (k0 == OpKind.Register && Gpr(i.Op0Register, out int d, out int bits))
                    {
                        if (k1 == OpKind.Register && Gpr(i.Op1Register, out int s, out int sb) && sb == bits)
                            return new FastForm(FastKind.AluRR, op, d, s, bits, 0);
                        if (imm) return new FastForm(FastKind.AluRI, op, d, 0, bits, i.GetImmediate(1) & Mask(bits));
                        if (k1 == OpKind.Memory && memBits == bits) return WithMemory(new FastForm(FastKind.AluRM, op, d, 0, bits, 0), i);
                        return default;
                    }
                    if (k0 == OpKind.Memory)
                    {
                        if (k1 == OpKind.Register && Gpr(i.Op1Register, out int s, out int sbits) && memBits == sbits)
                            return WithMemory(new FastForm(FastKind.AluMR, op, 0, s, sbits, 0), i);
                        if (imm) return WithMemory(new FastForm(FastKind.AluMI, op, 0, 0, memBits, i.GetImmediate(1) & Mask(memBits)), i);
                    }
                    return default;
                }
            case Mnemonic.Inc or Mnemonic.Dec when k0 == OpKind.Register:
                return Gpr(i.Op0Register, out int r, out int rb)
                    ? new FastForm(FastKind.IncDecR, m == Mnemonic.Inc ? FastAlu.Inc : FastAlu.Dec, r, 0, rb, 0)
                    : default;
            case Mnemonic.Lea:
                return Gpr(i.Op0Register, out int lr, out int lb) && lb >= 16 ? WithMemory(new FastForm(FastKind.Lea, 0, lr, 0, lb, 0), i) : default;
            case Mnemonic.Movzx or Mnemonic.Movsx when Gpr(i.Op0Register, out int zr, out int zb):
                {
                    bool sx = m == Mnemonic.Movsx;
                    if (k1 == OpKind.Register && Gpr(i.Op1Register, out int zs, out int zsb))
                        return new FastForm(sx ? FastKind.MovsxRR : FastKind.MovzxRR, 0, zr, zs, zb, (ulong)zsb);
                    if (k1 == OpKind.Memory) return WithMemory(new FastForm(sx ? FastKind.MovsxRM : FastKind.MovzxRM, 0, zr, 0, zb, (ulong)memBits), i);
                    return default;
                }
            case Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar when k0 == OpKind.Register && k1 == OpKind.Immediate8:
                {
                    if (!Gpr(i.Op0Register, out int sr, out int sb)) return default;
                    var op = m == Mnemonic.Shr ? FastAlu.Sub : m == Mnemonic.Sar ? FastAlu.Sbb : FastAlu.Add; // left, logical right, arithmetic right
                    return new FastForm(FastKind.ShiftRI, op, sr, 0, sb, (ulong)(i.Immediate8 & (sb == 64 ? 0x3f : 0x1f)));
                }
            case Mnemonic.Seto or Mnemonic.Setno or Mnemonic.Setb or Mnemonic.Setae or Mnemonic.Sete or Mnemonic.Setne or Mnemonic.Setbe
                or Mnemonic.Seta or Mnemonic.Sets or Mnemonic.Setns or Mnemonic.Setp or Mnemonic.Setnp or Mnemonic.Setl or Mnemonic.Setge
                or Mnemonic.Setle or Mnemonic.Setg when k0 == OpKind.Register:
                return Gpr(i.Op0Register, out int cr, out _) ? new FastForm(FastKind.SetccR, 0, cr, 0, 8, 0, (int)i.ConditionCode - 1) : default;
            case Mnemonic.Cmovo or Mnemonic.Cmovno or Mnemonic.Cmovb or Mnemonic.Cmovae or Mnemonic.Cmove or Mnemonic.Cmovne
                or Mnemonic.Cmovbe or Mnemonic.Cmova or Mnemonic.Cmovs or Mnemonic.Cmovns or Mnemonic.Cmovp or Mnemonic.Cmovnp
                or Mnemonic.Cmovl or Mnemonic.Cmovge or Mnemonic.Cmovle or Mnemonic.Cmovg:
                {
                    if (!Gpr(i.Op0Register, out int md, out int mb)) return default;
                    if (k1 == OpKind.Register && Gpr(i.Op1Register, out int ms, out _))
                        return new FastForm(FastKind.CmovRR, 0, md, ms, mb, 0, (int)i.ConditionCode - 1);
                    if (k1 == OpKind.Memory) return WithMemory(new FastForm(FastKind.CmovRM, 0, md, 0, mb, 0, (int)i.ConditionCode - 1), i);
                    return default;
                }
            case Mnemonic.Push when k0 == OpKind.Register:
                return Gpr(i.Op0Register, out int pr, out int pb) && pb >= 16 ? new FastForm(FastKind.PushR, 0, pr, 0, pb, 0) : default;
            case Mnemonic.Pop when k0 == OpKind.Register:
                return Gpr(i.Op0Register, out int qr, out int qb) && qb >= 16 ? new FastForm(FastKind.PopR, 0, qr, 0, qb, 0) : default;
            case Mnemonic.Jo or Mnemonic.Jno or Mnemonic.Jb or Mnemonic.Jae or Mnemonic.Je or Mnemonic.Jne or Mnemonic.Jbe or Mnemonic.Ja
                or Mnemonic.Js or Mnemonic.Jns or Mnemonic.Jp or Mnemonic.Jnp or Mnemonic.Jl or Mnemonic.Jge or Mnemonic.Jle or Mnemonic.Jg:
                return new FastForm(FastKind.Jcc, 0, 0, 0, BranchBits(k0), i.NearBranchTarget - i.NextIP, (int)i.ConditionCode - 1);
            case Mnemonic.Jmp when k0 is OpKind.NearBranch16 or OpKind.NearBranch32 or OpKind.NearBranch64:
                return new FastForm(FastKind.JmpRel, 0, 0, 0, BranchBits(k0), i.NearBranchTarget - i.NextIP);
            case Mnemonic.Call when k0 is OpKind.NearBranch16 or OpKind.NearBranch32 or OpKind.NearBranch64:
                return new FastForm(FastKind.CallRel, 0, 0, 0, BranchBits(k0), i.NearBranchTarget - i.NextIP);
            case Mnemonic.Ret when opCount == 0:
                return new FastForm(FastKind.Ret, 0, 0, 0, i.Code switch { Code.Retnw => 16, Code.Retnq => 64, _ => 32 }, 0);
            default:
                return default;
        }
    }

    private static int BranchBits(OpKind kind) => kind switch
    {
        OpKind.NearBranch16 => 16,
        OpKind.NearBranch32 => 32,
        _ => 64,
    };
}

/// <summary>An operand width as a type, so a generic handler is compiled once per width with its masks folded.</summary>
internal interface IOperandWidth
{
    static abstract int Bits { get; }
}

internal struct Width32 : IOperandWidth
{
    public static int Bits => 32;
}

internal struct Width64 : IOperandWidth
{
    public static int Bits => 64;
}

public sealed partial class SoftCpu
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong GetGpr(int index, int bits) => bits switch
    {
        64 => Gpr[index],
        32 => (uint)Gpr[index],
        16 => (ushort)Gpr[index],
        _ => (byte)Gpr[index],
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SetGpr(int index, int bits, ulong v)
    {
        switch (bits)
        {
            case 64: Gpr[index] = v; break;
            case 32: Gpr[index] = (uint)v; break;
            case 16: Gpr[index] = (Gpr[index] & ~0xffffUL) | (ushort)v; break;
            default: Gpr[index] = (Gpr[index] & ~0xffUL) | (byte)v; break;
        }
    }

    /// <summary>Runs a decoded instruction: its fast form when it has one, else the generic handlers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ExecuteDecoded(in DecodedInstruction d)
    {
        if (d.Fast.Kind == FastKind.None) Execute(in d.Insn);
        else ExecuteFast(in d.Fast, in d.Insn);
    }

    // Dispatch bytes of the width-specialised handlers (FastForm.HandlerOf: kind << 2 | 2 for 32 bits, | 3 for 64).
    private const int W32 = 2, W64 = 3;

    /// <summary>A fast form: the hot kinds at 32 and 64 bits through their specialised handlers, the rest generically.</summary>
    private void ExecuteFast(in FastForm f, in Instruction i)
    {
        switch (f.Handler)
        {
            case ((int)FastKind.MovRR << 2) | W32: SetGpr<Width32>(f.Dst, GetGpr<Width32>(f.Src)); return;
            case ((int)FastKind.MovRR << 2) | W64: Gpr[f.Dst] = Gpr[f.Src]; return;
            case ((int)FastKind.MovRI << 2) | W32: SetGpr<Width32>(f.Dst, f.Value); return;
            case ((int)FastKind.MovRI << 2) | W64: Gpr[f.Dst] = f.Value; return;
            case ((int)FastKind.Load << 2) | W32: SetGpr<Width32>(f.Dst, FastRead(f, 32)); return;
            case ((int)FastKind.Load << 2) | W64: Gpr[f.Dst] = FastRead(f, 64); return;
            case ((int)FastKind.Store << 2) | W32: FastWrite(f, (uint)Gpr[f.Src], 32); return;
            case ((int)FastKind.Store << 2) | W64: FastWrite(f, Gpr[f.Src], 64); return;
            case ((int)FastKind.AluRR << 2) | W32: FastAluRR<Width32>(f); return;
            case ((int)FastKind.AluRR << 2) | W64: FastAluRR<Width64>(f); return;
            case ((int)FastKind.AluRI << 2) | W32: FastAluRI<Width32>(f); return;
            case ((int)FastKind.AluRI << 2) | W64: FastAluRI<Width64>(f); return;
            case ((int)FastKind.AluRM << 2) | W32: FastAluRM<Width32>(f); return;
            case ((int)FastKind.AluRM << 2) | W64: FastAluRM<Width64>(f); return;
            case ((int)FastKind.AluMR << 2) | W32: FastAluMR<Width32>(f); return;
            case ((int)FastKind.AluMR << 2) | W64: FastAluMR<Width64>(f); return;
            case ((int)FastKind.IncDecR << 2) | W32: FastIncDec<Width32>(f); return;
            case ((int)FastKind.IncDecR << 2) | W64: FastIncDec<Width64>(f); return;
            case ((int)FastKind.Lea << 2) | W32: SetGpr<Width32>(f.Dst, FastOffset(f)); return;
            case ((int)FastKind.Lea << 2) | W64: Gpr[f.Dst] = FastOffset(f); return;
            case ((int)FastKind.Jcc << 2) | W32 or ((int)FastKind.Jcc << 2) | W64:
                if (Condition(f.Cc)) _nextRip = NearTarget(f);
                return;
            case ((int)FastKind.JmpRel << 2) | W32 or ((int)FastKind.JmpRel << 2) | W64: _nextRip = NearTarget(f); return;
            case ((int)FastKind.MovzxRM << 2) | W32:
                SetGpr<Width32>(f.Dst, f.Value == 8 ? FastRead(f, 8) : FastRead(f, 16));
                return;
            case ((int)FastKind.PushR << 2) | W64: Push(Gpr[f.Dst], 8); return;
            case ((int)FastKind.PopR << 2) | W64: Gpr[f.Dst] = Pop(8); return;
            case ((int)FastKind.PushR << 2) | W32: Push((uint)Gpr[f.Dst], 4); return;
            case ((int)FastKind.PopR << 2) | W32: SetGpr<Width32>(f.Dst, Pop(4)); return;
            case ((int)FastKind.CallRel << 2) | W64:
                {
                    ulong t = NearTarget(f);
                    Push(_nextRip, 8);
                    _nextRip = t;
                    return;
                }
            case ((int)FastKind.Ret << 2) | W64:
                {
                    ulong t = CheckNearTarget(PeekStack(0, 8));
                    Pop(8);
                    _nextRip = t;
                    return;
                }
            case ((int)FastKind.StoreImm << 2) | W32: FastWrite(f, f.Value, 32); return;
            case ((int)FastKind.StoreImm << 2) | W64: FastWrite(f, f.Value, 64); return;
            case ((int)FastKind.AluMI << 2) | W32: FastAluMI<Width32>(f); return;
            case ((int)FastKind.AluMI << 2) | W64: FastAluMI<Width64>(f); return;
            case ((int)FastKind.ShiftRI << 2) | W32: FastShift(in f, 32); return;
            case ((int)FastKind.ShiftRI << 2) | W64: FastShift(in f, 64); return;
            case (int)FastKind.SetccR << 2: SetGpr(f.Dst, 8, Condition(f.Cc) ? 1UL : 0); return;
            default:
                ExecuteFastGeneric(in f, in i);
                return;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong GetGpr<W>(int index)
        where W : struct, IOperandWidth => W.Bits == 64 ? Gpr[index] : (uint)Gpr[index];

    /// <summary>A 32-bit write zero-extends into the 64-bit register, as every 32-bit destination does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SetGpr<W>(int index, ulong v)
        where W : struct, IOperandWidth => Gpr[index] = W.Bits == 64 ? v : (uint)v;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FastAluRR<W>(in FastForm f)
        where W : struct, IOperandWidth
    {
        ulong r = AluOp(f.Op, GetGpr<W>(f.Dst), GetGpr<W>(f.Src), W.Bits);
        if (f.Op is not (FastAlu.Cmp or FastAlu.Test)) SetGpr<W>(f.Dst, r);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FastAluRI<W>(in FastForm f)
        where W : struct, IOperandWidth
    {
        ulong r = AluOp(f.Op, GetGpr<W>(f.Dst), f.Value, W.Bits);
        if (f.Op is not (FastAlu.Cmp or FastAlu.Test)) SetGpr<W>(f.Dst, r);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FastAluRM<W>(in FastForm f)
        where W : struct, IOperandWidth
    {
        ulong r = AluOp(f.Op, GetGpr<W>(f.Dst), FastRead(f, W.Bits), W.Bits);
        if (f.Op is not (FastAlu.Cmp or FastAlu.Test)) SetGpr<W>(f.Dst, r);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FastAluMR<W>(in FastForm f)
        where W : struct, IOperandWidth
    {
        ulong r = AluOp(f.Op, FastRead(f, W.Bits), GetGpr<W>(f.Src), W.Bits);
        if (f.Op is not (FastAlu.Cmp or FastAlu.Test)) FastWrite(f, r, W.Bits);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FastAluMI<W>(in FastForm f)
        where W : struct, IOperandWidth
    {
        ulong r = AluOp(f.Op, FastRead(f, W.Bits), f.Value, W.Bits);
        if (f.Op is not (FastAlu.Cmp or FastAlu.Test)) FastWrite(f, r, W.Bits);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FastIncDec<W>(in FastForm f)
        where W : struct, IOperandWidth
    {
        ulong a = GetGpr<W>(f.Dst);
        ulong r = (f.Op == FastAlu.Inc ? a + 1 : a - 1) & SizeMask(W.Bits);
        SetGpr<W>(f.Dst, r);
        _carryIn = GetCf();
        SetLazy(f.Op == FastAlu.Inc ? LazyOp.Inc : LazyOp.Dec, a, 1, r, W.Bits);
    }

    /// <summary>SHL/SAL, SHR, SAR of a register by an immediate (Op: Add left, Sub logical right, Sbb arithmetic right).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FastShift(in FastForm f, int bits)
    {
        int count = (int)f.Value;
        ulong v = GetGpr(f.Dst, bits);
        if (count == 0)
        {
            if (bits == 32) SetGpr(f.Dst, 32, v); // no flags change; a 32-bit register is still zero-extended
            return;
        }
        ulong mask = SizeMask(bits), sign = 1UL << (bits - 1), r;
        bool cf, of;
        if (f.Op == FastAlu.Add)
        {
            r = count >= 64 ? 0 : (v << count) & mask;
            cf = count <= bits && ((v >> (bits - count)) & 1) != 0;
            of = ((r & sign) != 0) ^ cf;
        }
        else if (f.Op == FastAlu.Sub)
        {
            r = count >= 64 ? 0 : v >> count;
            cf = count <= bits && ((v >> (count - 1)) & 1) != 0;
            of = (v & sign) != 0 && !(_model286 && count > 1);
        }
        else
        {
            long sv = (long)SignExtend(v, bits);
            int c = Math.Min(count, bits);
            r = (ulong)(sv >> Math.Min(c, 63)) & mask;
            cf = ((sv >> (c - 1)) & 1) != 0;
            of = false;
        }
        SetGpr(f.Dst, bits, r);
        SetArith(SzpFlags(r, bits) | (cf ? CF : 0) | (of ? OF_ : 0));
    }

    /// <summary>Every fast kind at every width, width-generic (the dispatch above takes the hot ones first).</summary>
    private void ExecuteFastGeneric(in FastForm f, in Instruction i)
    {
        int bits = f.Bits;
        switch (f.Kind)
        {
            case FastKind.MovRR: SetGpr(f.Dst, bits, GetGpr(f.Src, bits)); return;
            case FastKind.MovRI: SetGpr(f.Dst, bits, f.Value); return;
            case FastKind.Load: SetGpr(f.Dst, bits, FastRead(f, bits)); return;
            case FastKind.Store: FastWrite(f, GetGpr(f.Src, bits), bits); return;
            case FastKind.StoreImm: FastWrite(f, f.Value, bits); return;
            case FastKind.AluRR:
                {
                    ulong r = AluOp(f.Op, GetGpr(f.Dst, bits), GetGpr(f.Src, bits), bits);
                    if (f.Op is not (FastAlu.Cmp or FastAlu.Test)) SetGpr(f.Dst, bits, r);
                    return;
                }
            case FastKind.AluRI:
                {
                    ulong r = AluOp(f.Op, GetGpr(f.Dst, bits), f.Value, bits);
                    if (f.Op is not (FastAlu.Cmp or FastAlu.Test)) SetGpr(f.Dst, bits, r);
                    return;
                }
            case FastKind.AluRM:
                {
                    ulong r = AluOp(f.Op, GetGpr(f.Dst, bits), FastRead(f, bits), bits);
                    if (f.Op is not (FastAlu.Cmp or FastAlu.Test)) SetGpr(f.Dst, bits, r);
                    return;
                }
            case FastKind.AluMR:
                {
                    ulong r = AluOp(f.Op, FastRead(f, bits), GetGpr(f.Src, bits), bits);
                    if (f.Op is not (FastAlu.Cmp or FastAlu.Test)) FastWrite(f, r, bits);
                    return;
                }
            case FastKind.AluMI:
                {
                    ulong r = AluOp(f.Op, FastRead(f, bits), f.Value, bits);
                    if (f.Op is not (FastAlu.Cmp or FastAlu.Test)) FastWrite(f, r, bits);
                    return;
                }
            case FastKind.IncDecR:
                {
                    ulong a = GetGpr(f.Dst, bits);
                    ulong r = (f.Op == FastAlu.Inc ? a + 1 : a - 1) & SizeMask(bits);
                    SetGpr(f.Dst, bits, r);
                    _carryIn = GetCf();
                    SetLazy(f.Op == FastAlu.Inc ? LazyOp.Inc : LazyOp.Dec, a, 1, r, bits);
                    return;
                }
            case FastKind.Lea: SetGpr(f.Dst, bits, FastOffset(f)); return;
            case FastKind.MovzxRR: SetGpr(f.Dst, bits, GetGpr(f.Src, (int)f.Value)); return;
            case FastKind.MovzxRM: SetGpr(f.Dst, bits, FastRead(f, (int)f.Value)); return;
            case FastKind.MovsxRR: SetGpr(f.Dst, bits, SignExtend(GetGpr(f.Src, (int)f.Value), (int)f.Value)); return;
            case FastKind.MovsxRM: SetGpr(f.Dst, bits, SignExtend(FastRead(f, (int)f.Value), (int)f.Value)); return;
            case FastKind.SetccR: SetGpr(f.Dst, 8, Condition(f.Cc) ? 1UL : 0); return;
            case FastKind.CmovRR or FastKind.CmovRM:
                {
                    ulong v = f.Kind == FastKind.CmovRR ? GetGpr(f.Src, bits) : FastRead(f, bits); // the source is read whatever the condition
                    // A 32-bit CMOVcc writes (zero-extends) its destination even when it does not move.
                    if (Condition(f.Cc)) SetGpr(f.Dst, bits, v);
                    else if (bits == 32) SetGpr(f.Dst, 32, GetGpr(f.Dst, 32));
                    return;
                }
            case FastKind.ShiftRI: FastShift(in f, bits); return;
            case FastKind.PushR: Push(GetGpr(f.Dst, bits), bits / 8); return;
            case FastKind.PopR: SetGpr(f.Dst, bits, Pop(bits / 8)); return;
            case FastKind.Jcc:
                if (Condition(f.Cc)) _nextRip = NearTarget(f);
                return;
            case FastKind.JmpRel: _nextRip = NearTarget(f); return;
            case FastKind.CallRel:
                {
                    ulong t = NearTarget(f);
                    Push(_nextRip, bits / 8);
                    _nextRip = t;
                    return;
                }
            case FastKind.Ret:
                {
                    int size = bits / 8;
                    ulong t = CheckNearTarget(PeekStack(0, size));
                    Pop(size);
                    _nextRip = t;
                    return;
                }
            default:
                Execute(in i);
                return;
        }
    }

    /// <summary>The memory operand's offset in its segment, from the resolved form.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong FastOffset(in FastForm f)
    {
        ulong ea = f.Disp;
        if (f.MemBase != FastForm.NoReg) ea += f.MemBase == FastForm.RipBase ? _nextRip : Gpr[f.MemBase];
        if (f.MemIndex != FastForm.NoReg) ea += Gpr[f.MemIndex] << f.MemShift;
        return f.MemAddrBits switch
        {
            64 => ea,
            32 => ea & 0xffff_ffff,
            _ => ea & 0xffff,
        };
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong FastRead(in FastForm f, int bits) => ReadSeg(ref Sreg(f.MemSeg), f.MemFault, FastOffset(f), bits >> 3);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FastWrite(in FastForm f, ulong value, int bits) => WriteSeg(ref Sreg(f.MemSeg), f.MemFault, FastOffset(f), value, bits >> 3);

    /// <summary>A relative branch's target from the linear next IP, with the CS-limit or canonical check.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong NearTarget(in FastForm f)
    {
        ulong target = _nextRip + f.Value;
        if (f.Bits == 64) return CheckNearTarget(target);
        ulong masked = f.Bits == 16 ? target & 0xffff : target & 0xffff_ffff;
        if (masked > _cs.Limit) throw new CpuFault(ExGP, 0);
        return masked;
    }

    /// <summary>The ALU operation with the generic handlers' lazy flags; returns the (masked) result.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong AluOp(FastAlu op, ulong a, ulong b, int bits)
    {
        ulong mask = SizeMask(bits);
        ulong r;
        switch (op)
        {
            case FastAlu.Add: r = (a + b) & mask; SetLazy(LazyOp.Add, a, b, r, bits); return r;
            case FastAlu.Sub or FastAlu.Cmp: r = (a - b) & mask; SetLazy(LazyOp.Sub, a, b, r, bits); return r;
            case FastAlu.And or FastAlu.Test: r = a & b; SetLazy(LazyOp.Logic, a, b, r, bits); return r;
            case FastAlu.Or: r = a | b; SetLazy(LazyOp.Logic, a, b, r, bits); return r;
            case FastAlu.Xor: r = a ^ b; SetLazy(LazyOp.Logic, a, b, r, bits); return r;
            case FastAlu.Adc:
                _carryIn = GetCf();
                r = (a + b + (_carryIn ? 1UL : 0)) & mask;
                SetLazy(LazyOp.Adc, a, b, r, bits);
                return r;
            default: // Sbb
                _carryIn = GetCf();
                r = (a - b - (_carryIn ? 1UL : 0)) & mask;
                SetLazy(LazyOp.Sbb, a, b, r, bits);
                return r;
        }
    }
}
