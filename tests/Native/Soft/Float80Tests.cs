// Float80 against independent truths: the host's IEEE binary64/binary32 arithmetic (SSE, one rounding to the
// format) for operands the formats hold exactly — random values over the whole range, subnormals, infinities,
// NaNs and signed zeros — and hand-derived extended-precision cases from the Intel SDM (vol. 1 ch. 4 and 8).
using ActorVmm.Native.Soft;

namespace ActorVmm.Native.Tests.Soft;

public sealed class Float80Tests
{
    private const int Cases = 200_000;

    private static X87Env Env(X87Format format = X87Format.Register, X87Rounding rc = X87Rounding.NearestEven, X87Precision pc = X87Precision.Extended)
    {
        var e = X87Env.Default;
        e.Format = format;
        e.Rounding = rc;
        e.Precision = pc;
        return e;
    }

    /// <summary>Random doubles weighted toward the edges: subnormals, huge and tiny values, specials, near-equal pairs.</summary>
    internal static double RandomDouble(Random rng)
    {
        int kind = rng.Next(16);
        ulong bits = (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 63);
        ulong sign = bits & (1UL << 63);
        switch (kind)
        {
            case 0: return BitConverter.UInt64BitsToDouble(sign | (bits & 0x000f_ffff_ffff_ffff)); // subnormal
            case 1: return BitConverter.UInt64BitsToDouble(sign | (0x7fe0_0000_0000_0000 - (bits & 0x00ff_ffff_ffff_ffff))); // huge
            case 2: return BitConverter.UInt64BitsToDouble(sign | (0x0010_0000_0000_0000 + (bits & 0x00ff_ffff_ffff_ffff))); // tiny normal
            case 3:
                return rng.Next(6) switch
                {
                    0 => sign == 0 ? 0.0 : -0.0,
                    1 => sign == 0 ? double.PositiveInfinity : double.NegativeInfinity,
                    2 => double.NaN,
                    3 => BitConverter.UInt64BitsToDouble(sign | 0x7ff0_0000_0000_0000 | (bits & 0x0007_ffff_ffff_ffff) | 1), // SNaN
                    4 => double.MaxValue,
                    _ => double.Epsilon,
                };
            case 4: return BitConverter.UInt64BitsToDouble(sign | 0x3ff0_0000_0000_0000 | (bits & 0x000f_ffff_ffff_f000)); // short significands
            default:
                {
                    // Exponents near 0 so sums and products often round, cancel or tie.
                    ulong exp = (ulong)(1023 + rng.Next(-60, 61));
                    return BitConverter.UInt64BitsToDouble(sign | (exp << 52) | (bits & 0x000f_ffff_ffff_ffff));
                }
        }
    }

    private static float RandomSingle(Random rng)
    {
        int kind = rng.Next(12);
        uint bits = (uint)rng.Next() ^ ((uint)rng.Next(2) << 31);
        uint sign = bits & 0x8000_0000;
        return kind switch
        {
            0 => BitConverter.UInt32BitsToSingle(sign | (bits & 0x007f_ffff)),
            1 => BitConverter.UInt32BitsToSingle(sign | (0x7f00_0000 - (bits & 0x00ff_ffff))),
            2 => rng.Next(4) switch { 0 => -0.0f, 1 => float.PositiveInfinity, 2 => float.NaN, _ => float.NegativeInfinity },
            _ => BitConverter.UInt32BitsToSingle(sign | ((uint)(127 + rng.Next(-30, 31)) << 23) | (bits & 0x007f_ffff)),
        };
    }

    private static ulong D(double d) => BitConverter.DoubleToUInt64Bits(d);

    private static Float80 F(double d)
    {
        var env = X87Env.Default;
        return Float80.FromDouble(D(d), ref env);
    }

    /// <summary>Checks a double-format result against the host's: bit for bit, or both NaN when an input was a NaN.</summary>
    private static void AssertSameDouble(double expected, ulong actual, string what)
    {
        if (double.IsNaN(expected))
        {
            Assert.True(double.IsNaN(BitConverter.UInt64BitsToDouble(actual)), $"{what}: expected NaN, got {actual:x16}");
            return;
        }
        Assert.True(D(expected) == actual, $"{what}: expected {D(expected):x16} ({expected:R}), got {actual:x16}");
    }

