// Scalar IEEE-754 arithmetic with SSE semantics (Intel SDM vol. 1 §4.8, §10.4, §11.5): single and double
// precision, the four MXCSR rounding modes, DAZ and FTZ, and the six exception flags (IE, DE, ZE, OE, UE, PE)
// with x86's choices where IEEE leaves one open: a NaN result is the first source's NaN quieted, else the
// second's; invalid operations give the negative default QNaN; tininess is detected before rounding.
// Results are computed with the host's round-to-nearest double arithmetic plus an exact error term (TwoSum for
// add and subtract, a fused multiply-add for the rest), which decides directed rounding, ties after double
// rounding, and the precision flag. Values travel as raw bits so NaN payloads survive.
using System.Numerics;

namespace ActorVmm.Native.Soft;

internal static class SseFloat
{
    public const uint IE = 1, DE = 2, ZE = 4, OE = 8, UE = 0x10, PE = 0x20, Daz = 0x40, Ftz = 0x8000;

    public enum Op : byte
    {
        Add,
        Sub,
        Mul,
        Div,
        Min,
        Max,
        Sqrt,
    }

    private const ulong DefaultNaN64 = 0xfff8_0000_0000_0000, DefaultNaN32 = 0xffc0_0000;

    public static bool IsNaN(ulong bits, bool single) => single
        ? ((uint)bits & 0x7fff_ffff) > 0x7f80_0000
        : (bits & 0x7fff_ffff_ffff_ffff) > 0x7ff0_0000_0000_0000;

    public static bool IsSNaN(ulong bits, bool single) => IsNaN(bits, single)
        && (single ? (bits & 0x0040_0000) == 0 : (bits & 0x0008_0000_0000_0000) == 0);

    private static ulong Quiet(ulong bits, bool single) => single ? (uint)bits | 0x0040_0000 : bits | 0x0008_0000_0000_0000;

    private static bool IsDenormal(ulong bits, bool single) => single
        ? ((uint)bits & 0x7f80_0000) == 0 && ((uint)bits & 0x007f_ffff) != 0
        : (bits & 0x7ff0_0000_0000_0000) == 0 && (bits & 0x000f_ffff_ffff_ffff) != 0;

    private static double ToDouble(ulong bits, bool single) => single ? BitConverter.UInt32BitsToSingle((uint)bits) : BitConverter.UInt64BitsToDouble(bits);

    /// <summary>Applies DAZ and records DE for a denormal input.</summary>
    private static ulong Input(ulong bits, bool single, uint mxcsr, ref uint flags)
    {
        if (!IsDenormal(bits, single)) return bits;
        if ((mxcsr & Daz) != 0) return single ? (uint)bits & 0x8000_0000 : bits & 0x8000_0000_0000_0000;
        flags |= DE;
        return bits;
    }

