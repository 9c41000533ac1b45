// SSE/SSE2 floating point: packed and scalar arithmetic, compares, COMIS/UCOMIS, conversions, and the
// reciprocal estimates, lane by lane through SseFloat with MXCSR's rounding mode and exception flags. An
// unmasked exception in any lane leaves the destination unchanged and raises #XM (CR4.OSXMMEXCPT) or #UD.
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    private bool FloatInstruction(in Instruction i)
    {
        var m = i.Mnemonic;
        switch (m)
        {
            case Mnemonic.Addps: FpArith(i, SseFloat.Op.Add, true, true); return true;
            case Mnemonic.Addpd: FpArith(i, SseFloat.Op.Add, false, true); return true;
            case Mnemonic.Addss: FpArith(i, SseFloat.Op.Add, true, false); return true;
            case Mnemonic.Addsd: FpArith(i, SseFloat.Op.Add, false, false); return true;
            case Mnemonic.Subps: FpArith(i, SseFloat.Op.Sub, true, true); return true;
            case Mnemonic.Subpd: FpArith(i, SseFloat.Op.Sub, false, true); return true;
            case Mnemonic.Subss: FpArith(i, SseFloat.Op.Sub, true, false); return true;
            case Mnemonic.Subsd: FpArith(i, SseFloat.Op.Sub, false, false); return true;
            case Mnemonic.Mulps: FpArith(i, SseFloat.Op.Mul, true, true); return true;
            case Mnemonic.Mulpd: FpArith(i, SseFloat.Op.Mul, false, true); return true;
            case Mnemonic.Mulss: FpArith(i, SseFloat.Op.Mul, true, false); return true;
            case Mnemonic.Mulsd: FpArith(i, SseFloat.Op.Mul, false, false); return true;
            case Mnemonic.Divps: FpArith(i, SseFloat.Op.Div, true, true); return true;
            case Mnemonic.Divpd: FpArith(i, SseFloat.Op.Div, false, true); return true;
            case Mnemonic.Divss: FpArith(i, SseFloat.Op.Div, true, false); return true;
            case Mnemonic.Divsd: FpArith(i, SseFloat.Op.Div, false, false); return true;
            case Mnemonic.Minps: FpArith(i, SseFloat.Op.Min, true, true); return true;
            case Mnemonic.Minpd: FpArith(i, SseFloat.Op.Min, false, true); return true;
            case Mnemonic.Minss: FpArith(i, SseFloat.Op.Min, true, false); return true;
            case Mnemonic.Minsd: FpArith(i, SseFloat.Op.Min, false, false); return true;
            case Mnemonic.Maxps: FpArith(i, SseFloat.Op.Max, true, true); return true;
            case Mnemonic.Maxpd: FpArith(i, SseFloat.Op.Max, false, true); return true;
            case Mnemonic.Maxss: FpArith(i, SseFloat.Op.Max, true, false); return true;
            case Mnemonic.Maxsd: FpArith(i, SseFloat.Op.Max, false, false); return true;
            case Mnemonic.Sqrtps: FpArith(i, SseFloat.Op.Sqrt, true, true); return true;
            case Mnemonic.Sqrtpd: FpArith(i, SseFloat.Op.Sqrt, false, true); return true;
            case Mnemonic.Sqrtss: FpArith(i, SseFloat.Op.Sqrt, true, false); return true;
            case Mnemonic.Sqrtsd: FpArith(i, SseFloat.Op.Sqrt, false, false); return true;
            case Mnemonic.Cmpps: FpCompare(i, true, true); return true;
            case Mnemonic.Cmppd: FpCompare(i, false, true); return true;
            case Mnemonic.Cmpss: FpCompare(i, true, false); return true;
            case Mnemonic.Cmpsd: FpCompare(i, false, false); return true;
            case Mnemonic.Comiss or Mnemonic.Ucomiss or Mnemonic.Comisd or Mnemonic.Ucomisd:
                {
                    bool single = m is Mnemonic.Comiss or Mnemonic.Ucomiss;
                    ulong mask = single ? 0xffff_ffffUL : ulong.MaxValue;
                    uint flags = 0;
                    uint result = SseFloat.CompareFlags((ulong)Dest(i) & mask, (ulong)ReadVec(i, 1) & mask, single,
                        signalQuiet: m is Mnemonic.Comiss or Mnemonic.Comisd, Mxcsr, ref flags);
                    CommitFp(flags);
                    SetArith(result, ArithMask); // OF, SF and AF are cleared
                    return true;
                }
            case Mnemonic.Cvtsi2ss or Mnemonic.Cvtsi2sd:
                {
                    bool single = m == Mnemonic.Cvtsi2ss;
                    int bits = OpBits(i, 1);
                    long v = (long)SignExtend(ReadOp(i, 1, bits), bits);
                    uint flags = 0;
                    ulong r = SseFloat.FromInt(v, single, Mxcsr, ref flags);
                    CommitFp(flags);
                    SetLane(ref Dest(i), 0, single ? 32 : 64, r);
                    return true;
                }
            case Mnemonic.Cvtss2si or Mnemonic.Cvttss2si or Mnemonic.Cvtsd2si or Mnemonic.Cvttsd2si:
                {
                    bool single = m is Mnemonic.Cvtss2si or Mnemonic.Cvttss2si;
                    ulong src = (ulong)ReadVec(i, 1) & (single ? 0xffff_ffffUL : ulong.MaxValue);
                    uint flags = 0;
                    ulong r = SseFloat.ToInt(src, single, truncate: m is Mnemonic.Cvttss2si or Mnemonic.Cvttsd2si, RegBits[(int)i.Op0Register], Mxcsr, ref flags);
                    CommitFp(flags);
                    WriteReg(i.Op0Register, r);
                    return true;
                }
            case Mnemonic.Cvtss2sd:
                {
                    uint flags = 0;
                    ulong r = SseFloat.SingleToDouble((uint)ReadVec(i, 1), Mxcsr, ref flags);
                    CommitFp(flags);
                    SetLane(ref Dest(i), 0, 64, r);
                    return true;
                }
            case Mnemonic.Cvtsd2ss:
                {
                    uint flags = 0;
                    ulong r = SseFloat.DoubleToSingle((ulong)ReadVec(i, 1), Mxcsr, ref flags);
                    CommitFp(flags);
                    SetLane(ref Dest(i), 0, 32, r);
                    return true;
                }
            case Mnemonic.Cvtdq2ps or Mnemonic.Cvtps2dq or Mnemonic.Cvttps2dq:
                {
                    UInt128 s = ReadVec(i, 1), r = 0;
                    uint flags = 0;
                    for (int k = 0; k < 4; k++)
                    {
                        ulong x = (ulong)(s >> (32 * k)) & 0xffff_ffff;
                        ulong y = m == Mnemonic.Cvtdq2ps
                            ? SseFloat.FromInt((int)x, single: true, Mxcsr, ref flags)
                            : SseFloat.ToInt(x, single: true, truncate: m == Mnemonic.Cvttps2dq, 32, Mxcsr, ref flags);
                        r |= (UInt128)(y & 0xffff_ffff) << (32 * k);
                    }
                    CommitFp(flags);
                    Dest(i) = r;
                    return true;
                }
            case Mnemonic.Cvtdq2pd or Mnemonic.Cvtps2pd:
                {
                    ulong s = (ulong)ReadVec(i, 1);
                    uint flags = 0;
                    ulong lo, hi;
                    if (m == Mnemonic.Cvtdq2pd)
                    {
                        lo = BitConverter.DoubleToUInt64Bits((int)(uint)s);
                        hi = BitConverter.DoubleToUInt64Bits((int)(uint)(s >> 32));
                    }
                    else
                    {
                        lo = SseFloat.SingleToDouble((uint)s, Mxcsr, ref flags);
                        hi = SseFloat.SingleToDouble((uint)(s >> 32), Mxcsr, ref flags);
                    }
                    CommitFp(flags);
                    Dest(i) = new UInt128(hi, lo);
                    return true;
                }
            case Mnemonic.Cvtpd2dq or Mnemonic.Cvttpd2dq or Mnemonic.Cvtpd2ps:
                {
                    UInt128 s = ReadVec(i, 1);
                    uint flags = 0;
                    ulong lo, hi;
                    if (m == Mnemonic.Cvtpd2ps)
                    {
                        lo = SseFloat.DoubleToSingle((ulong)s, Mxcsr, ref flags);
                        hi = SseFloat.DoubleToSingle((ulong)(s >> 64), Mxcsr, ref flags);
                    }
                    else
                    {
                        bool t = m == Mnemonic.Cvttpd2dq;
                        lo = SseFloat.ToInt((ulong)s, single: false, t, 32, Mxcsr, ref flags);
                        hi = SseFloat.ToInt((ulong)(s >> 64), single: false, t, 32, Mxcsr, ref flags);
                    }
                    CommitFp(flags);
                    Dest(i) = (lo & 0xffff_ffff) | ((hi & 0xffff_ffff) << 32); // the upper quadword is zeroed
                    return true;
                }
            case Mnemonic.Rcpps or Mnemonic.Rcpss or Mnemonic.Rsqrtps or Mnemonic.Rsqrtss:
                {
                    bool packed = m is Mnemonic.Rcpps or Mnemonic.Rsqrtps, sqrt = m is Mnemonic.Rsqrtps or Mnemonic.Rsqrtss;
                    UInt128 s = ReadVec(i, 1), r = packed ? 0 : Dest(i);
                    for (int k = 0; k < (packed ? 4 : 1); k++)
                        SetLane(ref r, k, 32, Estimate((uint)(s >> (32 * k)), sqrt));
                    Dest(i) = r;
                    return true;
                }
            default:
                return false;
        }
    }

    private static void SetLane(ref UInt128 v, int lane, int bits, ulong value)
    {
        UInt128 mask = (bits == 64 ? (UInt128)ulong.MaxValue : 0xffff_ffffUL) << (lane * bits);
        v = (v & ~mask) | (((UInt128)value << (lane * bits)) & mask);
    }

    /// <summary>Sets the flags in MXCSR; an unmasked one is #XM (CR4.OSXMMEXCPT) or #UD, before anything is written.</summary>
    private void CommitFp(uint flags)
    {
        Mxcsr |= flags & 0x3f;
        uint unmasked = flags & ~(Mxcsr >> 7) & 0x3f;
        if (unmasked != 0) throw new CpuFault((Cr4 & 0x400) != 0 ? ExXM : ExUD, null);
    }

    private void FpArith(in Instruction i, SseFloat.Op op, bool single, bool packed)
    {
        UInt128 a = Dest(i), b = ReadVec(i, 1), r = a;
        int bits = single ? 32 : 64, lanes = packed ? 128 / bits : 1;
        ulong mask = single ? 0xffff_ffffUL : ulong.MaxValue;
        uint flags = 0;
        for (int k = 0; k < lanes; k++)
        {
            ulong x = (ulong)(a >> (k * bits)) & mask, y = (ulong)(b >> (k * bits)) & mask;
            SetLane(ref r, k, bits, SseFloat.Arith(op, x, y, single, Mxcsr, ref flags));
        }
        CommitFp(flags);
        Dest(i) = r;
    }

    private void FpCompare(in Instruction i, bool single, bool packed)
    {
        UInt128 a = Dest(i), b = ReadVec(i, 1), r = a;
        int bits = single ? 32 : 64, lanes = packed ? 128 / bits : 1;
        ulong mask = single ? 0xffff_ffffUL : ulong.MaxValue;
        int predicate = i.Immediate8 & 7;
        uint flags = 0;
        for (int k = 0; k < lanes; k++)
        {
            ulong x = (ulong)(a >> (k * bits)) & mask, y = (ulong)(b >> (k * bits)) & mask;
            SetLane(ref r, k, bits, SseFloat.Compare(predicate, x, y, single, Mxcsr, ref flags) ? mask : 0);
        }
        CommitFp(flags);
        Dest(i) = r;
    }

    /// <summary>
    /// RCP/RSQRT: silicon returns an approximation within 1.5 × 2^-12 relative error whose exact bits differ between
    /// processor generations; this CPU returns the correctly rounded single-precision value (as QEMU does), which is
    /// within that bound. Denormal inputs count as zero; tiny reciprocals are flushed to zero of the operand's sign
    /// (the SDM leaves inputs near 2^126 to the implementation: here, as on the AMD host it was checked against,
    /// every |x| ≥ 2^126, whose reciprocal is at most the smallest normal); no MXCSR flags change.
    /// </summary>
    private static ulong Estimate(uint bits, bool sqrt)
    {
        if ((bits & 0x7f80_0000) == 0) bits &= 0x8000_0000; // denormal: zero
        float x = BitConverter.UInt32BitsToSingle(bits);
        if (float.IsNaN(x)) return bits | 0x0040_0000;
        if (sqrt)
        {
            if (x == 0) return (bits & 0x8000_0000) | 0x7f80_0000; // ±0 -> ±inf
            if (x < 0) return 0xffc0_0000;                          // negative -> default NaN
            return BitConverter.SingleToUInt32Bits((float)(1.0 / Math.Sqrt(x)));
        }
        if ((bits & 0x7fff_ffff) >= 0x7e80_0000) return bits & 0x8000_0000; // |x| ≥ 2^126 (or ∞): tiny, flushed to zero
        return BitConverter.SingleToUInt32Bits((float)(1.0 / x));
    }
}
