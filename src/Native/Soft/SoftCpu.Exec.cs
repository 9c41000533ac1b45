// The interpreter's dispatch and the integer instruction families: ALU, moves, stack, control transfer,
// multiply/divide, bit operations, BCD, flag instructions. Handlers are width-generic: the width comes from
// the operand (8/16/32 bits) and every result is masked to it. Semantics and flags follow the Intel SDM vol. 2.
using System.Numerics;
using System.Runtime.CompilerServices;
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    private void Execute(in Instruction i)
    {
        // With other vCPUs, LOCK forms and XCHG with memory are atomic against them (SoftCpu.Smp.cs).
        if (_smp is not null && _atomic == AtomicPhase.Off && NeedsAtomic(in i))
        {
            ExecuteAtomic(in i);
            return;
        }
        switch (i.Mnemonic)
        {
            case Mnemonic.Add: Alu(i, LazyOp.Add); break;
            case Mnemonic.Or: Logic(i, 0); break;
            case Mnemonic.Adc: Alu(i, LazyOp.Adc); break;
            case Mnemonic.Sbb: Alu(i, LazyOp.Sbb); break;
            case Mnemonic.And: Logic(i, 1); break;
            case Mnemonic.Sub: Alu(i, LazyOp.Sub); break;
            case Mnemonic.Xor: Logic(i, 2); break;
            case Mnemonic.Cmp: Alu(i, LazyOp.Sub, store: false); break;
            case Mnemonic.Test: Logic(i, 1, store: false); break;
            case Mnemonic.Inc: IncDec(i, LazyOp.Inc); break;
            case Mnemonic.Dec: IncDec(i, LazyOp.Dec); break;
            case Mnemonic.Neg: Neg(i); break;
            case Mnemonic.Not: { int bits = OpBits(i); WriteOp(i, 0, ~ReadOp(i, 0, bits), bits); break; }

            case Mnemonic.Mov: Mov(i); break;
            case Mnemonic.Movzx: { int sb = OpBits(i, 1); WriteOp(i, 0, ReadOp(i, 1, sb), OpBits(i)); break; }
            case Mnemonic.Movsx or Mnemonic.Movsxd: { int sb = OpBits(i, 1); WriteOp(i, 0, SignExtend(ReadOp(i, 1, sb), sb), OpBits(i)); break; }
            case Mnemonic.Lea: WriteReg(i.Op0Register, EffectiveOffset(i)); break;
            case Mnemonic.Xchg: Xchg(i); break;
            case Mnemonic.Xadd: Xadd(i); break;
            case Mnemonic.Cmpxchg: Cmpxchg(i); break;
            case Mnemonic.Cmpxchg8b: Cmpxchg8b(i); break;
            case Mnemonic.Cmpxchg16b: Cmpxchg16b(i); break;
            case Mnemonic.Bswap: Bswap(i); break;
            case Mnemonic.Cbw: WriteReg(Register.AX, SignExtend(Gpr[0] & 0xff, 8)); break;
            case Mnemonic.Cwde: WriteReg(Register.EAX, SignExtend(Gpr[0] & 0xffff, 16)); break;
            case Mnemonic.Cwd: WriteReg(Register.DX, (Gpr[0] & 0x8000) != 0 ? 0xffffUL : 0); break;
            case Mnemonic.Cdq: WriteReg(Register.EDX, (Gpr[0] & 0x8000_0000) != 0 ? 0xffff_ffffUL : 0); break;
            case Mnemonic.Cdqe: Gpr[0] = SignExtend(Gpr[0], 32); break;
            case Mnemonic.Cqo: Gpr[2] = (long)Gpr[0] < 0 ? ulong.MaxValue : 0; break;
            case Mnemonic.Xlatb: Xlat(i); break;
            case Mnemonic.Lds: LoadFarPointer(i, 3); break;
            case Mnemonic.Les: LoadFarPointer(i, 0); break;
            case Mnemonic.Lfs: LoadFarPointer(i, 4); break;
            case Mnemonic.Lgs: LoadFarPointer(i, 5); break;
            case Mnemonic.Lss: LoadFarPointer(i, 2); _interruptShadow = _ssShadow = true; break;

            case Mnemonic.Push: PushOp(i); break;
            case Mnemonic.Pop: PopOp(i); break;
            case Mnemonic.Pusha: PushAll(16); break;
            case Mnemonic.Pushad: PushAll(32); break;
            case Mnemonic.Popa: PopAll(16); break;
            case Mnemonic.Popad: PopAll(32); break;
            case Mnemonic.Pushf: Push(Rflags & (_model286 && !ProtectedMode ? 0x0fffu : 0xffffu), 2); break; // 286: bits 12-15 read 0 in real mode
            case Mnemonic.Wait:
                if ((Cr0 & 0xa) == 0xa) throw new CpuFault(ExNM, null);
                if (X87ErrorPending) X87Wait(); // #MF for a pending unmasked x87 exception (SoftCpu.X87.cs)
                break;
            case Mnemonic.Pushfd: Push(Rflags & ~(ulong)(RF | VM), 4); break;
            case Mnemonic.Pushfq: Push(Rflags & ~(ulong)(RF | VM), 8); break;
            case Mnemonic.Popfq: WriteFlagsFromPop(Pop(8), 8, iret: false); break;
            case Mnemonic.Popf: WriteFlagsFromPop(Pop(2), 2, iret: false); break;
            case Mnemonic.Popfd: WriteFlagsFromPop(Pop(4), 4, iret: false); break;
            case Mnemonic.Enter: Enter(i); break;
            case Mnemonic.Leave: Leave(i); break;

            case Mnemonic.Jmp: Jmp(i); break;
            case Mnemonic.Call: Call(i); break;
            case Mnemonic.Ret: Ret(i); break;
            case Mnemonic.Retf:
                FarReturn(i.Code is Code.Retfw or Code.Retfw_imm16 ? 2 : i.Code is Code.Retfq or Code.Retfq_imm16 ? 8 : 4, i.OpCount > 0 ? i.Immediate16 : (ushort)0);
                break;
            case Mnemonic.Jo or Mnemonic.Jno or Mnemonic.Jb or Mnemonic.Jae or Mnemonic.Je or Mnemonic.Jne or Mnemonic.Jbe or Mnemonic.Ja
                or Mnemonic.Js or Mnemonic.Jns or Mnemonic.Jp or Mnemonic.Jnp or Mnemonic.Jl or Mnemonic.Jge or Mnemonic.Jle or Mnemonic.Jg:
                if (Condition((int)i.ConditionCode - 1)) _nextRip = BranchTarget(i);
                break;
            case Mnemonic.Loop or Mnemonic.Loope or Mnemonic.Loopne: Loop(i); break;
            case Mnemonic.Jcxz: if ((Gpr[1] & 0xffff) == 0) _nextRip = BranchTarget(i); break;
            case Mnemonic.Jecxz: if ((Gpr[1] & 0xffff_ffff) == 0) _nextRip = BranchTarget(i); break;
            case Mnemonic.Jrcxz: if (Gpr[1] == 0) _nextRip = BranchTarget(i); break;
            case Mnemonic.Seto or Mnemonic.Setno or Mnemonic.Setb or Mnemonic.Setae or Mnemonic.Sete or Mnemonic.Setne or Mnemonic.Setbe
                or Mnemonic.Seta or Mnemonic.Sets or Mnemonic.Setns or Mnemonic.Setp or Mnemonic.Setnp or Mnemonic.Setl or Mnemonic.Setge
                or Mnemonic.Setle or Mnemonic.Setg:
                WriteOp(i, 0, Condition((int)i.ConditionCode - 1) ? 1UL : 0, 8);
                break;
            case Mnemonic.Cmovo or Mnemonic.Cmovno or Mnemonic.Cmovb or Mnemonic.Cmovae or Mnemonic.Cmove or Mnemonic.Cmovne
                or Mnemonic.Cmovbe or Mnemonic.Cmova or Mnemonic.Cmovs or Mnemonic.Cmovns or Mnemonic.Cmovp or Mnemonic.Cmovnp
                or Mnemonic.Cmovl or Mnemonic.Cmovge or Mnemonic.Cmovle or Mnemonic.Cmovg:
                {
                    int bits = OpBits(i);
                    ulong v = ReadOp(i, 1, bits); // the source is read (and may fault) whatever the condition
                    if (Condition((int)i.ConditionCode - 1)) WriteReg(i.Op0Register, v);
                    else if (bits == 32) WriteReg(i.Op0Register, ReadReg(i.Op0Register)); // a 32-bit CMOVcc zero-extends even when it does not move (SDM: CMOVcc, 64-bit mode)
                    break;
                }

            case Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar:
                Shift(i);
                break;
            case Mnemonic.Shld: DoubleShift(i, left: true); break;
            case Mnemonic.Shrd: DoubleShift(i, left: false); break;
            case Mnemonic.Mul: Mul(i); break;
            case Mnemonic.Imul: Imul(i); break;
            case Mnemonic.Div: Div(i, signed: false); break;
            case Mnemonic.Idiv: Div(i, signed: true); break;
            case Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc: BitTest(i); break;
            // TZCNT and LZCNT (F3 0F BC/BD) are in SoftCpu.BitExt.cs: LZCNT is real (CPUID offers ABM), TZCNT runs as
            // BSF because BMI1 is not offered (the REP prefix is ignored, as on such silicon).
            case Mnemonic.Bsf or Mnemonic.Bsr: BitScan(i); break;
            case Mnemonic.Daa: Daa(); break;
            case Mnemonic.Das: Das(); break;
            case Mnemonic.Aaa: AaaAas(add: true); break;
            case Mnemonic.Aas: AaaAas(add: false); break;
            case Mnemonic.Aam: Aam((byte)i.Immediate8); break;
            case Mnemonic.Aad: Aad((byte)i.Immediate8); break;

            case Mnemonic.Clc: SetArith(0, CF); break;
            case Mnemonic.Stc: SetArith(CF, CF); break;
            case Mnemonic.Cmc: SetArith(GetCf() ? 0 : CF, CF); break;
            case Mnemonic.Cld: _flags &= ~DF; break;
            case Mnemonic.Std: _flags |= DF; break;
            case Mnemonic.Cli: CheckIopl(); _flags &= ~IF; break;
            case Mnemonic.Sti:
                CheckIopl();
                if ((_flags & IF) == 0)
                {
                    _interruptShadow = true;
                    _ssShadow = false; // STI's shadow holds interrupts off, not debug traps
                }
                _flags |= IF;
                break;
            case Mnemonic.Lahf: WriteReg(Register.AH, (Rflags & 0xd5) | 0x2); break;
            case Mnemonic.Sahf: SetArith((uint)(Gpr[0] >> 8) & (SF | ZF | AF | PF | CF), SF | ZF | AF | PF | CF); break;
            case Mnemonic.Nop or Mnemonic.Pause: break;
            // The hint-NOP space (0F 1E): without CET, ENDBR32/64 and RDSSP are NOPs (RDSSP leaves its register
            // alone), which is what lets CET-enabled binaries such as Debian's busybox run on older processors.
            case Mnemonic.Endbr32 or Mnemonic.Endbr64 or Mnemonic.Rdsspd or Mnemonic.Rdsspq: break;

            case Mnemonic.Movsb or Mnemonic.Movsw or Mnemonic.Movsd or Mnemonic.Movsq or Mnemonic.Cmpsb or Mnemonic.Cmpsw or Mnemonic.Cmpsd
                or Mnemonic.Cmpsq or Mnemonic.Scasb or Mnemonic.Scasw or Mnemonic.Scasd or Mnemonic.Scasq or Mnemonic.Lodsb or Mnemonic.Lodsw
                or Mnemonic.Lodsd or Mnemonic.Lodsq or Mnemonic.Stosb or Mnemonic.Stosw or Mnemonic.Stosd or Mnemonic.Stosq or Mnemonic.Insb
                or Mnemonic.Insw or Mnemonic.Insd or Mnemonic.Outsb or Mnemonic.Outsw or Mnemonic.Outsd:
                // Iced names SSE2's MOVSD and CMPSD (xmm operands) like the string instructions.
                if (i.Code is Code.Movsd_m32_m32 or Code.Cmpsd_m32_m32 || i.Mnemonic is not (Mnemonic.Movsd or Mnemonic.Cmpsd)) StringOp(i);
                else if (!SimdInstruction(i)) throw new CpuFault(ExUD, null);
                break;
            case Mnemonic.In: PortIn(i); break;
            case Mnemonic.Out: PortOut(i); break;

            case Mnemonic.Hlt:
                if (Cpl != 0) throw new CpuFault(ExGP, 0);
                _halted = true;
                break;
            case Mnemonic.Int: SoftwareInterrupt((byte)i.Immediate8); break;
            case Mnemonic.Int3: SoftwareInterrupt(ExBP); break;
            case Mnemonic.Int1: SoftwareInterrupt(ExDB, icebp: true); break;
            case Mnemonic.Into: if (GetOf()) SoftwareInterrupt(ExOF); break;
            case Mnemonic.Iret: Serialize(); Iret(2); break;
            case Mnemonic.Iretd: Serialize(); Iret(4); break;
            case Mnemonic.Iretq: Serialize(); Iret(8); break;
            case Mnemonic.Bound: Bound(i); break;
            case Mnemonic.Ud0 or Mnemonic.Ud1 or Mnemonic.Ud2: throw new CpuFault(ExUD, null);
            case Mnemonic.Cpuid: Serialize(); Cpuid(); break;
            case Mnemonic.Rdtsc:
                if ((Cr4 & 4) != 0 && Cpl != 0) throw new CpuFault(ExGP, 0);
                {
                    ulong tsc = (ulong)((long)TimeStampCounter() + _tscOffset); // WRMSR to the TSC moves what RDTSC reads
                    Gpr[0] = (uint)tsc;
                    Gpr[2] = tsc >> 32;
                }
                break;

            default:
                if (!SystemInstruction(i) && !X87Instruction(i)) throw new CpuFault(ExUD, null);
                break;
        }
    }

    private static ulong SignExtend(ulong v, int bits) => bits switch
    {
        8 => (ulong)(long)(sbyte)v,
        16 => (ulong)(long)(short)v,
        32 => (ulong)(long)(int)v,
        _ => v,
    };

    private void Alu(in Instruction i, LazyOp op, bool store = true)
    {
        int bits = OpBits(i);
        ulong mask = SizeMask(bits);
        ulong a = ReadOp(i, 0, bits);
        ulong b = ReadOp(i, 1, bits) & mask;
        ulong r;
        switch (op)
        {
            case LazyOp.Add: r = a + b; break;
            case LazyOp.Sub: r = a - b; break;
            case LazyOp.Adc:
                _carryIn = GetCf();
                r = a + b + (_carryIn ? 1UL : 0);
                break;
            default: // Sbb
                _carryIn = GetCf();
                r = a - b - (_carryIn ? 1UL : 0);
                break;
        }
        r &= mask;
        if (store) WriteOp(i, 0, r, bits);
        SetLazy(op, a, b, r, bits);
    }

    private void Logic(in Instruction i, int kind, bool store = true)
    {
        int bits = OpBits(i);
        ulong a = ReadOp(i, 0, bits);
        ulong b = ReadOp(i, 1, bits);
        ulong r = (kind == 0 ? a | b : kind == 1 ? a & b : a ^ b) & SizeMask(bits);
        if (store) WriteOp(i, 0, r, bits);
        SetLazy(LazyOp.Logic, a, b, r, bits);
    }

    private void IncDec(in Instruction i, LazyOp op)
    {
        int bits = OpBits(i);
        ulong a = ReadOp(i, 0, bits);
        ulong r = (op == LazyOp.Inc ? a + 1 : a - 1) & SizeMask(bits);
        WriteOp(i, 0, r, bits);
        _carryIn = GetCf();
        SetLazy(op, a, 1, r, bits);
    }

    private void Neg(in Instruction i)
    {
        int bits = OpBits(i);
        ulong b = ReadOp(i, 0, bits);
        ulong r = (0 - b) & SizeMask(bits);
        WriteOp(i, 0, r, bits);
        SetLazy(LazyOp.Neg, 0, b, r, bits);
    }

    private void Mov(in Instruction i)
    {
        var k0 = i.Op0Kind;
        if (k0 == OpKind.Register)
        {
            var r0 = i.Op0Register;
            if (r0.IsSegmentRegister())
            {
                if (r0 == Register.CS) throw new CpuFault(ExUD, null); // MOV CS is invalid on every x86
                if (_model286 && r0 is Register.FS or Register.GS) throw new CpuFault(ExUD, null); // no FS/GS on a 286
                LoadSegment(RegIndex[(int)r0], (ushort)ReadOp(i, 1, 16));
                if (r0 == Register.SS) _interruptShadow = _ssShadow = true;
                return;
            }
            if (r0.IsCR() || i.Op1Register.IsCR() || r0.IsDR() || i.Op1Register.IsDR())
            {
                MoveControlRegister(i);
                return;
            }
            if (i.Op1Kind == OpKind.Register && i.Op1Register.IsSegmentRegister())
            {
                if (_model286 && i.Op1Register is Register.FS or Register.GS) throw new CpuFault(ExUD, null);
                // MOV r16/r32, Sreg: a 32-bit destination gets the selector zero-extended.
                WriteReg(r0, Sreg(RegIndex[(int)i.Op1Register]).Selector);
                return;
            }
            WriteReg(r0, ReadOp(i, 1, RegBits[(int)r0]));
            return;
        }
        // Memory destination.
        if (i.Op1Kind == OpKind.Register && i.Op1Register.IsSegmentRegister())
        {
            if (_model286 && i.Op1Register is Register.FS or Register.GS) throw new CpuFault(ExUD, null);
            WriteMem(i, Sreg(RegIndex[(int)i.Op1Register]).Selector, 16);
            return;
        }
        int bits = i.MemorySize.GetSize() * 8;
        WriteMem(i, ReadOp(i, 1, bits), bits);
    }

    private void Xchg(in Instruction i)
    {
        int bits = OpBits(i);
        ulong a = ReadOp(i, 0, bits);
        ulong b = ReadOp(i, 1, bits);
        WriteOp(i, 0, b, bits);
        WriteOp(i, 1, a, bits);
    }

    private void Xadd(in Instruction i)
    {
        int bits = OpBits(i);
        ulong a = ReadOp(i, 0, bits);
        ulong b = ReadOp(i, 1, bits);
        ulong r = (a + b) & SizeMask(bits);
        // SDM order: SRC := DEST, then DEST := sum (so XADD r, r leaves the sum). A memory destination's
        // address is formed before the source register changes, so it is written first.
        if (i.Op0Kind == OpKind.Memory)
        {
            WriteMem(i, r, bits);
            WriteReg(i.Op1Register, a);
        }
        else
        {
            WriteReg(i.Op1Register, a);
            WriteReg(i.Op0Register, r);
        }
        SetLazy(LazyOp.Add, a, b, r, bits);
    }

    private void Cmpxchg(in Instruction i)
    {
        int bits = OpBits(i);
        ulong dest = ReadOp(i, 0, bits);
        ulong acc = Gpr[0] & SizeMask(bits);
        SetLazy(LazyOp.Sub, acc, dest, (acc - dest) & SizeMask(bits), bits);
        if (acc == dest)
        {
            WriteOp(i, 0, ReadOp(i, 1, bits), bits);
        }
        else
        {
            if (i.Op0Kind == OpKind.Memory) WriteOp(i, 0, dest, bits); // the processor always writes the destination
            WriteReg(bits switch { 8 => Register.AL, 16 => Register.AX, 32 => Register.EAX, _ => Register.RAX }, dest);
        }
    }

    private void Cmpxchg8b(in Instruction i)
    {
        ulong mem = ReadMem(i, 64);
        ulong edxEax = ((Gpr[2] & 0xffff_ffff) << 32) | (Gpr[0] & 0xffff_ffff);
        if (mem == edxEax)
        {
            WriteMem(i, ((Gpr[1] & 0xffff_ffff) << 32) | (Gpr[3] & 0xffff_ffff), 64);
            SetArith(ZF, ZF);
        }
        else
        {
            WriteMem(i, mem, 64);
            Gpr[0] = (uint)mem;
            Gpr[2] = mem >> 32;
            SetArith(0, ZF);
        }
    }

    private void Bswap(in Instruction i)
    {
        var r = i.Op0Register;
        switch (RegBits[(int)r])
        {
            case 16: WriteReg(r, 0); break; // BSWAP r16 is undefined; silicon clears the register
            case 32: WriteReg(r, BinaryReverse32((uint)ReadReg(r))); break;
            default: WriteReg(r, System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(ReadReg(r))); break;
        }
    }

    /// <summary>CMPXCHG16B m128: compares RDX:RAX with the (16-byte aligned) operand; equal: stores RCX:RBX.</summary>
    private void Cmpxchg16b(in Instruction i)
    {
        ref var seg = ref MemorySegment(i, out _);
        ulong ea = EffectiveOffset(i);
        ulong linear = Mode64 ? ea + (Unsafe.AreSame(ref seg, ref Fs) || Unsafe.AreSame(ref seg, ref Gs) ? seg.Base : 0) : seg.Base + ea;
        if ((linear & 0xf) != 0) throw new CpuFault(ExGP, 0);
        ulong lo = ReadMem(i, 64), hi = ReadMem(i, 64, 8);
        if (lo == Gpr[0] && hi == Gpr[2])
        {
            WriteMem(i, Gpr[3], 64);
            WriteMem(i, Gpr[1], 64, 8);
            SetArith(ZF, ZF);
        }
        else
        {
            WriteMem(i, lo, 64);
            WriteMem(i, hi, 64, 8);
            Gpr[0] = lo;
            Gpr[2] = hi;
            SetArith(0, ZF);
        }
    }

    private static uint BinaryReverse32(uint v) => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v);

    // XLATB: Iced describes the operand as [BX/EBX + AL] in the segment given, so the generic path applies.
    private void Xlat(in Instruction i) => WriteReg(Register.AL, ReadMem(i, 8));

    private void LoadFarPointer(in Instruction i, int sreg)
    {
        int bits = OpBits(i);
        ulong offset = ReadMem(i, bits);
        ushort selector = (ushort)ReadMem(i, 16, (ulong)(bits / 8));
        LoadSegment(sreg, selector);
        WriteReg(i.Op0Register, offset);
    }

    /// <summary>Operand size in bytes the instruction's encoding implies (16/32-bit forms named by Iced), else the code segment's.</summary>
    private int OperandBytes(in Instruction i)
    {
        int size = i.Code.ToOpCode().OperandSize;
        return (size != 0 ? size : CodeBitness) / 8;
    }

    private void PushOp(in Instruction i)
    {
        switch (i.Op0Kind)
        {
            case OpKind.Register when i.Op0Register.IsSegmentRegister():
                {
                    Push(Sreg(RegIndex[(int)i.Op0Register]).Selector, OperandBytes(i));
                    return;
                }
            case OpKind.Register:
                Push(ReadReg(i.Op0Register), RegBits[(int)i.Op0Register] / 8);
                return;
            case OpKind.Memory:
                {
                    int bits = OpBits(i);
                    Push(ReadMem(i, bits), bits / 8);
                    return;
                }
            default:
                {
                    int size = OperandBytes(i);
                    Push(i.GetImmediate(0) & SizeMask(size * 8), size);
                    return;
                }
        }
    }

    private void PopOp(in Instruction i)
    {
        if (i.Op0Kind == OpKind.Register && i.Op0Register.IsSegmentRegister())
        {
            int size = OperandBytes(i);
            ushort sel = (ushort)PeekStack(0, size);
            LoadSegment(RegIndex[(int)i.Op0Register], sel);
            Pop(size);
            if (i.Op0Register == Register.SS) _interruptShadow = _ssShadow = true;
            return;
        }
        int bits = OpBits(i);
        if (i.Op0Kind == OpKind.Register)
        {
            WriteReg(i.Op0Register, Pop(bits / 8));
            return;
        }
        // POP m: ESP is incremented before the destination address is computed (SDM POP).
        ulong v = PeekStack(0, bits / 8);
        ulong savedSp = Gpr[4];
        Pop(bits / 8);
        try
        {
            WriteMem(i, v, bits);
        }
        catch (CpuFault)
        {
            Gpr[4] = savedSp;
            throw;
        }
    }

    private void PushAll(int bits)
    {
        int size = bits / 8;
        ulong sp = Gpr[4];
        for (int r = 0; r < 8; r++) Push(r == 4 ? sp : Gpr[r], size);
    }

    private void PopAll(int bits)
    {
        int size = bits / 8;
        for (int r = 7; r >= 0; r--)
        {
            ulong v = Pop(size);
            if (r == 4) continue;
            if (size == 2) Gpr[r] = (Gpr[r] & ~0xffffUL) | (v & 0xffff);
            else Gpr[r] = v & 0xffff_ffff;
        }
    }

    private void Enter(in Instruction i)
    {
        int size = i.Code switch { Code.Enterw_imm16_imm8 => 2, Code.Enterq_imm16_imm8 => 8, _ => 4 };
        ushort alloc = i.Immediate16;
        int level = i.Immediate8_2nd & 0x1f;
        bool mode64 = Mode64;
        bool stack32 = (Ss.Attributes & 0x4000) != 0;
        ulong spMask = mode64 ? ulong.MaxValue : stack32 ? 0xffff_ffffUL : 0xffffUL;
        Push(Gpr[5], size);
        ulong frame = Gpr[4] & spMask;
        if (level > 0)
        {
            ulong bp = Gpr[5];
            for (int n = 1; n < level; n++)
            {
                bp = (bp - (ulong)size) & spMask;
                Push(ReadSeg(ref Ss, ExSS, bp, size), size);
            }
            Push(frame, size);
        }
        if (size == 2) Gpr[5] = (Gpr[5] & ~0xffffUL) | (frame & 0xffff);
        else Gpr[5] = frame;
        Gpr[4] = (Gpr[4] & ~spMask) | ((Gpr[4] - alloc) & spMask);
    }

    private void Leave(in Instruction i)
    {
        bool stack32 = (Ss.Attributes & 0x4000) != 0;
        ulong oldSp = Gpr[4];
        Gpr[4] = Mode64 ? Gpr[5] : stack32 ? Gpr[5] & 0xffff_ffff : (Gpr[4] & ~0xffffUL) | (Gpr[5] & 0xffff);
        int size = i.Code switch { Code.Leavew => 2, Code.Leaveq => 8, _ => 4 };
        ulong v;
        try
        {
            v = Pop(size);
        }
        catch (CpuFault)
        {
            Gpr[4] = oldSp; // a fault leaves ESP as it was before LEAVE
            throw;
        }
        if (size == 2) Gpr[5] = (Gpr[5] & ~0xffffUL) | (v & 0xffff);
        else Gpr[5] = v;
    }

    private ulong BranchTarget(in Instruction i)
    {
        // Decoded instructions are cached by physical address, so Iced's absolute target is relative to the
        // physical IP; the displacement applies to the linear EIP the instruction actually ran at.
        ulong target = _nextRip + (i.NearBranchTarget - i.NextIP);
        if (i.Op0Kind == OpKind.NearBranch64) return CheckNearTarget(target);
        ulong masked = i.Op0Kind == OpKind.NearBranch16 ? target & 0xffff : target & 0xffff_ffff;
        if (masked > _cs.Limit) throw new CpuFault(ExGP, 0);
        return masked;
    }

    /// <summary>A near target must be inside CS's limit, or canonical in 64-bit mode; else #GP(0) with nothing changed.</summary>
    private ulong CheckNearTarget(ulong target)
    {
        if (Mode64 ? !IsCanonical(target) : target > _cs.Limit) throw new CpuFault(ExGP, 0);
        return target;
    }

    private void Jmp(in Instruction i) => Transfer(i, call: false);

    private void Call(in Instruction i) => Transfer(i, call: true);

    /// <summary>JMP and CALL in all their forms: relative, far pointer, far through memory, near through r/m.</summary>
    private void Transfer(in Instruction i, bool call)
    {
        switch (i.Op0Kind)
        {
            case OpKind.NearBranch16 or OpKind.NearBranch32 or OpKind.NearBranch64:
                {
                    ulong t = BranchTarget(i);
                    if (call) Push(_nextRip, i.Op0Kind switch { OpKind.NearBranch16 => 2, OpKind.NearBranch32 => 4, _ => 8 });
                    _nextRip = t;
                    return;
                }
            case OpKind.FarBranch16 or OpKind.FarBranch32:
                FarTransfer(i.FarBranchSelector, i.FarBranch32, i.Op0Kind == OpKind.FarBranch16 ? 2 : 4, call);
                return;
        }
        if (i.Code is Code.Jmp_m1632 or Code.Jmp_m1616 or Code.Jmp_m1664 or Code.Call_m1632 or Code.Call_m1616 or Code.Call_m1664)
        {
            // m16:16, m16:32 or m16:64: the offset, then the selector.
            int size = i.Code switch { Code.Jmp_m1632 or Code.Call_m1632 => 4, Code.Jmp_m1664 or Code.Call_m1664 => 8, _ => 2 };
            ulong off = ReadMem(i, size * 8);
            ushort sel = (ushort)ReadMem(i, 16, (ulong)size);
            FarTransfer(sel, off, size, call);
            return;
        }
        int bits = OpBits(i);
        ulong target = CheckNearTarget(ReadOp(i, 0, bits));
        if (call) Push(_nextRip, bits / 8);
        _nextRip = target;
    }

    private void Ret(in Instruction i)
    {
        int size = i.Code switch { Code.Retnw or Code.Retnw_imm16 => 2, Code.Retnq or Code.Retnq_imm16 => 8, _ => 4 };
        ulong t = CheckNearTarget(PeekStack(0, size));
        Pop(size);
        if (i.OpCount > 0) Gpr[4] = AdjustSp(i.Immediate16);
        _nextRip = t;
    }

    private void Loop(in Instruction i)
    {
        ulong mask = CounterMask[(int)i.Code]; // the counter is CX, ECX or RCX by address size
        ulong count = (Gpr[1] - 1) & mask;
        Gpr[1] = mask == 0xffff ? (Gpr[1] & ~0xffffUL) | count : count; // ECX zero-extends into RCX
        bool nonzero = count != 0;
        bool take = i.Mnemonic switch
        {
            Mnemonic.Loope => nonzero && GetZf(),
            Mnemonic.Loopne => nonzero && !GetZf(),
            _ => nonzero,
        };
        if (take) _nextRip = BranchTarget(i);
    }

    /// <summary>The counter register's width of each LOOPcc form: Iced names them *_CX, *_ECX and *_RCX.</summary>
    private static readonly ulong[] CounterMask = Enum.GetValues<Code>()
        .Aggregate(new ulong[Enum.GetValues<Code>().Max() + 1 is var n ? (int)n : 0], (t, c) =>
        {
            string name = c.ToString();
            t[(int)c] = name.EndsWith("_RCX", StringComparison.Ordinal) ? ulong.MaxValue
                : name.EndsWith("_ECX", StringComparison.Ordinal) ? 0xffff_ffffUL : 0xffffUL;
            return t;
        });

    private void CheckIopl()
    {
        if (ProtectedMode && Cpl > (int)((_flags >> 12) & 3)) throw new CpuFault(ExGP, 0);
    }

    private void Bound(in Instruction i)
    {
        int bits = OpBits(i);
        long index = (long)SignExtend(ReadReg(i.Op0Register), bits);
        long lower = (long)SignExtend(ReadMem(i, bits), bits);
        long upper = (long)SignExtend(ReadMem(i, bits, (ulong)(bits / 8)), bits);
        if (index < lower || index > upper) throw new CpuFault(ExBR, null);
    }
}