    /// <summary>dest op src (or op src for SQRT): the result's bits; flags gain what the operation raised.</summary>
    public static ulong Arith(Op op, ulong dest, ulong src, bool single, uint mxcsr, ref uint flags)
    {
        if (op == Op.Sqrt) dest = src;
        bool nanA = IsNaN(dest, single), nanB = IsNaN(src, single);
        if (op is Op.Min or Op.Max)
        {
            // Any NaN, or two zeros, give the source (a denormal one as zero under DAZ); a NaN (quiet or signalling)
            // is invalid.
            if (nanA || nanB)
            {
                flags |= IE;
                uint ignored = 0;
                return Input(src, single, mxcsr, ref ignored);
            }
            ulong ma = Input(dest, single, mxcsr, ref flags), mb = Input(src, single, mxcsr, ref flags);
            double x = ToDouble(ma, single), y = ToDouble(mb, single);
            if (op == Op.Min) return x < y ? ma : mb;
            return x > y ? ma : mb;
        }
        if (nanA || nanB)
        {
            if (IsSNaN(dest, single) || IsSNaN(src, single)) flags |= IE;
            return nanA && op != Op.Sqrt ? Quiet(dest, single) : Quiet(nanB ? src : dest, single);
        }
        // A denormal operand's DE yields to invalid and divide-by-zero (SDM vol. 1 §11.5.2, exception precedence).
        uint denormal = 0;
        ulong ba = Input(dest, single, mxcsr, ref denormal), bb = Input(src, single, mxcsr, ref denormal);
        double a = ToDouble(ba, single), b = ToDouble(bb, single);
        double r, err;
        bool? tinyAfter = null;
        switch (op)
        {
            case Op.Add or Op.Sub:
                {
                    if (op == Op.Sub) b = -b;
                    if (double.IsInfinity(a) && double.IsInfinity(b) && a != b) return Invalid(single, ref flags);
                    r = a + b;
                    double bv = r - a;
                    err = double.IsInfinity(r) ? 0 : (a - (r - bv)) + (b - bv);
                    // An exact zero from operands of opposite signs is -0 when rounding down, +0 otherwise.
                    if (r == 0 && err == 0 && (a != 0 || b != 0 || double.IsNegative(a) != double.IsNegative(b)))
                        r = ((mxcsr >> 13) & 3) == 1 ? -0.0 : 0.0;
                    break;
                }
            case Op.Mul:
                if ((double.IsInfinity(a) && b == 0) || (double.IsInfinity(b) && a == 0)) return Invalid(single, ref flags);
                r = a * b;
                if (double.IsInfinity(r) || double.IsInfinity(a) || double.IsInfinity(b) || a == 0 || b == 0) err = 0;
                else if (!single) err = DoubleErrorSign(op, a, b, r, mxcsr, out tinyAfter);
                else err = Math.FusedMultiplyAdd(a, b, -r); // exact: single operands' products are far from double underflow
                break;
            case Op.Div:
                if ((a == 0 && b == 0) || (double.IsInfinity(a) && double.IsInfinity(b))) return Invalid(single, ref flags);
                if (b == 0)
                {
                    // ∞ / 0 is an exact ∞: divide-by-zero is for finite dividends.
                    if (double.IsFinite(a)) flags |= ZE;
                    else flags |= denormal;
                    return Pack(Math.Sign(a) * Math.Sign(1 / b) < 0 ? double.NegativeInfinity : double.PositiveInfinity, single);
                }
                r = a / b;
                if (double.IsInfinity(r) || double.IsInfinity(a) || double.IsInfinity(b) || a == 0) err = 0;
                else if (!single) err = DoubleErrorSign(op, a, b, r, mxcsr, out tinyAfter);
                else err = Math.FusedMultiplyAdd(-r, b, a) * Math.Sign(b);
                break;
            default: // Sqrt
                if (a < 0) return Invalid(single, ref flags); // -0 is fine: sqrt(-0) = -0
                r = Math.Sqrt(a);
                if (double.IsInfinity(r) || a == 0) err = 0;
                else if (!single) err = DoubleErrorSign(op, a, b, r, mxcsr, out tinyAfter);
                else err = Math.FusedMultiplyAdd(-r, r, a);
                break;
        }
        flags |= denormal;
        bool finite = !double.IsInfinity(a) && !double.IsInfinity(b);
        if (!single && finite && double.IsInfinity(r) && ((mxcsr >> 13) & 3) != 0 && !ReachesTwoTo1024(op == Op.Sub ? Op.Add : op, a, b)) // b: negated for SUB
        {
            // Past the largest double but below 2^1024: a directed rounding may stay finite (Round decides).
            err = Math.Sign(r);
            r = Math.Sign(r) * double.MaxValue;
        }
        return Round(r, err, single, mxcsr, ref flags, fromFinite: finite, tinyAfterRounding: tinyAfter);
    }