    [Fact]
    public void Double_format_arithmetic_matches_the_host_bit_for_bit()
    {
        var rng = new Random(8087);
        for (int k = 0; k < Cases; k++)
        {
            double a = RandomDouble(rng), b = RandomDouble(rng);
            if (rng.Next(8) == 0) b = BitConverter.UInt64BitsToDouble(D(a) ^ (ulong)rng.Next(4)); // near-equal: cancellation
            var fa = F(a);
            var fb = F(b);
            Check(a + b, Float80.Add(fa, fb, ref Ref(Env(X87Format.Double))), "add");
            Check(a - b, Float80.Subtract(fa, fb, ref Ref(Env(X87Format.Double))), "sub");
            Check(a * b, Float80.Multiply(fa, fb, ref Ref(Env(X87Format.Double))), "mul");
            Check(a / b, Float80.Divide(fa, fb, ref Ref(Env(X87Format.Double))), "div");
            Check(Math.Sqrt(a), Float80.Sqrt(fa, ref Ref(Env(X87Format.Double))), "sqrt");

            void Check(double expected, Float80 r, string op)
            {
                var env = X87Env.Default;
                ulong bits = Float80.ToDouble(r, ref env);
                Assert.True((env.Flags & ~X87Exceptions.Invalid) == 0, $"{op} {D(a):x16} {D(b):x16}: the result {r} is not a double");
                AssertSameDouble(expected, bits, $"{op}({D(a):x16}, {D(b):x16})");
                // A NaN result from non-NaN operands is the indefinite, whose double is the host's default NaN.
                if (double.IsNaN(expected) && !double.IsNaN(a) && !double.IsNaN(b)) Assert.Equal(0xfff8_0000_0000_0000UL, bits);
            }
        }
    }

    private static X87Env _scratch;

    private static ref X87Env Ref(X87Env e)
    {
        _scratch = e;
        return ref _scratch;
    }

    [Fact]
    public void Single_format_arithmetic_matches_the_host_bit_for_bit()
    {
        var rng = new Random(80387);
        for (int k = 0; k < Cases; k++)
        {
            float a = RandomSingle(rng), b = RandomSingle(rng);
            var fa = F(a);
            var fb = F(b);
            Check(a + b, Float80.Add(fa, fb, ref Ref(Env(X87Format.Single))), "add");
            Check(a - b, Float80.Subtract(fa, fb, ref Ref(Env(X87Format.Single))), "sub");
            Check(a * b, Float80.Multiply(fa, fb, ref Ref(Env(X87Format.Single))), "mul");
            Check(a / b, Float80.Divide(fa, fb, ref Ref(Env(X87Format.Single))), "div");
            Check(MathF.Sqrt(a), Float80.Sqrt(fa, ref Ref(Env(X87Format.Single))), "sqrt");

            void Check(float expected, Float80 r, string op)
            {
                var env = X87Env.Default;
                uint bits = Float80.ToSingle(r, ref env);
                string what = $"{op}({BitConverter.SingleToUInt32Bits(a):x8}, {BitConverter.SingleToUInt32Bits(b):x8})";
                if (float.IsNaN(expected)) Assert.True(float.IsNaN(BitConverter.UInt32BitsToSingle(bits)), what);
                else Assert.True(BitConverter.SingleToUInt32Bits(expected) == bits, $"{what}: expected {BitConverter.SingleToUInt32Bits(expected):x8}, got {bits:x8}");
            }
        }
    }

    [Fact]
    public void Register_format_at_53_bits_matches_the_host_in_the_normal_double_range()
    {
        // Precision control 53 keeps the 15-bit exponent, so only results that are normal doubles can be compared.
        var rng = new Random(287);
        for (int k = 0; k < Cases; k++)
        {
            double a = RandomDouble(rng), b = RandomDouble(rng);
            foreach (var (expected, r) in new[]
            {
                (a + b, Float80.Add(F(a), F(b), ref Ref(Env(pc: X87Precision.Double)))),
                (a * b, Float80.Multiply(F(a), F(b), ref Ref(Env(pc: X87Precision.Double)))),
                (a / b, Float80.Divide(F(a), F(b), ref Ref(Env(pc: X87Precision.Double)))),
                (Math.Sqrt(a), Float80.Sqrt(F(a), ref Ref(Env(pc: X87Precision.Double)))),
            })
            {
                if (!double.IsNormal(expected) || double.IsNaN(a) || double.IsNaN(b)) continue;
                var env = X87Env.Default;
                ulong bits = Float80.ToDouble(r, ref env);
                Assert.True(env.Flags == 0, $"{r} should be exactly a double");
                AssertSameDouble(expected, bits, $"{D(a):x16} op {D(b):x16}");
            }
        }
    }

