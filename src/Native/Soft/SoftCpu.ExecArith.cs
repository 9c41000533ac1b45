// Shifts and rotates, multiply and divide, bit test and scan, and the BCD adjusts. These compute their
// flags at once (their CF/OF rules do not fit the lazy scheme). Where the SDM leaves a flag undefined the
// value chosen here is documented at the handler; the differential tests mask exactly those flags.
using System.Numerics;
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    private void Shift(in Instruction i)
    {
        int bits = OpBits(i);
        ulong mask = SizeMask(bits);
        ulong sign = 1UL << (bits - 1);
        ulong v = ReadOp(i, 0, bits);
        int raw = i.Op1Kind == OpKind.Register ? (int)(Gpr[1] & 0xff) : i.Op1Kind == OpKind.Immediate8 ? i.Immediate8 : 1;
        int count = raw & (bits == 64 ? 0x3f : 0x1f);
        if (count == 0)
        {
            // No flags change; a memory destination is still read (and faults) like hardware, and a 32-bit
            // register is still written: in 64-bit mode its upper half is cleared, as silicon does.
            if (bits == 32 && i.Op0Kind == OpKind.Register) WriteReg(i.Op0Register, v);
            return;
        }
        ulong r;
        uint flags;
        bool cf;
        switch (i.Mnemonic)
        {
            case Mnemonic.Rol:
                {
                    int c = count % bits;
                    r = ((v << c) | (v >> ((bits - c) % bits))) & mask;
                    cf = (r & 1) != 0;
                    bool of = (((r & sign) != 0) ^ cf);
                    WriteOp(i, 0, r, bits);
                    SetArith((cf ? CF : 0) | (of ? OF_ : 0), CF | OF_);
                    return;
                }
            case Mnemonic.Ror:
                {
                    int c = count % bits;
                    r = ((v >> c) | (v << ((bits - c) % bits))) & mask;
                    cf = (r & sign) != 0;
                    bool of = ((r & sign) != 0) ^ ((r & (sign >> 1)) != 0);
                    WriteOp(i, 0, r, bits);
                    SetArith((cf ? CF : 0) | (of ? OF_ : 0), CF | OF_);
                    return;
                }
            case Mnemonic.Rcl:
                {
                    int c = bits >= 32 ? count : count % (bits + 1);
                    bool carry = GetCf();
                    r = v;
                    for (int k = 0; k < c; k++)
                    {
                        bool outBit = (r & sign) != 0;
                        r = ((r << 1) | (carry ? 1UL : 0)) & mask;
                        carry = outBit;
                    }
                    bool of = ((r & sign) != 0) ^ carry;
                    WriteOp(i, 0, r, bits);
                    SetArith((carry ? CF : 0) | (of ? OF_ : 0), CF | OF_);
                    return;
                }
            case Mnemonic.Rcr:
                {
                    int c = bits >= 32 ? count : count % (bits + 1);
                    bool carry = GetCf();
                    r = v;
                    bool of = ((v & sign) != 0) ^ carry; // defined for a count of 1: MSB XOR CF before the rotate
                    for (int k = 0; k < c; k++)
                    {
                        bool outBit = (r & 1) != 0;
                        r = (r >> 1) | (carry ? sign : 0);
                        carry = outBit;
                    }
                    if (c != 1) of = ((r & sign) != 0) ^ ((r & (sign >> 1)) != 0);
                    WriteOp(i, 0, r, bits);
                    SetArith((carry ? CF : 0) | (of ? OF_ : 0), CF | OF_);
                    return;
                }
            case Mnemonic.Shl or Mnemonic.Sal:
                {
                    r = count >= 64 ? 0 : (v << count) & mask;
                    cf = count <= bits && ((v >> (bits - count)) & 1) != 0;
                    bool of = ((r & sign) != 0) ^ cf;
                    flags = SzpFlags(r, bits) | (cf ? CF : 0) | (of ? OF_ : 0);
                    break;
                }
            case Mnemonic.Shr:
                {
                    r = count >= 64 ? 0 : v >> count;
                    cf = count <= bits && ((v >> (count - 1)) & 1) != 0;
                    // OF (defined for a count of 1) is the original sign. The 286 shifts one bit at a time and
                    // leaves OF from the last step, which is 0 once any bit has been shifted out before it.
                    bool of = (v & sign) != 0 && !(_model286 && count > 1);
                    flags = SzpFlags(r, bits) | (cf ? CF : 0) | (of ? OF_ : 0);
                    break;
                }
            default: // Sar
                {
                    long sv = (long)SignExtend(v, bits);
                    int c = Math.Min(count, bits);
                    r = (ulong)(sv >> Math.Min(c, 63)) & mask;
                    cf = ((sv >> (c - 1)) & 1) != 0;
                    flags = SzpFlags(r, bits) | (cf ? CF : 0);
                    break;
                }
        }
        WriteOp(i, 0, r, bits);
        // AF is undefined for shifts with a nonzero count; silicon leaves it clear on Intel.
        SetArith(flags);
    }

    private void DoubleShift(in Instruction i, bool left)
    {
        int bits = OpBits(i);
        ulong mask = SizeMask(bits);
        ulong dest = ReadOp(i, 0, bits);
        ulong src = ReadReg(i.Op1Register);
        int count = (i.Op2Kind == OpKind.Register ? (int)(Gpr[1] & 0xff) : i.Immediate8) & (bits == 64 ? 0x3f : 0x1f);
        if (count == 0)
        {
            // As for the single shifts: no flags change, but a 32-bit register destination is zero-extended.
            if (bits == 32 && i.Op0Kind == OpKind.Register) WriteReg(i.Op0Register, dest);
            return;
        }
        ulong r;
        bool cf;
        if (bits == 16)
        {
            // 16-bit forms run through a 48-bit funnel dest:src:dest, which is what silicon does for the
            // counts above 16 that the SDM leaves undefined.
            ulong funnel = (dest << 32) | (src << 16) | dest;
            if (left)
            {
                ulong shifted = funnel << count;
                r = (shifted >> 32) & mask;
                cf = ((shifted >> 48) & 1) != 0;
            }
            else
            {
                r = (funnel >> count) & mask;
                cf = ((funnel >> (count - 1)) & 1) != 0;
            }
        }
        else
        {
            if (left)
            {
                r = ((dest << count) | (src >> (bits - count))) & mask;
                cf = ((dest >> (bits - count)) & 1) != 0;
            }
            else
            {
                r = ((dest >> count) | (src << (bits - count))) & mask;
                cf = ((dest >> (count - 1)) & 1) != 0;
            }
        }
        ulong sign = 1UL << (bits - 1);
        bool of = ((r ^ dest) & sign) != 0; // defined for a count of 1: the sign changed
        WriteOp(i, 0, r, bits);
        SetArith(SzpFlags(r, bits) | (cf ? CF : 0) | (of ? OF_ : 0));
    }

    private void Mul(in Instruction i)
    {
        int bits = OpBits(i);
        ulong src = ReadOp(i, 0, bits);
        bool high;
        ulong low;
        switch (bits)
        {
            case 8:
                {
                    ulong p = (Gpr[0] & 0xff) * src;
                    WriteReg(Register.AX, p);
                    high = (p >> 8) != 0;
                    low = p & 0xff;
                    break;
                }
            case 16:
                {
                    ulong p = (Gpr[0] & 0xffff) * src;
                    WriteReg(Register.AX, p);
                    WriteReg(Register.DX, p >> 16);
                    high = (p >> 16) != 0;
                    low = p & 0xffff;
                    break;
                }
            case 32:
                {
                    ulong p = (Gpr[0] & 0xffff_ffff) * src;
                    Gpr[0] = (uint)p;
                    Gpr[2] = p >> 32;
                    high = (p >> 32) != 0;
                    low = p & 0xffff_ffff;
                    break;
                }
            default:
                {
                    ulong hi = Math.BigMul(Gpr[0], src, out low);
                    Gpr[0] = low;
                    Gpr[2] = hi;
                    high = hi != 0;
                    break;
                }
        }
        // SF, ZF, AF and PF are undefined; they are set from the low half here.
        SetArith(SzpFlags(low, bits) | (high ? CF | OF_ : 0));
    }

    private void Imul(in Instruction i)
    {
        int bits = OpBits(i);
        if (i.OpCount == 1)
        {
            long src = (long)SignExtend(ReadOp(i, 0, bits), bits);
            long acc = (long)SignExtend(Gpr[0], bits);
            long p = acc * src;
            bool overflow;
            switch (bits)
            {
                case 8:
                    WriteReg(Register.AX, (ulong)p);
                    overflow = p != (sbyte)p;
                    break;
                case 16:
                    WriteReg(Register.AX, (ulong)p);
                    WriteReg(Register.DX, (ulong)p >> 16);
                    overflow = p != (short)p;
                    break;
                case 32:
                    Gpr[0] = (uint)p;
                    Gpr[2] = (uint)((ulong)p >> 32);
                    overflow = p != (int)p;
                    break;
                default:
                    {
                        long hi = Math.BigMul((long)Gpr[0], src, out long lo);
                        Gpr[0] = (ulong)lo;
                        Gpr[2] = (ulong)hi;
                        overflow = hi != (lo >> 63);
                        p = lo;
                        break;
                    }
            }
            SetArith(SzpFlags((ulong)p, bits) | (overflow ? CF | OF_ : 0));
            return;
        }
        long a = (long)SignExtend(i.OpCount == 2 ? ReadReg(i.Op0Register) : ReadOp(i, 1, bits), bits);
        long b = (long)SignExtend(i.OpCount == 2 ? ReadOp(i, 1, bits) : ReadOp(i, 2, bits), bits);
        long prod;
        bool ovf;
        if (bits == 64)
        {
            long hi = Math.BigMul(a, b, out prod);
            ovf = hi != (prod >> 63);
        }
        else
        {
            prod = a * b;
            ovf = bits == 16 ? prod != (short)prod : prod != (int)prod;
        }
        WriteReg(i.Op0Register, (ulong)prod);
        SetArith(SzpFlags((ulong)prod, bits) | (ovf ? CF | OF_ : 0));
    }

    private void Div(in Instruction i, bool signed)
    {
        int bits = OpBits(i);
        ulong divisor = ReadOp(i, 0, bits);
        if (divisor == 0) throw new CpuFault(ExDE, null);
        if (!signed)
        {
            switch (bits)
            {
                case 8:
                    {
                        ulong dividend = Gpr[0] & 0xffff;
                        ulong q = dividend / divisor;
                        if (q > 0xff) throw new CpuFault(ExDE, null);
                        WriteReg(Register.AL, q);
                        WriteReg(Register.AH, dividend % divisor);
                        break;
                    }
                case 16:
                    {
                        ulong dividend = ((Gpr[2] & 0xffff) << 16) | (Gpr[0] & 0xffff);
                        ulong q = dividend / divisor;
                        if (q > 0xffff) throw new CpuFault(ExDE, null);
                        WriteReg(Register.AX, q);
                        WriteReg(Register.DX, dividend % divisor);
                        break;
                    }
                case 32:
                    {
                        ulong dividend = ((Gpr[2] & 0xffff_ffff) << 32) | (Gpr[0] & 0xffff_ffff);
                        ulong q = dividend / divisor;
                        if (q > 0xffff_ffff) throw new CpuFault(ExDE, null);
                        Gpr[0] = q;
                        Gpr[2] = dividend % divisor;
                        break;
                    }
                default:
                    {
                        if (Gpr[2] >= divisor) throw new CpuFault(ExDE, null); // the quotient would not fit in 64 bits
                        var dividend = new UInt128(Gpr[2], Gpr[0]);
                        Gpr[0] = (ulong)(dividend / divisor);
                        Gpr[2] = (ulong)(dividend % divisor);
                        break;
                    }
            }
        }
        else
        {
            long d = (long)SignExtend(divisor, bits);
            switch (bits)
            {
                case 8:
                    {
                        long dividend = (short)(Gpr[0] & 0xffff);
                        long q = dividend / d;
                        if (q is > sbyte.MaxValue or < sbyte.MinValue) throw new CpuFault(ExDE, null);
                        WriteReg(Register.AL, (ulong)q);
                        WriteReg(Register.AH, (ulong)(dividend % d));
                        break;
                    }
                case 16:
                    {
                        long dividend = (int)(((Gpr[2] & 0xffff) << 16) | (Gpr[0] & 0xffff));
                        long q = dividend / d;
                        if (q is > short.MaxValue or < short.MinValue) throw new CpuFault(ExDE, null);
                        WriteReg(Register.AX, (ulong)q);
                        WriteReg(Register.DX, (ulong)(dividend % d));
                        break;
                    }
                case 32:
                    {
                        long dividend = (long)(((Gpr[2] & 0xffff_ffff) << 32) | (Gpr[0] & 0xffff_ffff));
                        if (dividend == long.MinValue && d == -1) throw new CpuFault(ExDE, null);
                        long q = dividend / d;
                        if (q is > int.MaxValue or < int.MinValue) throw new CpuFault(ExDE, null);
                        Gpr[0] = (uint)q;
                        Gpr[2] = (uint)(dividend % d);
                        break;
                    }
                default:
                    {
                        var dividend = (Int128)new UInt128(Gpr[2], Gpr[0]);
                        if (dividend == Int128.MinValue && d == -1) throw new CpuFault(ExDE, null);
                        Int128 q = dividend / d;
                        if (q > long.MaxValue || q < long.MinValue) throw new CpuFault(ExDE, null);
                        Gpr[0] = (ulong)(long)q;
                        Gpr[2] = (ulong)(long)(dividend % d);
                        break;
                    }
            }
        }
        // All six arithmetic flags are undefined after DIV/IDIV; they are left unchanged here.
    }

    private void BitTest(in Instruction i)
    {
        int bits = OpBits(i);
        ulong offsetValue = ReadOp(i, 1, bits);
        bool registerOffset = i.Op1Kind == OpKind.Register;
        ulong extra = 0;
        int bit;
        if (i.Op0Kind == OpKind.Memory && registerOffset)
        {
            // A register bit offset is signed and may address memory outside the operand.
            long off = (long)SignExtend(offsetValue, bits);
            long unit = off >> (bits == 16 ? 4 : bits == 32 ? 5 : 6);
            extra = (ulong)(unit * (bits / 8));
            bit = (int)(off & (bits - 1));
        }
        else
        {
            bit = (int)(offsetValue & (ulong)(bits - 1));
        }
        ulong v = i.Op0Kind == OpKind.Memory ? ReadMem(i, bits, extra) : ReadReg(i.Op0Register);
        bool set = ((v >> bit) & 1) != 0;
        ulong r = i.Mnemonic switch
        {
            Mnemonic.Bts => v | (1UL << bit),
            Mnemonic.Btr => v & ~(1UL << bit),
            Mnemonic.Btc => v ^ (1UL << bit),
            _ => v,
        };
        if (i.Mnemonic != Mnemonic.Bt)
        {
            if (i.Op0Kind == OpKind.Memory) WriteMem(i, r, bits, extra);
            else WriteReg(i.Op0Register, r);
        }
        // OF, SF, AF and PF are undefined; ZF is unchanged. Only CF is set here.
        SetArith(set ? CF : 0, CF);
    }

    private void BitScan(in Instruction i)
    {
        int bits = OpBits(i);
        ulong src = ReadOp(i, 1, bits);
        if (src == 0)
        {
            // ZF=1; the destination is left unchanged (as silicon does; the SDM calls it undefined).
            SetArith(ZF, ZF);
            return;
        }
        int index = i.Mnemonic == Mnemonic.Bsf ? BitOperations.TrailingZeroCount(src) : 63 - BitOperations.LeadingZeroCount(src);
        WriteReg(i.Op0Register, (ulong)index);
        SetArith(0, ZF);
    }

    private void Daa()
    {
        ulong al = Gpr[0] & 0xff;
        bool cf = GetCf(), af = GetAf();
        ulong oldAl = al;
        bool newCf = false, newAf = false;
        if ((al & 0x0f) > 9 || af)
        {
            al = (al + 6) & 0xff;
            newCf = cf || oldAl + 6 > 0xff;
            newAf = true;
        }
        if (oldAl > 0x99 || cf)
        {
            al = (al + 0x60) & 0xff;
            newCf = true;
        }
        WriteReg(Register.AL, al);
        // OF is undefined; left clear.
        SetArith(SzpFlags(al, 8) | (newCf ? CF : 0) | (newAf ? AF : 0));
    }

    private void Das()
    {
        ulong al = Gpr[0] & 0xff;
        bool cf = GetCf(), af = GetAf();
        ulong oldAl = al;
        bool newCf = false, newAf = false;
        if ((al & 0x0f) > 9 || af)
        {
            newCf = cf || al < 6;
            al = (al - 6) & 0xff;
            newAf = true;
        }
        if (oldAl > 0x99 || cf)
        {
            al = (al - 0x60) & 0xff;
            newCf = true;
        }
        WriteReg(Register.AL, al);
        SetArith(SzpFlags(al, 8) | (newCf ? CF : 0) | (newAf ? AF : 0));
    }

    private void AaaAas(bool add)
    {
        // The 386-and-later forms (SDM): AAA adds 0x106 to AX as one 16-bit add (a carry out of AL reaches AH);
        // AAS subtracts 6 from AX and then 1 from AH.
        ulong ax = Gpr[0] & 0xffff;
        bool adjust = (ax & 0x0f) > 9 || GetAf();
        if (adjust)
        {
            if (add)
            {
                ax = (ax + 0x106) & 0xffff;
            }
            else
            {
                ax = (ax - 6) & 0xffff;
                ax = (ax - 0x100) & 0xffff;
            }
        }
        ax &= 0xff0f;
        WriteReg(Register.AX, ax);
        // OF, SF, ZF and PF are undefined; computed from AL here.
        SetArith(SzpFlags(ax & 0xff, 8) | (adjust ? AF | CF : 0));
    }

    private void Aam(byte imm)
    {
        if (imm == 0) throw new CpuFault(ExDE, null);
        ulong al = Gpr[0] & 0xff;
        ulong ah = al / imm, nal = al % imm;
        WriteReg(Register.AX, (ah << 8) | nal);
        SetArith(SzpFlags(nal, 8));
    }

    private void Aad(byte imm)
    {
        ulong al = Gpr[0] & 0xff, ah = (Gpr[0] >> 8) & 0xff;
        ulong r = (al + ah * imm) & 0xff;
        WriteReg(Register.AX, r);
        SetArith(SzpFlags(r, 8));
    }
}