    /// <summary>
    /// The sign of (exact result − <paramref name="r"/>) for a double multiply, divide or square root of finite,
    /// nonzero operands, where r is the host's correctly rounded (to nearest) result. A fused multiply-add gives the
    /// exact error only when it is representable, which fails near and in the subnormal range (a tiny product or
    /// quotient, a tiny dividend, the square root of a tiny value); so the operation is repeated on the operands
    /// scaled by powers of two into [1, 2) (for the square root, by an even power into [1, 4)), where the error is
    /// exact, and compared with r scaled the same way (exact: r is a double on a grid at least that coarse).
    /// </summary>
    private static double DoubleErrorSign(Op op, double a, double b, double r, uint mxcsr, out bool? tinyAfterRounding)
    {
        double q, e; // the scaled result and the sign of (exact scaled result − q)
        int scale;   // the exact result is (q + error) × 2^scale
        if (op == Op.Sqrt)
        {
            int m = Math.ILogB(a) >> 1;
            double x = Math.ScaleB(a, -2 * m);
            q = Math.Sqrt(x);
            e = Math.FusedMultiplyAdd(-q, q, x);
            scale = m;
        }
        else
        {
            int ea = Math.ILogB(a), eb = Math.ILogB(b);
            double x = Math.ScaleB(a, -ea), y = Math.ScaleB(b, -eb);
            if (op == Op.Mul)
            {
                q = x * y;
                e = Math.FusedMultiplyAdd(x, y, -q);
                scale = ea + eb;
            }
            else
            {
                q = x / y;
                e = Math.FusedMultiplyAdd(-q, y, x) * Math.Sign(y);
                scale = ea - eb;
            }
        }
        double d = q - Math.ScaleB(r, -scale); // a multiple of q's ulp, so it outweighs e unless it is zero
        // Tininess after rounding: q rounded in MXCSR's mode is the result with an unbounded exponent, scaled.
        int rc = (int)(mxcsr >> 13) & 3, dir = Math.Sign(e);
        if ((rc == 1 && dir < 0) || (rc == 3 && q > 0 && dir < 0)) q = Math.BitDecrement(q);
        else if ((rc == 2 && dir > 0) || (rc == 3 && q < 0 && dir > 0)) q = Math.BitIncrement(q);
        tinyAfterRounding = Math.Abs(q) < Math.ScaleB(1.0, -1022 - scale);
        return d != 0 ? Math.Sign(d) : Math.Sign(e);
    }

    /// <summary>Whether the exact a op b (finite, and rounding to nearest to an infinity) is at least 2^1024 in magnitude.</summary>
    private static bool ReachesTwoTo1024(Op op, double a, double b)
    {
        // Computed a quarter as large, where nothing overflows: the exact quarter reaches 2^1022 or not.
        double q, e;
        if (op is Op.Add or Op.Sub)
        {
            double x = a / 4, y = (op == Op.Sub ? -b : b) / 4;
            q = x + y;
            double bv = q - x;
            e = (x - (q - bv)) + (y - bv);
        }
        else if (op == Op.Mul)
        {
            double x = a / 4;
            q = x * b;
            e = Math.FusedMultiplyAdd(x, b, -q);
        }
        else
        {
            double x = a / 4;
            q = x / b;
            e = Math.FusedMultiplyAdd(-q, b, x) * Math.Sign(b);
        }
        const double TwoTo1022 = 4.49423283715578976932e307;
        return Math.Abs(q) > TwoTo1022 || (Math.Abs(q) == TwoTo1022 && Math.Sign(e) != -Math.Sign(q));
    }

    private static ulong Invalid(bool single, ref uint flags)
    {
        flags |= IE;
        return single ? DefaultNaN32 : DefaultNaN64;
    }

    private static ulong Pack(double v, bool single) => single ? BitConverter.SingleToUInt32Bits((float)v) : BitConverter.DoubleToUInt64Bits(v);