    [Fact]
    public void Conversions_to_single_and_to_integers_match_the_host()
    {
        var rng = new Random(8088);
        for (int k = 0; k < Cases; k++)
        {
            double a = RandomDouble(rng);
            var env = X87Env.Default;
            uint s = Float80.ToSingle(F(a), ref env);
            float expected = (float)a;
            if (float.IsNaN(expected)) Assert.True(float.IsNaN(BitConverter.UInt32BitsToSingle(s)));
            else Assert.True(BitConverter.SingleToUInt32Bits(expected) == s, $"(float){D(a):x16}: expected {BitConverter.SingleToUInt32Bits(expected):x8}, got {s:x8}");
            if (!double.IsNaN(expected) && !double.IsInfinity(expected) && expected != 0 && expected != a)
                Assert.True((env.Flags & X87Exceptions.Precision) != 0, "an inexact conversion raises PE");

            double scaled = Math.ScaleB(a, -rng.Next(0, 1000)) * (rng.Next(2) == 0 ? 1 : 1e9);
            if (double.IsNaN(scaled) || double.IsInfinity(scaled)) continue;
            var e2 = X87Env.Default;
            long n = Float80.ToInt(F(scaled), 64, truncate: false, ref e2);
            double rounded = Math.Round(scaled, MidpointRounding.ToEven);
            if (Math.Abs(rounded) < 9.2e18) Assert.Equal((long)rounded, n);
            var e3 = X87Env.Default;
            long t = Float80.ToInt(F(scaled), 32, truncate: true, ref e3);
            double truncated = Math.Truncate(scaled);
            if (truncated is >= int.MinValue and <= int.MaxValue) Assert.Equal((long)truncated, t);
            else Assert.Equal(int.MinValue, (int)t);
        }
    }

    [Fact]
    public void Loads_from_double_and_single_are_exact_and_round_trip()
    {
        var rng = new Random(80287);
        for (int k = 0; k < Cases; k++)
        {
            double a = RandomDouble(rng);
            var env = X87Env.Default;
            var f = Float80.FromDouble(D(a), ref env);
            bool snan = double.IsNaN(a) && (D(a) & 0x0008_0000_0000_0000) == 0;
            Assert.Equal(snan, (env.Flags & X87Exceptions.Invalid) != 0);
            Assert.Equal(a != 0 && double.IsSubnormal(a), (env.Flags & X87Exceptions.Denormal) != 0);
            var back = X87Env.Default;
            ulong bits = Float80.ToDouble(f, ref back);
            Assert.Equal(snan ? D(a) | 0x0008_0000_0000_0000 : D(a), bits);
            Assert.Equal(X87Exceptions.None, back.Flags);
        }
    }

    // ---- Hand-derived extended-precision cases.

    private static Float80 X(ushort se, ulong sig) => new(se, sig);

    [Fact]
    public void Extended_rounding_of_one_plus_small_values_follows_each_rounding_mode()
    {
        var one = Float80.One;
        var half = X(0x3fbf, 0x8000_0000_0000_0000);       // 2^-64: exactly half an ulp of 1.0
        var threeQuarters = X(0x3fbf, 0xc000_0000_0000_0000); // 1.5 × 2^-64
        var env = Env();
        Assert.Equal(one, Float80.Add(one, half, ref env)); // tie: to even
        Assert.Equal(X87Exceptions.Precision, env.Flags);
        Assert.False(env.RoundedUp);
        env = Env();
        Assert.Equal(X(0x3fff, 0x8000_0000_0000_0001), Float80.Add(one, threeQuarters, ref env));
        Assert.True(env.RoundedUp);
        env = Env(rc: X87Rounding.Up);
        Assert.Equal(X(0x3fff, 0x8000_0000_0000_0001), Float80.Add(one, half, ref env));
        Assert.True(env.RoundedUp);
        env = Env(rc: X87Rounding.Down);
        Assert.Equal(one, Float80.Add(one, threeQuarters, ref env));
        env = Env(rc: X87Rounding.Down);
        Assert.Equal(X(0xbfff, 0x8000_0000_0000_0001), Float80.Subtract(one.Negate(), threeQuarters, ref env)); // toward −∞
        env = Env(rc: X87Rounding.TowardZero);
        Assert.Equal(X(0xbfff, 0x8000_0000_0000_0000), Float80.Subtract(one.Negate(), threeQuarters, ref env));
        // x − x is +0, or −0 when rounding down.
        env = Env();
        Assert.Equal(Float80.Zero, Float80.Subtract(one, one, ref env));
        env = Env(rc: X87Rounding.Down);
        Assert.Equal(Float80.NegativeZero, Float80.Subtract(one, one, ref env));
    }

