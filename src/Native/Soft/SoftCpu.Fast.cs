// The interpreter's fast path. When an instruction is decoded into the cache, the commonest forms — register
// and immediate moves and arithmetic, loads and stores, LEA, PUSH/POP of a register, near JMP/CALL/RET and Jcc —
// are also described in a compact FastForm: operand register indexes and width resolved, immediates masked,
// branch displacements computed. Those run here without the mnemonic switch and Iced's per-operand accessors;
// everything else (and any form with an AH-BH operand) goes through Execute. The semantics are the generic
// handlers' (same flags, same faults); the silicon differential tests run every form through this path.
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
    /// <summary>Immediate (masked to the operand width) or branch displacement from the next instruction.</summary>
    public readonly ulong Value;

    private FastForm(FastKind kind, FastAlu op, int dst, int src, int bits, ulong value, int cc = 0)
    {
        Kind = kind;
        Op = op;
        Dst = (byte)dst;
        Src = (byte)src;
        Bits = (byte)bits;
        Value = value;
        Cc = (byte)cc;
    }

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
                        if (k1 == OpKind.Memory && memBits == bits) return new FastForm(FastKind.Load, 0, d, 0, bits, 0);
                        return default;
                    }
                    if (k0 == OpKind.Memory)
                    {
                        if (k1 == OpKind.Register && Gpr(i.Op1Register, out int s, out int sbits) && memBits == sbits)
                            return new FastForm(FastKind.Store, 0, 0, s, sbits, 0);
                        if (k1 is OpKind.Immediate8 or OpKind.Immediate16 or OpKind.Immediate32 or OpKind.Immediate32to64)
                            return new FastForm(FastKind.StoreImm, 0, 0, 0, memBits, i.GetImmediate(1) & Mask(memBits));
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
                        if (k1 == OpKind.Memory && memBits == bits) return new FastForm(FastKind.AluRM, op, d, 0, bits, 0);
                        return default;
                    }
                    if (k0 == OpKind.Memory)
                    {
                        if (k1 == OpKind.Register && Gpr(i.Op1Register, out int s, out int sbits) && memBits == sbits)
                            return new FastForm(FastKind.AluMR, op, 0, s, sbits, 0);
                        if (imm) return new FastForm(FastKind.AluMI, op, 0, 0, memBits, i.GetImmediate(1) & Mask(memBits));
                    }
                    return default;
                }
            case Mnemonic.Inc or Mnemonic.Dec when k0 == OpKind.Register:
                return Gpr(i.Op0Register, out int r, out int rb)
                    ? new FastForm(FastKind.IncDecR, m == Mnemonic.Inc ? FastAlu.Inc : FastAlu.Dec, r, 0, rb, 0)
                    : default;
            case Mnemonic.Lea:
                return Gpr(i.Op0Register, out int lr, out int lb) && lb >= 16 ? new FastForm(FastKind.Lea, 0, lr, 0, lb, 0) : default;
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

    private void ExecuteFast(in FastForm f, in Instruction i)
    {
        int bits = f.Bits;
        switch (f.Kind)
        {
            case FastKind.MovRR: SetGpr(f.Dst, bits, GetGpr(f.Src, bits)); return;
            case FastKind.MovRI: SetGpr(f.Dst, bits, f.Value); return;
            case FastKind.Load: SetGpr(f.Dst, bits, ReadMem(i, bits)); return;
            case FastKind.Store: WriteMem(i, GetGpr(f.Src, bits), bits); return;
            case FastKind.StoreImm: WriteMem(i, f.Value, bits); return;
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
                    ulong r = AluOp(f.Op, GetGpr(f.Dst, bits), ReadMem(i, bits), bits);
                    if (f.Op is not (FastAlu.Cmp or FastAlu.Test)) SetGpr(f.Dst, bits, r);
                    return;
                }
            case FastKind.AluMR:
                {
                    ulong r = AluOp(f.Op, ReadMem(i, bits), GetGpr(f.Src, bits), bits);
                    if (f.Op is not (FastAlu.Cmp or FastAlu.Test)) WriteMem(i, r, bits);
                    return;
                }
            case FastKind.AluMI:
                {
                    ulong r = AluOp(f.Op, ReadMem(i, bits), f.Value, bits);
                    if (f.Op is not (FastAlu.Cmp or FastAlu.Test)) WriteMem(i, r, bits);
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
            case FastKind.Lea: SetGpr(f.Dst, bits, EffectiveOffset(i)); return;
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

    /// <summary>A relative branch's target from the linear next IP, with the CS-limit or canonical check.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong NearTarget(in FastForm f)
    {
        ulong target = _nextRip + f.Value;
        if (f.Bits == 64) return CheckNearTarget(target);
        ulong masked = f.Bits == 16 ? target & 0xffff : target & 0xffff_ffff;
        if (masked > Cs.Limit) throw new CpuFault(ExGP, 0);
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