    /// <summary>
    /// Rounds the exact value r + err (r: the round-to-nearest double, err: the exact remainder's sign and size) to
    /// the target precision in MXCSR's rounding mode, with OE, UE and PE. Overflow and tininess are decided, as on
    /// x86, after rounding: on the value rounded to the target's precision with an unbounded exponent (SDM vol. 1
    /// §4.9.1.4-5), so a result just below the smallest normal that rounds up to it is not tiny, and one just above
    /// the largest finite value that rounds down to it does not overflow. <paramref name="tinyAfterRounding"/>
    /// overrides the tininess test for a double result whose err gives only a sign (DoubleErrorSign).
    /// </summary>
    public static ulong Round(double r, double err, bool single, uint mxcsr, ref uint flags, bool fromFinite = true, bool? tinyAfterRounding = null)
    {
        int rc = (int)(mxcsr >> 13) & 3;
        if (double.IsInfinity(r))
        {
            if (!fromFinite) return Pack(r, single);
            return Overflow(r > 0, single, rc, ref flags);
        }
        double t; // the result in the target format, as a double
        int dir;  // sign of (exact - t)
        if (single)
        {
            if (float.IsInfinity((float)r))
            {
                // Past the largest single: overflow if the exact value rounds (unbounded) to 2^128 or more.
                int sign = Math.Sign(r);
                bool from2to128 = Math.Abs(r) > TwoTo128 || (Math.Abs(r) == TwoTo128 && Math.Sign(err) != -sign);
                bool fromHalfway = Math.Abs(r) > MaxSinglePlusHalfUlp || (Math.Abs(r) == MaxSinglePlusHalfUlp && Math.Sign(err) != -sign);
                bool up = rc == 0 ? fromHalfway : (rc == 2 && sign > 0) || (rc == 1 && sign < 0);
                if (from2to128 || up) return Overflow(sign > 0, true, rc, ref flags);
                flags |= PE;
                return Pack(sign * (double)float.MaxValue, true);
            }
            t = RoundToSingle(r, err, rc, out dir);
            if (float.IsInfinity((float)t)) return Overflow(t > 0, true, rc, ref flags);
        }
        else
        {
            t = r;
            dir = Math.Sign(err);
            if (rc != 0 && dir != 0)
            {
                bool stepDown = (rc == 1 && dir < 0) || (rc == 3 && t > 0 && dir < 0);
                bool stepUp = (rc == 2 && dir > 0) || (rc == 3 && t < 0 && dir > 0);
                if (stepDown) t = Math.BitDecrement(t);
                else if (stepUp) t = Math.BitIncrement(t);
                if (double.IsInfinity(t)) return Overflow(t > 0, false, rc, ref flags);
            }
        }
        bool inexact = dir != 0;
        bool tiny;
        if (single)
        {
            // r and err scaled by 2^64 (exactly) round to single precision in the normal range: an unbounded exponent.
            tiny = (r != 0 || err != 0) && Math.Abs(r) <= MinNormalSingle
                && Math.Abs(RoundToSingle(r * TwoTo64, err * TwoTo64, rc, out _)) < MinNormalSingle * TwoTo64;
        }
        else
        {
            // Exact results (err zero) need no rounding; for others the caller may know better (r may be zero,
            // rounded from a nonzero tiny value: err then says so).
            tiny = tinyAfterRounding ?? ((r != 0 || err != 0) && (Math.Abs(r) < MinNormalDouble
                || (Math.Abs(r) == MinNormalDouble && Math.Sign(err) == -Math.Sign(r))));
        }
        if (tiny && (mxcsr & Ftz) != 0 && (mxcsr & 0x800) != 0)
        {
            flags |= UE | PE;
            return Pack(double.IsNegative(r) ? -0.0 : 0.0, single);
        }
        if (tiny && (inexact || (mxcsr & 0x800) == 0)) flags |= UE;
        if (inexact) flags |= PE;
        return Pack(t, single);
    }

    private const double MinNormalSingle = 1.1754943508222875e-38, MinNormalDouble = 2.2250738585072014e-308;
    private const double TwoTo64 = 18446744073709551616.0, TwoTo128 = 3.4028236692093846e38, MaxSinglePlusHalfUlp = 3.4028235677973366e38;

    /// <summary>
    /// r + err rounded to single precision in mode rc (r finite; the subnormal range has the subnormal grid), as a
    /// double; <paramref name="dir"/> is the sign of (exact − result). May be infinite only past the largest single.
    /// </summary>
    private static double RoundToSingle(double r, double err, int rc, out int dir)
    {
        float f = (float)r;
        double fd = f;
        dir = fd != r ? Math.Sign(r - fd) : Math.Sign(err);
        if (rc == 0 && fd != r && err != 0 && !float.IsInfinity(f))
        {
            // r may sit exactly halfway between two floats only because of the first rounding: err breaks the tie.
            float g = r > fd ? MathF.BitIncrement(f) : MathF.BitDecrement(f);
            if (r - fd == (double)g - r && Math.Sign(err) == Math.Sign(r - fd))
            {
                f = g;
                fd = f;
                dir = -Math.Sign(err);
            }
        }
        if (rc != 0 && dir != 0 && !float.IsInfinity(f))
        {
            // dir is the sign of (exact - f): round down (1), up (2) or toward zero (3) from there.
            bool stepDown = (rc == 1 && dir < 0) || (rc == 3 && f > 0 && dir < 0);
            bool stepUp = (rc == 2 && dir > 0) || (rc == 3 && f < 0 && dir > 0);
            if (stepDown) f = MathF.BitDecrement(f);
            else if (stepUp) f = MathF.BitIncrement(f);
        }
        return f;
    }