    [Fact]
    public void Known_extended_results_one_third_sqrt_two_and_the_constants()
    {
        var env = Env();
        var third = Float80.Divide(Float80.One, F(3), ref env);
        Assert.Equal(X(0x3ffd, 0xaaaa_aaaa_aaaa_aaab), third);
        Assert.True(env.RoundedUp);
        env = Env(pc: X87Precision.Single);
        Assert.Equal(X(0x3ffd, 0xaaaa_ab00_0000_0000), Float80.Divide(Float80.One, F(3), ref env));
        env = Env(pc: X87Precision.Double);
        Assert.Equal(X(0x3ffd, 0xaaaa_aaaa_aaaa_a800), Float80.Divide(Float80.One, F(3), ref env));
        env = Env();
        Assert.Equal(X(0x3fff, 0xb504_f333_f9de_6484), Float80.Sqrt(F(2), ref env)); // √2 = 1.6A09E667F3BCC908B2FB…
        Assert.False(env.RoundedUp);
        Assert.Equal(X(0x4000, 0xc90f_daa2_2168_c235), Float80.Pi(X87Rounding.NearestEven));
        Assert.Equal(X(0x4000, 0xc90f_daa2_2168_c234), Float80.Pi(X87Rounding.Down));
        Assert.Equal(X(0x3fff, 0xb8aa_3b29_5c17_f0bc), Float80.Log2E(X87Rounding.NearestEven));
        Assert.Equal(X(0x4000, 0xd49a_784b_cd1b_8afe), Float80.Log2Ten(X87Rounding.NearestEven));
        Assert.Equal(X(0x4000, 0xd49a_784b_cd1b_8aff), Float80.Log2Ten(X87Rounding.Up));
        Assert.Equal(X(0x3ffd, 0x9a20_9a84_fbcf_f799), Float80.Log10Two(X87Rounding.NearestEven));
        Assert.Equal(X(0x3ffe, 0xb172_17f7_d1cf_79ac), Float80.LnTwo(X87Rounding.NearestEven));
    }

    [Fact]
    public void Overflow_and_underflow_give_the_masked_and_the_unmasked_responses()
    {
        var max = X(0x7ffe, ulong.MaxValue);
        var env = Env();
        Assert.Equal(Float80.PositiveInfinity, Float80.Add(max, max, ref env));
        Assert.Equal(X87Exceptions.Overflow | X87Exceptions.Precision, env.Flags);
        Assert.True(env.RoundedUp);
        env = Env(rc: X87Rounding.TowardZero);
        Assert.Equal(max, Float80.Add(max, max, ref env));
        env = Env(rc: X87Rounding.Down);
        Assert.Equal(max, Float80.Multiply(max, F(2), ref env)); // positive overflow rounding down: the largest finite value

        // Unmasked overflow into a register: the exponent comes back reduced by 24,576 (SDM vol. 1 §8.5.4).
        env = Env();
        env.Masks &= ~X87Exceptions.Overflow;
        var big = X(0x7ffe, 0x8000_0000_0000_0000);
        Assert.Equal(X(0x7fff - 24576, 0x8000_0000_0000_0000), Float80.Multiply(big, F(2), ref env));
        Assert.Equal(X87Exceptions.Overflow, env.Flags);

        // Gradual underflow: the smallest denormal halves to zero (tie to even), UE and PE.
        var smallest = X(0, 1);
        env = Env();
        Assert.Equal(Float80.Zero, Float80.Multiply(smallest, F(0.5), ref env));
        Assert.Equal(X87Exceptions.Underflow | X87Exceptions.Precision | X87Exceptions.Denormal, env.Flags);
        env = Env();
        Assert.Equal(X(0, 3), Float80.Multiply(X(0, 2), F(1.5), ref env)); // exact denormal result: DE only
        Assert.Equal(X87Exceptions.Denormal, env.Flags);
        // Unmasked underflow: the exponent comes back raised by 24,576, flagged even though exact.
        env = Env();
        env.Masks &= ~X87Exceptions.Underflow;
        var tiny = X(0x0001, 0x8000_0000_0000_0000);
        Assert.Equal(X(0x0001 + 24576 - 1, 0x8000_0000_0000_0000), Float80.Multiply(tiny, F(0.5), ref env));
        Assert.Equal(X87Exceptions.Underflow, env.Flags);
    }

