// The x87 double extended-precision format and its arithmetic, as the FPU performs it (Intel SDM vol. 1 ch. 4 and 8).
//
// A value is a sign, a 15-bit biased exponent and a 64-bit significand whose top bit is the explicit integer bit.
// Add, subtract, multiply, divide, square root, remainder, round-to-integer, scale and the conversions are exact
// IEEE-754 operations: the exact result is formed in a UInt128 (with a sticky bit for what lies beyond) and rounded
// once, under the rounding control (nearest-even, down, up, toward zero) and, for the basic arithmetic, the
// precision control (24-, 53- or 64-bit significand with the extended exponent range). Exceptions are reported in
// X87Env.Flags with the masked responses of the x87 (QNaN indefinite, signed infinities or the largest finite
// value on overflow, gradual underflow to denormals, C1 as the round-up indicator); when overflow or underflow is
// unmasked and the destination is a register, the result's exponent is adjusted by 24,576 as on silicon.
// Tininess is detected after rounding, as Intel processors do. Unsupported encodings (unnormals, pseudo-NaNs,
// pseudo-infinities) are invalid operands; pseudo-denormals are read as denormals.
//
// The transcendental functions (F2XM1, FYL2X, FYL2XP1, FPTAN, FPATAN, FSIN, FCOS) are computed through the host's
// double arithmetic with exact range reduction of the exponent and rounded to the extended format: they are good
// to about 53 bits (a few double ulps), not to the 64 bits of silicon.
using System.Numerics;

namespace ActorVmm.Native.Soft;

/// <summary>The x87 exception flags, in the bit positions of the status word (and of the control word's masks).</summary>
[Flags]
public enum X87Exceptions : byte
{
    None = 0,
    Invalid = 0x01,
    Denormal = 0x02,
    ZeroDivide = 0x04,
    Overflow = 0x08,
    Underflow = 0x10,
    Precision = 0x20,
    All = 0x3f,
}

/// <summary>The rounding-control field (FCW bits 11:10).</summary>
public enum X87Rounding : byte
{
    NearestEven = 0,
    Down = 1,
    Up = 2,
    TowardZero = 3,
}

/// <summary>The precision-control field (FCW bits 9:8): significand width of the basic arithmetic's results.</summary>
public enum X87Precision : byte
{
    Single = 0,
    Reserved = 1,
    Double = 2,
    Extended = 3,
}

/// <summary>The format the basic arithmetic rounds its results to.</summary>
public enum X87Format : byte
{
    /// <summary>The x87 register format: the precision control's significand width, the 15-bit exponent range.</summary>
    Register,
    /// <summary>IEEE binary32: 24 bits, exponents −126..127, gradual underflow (as SSE single arithmetic).</summary>
    Single,
    /// <summary>IEEE binary64: 53 bits, exponents −1022..1023, gradual underflow (as SSE double arithmetic).</summary>
    Double,
}

/// <summary>What one operation runs under (rounding, precision, masks) and what it reports (flags, C1).</summary>
public struct X87Env
{
    public X87Rounding Rounding;
    public X87Precision Precision;
    /// <summary>Where add, subtract, multiply, divide and square root round to (the x87 itself always uses Register).</summary>
    public X87Format Format;
    /// <summary>Masked exceptions (a set bit masks, as in the control word).</summary>
    public X87Exceptions Masks;
    /// <summary>Exceptions the operation raised.</summary>
    public X87Exceptions Flags;
    /// <summary>C1 after a rounded result: true when the inexact result was rounded away from zero.</summary>
    public bool RoundedUp;

    /// <summary>The environment the control word selects, with no flags raised.</summary>
    public static X87Env FromControlWord(ushort fcw) => new()
    {
        Masks = (X87Exceptions)(fcw & 0x3f),
        Precision = (X87Precision)((fcw >> 8) & 3),
        Rounding = (X87Rounding)((fcw >> 10) & 3),
    };

    /// <summary>Round-to-nearest, 64-bit precision, everything masked.</summary>
    public static X87Env Default => FromControlWord(0x037f);

    /// <summary>Exceptions raised and not masked.</summary>
    public readonly X87Exceptions Unmasked => Flags & ~Masks & X87Exceptions.All;

    internal readonly bool IsMasked(X87Exceptions e) => (Masks & e) != 0;
}

/// <summary>A result of comparing two x87 values.</summary>
public enum X87Compare
{
    Greater,
    Less,
    Equal,
    Unordered,
}

/// <summary>The x87 classes FXAM distinguishes.</summary>
public enum X87Class
{
    Unsupported,
    NaN,
    Normal,
    Infinity,
    Zero,
    Denormal,
}