    private static ulong Overflow(bool positive, bool single, int rc, ref uint flags)
    {
        flags |= OE | PE;
        bool toInfinity = rc == 0 || (rc == 1 && !positive) || (rc == 2 && positive);
        double max = single ? float.MaxValue : double.MaxValue;
        double v = toInfinity ? double.PositiveInfinity : max;
        return Pack(positive ? v : -v, single);
    }

    /// <summary>CMPPS/CMPSS predicate 0-7 (EQ, LT, LE, UNORD, NEQ, NLT, NLE, ORD): all ones or zero.</summary>
    public static bool Compare(int predicate, ulong a, ulong b, bool single, uint mxcsr, ref uint flags)
    {
        bool unordered = IsNaN(a, single) || IsNaN(b, single);
        bool signalling = predicate is 1 or 2 or 5 or 6;
        if (unordered)
        {
            if (signalling || IsSNaN(a, single) || IsSNaN(b, single)) flags |= IE;
        }
        else
        {
            a = Input(a, single, mxcsr, ref flags);
            b = Input(b, single, mxcsr, ref flags);
        }
        double x = ToDouble(a, single), y = ToDouble(b, single);
        return (predicate & 7) switch
        {
            0 => !unordered && x == y,
            1 => !unordered && x < y,
            2 => !unordered && x <= y,
            3 => unordered,
            4 => unordered || x != y,
            5 => unordered || !(x < y),
            6 => unordered || !(x <= y),
            _ => !unordered,
        };
    }

    /// <summary>COMIS*/UCOMIS*: ZF, PF, CF (unordered 111, greater 000, less 001, equal 100).</summary>
    public static uint CompareFlags(ulong a, ulong b, bool single, bool signalQuiet, uint mxcsr, ref uint flags)
    {
        if (IsNaN(a, single) || IsNaN(b, single))
        {
            if (signalQuiet || IsSNaN(a, single) || IsSNaN(b, single)) flags |= IE;
            return SoftCpu.ZF | SoftCpu.PF | SoftCpu.CF;
        }
        a = Input(a, single, mxcsr, ref flags);
        b = Input(b, single, mxcsr, ref flags);
        double x = ToDouble(a, single), y = ToDouble(b, single);
        return x > y ? 0 : x < y ? SoftCpu.CF : SoftCpu.ZF;
    }

    /// <summary>Float to integer (CVT*2SI, CVT*2DQ): MXCSR rounding or truncation; NaN and out of range give the integer indefinite with IE.</summary>
    public static ulong ToInt(ulong bits, bool single, bool truncate, int intBits, uint mxcsr, ref uint flags)
    {
        ulong indefinite = intBits == 64 ? 0x8000_0000_0000_0000UL : 0x8000_0000UL;
        if (IsNaN(bits, single))
        {
            flags |= IE;
            return indefinite;
        }
        // Conversions to integer do not signal the denormal exception (SDM: their SIMD exceptions are only invalid and
        // precision); DAZ still reads a denormal as zero.
        uint noDenormalFlag = 0;
        bits = Input(bits, single, mxcsr, ref noDenormalFlag);
        double v = ToDouble(bits, single);
        int rc = truncate ? 3 : (int)(mxcsr >> 13) & 3;
        double rounded = rc switch
        {
            0 => Math.Round(v, MidpointRounding.ToEven),
            1 => Math.Floor(v),
            2 => Math.Ceiling(v),
            _ => Math.Truncate(v),
        };
        double lo = intBits == 64 ? -9223372036854775808.0 : int.MinValue, hiExclusive = intBits == 64 ? 9223372036854775808.0 : 2147483648.0;
        if (double.IsInfinity(rounded) || rounded < lo || rounded >= hiExclusive)
        {
            flags |= IE;
            return indefinite;
        }
        if (rounded != v) flags |= PE;
        long n = (long)rounded;
        return intBits == 64 ? (ulong)n : (uint)(int)n;
    }