    [Fact]
    public void Invalid_operations_return_the_indefinite_and_NaNs_propagate_by_the_x87_rules()
    {
        var env = Env();
        Assert.Equal(Float80.Indefinite, Float80.Subtract(Float80.PositiveInfinity, Float80.PositiveInfinity, ref env));
        Assert.Equal(X87Exceptions.Invalid, env.Flags);
        env = Env();
        Assert.Equal(Float80.Indefinite, Float80.Multiply(Float80.Zero, Float80.NegativeInfinity, ref env));
        env = Env();
        Assert.Equal(Float80.Indefinite, Float80.Sqrt(F(-1), ref env));
        env = Env();
        Assert.Equal(Float80.PositiveInfinity, Float80.Divide(F(1), Float80.Zero, ref env));
        Assert.Equal(X87Exceptions.ZeroDivide, env.Flags);
        // Unsupported encodings are invalid operands.
        env = Env();
        Assert.Equal(Float80.Indefinite, Float80.Add(X(0x3fff, 0x4000_0000_0000_0000), Float80.One, ref env)); // unnormal
        Assert.Equal(X87Exceptions.Invalid, env.Flags);
        // NaNs: the QNaN beats an SNaN, else the larger significand wins; SNaNs are quieted with IE.
        var q1 = X(0x7fff, 0xc000_0000_0000_0001);
        var q2 = X(0xffff, 0xc000_0000_0000_0002);
        var s3 = X(0x7fff, 0xa000_0000_0000_0000);
        env = Env();
        Assert.Equal(q2, Float80.Add(q1, q2, ref env));
        Assert.Equal(X87Exceptions.None, env.Flags);
        env = Env();
        Assert.Equal(q1, Float80.Multiply(s3, q1, ref env));
        Assert.Equal(X87Exceptions.Invalid, env.Flags);
        env = Env();
        Assert.Equal(X(0x7fff, 0xe000_0000_0000_0000), Float80.Sqrt(s3, ref env));
    }

    [Fact]
    public void Integer_bcd_remainder_scale_and_extract_by_hand()
    {
        var env = Env();
        Assert.Equal(int.MinValue, Float80.ToInt(F(2147483648.0), 32, truncate: false, ref env));
        Assert.Equal(X87Exceptions.Invalid, env.Flags);
        env = Env();
        Assert.Equal(-2147483648L, Float80.ToInt(F(-2147483648.0), 32, truncate: false, ref env));
        Assert.Equal(X87Exceptions.None, env.Flags);
        env = Env(rc: X87Rounding.Up);
        Assert.Equal(3L, Float80.ToInt(F(2.25), 16, truncate: false, ref env));
        Assert.True(env.RoundedUp);
        env = Env();
        Assert.Equal(2L, Float80.ToInt(F(2.5), 16, truncate: false, ref env));
        Assert.Equal(-2L, Float80.ToInt(F(-2.75), 16, truncate: true, ref env));

        env = Env();
        var (low, high) = Float80.ToBcd(F(-1234567890123456789.0 / 10), ref env); // −123456789012345680 (nearest double)
        Assert.Equal(0x8012, high);
        Assert.Equal(0x3456_7890_1234_5680UL, low);
        Assert.Equal(F(-123456789012345680.0), Float80.FromBcd(low, high));
        env = Env();
        Assert.Equal((0xc000_0000_0000_0000UL, (ushort)0xffff), Float80.ToBcd(F(1e18), ref env));
        Assert.Equal(X87Exceptions.Invalid, env.Flags);

        // FPREM truncates the quotient, FPREM1 rounds it: 7 rem 2 = 1 (q = 3) and −1 (q = 4).
        env = Env();
        Assert.Equal(F(1), Float80.Remainder(F(7), F(2), ieee: false, ref env, out bool complete, out int q));
        Assert.True(complete);
        Assert.Equal(3, q);
        Assert.Equal(F(-1), Float80.Remainder(F(7), F(2), ieee: true, ref env, out _, out q));
        Assert.Equal(4, q);
        Assert.Equal(F(Math.IEEERemainder(1e300, 3.7)), ReduceFully(F(1e300), F(3.7), ieee: true)); // 64-bit partial steps, then the last
        Assert.Equal(F(1e300 % 3.7), ReduceFully(F(1e300), F(3.7), ieee: false));

        env = Env();
        Assert.Equal(F(40), Float80.Scale(F(5), F(3.9), ref env));
        Assert.Equal(F(-0.625), Float80.Scale(F(-5), F(-3.9), ref env));
        var (exponent, significand) = Float80.Extract(F(-40), ref env);
        Assert.Equal(F(5), exponent);
        Assert.Equal(F(-1.25), significand);
        env = Env();
        (exponent, _) = Float80.Extract(Float80.Zero, ref env);
        Assert.Equal(Float80.NegativeInfinity, exponent);
        Assert.Equal(X87Exceptions.ZeroDivide, env.Flags);
    }