/// <summary>An 80-bit x87 double extended-precision value: the bits and the operations on them.</summary>
public readonly struct Float80 : IEquatable<Float80>
{
    private const int Bias = 16383;
    private const int ExtEmin = -16382, ExtEmax = 16383;
    /// <summary>The exponent adjustment the x87 applies to a register result on unmasked overflow or underflow.</summary>
    internal const int BiasAdjust = 24576;
    private const ulong IntBit = 1UL << 63, QuietBit = 1UL << 62;

    /// <summary>The significand, integer bit at bit 63.</summary>
    public readonly ulong Significand;
    /// <summary>Sign (bit 15) and biased exponent (bits 14:0).</summary>
    public readonly ushort SignExponent;

    public Float80(ushort signExponent, ulong significand)
    {
        SignExponent = signExponent;
        Significand = significand;
    }

    private static Float80 Make(bool negative, int biasedExponent, ulong significand)
        => new((ushort)((negative ? 0x8000 : 0) | biasedExponent), significand);

    public bool IsNegative => (SignExponent & 0x8000) != 0;
    public int BiasedExponent => SignExponent & 0x7fff;
    public bool IsZero => BiasedExponent == 0 && Significand == 0;
    /// <summary>Denormal or pseudo-denormal (exponent 0, significand not 0).</summary>
    public bool IsDenormal => BiasedExponent == 0 && Significand != 0;
    public bool IsInfinity => BiasedExponent == 0x7fff && Significand == IntBit;
    public bool IsNaN => BiasedExponent == 0x7fff && (Significand & IntBit) != 0 && (Significand << 1) != 0;
    public bool IsSignalingNaN => IsNaN && (Significand & QuietBit) == 0;
    /// <summary>Unnormal, pseudo-NaN or pseudo-infinity: an encoding the 387 and later reject as an invalid operand.</summary>
    public bool IsUnsupported => BiasedExponent != 0 && (Significand & IntBit) == 0;

    public Float80 Negate() => new((ushort)(SignExponent ^ 0x8000), Significand);
    public Float80 Abs() => new((ushort)(SignExponent & 0x7fff), Significand);

    public static Float80 Zero => default;
    public static Float80 NegativeZero => new(0x8000, 0);
    public static Float80 One => new(0x3fff, IntBit);
    public static Float80 PositiveInfinity => new(0x7fff, IntBit);
    public static Float80 NegativeInfinity => new(0xffff, IntBit);
    /// <summary>The QNaN floating-point indefinite: the masked response to an invalid operation.</summary>
    public static Float80 Indefinite => new(0xffff, 0xc000_0000_0000_0000);

    public X87Class Classify()
    {
        int e = BiasedExponent;
        if (e == 0) return Significand == 0 ? X87Class.Zero : X87Class.Denormal;
        if ((Significand & IntBit) == 0) return X87Class.Unsupported;
        if (e == 0x7fff) return (Significand << 1) == 0 ? X87Class.Infinity : X87Class.NaN;
        return X87Class.Normal;
    }

    public bool Equals(Float80 other) => SignExponent == other.SignExponent && Significand == other.Significand;
    public override bool Equals(object? obj) => obj is Float80 f && Equals(f);
    public override int GetHashCode() => HashCode.Combine(SignExponent, Significand);
    public static bool operator ==(Float80 a, Float80 b) => a.Equals(b);
    public static bool operator !=(Float80 a, Float80 b) => !a.Equals(b);
    public override string ToString() => $"{SignExponent:x4}:{Significand:x16}";

    // ---- Constants (FLD1, FLDPI, ...): 64 bits plus whether the rest of the exact value is above, below or at 0.

    /// <summary>
    /// A constant rounded under <paramref name="rc"/>: <paramref name="truncated"/> is the exact value's first 64
    /// bits, <paramref name="restAboveHalf"/> whether the bits beyond them exceed one half ulp (none is exactly half).
    /// The x87 rounds its 66-bit internal constants this way and reports no precision exception.
    /// </summary>
    private static Float80 Constant(int exponent, ulong truncated, bool restAboveHalf, X87Rounding rc)
    {
        bool up = rc switch
        {
            X87Rounding.NearestEven => restAboveHalf,
            X87Rounding.Up => true,
            _ => false,
        };
        return Make(false, exponent + Bias, up ? truncated + 1 : truncated);
    }

    public static Float80 Pi(X87Rounding rc) => Constant(1, 0xc90f_daa2_2168_c234, true, rc);
    public static Float80 Log2E(X87Rounding rc) => Constant(0, 0xb8aa_3b29_5c17_f0bb, true, rc);
    public static Float80 Log2Ten(X87Rounding rc) => Constant(1, 0xd49a_784b_cd1b_8afe, false, rc);
    public static Float80 Log10Two(X87Rounding rc) => Constant(-2, 0x9a20_9a84_fbcf_f798, true, rc);
    public static Float80 LnTwo(X87Rounding rc) => Constant(-1, 0xb172_17f7_d1cf_79ab, true, rc);

    // ---- Unpacking and rounding.

    /// <summary>A finite nonzero value as sign, unbiased exponent of the leading bit, and significand with bit 63 set.</summary>
    private static (bool Sign, int Exp, ulong Sig) Unpack(Float80 x)
    {
        int e = x.BiasedExponent;
        ulong s = x.Significand;
        if (e == 0) e = 1; // denormals and pseudo-denormals share the smallest normal exponent
        int lz = BitOperations.LeadingZeroCount(s);
        return (x.IsNegative, e - Bias - lz, s << lz);
    }

    private static int SignificandBits(X87Precision pc) => pc switch
    {
        X87Precision.Single => 24,
        X87Precision.Double => 53,
        _ => 64, // the reserved setting rounds as extended here
    };

    private static UInt128 ShiftRightJam(UInt128 x, int n)
    {
        if (n <= 0) return x;
        if (n >= 128) return x != 0 ? UInt128.One : UInt128.Zero;
        return (x >> n) | ((x << (128 - n)) != 0 ? UInt128.One : UInt128.Zero);
    }

    /// <summary>Drops the low <paramref name="drop"/> bits of <paramref name="sig"/> (1..200), rounding under <paramref name="rc"/>.</summary>
    private static UInt128 RoundBits(UInt128 sig, int drop, X87Rounding rc, bool negative, out bool inexact, out bool up)
    {
        UInt128 kept, rem, half;
        if (drop >= 128)
        {
            kept = 0;
            rem = sig;
            half = drop == 128 ? UInt128.One << 127 : UInt128.MaxValue; // beyond 128 bits the rest is below one half
        }
        else
        {
            kept = sig >> drop;
            rem = sig & ((UInt128.One << drop) - 1);
            half = UInt128.One << (drop - 1);
        }
        inexact = rem != 0;
        up = inexact && rc switch
        {
            X87Rounding.NearestEven => rem > half || (rem == half && drop <= 128 && (kept & 1) != 0),
            X87Rounding.Down => negative,
            X87Rounding.Up => !negative,
            _ => false,
        };
        return up ? kept + 1 : kept;
    }

    /// <summary>Rounds sig × 2^(exp − 127) (sig with bit 127 set) to the extended format under the precision control (or to the env's IEEE format).</summary>
    private static Float80 RoundArith(bool sign, int exp, UInt128 sig, ref X87Env env) => env.Format switch
    {
        X87Format.Single => Round(sign, exp, sig, 24, -126, 127, register: false, ref env),
        X87Format.Double => Round(sign, exp, sig, 53, -1022, 1023, register: false, ref env),
        _ => Round(sign, exp, sig, SignificandBits(env.Precision), ExtEmin, ExtEmax, register: true, ref env),
    };

    /// <summary>Rounds sig × 2^(exp − 127) to a 64-bit significand with the extended range (results PC does not affect).</summary>
    private static Float80 RoundExtended(bool sign, int exp, UInt128 sig, ref X87Env env)
        => Round(sign, exp, sig, 64, ExtEmin, ExtEmax, register: true, ref env);

    /// <summary>
    /// The one rounding step: sig × 2^(exp − 127), sig normalized (bit 127 set), to a format with
    /// <paramref name="bits"/> significand bits and unbiased exponents [emin, emax]. The result is returned as the
    /// Float80 of the same value (for a single or double target it is exactly representable there). A register
    /// destination gets the 24,576 exponent adjustment on unmasked overflow or underflow; for a memory destination
    /// the flags are raised and the caller stores nothing.
    /// </summary>
    private static Float80 Round(bool sign, int exp, UInt128 sig, int bits, int emin, int emax, bool register, ref X87Env env)
    {
        int drop = 128 - bits;
        bool inexact, up;
        UInt128 kept;
        if (exp < emin)
        {
            // Tininess after rounding: would the result, rounded with an unbounded exponent, be below 2^emin?
            UInt128 unbounded = RoundBits(sig, drop, env.Rounding, sign, out _, out _);
            bool tiny = !((unbounded >> bits) != 0 && exp + 1 >= emin);
            if (tiny && !env.IsMasked(X87Exceptions.Underflow))
            {
                // Unmasked: a memory destination is not written (no PE, no C1); a register gets the exponent raised by
                // 24,576, or zero with PE when even that is too small (as silicon does after FSCALE).
                env.Flags |= X87Exceptions.Underflow;
                if (!register) return Make(sign, 0, 0);
                exp += BiasAdjust;
                if (exp < emin)
                {
                    env.Flags |= X87Exceptions.Precision;
                    env.RoundedUp = false;
                    return Make(sign, 0, 0);
                }
            }
            else if (tiny)
            {
                sig = ShiftRightJam(sig, emin - exp);
                kept = RoundBits(sig, drop, env.Rounding, sign, out inexact, out up);
                if (inexact)
                {
                    env.Flags |= X87Exceptions.Underflow | X87Exceptions.Precision;
                    env.RoundedUp = up;
                }
                return Pack(sign, emin, kept, bits);
            }
        }
        kept = RoundBits(sig, drop, env.Rounding, sign, out inexact, out up);
        if ((kept >> bits) != 0)
        {
            kept >>= 1;
            exp++;
        }
        if (exp > emax)
        {
            if (!env.IsMasked(X87Exceptions.Overflow))
            {
                // Unmasked: as for underflow, nothing for memory; the exponent lowered by 24,576 for a register, or
                // infinity with PE and C1 when even that is too large.
                env.Flags |= X87Exceptions.Overflow;
                if (!register) return Make(sign, 0x7fff, IntBit);
                exp -= BiasAdjust;
                if (exp > emax)
                {
                    env.Flags |= X87Exceptions.Precision;
                    env.RoundedUp = true;
                    return Make(sign, 0x7fff, IntBit);
                }
            }
            else
            {
                // Masked response: infinity, or the largest finite value where the rounding points toward zero.
                env.Flags |= X87Exceptions.Overflow | X87Exceptions.Precision;
                bool toInfinity = env.Rounding switch
                {
                    X87Rounding.NearestEven => true,
                    X87Rounding.Up => !sign,
                    X87Rounding.Down => sign,
                    _ => false,
                };
                env.RoundedUp = toInfinity;
                if (toInfinity) return Make(sign, 0x7fff, IntBit);
                return Pack(sign, emax, (UInt128.One << bits) - 1, bits);
            }
        }
        if (inexact)
        {
            env.Flags |= X87Exceptions.Precision;
            env.RoundedUp = up;
        }
        return Pack(sign, exp, kept, bits);
    }

    /// <summary>The Float80 of kept × 2^(exp − bits + 1), kept below 2^bits.</summary>
    private static Float80 Pack(bool sign, int exp, UInt128 kept, int bits)
    {
        if (kept == 0) return Make(sign, 0, 0);
        ulong k = (ulong)kept;
        int lz = BitOperations.LeadingZeroCount(k);
        ulong m = k << lz;
        int e = exp + 64 - bits - lz; // unbiased exponent of m's leading bit
        int biased = e + Bias;
        if (biased >= 0x7fff) return Make(sign, 0x7fff, IntBit); // still out of range after the unmasked-overflow adjustment
        if (biased >= 1) return Make(sign, biased, m);
        if (1 - biased >= 64) return Make(sign, 0, 0);          // still out of range after the unmasked-underflow adjustment
        return Make(sign, 0, m >> (1 - biased)); // an extended denormal: exact by construction
    }

    private static Float80 Quiet(Float80 x) => new(x.SignExponent, x.Significand | QuietBit);

    /// <summary>The invalid-operation response: IE and the QNaN indefinite.</summary>
    private static Float80 Invalid(ref X87Env env)
    {
        env.Flags |= X87Exceptions.Invalid;
        return Indefinite;
    }

    /// <summary>The x87's NaN rules (SDM vol. 1 table 4-7): a QNaN over an SNaN, else the larger significand.</summary>
    private static Float80 PropagateNaN(Float80 a, Float80 b, ref X87Env env)
    {
        if (a.IsSignalingNaN || b.IsSignalingNaN) env.Flags |= X87Exceptions.Invalid;
        if (!a.IsNaN) return Quiet(b);
        if (!b.IsNaN) return Quiet(a);
        bool qa = !a.IsSignalingNaN, qb = !b.IsSignalingNaN;
        if (qa != qb) return qa ? a : b;
        ulong sa = a.Significand | QuietBit, sb = b.Significand | QuietBit;
        if (sa != sb) return Quiet(sa > sb ? a : b);
        return Quiet(a.SignExponent <= b.SignExponent ? a : b);
    }

    /// <summary>Checks two operands: true (with the result) when one is unsupported or a NaN.</summary>
    private static bool SpecialOperands(Float80 a, Float80 b, ref X87Env env, out Float80 result)
    {
        if (a.IsUnsupported || b.IsUnsupported)
        {
            result = Invalid(ref env);
            return true;
        }
        if (a.IsNaN || b.IsNaN)
        {
            result = PropagateNaN(a, b, ref env);
            return true;
        }
        result = default;
        return false;
    }

    private static void CheckDenormal(Float80 a, ref X87Env env)
    {
        if (a.IsDenormal) env.Flags |= X87Exceptions.Denormal;
    }

    /// <summary>True when a denormal operand was found and DE is unmasked: the x87 then performs nothing.</summary>
    private static bool DenormalStops(Float80 a, Float80 b, ref X87Env env)
    {
        CheckDenormal(a, ref env);
        CheckDenormal(b, ref env);
        return (env.Flags & X87Exceptions.Denormal) != 0 && !env.IsMasked(X87Exceptions.Denormal);
    }

    // ---- The basic arithmetic.

    public static Float80 Add(Float80 a, Float80 b, ref X87Env env) => AddSub(a, b, false, ref env);

    public static Float80 Subtract(Float80 a, Float80 b, ref X87Env env) => AddSub(a, b, true, ref env);

    private static Float80 AddSub(Float80 a, Float80 b, bool subtract, ref X87Env env)
    {
        if (SpecialOperands(a, b, ref env, out var special)) return special;
        if (subtract) b = b.Negate();
        if (a.IsInfinity || b.IsInfinity)
        {
            if (a.IsInfinity && b.IsInfinity && a.IsNegative != b.IsNegative) return Invalid(ref env);
            if (DenormalStops(a, b, ref env)) return default;
            return a.IsInfinity ? a : b;
        }
        if (DenormalStops(a, b, ref env)) return default;
        if (a.IsZero && b.IsZero)
        {
            if (a.IsNegative == b.IsNegative) return a;
            return env.Rounding == X87Rounding.Down ? NegativeZero : Zero;
        }
        if (b.IsZero) return RoundValue(a, ref env);
        if (a.IsZero) return RoundValue(b, ref env);

        var (sa, ea, ma) = Unpack(a);
        var (sb, eb, mb) = Unpack(b);
        if (ea < eb || (ea == eb && ma < mb))
        {
            (sa, sb) = (sb, sa);
            (ea, eb) = (eb, ea);
            (ma, mb) = (mb, ma);
        }
        UInt128 x = (UInt128)ma << 62;
        UInt128 y = ShiftRightJam((UInt128)mb << 62, ea - eb);
        UInt128 z = sa == sb ? x + y : x - y;
        if (z == 0) return env.Rounding == X87Rounding.Down ? NegativeZero : Zero;
        int lz = (int)UInt128.LeadingZeroCount(z);
        return RoundArith(sa, ea + 2 - lz, z << lz, ref env);
    }

    /// <summary>A finite nonzero operand passed through the arithmetic rounding (x + 0 is rounded to the precision control).</summary>
    private static Float80 RoundValue(Float80 a, ref X87Env env)
    {
        var (s, e, m) = Unpack(a);
        return RoundArith(s, e, (UInt128)m << 64, ref env);
    }

    public static Float80 Multiply(Float80 a, Float80 b, ref X87Env env)
    {
        if (SpecialOperands(a, b, ref env, out var special)) return special;
        bool sign = a.IsNegative != b.IsNegative;
        if (a.IsInfinity || b.IsInfinity)
        {
            if (a.IsZero || b.IsZero) return Invalid(ref env);
            if (DenormalStops(a, b, ref env)) return default;
            return Make(sign, 0x7fff, IntBit);
        }
        if (DenormalStops(a, b, ref env)) return default;
        if (a.IsZero || b.IsZero) return Make(sign, 0, 0);
        var (_, ea, ma) = Unpack(a);
        var (_, eb, mb) = Unpack(b);
        UInt128 z = (UInt128)ma * mb;
        int lz = (int)UInt128.LeadingZeroCount(z);
        return RoundArith(sign, ea + eb + 1 - lz, z << lz, ref env);
    }

    public static Float80 Divide(Float80 a, Float80 b, ref X87Env env)
    {
        if (SpecialOperands(a, b, ref env, out var special)) return special;
        bool sign = a.IsNegative != b.IsNegative;
        if (a.IsInfinity)
        {
            if (b.IsInfinity) return Invalid(ref env);
            if (DenormalStops(a, b, ref env)) return default;
            return Make(sign, 0x7fff, IntBit);
        }
        if (b.IsInfinity)
        {
            if (DenormalStops(a, b, ref env)) return default;
            return Make(sign, 0, 0);
        }
        if (b.IsZero)
        {
            if (a.IsZero) return Invalid(ref env);
            env.Flags |= X87Exceptions.ZeroDivide; // ranks above a denormal dividend: no DE

            return Make(sign, 0x7fff, IntBit);
        }
        if (DenormalStops(a, b, ref env)) return default;
        if (a.IsZero) return Make(sign, 0, 0);
        var (_, ea, ma) = Unpack(a);
        var (_, eb, mb) = Unpack(b);
        int e = ea - eb;
        UInt128 n;
        if (ma >= mb) n = (UInt128)ma << 63;
        else
        {
            n = (UInt128)ma << 64;
            e--;
        }
        UInt128 q1 = n / mb, r = n % mb;
        UInt128 n2 = r << 64;
        UInt128 q2 = n2 / mb, r2 = n2 % mb;
        UInt128 z = (q1 << 64) | q2 | (r2 != 0 ? UInt128.One : UInt128.Zero);
        return RoundArith(sign, e, z, ref env);
    }

    public static Float80 Sqrt(Float80 a, ref X87Env env)
    {
        if (a.IsUnsupported) return Invalid(ref env);
        if (a.IsNaN) return PropagateNaN(a, a, ref env);
        if (a.IsZero) return a;
        if (a.IsNegative) return Invalid(ref env);
        if (a.IsInfinity) return a;
        if (DenormalStops(a, a, ref env)) return default;
        var (_, e, m) = Unpack(a);
        UInt128 n;
        int half;
        if ((e & 1) == 0)
        {
            n = (UInt128)m << 63;
            half = (e - 126) / 2;
        }
        else
        {
            n = (UInt128)m << 64;
            half = (e - 127) / 2;
        }
        ulong root = Isqrt(n, out UInt128 rem);
        // The root's next bit is set when rem > root ((root + 1/2)^2 = root^2 + root + 1/4); it is never exactly half.
        UInt128 z = ((UInt128)root << 64) | (rem > root ? UInt128.One << 63 : 0) | (rem != 0 ? UInt128.One << 62 : 0);
        return RoundArith(false, half + 63, z, ref env);
    }

    /// <summary>The integer square root of a 128-bit number, and the remainder n − root².</summary>
    private static ulong Isqrt(UInt128 n, out UInt128 rem)
    {
        UInt128 r = 0, root = 0;
        for (int i = 0; i < 64; i++)
        {
            root <<= 1;
            r = (r << 2) | (n >> 126);
            n <<= 2;
            UInt128 t = (root << 1) | 1;
            if (r >= t)
            {
                r -= t;
                root |= 1;
            }
        }
        rem = r;
        return (ulong)root;
    }

    // ---- Integer rounding, FRNDINT, remainders, scale, extract.

    /// <summary>The magnitude of a finite value rounded to an integer, or false when it is 2^64 or more.</summary>
    private static bool IntegerMagnitude(Float80 x, X87Rounding rc, out ulong magnitude, out bool inexact, out bool up)
    {
        inexact = up = false;
        magnitude = 0;
        if (x.IsZero) return true;
        var (s, e, m) = Unpack(x);
        if (e >= 64) return false;
        if (e == 63)
        {
            magnitude = m;
            return true;
        }
        UInt128 kept = RoundBits((UInt128)m << 64, 127 - e, rc, s, out inexact, out up);
        magnitude = (ulong)kept; // at most 2^63
        return true;
    }

    /// <summary>FRNDINT: rounds to an integral value under the rounding control.</summary>
    public static Float80 RoundToInteger(Float80 a, ref X87Env env)
    {
        if (a.IsUnsupported) return Invalid(ref env);
        if (a.IsNaN) return PropagateNaN(a, a, ref env);
        if (a.IsInfinity || a.IsZero) return a;
        if (DenormalStops(a, a, ref env)) return default;
        if (!IntegerMagnitude(a, env.Rounding, out ulong mag, out bool inexact, out bool up) || a.BiasedExponent - Bias >= 63) return a;
        if (inexact)
        {
            env.Flags |= X87Exceptions.Precision;
            env.RoundedUp = up;
        }
        return FromMagnitude(a.IsNegative, mag);
    }

    private static Float80 FromMagnitude(bool negative, ulong magnitude)
    {
        if (magnitude == 0) return Make(negative, 0, 0);
        int lz = BitOperations.LeadingZeroCount(magnitude);
        return Make(negative, Bias + 63 - lz, magnitude << lz);
    }

    /// <summary>
    /// FPREM (<paramref name="ieee"/> false: quotient truncated) and FPREM1 (quotient rounded to nearest-even):
    /// the exact partial remainder of a / b. When the exponents differ by 64 or more only part of the reduction is
    /// done (by 2^(D − N), N from <see cref="PartialRemainderBits"/>), and <paramref name="complete"/> is false. The low three
    /// bits of the quotient of a complete reduction come back in <paramref name="quotient"/>.
    /// </summary>
    public static Float80 Remainder(Float80 a, Float80 b, bool ieee, ref X87Env env, out bool complete, out int quotient)
    {
        complete = true;
        quotient = 0;
        if (SpecialOperands(a, b, ref env, out var special)) return special;
        if (a.IsInfinity || b.IsZero) return Invalid(ref env);
        if (DenormalStops(a, b, ref env)) return default;
        if (b.IsInfinity || a.IsZero) return RoundIfDenormal(a, ref env);
        var (sa, ea, ma) = Unpack(a);
        var (_, eb, mb) = Unpack(b);
        int d = ea - eb;
        if (d < 0 && !(ieee && d == -1)) return RoundIfDenormal(a, ref env);
        bool partial = d >= 64;
        int keep = PartialRemainderBits(d);
        int shift = partial ? keep : Math.Max(d, 0);
        int rexp = partial ? ea - keep : eb; // exponent of b scaled to leave a quotient of 'shift' bits
        UInt128 n = d < 0 ? ma : (UInt128)ma << shift;
        UInt128 den = d < 0 ? (UInt128)mb << 1 : mb;
        if (d < 0) rexp = eb - 1;
        UInt128 q = n / den, r = n % den;
        bool sign = sa;
        if (ieee && !partial)
        {
            UInt128 twice = r << 1;
            if (twice > den || (twice == den && (q & 1) != 0))
            {
                q++;
                r = den - r;
                sign = !sign;
            }
        }
        complete = !partial;
        quotient = complete ? (int)(q & 7) : 0;
        if (r == 0) return Make(sa, 0, 0);
        int lz = (int)UInt128.LeadingZeroCount(r);
        // r × 2^(rexp − 63) with den = mb × 2^(63) scale: r's leading bit at 127 − lz.
        return RoundExtended(sign, rexp - 63 + (127 - lz), r << lz, ref env);
    }

    /// <summary>How many quotient bits one partial FPREM/FPREM1 step removes when the exponents are 64 or more apart.</summary>
    /// <summary>
    /// How many quotient bits one partial FPREM/FPREM1 step keeps when the exponents differ by D ≥ 64: the SDM says
    /// "an implementation-dependent number between 32 and 63"; Intel silicon uses 32 + (D mod 32), which this follows.
    /// </summary>
    public static int PartialRemainderBits(int d) => 32 + (d & 31);

    /// <summary>A value passed through unchanged by an operation, except that a denormal result raises underflow as silicon does.</summary>
    private static Float80 RoundIfDenormal(Float80 a, ref X87Env env)
    {
        if (!a.IsDenormal) return a;
        var (s, e, m) = Unpack(a);
        return RoundExtended(s, e, (UInt128)m << 64, ref env);
    }

    /// <summary>FSCALE: a × 2^trunc(b).</summary>
    public static Float80 Scale(Float80 a, Float80 b, ref X87Env env)
    {
        if (SpecialOperands(a, b, ref env, out var special)) return special;
        if (b.IsInfinity)
        {
            if (b.IsNegative)
            {
                if (a.IsInfinity) return Invalid(ref env);
                if (DenormalStops(a, b, ref env)) return default;
                return Make(a.IsNegative, 0, 0);
            }
            if (a.IsZero) return Invalid(ref env);
            if (DenormalStops(a, b, ref env)) return default;
            return Make(a.IsNegative, 0x7fff, IntBit);
        }
        if (DenormalStops(a, b, ref env)) return default;
        if (a.IsInfinity || a.IsZero) return a;
        int n = 0;
        if (!b.IsZero)
        {
            var (sb, eb, mb) = Unpack(b);
            long mag = eb < 0 ? 0 : eb >= 20 ? 1 << 20 : (long)(mb >> (63 - eb));
            n = (int)(sb ? -mag : mag);
        }
        var (s, e, m) = Unpack(a);
        return RoundExtended(s, e + n, (UInt128)m << 64, ref env);
    }

    /// <summary>FXTRACT: the unbiased exponent (as a value) and the significand (exponent 0) of a.</summary>
    public static (Float80 Exponent, Float80 Significand) Extract(Float80 a, ref X87Env env)
    {
        if (a.IsUnsupported) return (Invalid(ref env), Indefinite);
        if (a.IsNaN)
        {
            var q = PropagateNaN(a, a, ref env);
            return (q, q);
        }
        if (a.IsInfinity) return (PositiveInfinity, a);
        if (a.IsZero)
        {
            env.Flags |= X87Exceptions.ZeroDivide;
            return (NegativeInfinity, a);
        }
        if (DenormalStops(a, a, ref env)) return default;
        var (s, e, m) = Unpack(a);
        return (FromInt64(e), Make(s, Bias, m));
    }

    // ---- Comparison and classification.

    /// <summary>FCOM/FUCOM/FCOMI/FUCOMI: ordered compares raise IE for any NaN, unordered ones only for an SNaN.</summary>
    public static X87Compare Compare(Float80 a, Float80 b, bool unordered, ref X87Env env)
    {
        if (a.IsUnsupported || b.IsUnsupported)
        {
            env.Flags |= X87Exceptions.Invalid;
            return X87Compare.Unordered;
        }
        if (a.IsNaN || b.IsNaN)
        {
            if (!unordered || a.IsSignalingNaN || b.IsSignalingNaN) env.Flags |= X87Exceptions.Invalid;
            return X87Compare.Unordered;
        }
        CheckDenormal(a, ref env);
        CheckDenormal(b, ref env);
        if (a.IsZero && b.IsZero) return X87Compare.Equal;
        if (a.IsNegative != b.IsNegative) return a.IsNegative ? X87Compare.Less : X87Compare.Greater;
        int c = CompareMagnitude(a, b);
        if (c == 0) return X87Compare.Equal;
        return (c < 0) != a.IsNegative ? X87Compare.Less : X87Compare.Greater;
    }

    private static int CompareMagnitude(Float80 a, Float80 b)
    {
        if (a.IsZero) return b.IsZero ? 0 : -1;
        if (b.IsZero) return 1;
        if (a.IsInfinity) return b.IsInfinity ? 0 : 1;
        if (b.IsInfinity) return -1;
        var (_, ea, ma) = Unpack(a);
        var (_, eb, mb) = Unpack(b);
        if (ea != eb) return ea < eb ? -1 : 1;
        return ma.CompareTo(mb);
    }

    // ---- Conversions.

    /// <summary>FLD m64 / FILD-free conversion: exact, IE for an SNaN (quieted), DE for a denormal source.</summary>
    public static Float80 FromDouble(ulong bits, ref X87Env env) => FromBinary(bits, 52, 11, ref env);

    /// <summary>FLD m32.</summary>
    public static Float80 FromSingle(uint bits, ref X87Env env) => FromBinary(bits, 23, 8, ref env);

    private static Float80 FromBinary(ulong bits, int fracBits, int expBits, ref X87Env env)
    {
        bool sign = (bits >> (fracBits + expBits)) != 0;
        int expMax = (1 << expBits) - 1, bias = expMax >> 1;
        int e = (int)(bits >> fracBits) & expMax;
        ulong frac = bits & ((1UL << fracBits) - 1);
        if (e == expMax)
        {
            if (frac == 0) return Make(sign, 0x7fff, IntBit);
            ulong sig = IntBit | (frac << (63 - fracBits));
            if ((sig & QuietBit) == 0)
            {
                env.Flags |= X87Exceptions.Invalid;
                sig |= QuietBit;
            }
            return Make(sign, 0x7fff, sig);
        }
        if (e == 0)
        {
            if (frac == 0) return Make(sign, 0, 0);
            env.Flags |= X87Exceptions.Denormal;
            int lz = BitOperations.LeadingZeroCount(frac);
            // frac × 2^(1 − bias − fracBits): leading bit at 63 − lz.
            return Make(sign, 1 - bias - fracBits + (63 - lz) + Bias, frac << lz);
        }
        return Make(sign, e - bias + Bias, IntBit | (frac << (63 - fracBits)));
    }

    /// <summary>A double operand of an arithmetic instruction: exact, an SNaN kept signaling, no flags.</summary>
    public static Float80 FromDoubleRaw(ulong bits)
    {
        var env = X87Env.Default;
        var f = FromBinary(bits, 52, 11, ref env);
        return (env.Flags & X87Exceptions.Invalid) != 0 ? new(f.SignExponent, f.Significand & ~QuietBit) : f;
    }

    /// <summary>A single operand of an arithmetic instruction: exact, an SNaN kept signaling, no flags.</summary>
    public static Float80 FromSingleRaw(uint bits)
    {
        var env = X87Env.Default;
        var f = FromBinary(bits, 23, 8, ref env);
        return (env.Flags & X87Exceptions.Invalid) != 0 ? new(f.SignExponent, f.Significand & ~QuietBit) : f;
    }

    /// <summary>The host double of exactly this value (for tests and the transcendental paths); rounds to nearest.</summary>
    public double ToDoubleNearest()
    {
        var env = X87Env.Default;
        return BitConverter.UInt64BitsToDouble(ToDouble(this, ref env));
    }

    /// <summary>A host double as a Float80 (exact).</summary>
    public static Float80 FromDouble(double d)
    {
        var env = X87Env.Default;
        return FromDouble(BitConverter.DoubleToUInt64Bits(d), ref env);
    }

    /// <summary>FST m64: rounds under the rounding control to double; the flags say whether the store may happen.</summary>
    public static ulong ToDouble(Float80 a, ref X87Env env) => ToBinary(a, 52, 11, ref env);

    /// <summary>FST m32.</summary>
    public static uint ToSingle(Float80 a, ref X87Env env) => (uint)ToBinary(a, 23, 8, ref env);

    private static ulong ToBinary(Float80 a, int fracBits, int expBits, ref X87Env env)
    {
        ulong signBit = a.IsNegative ? 1UL << (fracBits + expBits) : 0;
        ulong expMax = (1UL << expBits) - 1;
        int bias = (int)(expMax >> 1);
        if (a.IsUnsupported)
        {
            env.Flags |= X87Exceptions.Invalid;
            return (1UL << (fracBits + expBits)) | (expMax << fracBits) | (1UL << (fracBits - 1));
        }
        if (a.IsNaN)
        {
            if (a.IsSignalingNaN) env.Flags |= X87Exceptions.Invalid;
            ulong frac = ((a.Significand | QuietBit) << 1) >> (64 - fracBits);
            return signBit | (expMax << fracBits) | frac;
        }
        if (a.IsInfinity) return signBit | (expMax << fracBits);
        if (a.IsZero) return signBit;
        var (s, e, m) = Unpack(a);
        var r = Round(s, e, (UInt128)m << 64, fracBits + 1, 1 - bias, bias, register: false, ref env);
        if (r.IsInfinity) return signBit | (expMax << fracBits);
        if (r.IsZero) return signBit;
        var (_, re, rm) = Unpack(r);
        int subShift = 63 - fracBits + (1 - bias - re);
        if (re < 1 - bias) return subShift >= 64 ? signBit : signBit | (rm >> subShift); // subnormal
        return signBit | ((ulong)(re + bias) << fracBits) | ((rm << 1) >> (64 - fracBits));
    }

    public static Float80 FromInt64(long v) => FromMagnitude(v < 0, v < 0 ? (ulong)-v : (ulong)v);

    /// <summary>
    /// FIST/FISTP (<paramref name="truncate"/> false: the rounding control) and FISTTP (truncate): the value as a
    /// signed integer of <paramref name="bits"/> bits. Out of range, NaN, infinity or unsupported: IE and the
    /// integer indefinite (the most negative value).
    /// </summary>
    public static long ToInt(Float80 a, int bits, bool truncate, ref X87Env env)
    {
        long indefinite = long.MinValue >> (64 - bits);
        if (a.IsUnsupported || a.IsNaN || a.IsInfinity)
        {
            env.Flags |= X87Exceptions.Invalid;
            return indefinite;
        }
        var rc = truncate ? X87Rounding.TowardZero : env.Rounding;
        bool ok = IntegerMagnitude(a, rc, out ulong mag, out bool inexact, out bool up);
        ulong limit = a.IsNegative ? 1UL << (bits - 1) : (1UL << (bits - 1)) - 1;
        if (!ok || mag > limit)
        {
            env.Flags |= X87Exceptions.Invalid;
            return indefinite;
        }
        if (inexact)
        {
            env.Flags |= X87Exceptions.Precision;
            env.RoundedUp = up;
        }
        return a.IsNegative ? (long)(0 - mag) : (long)mag;
    }

    /// <summary>FBLD: 18 packed BCD digits (bytes 0-8, low digit first) and the sign in bit 7 of byte 9; exact.</summary>
    public static Float80 FromBcd(ulong low, ushort high)
    {
        ulong v = 0;
        for (int i = 17; i >= 0; i--)
        {
            ulong digit = i < 16 ? (low >> (4 * i)) & 0xf : ((ulong)high >> (4 * (i - 16))) & 0xf;
            v = v * 10 + digit; // invalid digits give an undefined result on silicon; here they weigh as their value
        }
        return FromMagnitude((high & 0x8000) != 0, v);
    }

    /// <summary>FBSTP: rounds under the rounding control to 18 BCD digits; IE and the BCD indefinite when it does not fit.</summary>
    public static (ulong Low, ushort High) ToBcd(Float80 a, ref X87Env env)
    {
        const ulong Max = 999_999_999_999_999_999;
        if (a.IsUnsupported || a.IsNaN || a.IsInfinity
            || !IntegerMagnitude(a, env.Rounding, out ulong mag, out bool inexact, out bool up) || mag > Max)
        {
            env.Flags |= X87Exceptions.Invalid;
            return (0xc000_0000_0000_0000, 0xffff);
        }
        if (inexact)
        {
            env.Flags |= X87Exceptions.Precision;
            env.RoundedUp = up;
        }
        ulong low = 0;
        ushort high = (ushort)(a.IsNegative ? 0x8000 : 0);
        for (int i = 0; i < 18; i++)
        {
            ulong digit = mag % 10;
            mag /= 10;
            if (i < 16) low |= digit << (4 * i);
            else high |= (ushort)(digit << (4 * (i - 16)));
        }
        return (low, high);
    }

    // ---- Transcendentals, through the host's double arithmetic.

    /// <summary>The value as sign, exponent and a double in [1, 2): exact up to the double's 53 bits.</summary>
    private static (int Exp, double Mantissa) Split(Float80 a)
    {
        var (s, e, m) = Unpack(a);
        double mant = (double)(m >> 11) / (1UL << 52);
        // Round the 64-bit significand to nearest: the 11 dropped bits.
        ulong rest = m & 0x7ff;
        if (rest > 0x400 || (rest == 0x400 && ((m >> 11) & 1) != 0)) mant += 1.0 / (1UL << 52);
        return (e, s ? -mant : mant);
    }

    /// <summary>A double result rounded to the extended format; PE set (the transcendental results are inexact).</summary>
    private static Float80 FromHost(double d, ref X87Env env)
    {
        var unused = X87Env.Default;
        var f = FromDouble(BitConverter.DoubleToUInt64Bits(d), ref unused);
        if (!f.IsZero) env.Flags |= X87Exceptions.Precision;
        if (f.IsDenormal || (f.BiasedExponent != 0 && f.BiasedExponent - Bias < ExtEmin))
            env.Flags |= X87Exceptions.Underflow;
        return f;
    }

    /// <summary>A host double scaled by 2^exp, rounded to the extended format.</summary>
    private static Float80 FromHostScaled(double d, int exp, ref X87Env env)
    {
        if (d == 0 || double.IsNaN(d) || double.IsInfinity(d)) return FromHost(d, ref env);
        var unused = X87Env.Default;
        var f = FromDouble(BitConverter.DoubleToUInt64Bits(d), ref unused);
        var (s, e, m) = Unpack(f);
        var inner = env;
        inner.Precision = X87Precision.Extended;
        inner.Format = X87Format.Register;
        var r = RoundExtended(s, e + exp, (UInt128)m << 64, ref inner);
        env.Flags |= inner.Flags | X87Exceptions.Precision;
        env.RoundedUp = inner.RoundedUp;
        return r;
    }

    /// <summary>F2XM1: 2^x − 1 for −1 ≤ x ≤ 1 (other finite x: undefined on silicon; computed the same way here).</summary>
    public static Float80 Exp2M1(Float80 x, ref X87Env env)
    {
        if (x.IsUnsupported) return Invalid(ref env);
        if (x.IsNaN) return PropagateNaN(x, x, ref env);
        if (x.IsZero) return x;
        if (x.IsInfinity) return x.IsNegative ? Make(true, Bias, IntBit) : x;
        if (DenormalStops(x, x, ref env)) return default;
        if (x.BiasedExponent >= Bias && x.Abs() != One) return x; // |x| > 1: undefined by the SDM; silicon returns x
        var (e, mant) = Split(x);
        if (e < -1000) return FromHostScaled(mant * Math.Log(2), e, ref env); // 2^x − 1 ≈ x ln 2
        double v = Math.ScaleB(mant, e);
        return FromHost(Expm1(v * Math.Log(2)), ref env);
    }

    /// <summary>e^y − 1 in double without cancellation (Kahan's trick).</summary>
    private static double Expm1(double y)
    {
        double u = Math.Exp(y);
        if (u == 1.0) return y;
        double um1 = u - 1.0;
        if (um1 == -1.0) return -1.0;
        return um1 * y / Math.Log(u);
    }

    /// <summary>ln(1 + x) in double without cancellation.</summary>
    private static double Log1p(double x)
    {
        double u = 1.0 + x;
        if (u == 1.0) return x;
        return Math.Log(u) * x / (u - 1.0);
    }

    /// <summary>FYL2X: y × log2(x).</summary>
    public static Float80 YLog2X(Float80 x, Float80 y, ref X87Env env)
    {
        if (SpecialOperands(x, y, ref env, out var special)) return special;
        if (x.IsNegative && !x.IsZero) return Invalid(ref env);
        if (x.IsZero)
        {
            if (y.IsZero) return Invalid(ref env);
            if (DenormalStops(x, y, ref env)) return default;
            if (!y.IsInfinity) env.Flags |= X87Exceptions.ZeroDivide;
            return Make(!y.IsNegative, 0x7fff, IntBit);
        }
        if (x.IsInfinity)
        {
            if (y.IsZero) return Invalid(ref env);
            if (DenormalStops(x, y, ref env)) return default;
            return Make(y.IsNegative, 0x7fff, IntBit);
        }
        if (DenormalStops(x, y, ref env)) return default;
        var (e, mant) = Split(x);
        bool isOne = x == One;
        if (isOne)
        {
            if (y.IsInfinity) return Invalid(ref env);
            return Make(y.IsNegative, 0, 0);
        }
        if (y.IsInfinity) return Make(y.IsNegative != (CompareMagnitude(x, One) < 0), 0x7fff, IntBit);
        if (y.IsZero) return Make(y.IsNegative != (CompareMagnitude(x, One) < 0), 0, 0);
        double log2;
        if (e is -1 or 0)
        {
            // Near 1: x − 1 is exact in the extended format, and log1p keeps its digits.
            var exact = X87Env.Default;
            log2 = Log1p(Subtract(x, One, ref exact).ToDoubleNearest()) / Math.Log(2);
        }
        else
        {
            log2 = e + Math.Log2(Math.Abs(mant));
        }
        var l = FromHost(log2, ref env);
        var inner = env;
        inner.Precision = X87Precision.Extended;
        inner.Format = X87Format.Register;
        var r = Multiply(y, l, ref inner);
        env.Flags |= inner.Flags | X87Exceptions.Precision;
        env.RoundedUp = inner.RoundedUp;
        return r;
    }

    /// <summary>FYL2XP1: y × log2(x + 1) for |x| &lt; 1 − √2/2.</summary>
    public static Float80 YLog2XP1(Float80 x, Float80 y, ref X87Env env)
    {
        if (SpecialOperands(x, y, ref env, out var special)) return special;
        if (x.IsInfinity)
        {
            if (x.IsNegative || y.IsZero) return Invalid(ref env);
            return Make(y.IsNegative, 0x7fff, IntBit);
        }
        if (x.IsZero)
        {
            if (y.IsInfinity) return Invalid(ref env);
            if (DenormalStops(x, y, ref env)) return default;
            return Make(x.IsNegative != y.IsNegative, 0, 0);
        }
        if (y.IsInfinity)
        {
            if (DenormalStops(x, y, ref env)) return default;
            return Make(x.IsNegative != y.IsNegative, 0x7fff, IntBit);
        }
        if (DenormalStops(x, y, ref env)) return default;
        if (y.IsZero) return Make(x.IsNegative != y.IsNegative, 0, 0);
        var (e, mant) = Split(x);
        Float80 l;
        if (e < -1000) l = FromHostScaled(mant / Math.Log(2), e, ref env); // log2(1 + x) ≈ x / ln 2
        else l = FromHost(Log1p(Math.ScaleB(mant, e)) / Math.Log(2), ref env);
        var inner = env;
        inner.Precision = X87Precision.Extended;
        inner.Format = X87Format.Register;
        var r = Multiply(y, l, ref inner);
        env.Flags |= inner.Flags | X87Exceptions.Precision;
        env.RoundedUp = inner.RoundedUp;
        return r;
    }

    /// <summary>FPATAN: arctan(y / x) in the quadrant of (x, y).</summary>
    public static Float80 Atan2(Float80 y, Float80 x, ref X87Env env)
    {
        if (SpecialOperands(y, x, ref env, out var special)) return special;
        if (DenormalStops(y, x, ref env)) return default;
        double dy, dx;
        if (x.IsInfinity || y.IsInfinity || x.IsZero || y.IsZero)
        {
            dy = y.IsInfinity ? (y.IsNegative ? double.NegativeInfinity : double.PositiveInfinity) : y.IsZero ? (y.IsNegative ? -0.0 : 0.0) : (y.IsNegative ? -1.0 : 1.0);
            dx = x.IsInfinity ? (x.IsNegative ? double.NegativeInfinity : double.PositiveInfinity) : x.IsZero ? (x.IsNegative ? -0.0 : 0.0) : (x.IsNegative ? -1.0 : 1.0);
            var r0 = Math.Atan2(dy, dx);
            return r0 == 0 ? Make(double.IsNegative(r0), 0, 0) : FromHost(r0, ref env);
        }
        var (ey, my) = Split(y);
        var (ex, mx) = Split(x);
        int d = ey - ex;
        if (d < -900 && !x.IsNegative)
        {
            // |y/x| far below double's range: atan(y/x) = y/x to well beyond 64 bits.
            var inner = env;
            inner.Precision = X87Precision.Extended;
            inner.Format = X87Format.Register;
            var q = Divide(y, x, ref inner);
            env.Flags |= inner.Flags | X87Exceptions.Precision;
            env.RoundedUp = inner.RoundedUp;
            return q;
        }
        d = Math.Clamp(d, -1000, 1000);
        return FromHost(Math.Atan2(Math.ScaleB(my, d), mx), ref env);
    }

    /// <summary>
    /// FSIN/FCOS/FSINCOS/FPTAN's argument check: false (C2 = 1, nothing done) when |x| ≥ 2^63; else the argument as
    /// a double (|x| below 2^-34 is reported as tiny: sin x, tan x and cos x are then x or 1 nudged by far less than an ulp).
    /// </summary>
    public static bool TrigArgument(Float80 x, out double value, out bool tiny)
    {
        value = 0;
        tiny = false;
        if (x.IsZero) return true;
        var (e, mant) = Split(x);
        if (e >= 63) return false;
        if (e < -34)
        {
            tiny = true;
            return true;
        }
        value = Math.ScaleB(mant, e);
        return true;
    }

    /// <summary>FSIN, FCOS and the tangent for FPTAN, for finite in-range arguments (see <see cref="TrigArgument"/>).</summary>
    public static Float80 Trig(Float80 x, int function, ref X87Env env)
    {
        if (x.IsUnsupported) return Invalid(ref env);
        if (x.IsNaN) return PropagateNaN(x, x, ref env);
        if (x.IsInfinity) return Invalid(ref env);
        if (DenormalStops(x, x, ref env)) return default;
        TrigArgument(x, out double v, out bool tiny);
        if (x.IsZero) return function == TrigCos ? One : x;
        if (tiny)
        {
            // |x| < 2^-34: sin x = x(1 − δ), tan x = x(1 + δ), cos x = 1 − δ with δ far below half an ulp, so the
            // result is x (or 1) just nudged, rounded under the rounding control like any other inexact result.
            if (function == TrigCos) return RoundExtended(false, -1, UInt128.MaxValue, ref env);
            var (s, e, m) = Unpack(x);
            if (function == TrigSin)
            {
                if (m == IntBit) return RoundExtended(s, e - 1, UInt128.MaxValue, ref env);
                return RoundExtended(s, e, ((UInt128)m << 64) - 1, ref env);
            }
            return RoundExtended(s, e, ((UInt128)m << 64) | 1, ref env);
        }
        var (reduced, quadrant) = ReduceByHalfPi(x);
        double r = function switch
        {
            TrigSin => quadrant switch { 0 => Math.Sin(reduced), 1 => Math.Cos(reduced), 2 => -Math.Sin(reduced), _ => -Math.Cos(reduced) },
            TrigCos => quadrant switch { 0 => Math.Cos(reduced), 1 => -Math.Sin(reduced), 2 => -Math.Cos(reduced), _ => Math.Sin(reduced) },
            _ => (quadrant & 1) == 0 ? Math.Tan(reduced) : -1 / Math.Tan(reduced),
        };
        if (x.IsNegative && function != TrigCos) r = -r;
        return FromHost(r, ref env);
    }

    /// <summary>π/2 to 66 bits (× 2^-65), the approximation the x87 reduces FSIN/FCOS/FSINCOS/FPTAN arguments with.</summary>
    private static readonly BigInteger HalfPi66 = (new BigInteger(0xc90f_daa2_2168_c234UL) << 2) | 3;

    /// <summary>
    /// |x| reduced exactly modulo the x87's 66-bit π/2 (as silicon does, so large arguments agree with it), as a
    /// double in [−π/4, π/4], and the quadrant (the quotient mod 4).
    /// </summary>
    private static (double Reduced, int Quadrant) ReduceByHalfPi(Float80 x)
    {
        var (_, e, m) = Unpack(x);
        if (e + 2 < 0) return (Math.Abs(Split(x).Mantissa) * Math.Pow(2, e), 0); // below 1/4: nothing to reduce
        BigInteger n = new BigInteger(m) << (e + 2); // |x| × 2^65
        BigInteger k = (n + (HalfPi66 >> 1)) / HalfPi66;
        BigInteger rem = n - k * HalfPi66;
        return ((double)rem * Math.Pow(2, -65), (int)(k & 3));
    }

    public const int TrigSin = 0, TrigCos = 1, TrigTan = 2;

}