    /// <summary>Integer to float (CVTSI2S*, CVTDQ2P*), rounded by MXCSR.</summary>
    public static ulong FromInt(long value, bool single, uint mxcsr, ref uint flags)
    {
        double r = value;
        // The exact error of the first rounding, as a sign: compare in 128-bit integers.
        Int128 back = (Int128)r;
        double err = back == value ? 0 : back < value ? 1 : -1;
        if (Math.Abs(r) >= 9.2233720368547758e18 && back != value) err = (Int128)value > back ? 1 : -1;
        uint dummy = 0;
        ulong result = Round(r, err, single, mxcsr & ~Ftz, ref dummy);
        flags |= dummy & PE;
        return result;
    }

    /// <summary>Single to double (exact; a signalling NaN is quieted with IE).</summary>
    public static ulong SingleToDouble(uint bits, uint mxcsr, ref uint flags)
    {
        if (IsNaN(bits, true))
        {
            if (IsSNaN(bits, true)) flags |= IE;
            ulong sign = (ulong)(bits >> 31) << 63;
            return sign | 0x7ff8_0000_0000_0000UL | ((ulong)(bits & 0x003f_ffff) << 29);
        }
        bits = (uint)Input(bits, true, mxcsr, ref flags);
        return BitConverter.DoubleToUInt64Bits(BitConverter.UInt32BitsToSingle(bits));
    }

    /// <summary>Double to single, rounded by MXCSR.</summary>
    public static uint DoubleToSingle(ulong bits, uint mxcsr, ref uint flags)
    {
        if (IsNaN(bits, false))
        {
            if (IsSNaN(bits, false)) flags |= IE;
            uint sign = (uint)(bits >> 63) << 31;
            return sign | 0x7fc0_0000 | (uint)((bits >> 29) & 0x003f_ffff);
        }
        bits = Input(bits, false, mxcsr, ref flags);
        double v = BitConverter.UInt64BitsToDouble(bits);
        if (double.IsInfinity(v)) return BitConverter.SingleToUInt32Bits((float)v);
        return (uint)Round(v, 0, single: true, mxcsr, ref flags);
    }

    /// <summary>
    /// ROUNDPS/PD/SS/SD: the value rounded to an integer in rounding mode <paramref name="rc"/> (0 nearest-even,
    /// 1 down, 2 up, 3 toward zero), as a float of the same format with the operand's sign (so -0.3 gives -0). A
    /// signalling NaN is quieted with IE, a quiet NaN passes; DAZ reads a denormal as zero; no DE (the SDM lists only
    /// IE and PE); PE for an inexact result unless <paramref name="suppressPrecision"/> (imm8 bit 3).
    /// </summary>
    public static ulong RoundToIntegral(ulong bits, bool single, int rc, bool suppressPrecision, uint mxcsr, ref uint flags)
    {
        if (IsNaN(bits, single))
        {
            if (IsSNaN(bits, single)) flags |= IE;
            return Quiet(bits, single);
        }
        uint noDenormalFlag = 0;
        bits = Input(bits, single, mxcsr, ref noDenormalFlag);
        double v = ToDouble(bits, single);
        if (double.IsInfinity(v) || v == 0) return bits;
        double r = rc switch
        {
            0 => Math.Round(v, MidpointRounding.ToEven),
            1 => Math.Floor(v),
            2 => Math.Ceiling(v),
            _ => Math.Truncate(v),
        };
        if (r != v && !suppressPrecision) flags |= PE;
        if (r == 0) r = double.IsNegative(v) ? -0.0 : 0.0;
        return Pack(r, single);
    }

    public static int LeadingZeros(ulong v) => BitOperations.LeadingZeroCount(v);
}