    private static Float80 ReduceFully(Float80 a, Float80 b, bool ieee)
    {
        for (int k = 0; k < 100; k++)
        {
            var env = X87Env.Default;
            a = Float80.Remainder(a, b, ieee, ref env, out bool complete, out _);
            if (complete) return a;
        }
        return a;
    }

    [Fact]
    public void Compare_orders_values_and_flags_NaNs_as_ordered_or_unordered()
    {
        var env = Env();
        Assert.Equal(X87Compare.Equal, Float80.Compare(Float80.Zero, Float80.NegativeZero, unordered: false, ref env));
        Assert.Equal(X87Compare.Less, Float80.Compare(F(-3), F(2), unordered: false, ref env));
        Assert.Equal(X87Compare.Greater, Float80.Compare(F(-2), F(-3), unordered: false, ref env));
        Assert.Equal(X87Compare.Less, Float80.Compare(X(0, 1), X(0, 2), unordered: false, ref env));
        Assert.Equal(X87Exceptions.Denormal, env.Flags);
        env = Env();
        Assert.Equal(X87Compare.Unordered, Float80.Compare(Float80.Indefinite, F(1), unordered: true, ref env));
        Assert.Equal(X87Exceptions.None, env.Flags);
        Assert.Equal(X87Compare.Unordered, Float80.Compare(Float80.Indefinite, F(1), unordered: false, ref env));
        Assert.Equal(X87Exceptions.Invalid, env.Flags);
    }

    [Fact]
    public void Transcendentals_agree_with_the_host_to_double_precision()
    {
        var rng = new Random(1);
        for (int k = 0; k < 20_000; k++)
        {
            double x = (rng.NextDouble() * 2 - 1) * Math.Pow(2, -rng.Next(0, 30));
            Near(Math.Sin(x), Float80.Trig(F(x), Float80.TrigSin, ref Ref(Env())));
            Near(Math.Cos(x), Float80.Trig(F(x), Float80.TrigCos, ref Ref(Env())));
            Near(Math.Tan(x), Float80.Trig(F(x), Float80.TrigTan, ref Ref(Env())));
            Near(Math.Pow(2, x) - 1, Float80.Exp2M1(F(x), ref Ref(Env())), absolute: 5e-16); // the host's 2^x − 1 itself cancels
            double y = rng.NextDouble() * 100 + 1e-3;
            Near(x * Math.Log2(y), Float80.YLog2X(F(y), F(x), ref Ref(Env())));
            Near(Math.Atan2(x, y - 50), Float80.Atan2(F(x), F(y - 50), ref Ref(Env())));
            Near(y * Math.Log2(1 + x * 0.29), Float80.YLog2XP1(F(x * 0.29), F(y), ref Ref(Env())), absolute: 1e-13);
        }

        static void Near(double expected, Float80 actual, double absolute = 0)
        {
            double a = actual.ToDoubleNearest();
            double tolerance = Math.Max(Math.Abs(expected) * 4e-16, absolute);
            Assert.True(Math.Abs(a - expected) <= tolerance, $"expected {expected:R}, got {a:R}");
        }
    }
}
