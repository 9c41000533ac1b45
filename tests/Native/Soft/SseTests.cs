// SSE/SSE2 on the soft CPU against the host CPU's own SSE2 (System.Runtime.Intrinsics.X86, run with the
// default MXCSR: round to nearest, all exceptions masked): random operands, special values (zeros, infinities,
// NaNs, denormals, extremes), bit-for-bit results. MXCSR flags, rounding modes and alignment rules are checked
// against the SDM's definitions.
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ActorVmm.Native.Soft;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace ActorVmm.Native.Tests.Soft;

public sealed class SseTests
{
    private static SoftCpuHarness SseHarness()
    {
        var h = new SoftCpuHarness();
        var sys = h.Cpu.GetSystemRegisters();
        sys.Cr4 |= 0x600; // OSFXSR, OSXMMEXCPT
        h.Cpu.SetSystemRegisters(sys);
        return h;
    }

    private static UInt128 ToU(Vector128<byte> v) => v.AsUInt64() is var q ? new UInt128(q.GetElement(1), q.GetElement(0)) : 0;

    private static Vector128<byte> ToV(UInt128 u) => Vector128.Create((ulong)u, (ulong)(u >> 64)).AsByte();

    private static readonly uint[] SpecialSingles =
        [0, 0x8000_0000, 0x3f80_0000, 0xbf80_0000, 0x7f80_0000, 0xff80_0000, 0x7fc0_0000, 0xffc0_1234, 0x7f80_0001, 0x0000_0001, 0x807f_ffff, 0x7f7f_ffff, 0x0080_0000, 0x4b00_0000, 0x3eaa_aaab];

    private static readonly ulong[] SpecialDoubles =
        [0, 0x8000_0000_0000_0000, 0x3ff0_0000_0000_0000, 0xbff0_0000_0000_0000, 0x7ff0_0000_0000_0000, 0xfff0_0000_0000_0000,
         0x7ff8_0000_0000_0000, 0xfff8_0000_0000_1234, 0x7ff0_0000_0000_0001, 1, 0x800f_ffff_ffff_ffff, 0x7fef_ffff_ffff_ffff, 0x4330_0000_0000_0000];

    private static UInt128 RandomVector(Random rng, int kind)
    {
        // kind 0: random bits; 1: special singles; 2: special doubles; 3: a shift count (small, or any 64-bit value)
        switch (kind)
        {
            case 3:
                return rng.Next(4) == 0 ? (ulong)rng.NextInt64() : (ulong)rng.Next(70);
            case 1:
                {
                    UInt128 v = 0;
                    for (int k = 0; k < 4; k++) v |= (UInt128)(rng.Next(3) == 0 ? (uint)rng.NextInt64(0, 1L << 32) : SpecialSingles[rng.Next(SpecialSingles.Length)]) << (32 * k);
                    return v;
                }
            case 2:
                {
                    ulong Pick() => rng.Next(3) == 0 ? (ulong)rng.NextInt64() ^ ((ulong)rng.Next(2) << 63) : SpecialDoubles[rng.Next(SpecialDoubles.Length)];
                    return new UInt128(Pick(), Pick());
                }
            default:
                return new UInt128((ulong)rng.NextInt64() ^ ((ulong)rng.Next(2) << 63), (ulong)rng.NextInt64() ^ ((ulong)rng.Next(2) << 63));
        }
    }

    public static TheoryData<string> BinaryOps => new(Ops.Keys);

    private static readonly Dictionary<string, (Action<Assembler> Emit, Func<Vector128<byte>, Vector128<byte>, Vector128<byte>> Host, int Kind)> Ops = new()
    {
        ["paddb"] = (a => a.paddb(xmm0, xmm1), (x, y) => Sse2.Add(x, y), 0),
        ["paddw"] = (a => a.paddw(xmm0, xmm1), (x, y) => Sse2.Add(x.AsUInt16(), y.AsUInt16()).AsByte(), 0),
        ["paddq"] = (a => a.paddq(xmm0, xmm1), (x, y) => Sse2.Add(x.AsUInt64(), y.AsUInt64()).AsByte(), 0),
        ["psubd"] = (a => a.psubd(xmm0, xmm1), (x, y) => Sse2.Subtract(x.AsUInt32(), y.AsUInt32()).AsByte(), 0),
        ["paddsb"] = (a => a.paddsb(xmm0, xmm1), (x, y) => Sse2.AddSaturate(x.AsSByte(), y.AsSByte()).AsByte(), 0),
        ["paddusw"] = (a => a.paddusw(xmm0, xmm1), (x, y) => Sse2.AddSaturate(x.AsUInt16(), y.AsUInt16()).AsByte(), 0),
        ["psubsw"] = (a => a.psubsw(xmm0, xmm1), (x, y) => Sse2.SubtractSaturate(x.AsInt16(), y.AsInt16()).AsByte(), 0),
        ["psubusb"] = (a => a.psubusb(xmm0, xmm1), (x, y) => Sse2.SubtractSaturate(x, y), 0),
        ["pcmpeqb"] = (a => a.pcmpeqb(xmm0, xmm1), (x, y) => Sse2.CompareEqual(x, y), 0),
        ["pcmpgtw"] = (a => a.pcmpgtw(xmm0, xmm1), (x, y) => Sse2.CompareGreaterThan(x.AsInt16(), y.AsInt16()).AsByte(), 0),
        ["pcmpgtd"] = (a => a.pcmpgtd(xmm0, xmm1), (x, y) => Sse2.CompareGreaterThan(x.AsInt32(), y.AsInt32()).AsByte(), 0),
        ["pmullw"] = (a => a.pmullw(xmm0, xmm1), (x, y) => Sse2.MultiplyLow(x.AsInt16(), y.AsInt16()).AsByte(), 0),
        ["pmulhw"] = (a => a.pmulhw(xmm0, xmm1), (x, y) => Sse2.MultiplyHigh(x.AsInt16(), y.AsInt16()).AsByte(), 0),
        ["pmulhuw"] = (a => a.pmulhuw(xmm0, xmm1), (x, y) => Sse2.MultiplyHigh(x.AsUInt16(), y.AsUInt16()).AsByte(), 0),
        ["pmuludq"] = (a => a.pmuludq(xmm0, xmm1), (x, y) => Sse2.Multiply(x.AsUInt32(), y.AsUInt32()).AsByte(), 0),
        ["pmaddwd"] = (a => a.pmaddwd(xmm0, xmm1), (x, y) => Sse2.MultiplyAddAdjacent(x.AsInt16(), y.AsInt16()).AsByte(), 0),
        ["psadbw"] = (a => a.psadbw(xmm0, xmm1), (x, y) => Sse2.SumAbsoluteDifferences(x, y).AsByte(), 0),
        ["pavgb"] = (a => a.pavgb(xmm0, xmm1), (x, y) => Sse2.Average(x, y), 0),
        ["pminub"] = (a => a.pminub(xmm0, xmm1), (x, y) => Sse2.Min(x, y), 0),
        ["pmaxsw"] = (a => a.pmaxsw(xmm0, xmm1), (x, y) => Sse2.Max(x.AsInt16(), y.AsInt16()).AsByte(), 0),
        ["pandn"] = (a => a.pandn(xmm0, xmm1), (x, y) => Sse2.AndNot(x, y), 0),
        ["punpcklbw"] = (a => a.punpcklbw(xmm0, xmm1), (x, y) => Sse2.UnpackLow(x, y), 0),
        ["punpckhwd"] = (a => a.punpckhwd(xmm0, xmm1), (x, y) => Sse2.UnpackHigh(x.AsUInt16(), y.AsUInt16()).AsByte(), 0),
        ["punpckhqdq"] = (a => a.punpckhqdq(xmm0, xmm1), (x, y) => Sse2.UnpackHigh(x.AsUInt64(), y.AsUInt64()).AsByte(), 0),
        ["packsswb"] = (a => a.packsswb(xmm0, xmm1), (x, y) => Sse2.PackSignedSaturate(x.AsInt16(), y.AsInt16()).AsByte(), 0),
        ["packuswb"] = (a => a.packuswb(xmm0, xmm1), (x, y) => Sse2.PackUnsignedSaturate(x.AsInt16(), y.AsInt16()), 0),
        ["packssdw"] = (a => a.packssdw(xmm0, xmm1), (x, y) => Sse2.PackSignedSaturate(x.AsInt32(), y.AsInt32()).AsByte(), 0),
        ["psraw"] = (a => a.psraw(xmm0, xmm1), (x, y) => Sse2.ShiftRightArithmetic(x.AsInt16(), y.AsInt16()).AsByte(), 3),
        ["psrlq"] = (a => a.psrlq(xmm0, xmm1), (x, y) => Sse2.ShiftRightLogical(x.AsUInt64(), y.AsUInt64()).AsByte(), 3),
        ["addps"] = (a => a.addps(xmm0, xmm1), (x, y) => Sse.Add(x.AsSingle(), y.AsSingle()).AsByte(), 1),
        ["subss"] = (a => a.subss(xmm0, xmm1), (x, y) => Sse.SubtractScalar(x.AsSingle(), y.AsSingle()).AsByte(), 1),
        ["mulps"] = (a => a.mulps(xmm0, xmm1), (x, y) => Sse.Multiply(x.AsSingle(), y.AsSingle()).AsByte(), 1),
        ["divps"] = (a => a.divps(xmm0, xmm1), (x, y) => Sse.Divide(x.AsSingle(), y.AsSingle()).AsByte(), 1),
        ["minps"] = (a => a.minps(xmm0, xmm1), (x, y) => Sse.Min(x.AsSingle(), y.AsSingle()).AsByte(), 1),
        ["maxss"] = (a => a.maxss(xmm0, xmm1), (x, y) => Sse.MaxScalar(x.AsSingle(), y.AsSingle()).AsByte(), 1),
        ["sqrtps"] = (a => a.sqrtps(xmm0, xmm1), (x, y) => Sse.Sqrt(y.AsSingle()).AsByte(), 1),
        ["cmpltps"] = (a => a.cmpps(xmm0, xmm1, 1), (x, y) => Sse.CompareLessThan(x.AsSingle(), y.AsSingle()).AsByte(), 1),
        ["cmpunordps"] = (a => a.cmpps(xmm0, xmm1, 3), (x, y) => Sse.CompareUnordered(x.AsSingle(), y.AsSingle()).AsByte(), 1),
        ["addpd"] = (a => a.addpd(xmm0, xmm1), (x, y) => Sse2.Add(x.AsDouble(), y.AsDouble()).AsByte(), 2),
        ["mulsd"] = (a => a.mulsd(xmm0, xmm1), (x, y) => Sse2.MultiplyScalar(x.AsDouble(), y.AsDouble()).AsByte(), 2),
        ["divpd"] = (a => a.divpd(xmm0, xmm1), (x, y) => Sse2.Divide(x.AsDouble(), y.AsDouble()).AsByte(), 2),
        ["sqrtpd"] = (a => a.sqrtpd(xmm0, xmm1), (x, y) => Sse2.Sqrt(y.AsDouble()).AsByte(), 2),
        ["minsd"] = (a => a.minsd(xmm0, xmm1), (x, y) => Sse2.MinScalar(x.AsDouble(), y.AsDouble()).AsByte(), 2),
        ["cmpnlepd"] = (a => a.cmppd(xmm0, xmm1, 6), (x, y) => Sse2.CompareNotLessThanOrEqual(x.AsDouble(), y.AsDouble()).AsByte(), 2),
        ["cvtps2pd"] = (a => a.cvtps2pd(xmm0, xmm1), (x, y) => Sse2.ConvertToVector128Double(y.AsSingle()).AsByte(), 1),
        ["cvtpd2ps"] = (a => a.cvtpd2ps(xmm0, xmm1), (x, y) => Sse2.ConvertToVector128Single(y.AsDouble()).AsByte(), 2),
        ["cvtdq2ps"] = (a => a.cvtdq2ps(xmm0, xmm1), (x, y) => Sse2.ConvertToVector128Single(y.AsInt32()).AsByte(), 0),
        ["cvtps2dq"] = (a => a.cvtps2dq(xmm0, xmm1), (x, y) => Sse2.ConvertToVector128Int32(y.AsSingle()).AsByte(), 1),
        ["cvttpd2dq"] = (a => a.cvttpd2dq(xmm0, xmm1), (x, y) => Sse2.ConvertToVector128Int32WithTruncation(y.AsDouble()).AsByte(), 2),
        ["shufps"] = (a => a.shufps(xmm0, xmm1, 0x9c), (x, y) => Sse.Shuffle(x.AsSingle(), y.AsSingle(), 0x9c).AsByte(), 0),
        ["pshufd"] = (a => a.pshufd(xmm0, xmm1, 0x4e), (x, y) => Sse2.Shuffle(y.AsUInt32(), 0x4e).AsByte(), 0),
    };

    [Theory]
    [MemberData(nameof(BinaryOps))]
    public void Matches_the_host_cpu_bit_for_bit(string name)
    {
        Assert.True(Sse2.IsSupported, "the host has no SSE2 (every x86-64 CPU has it)");
        var (emit, host, kind) = Ops[name];
        var rng = new Random(name.GetHashCode(StringComparison.Ordinal) ^ 20261124);
        using var h = SseHarness();
        h.Program(emit);
        for (int n = 0; n < 300; n++)
        {
            UInt128 a = RandomVector(rng, kind == 3 ? 0 : kind), b = RandomVector(rng, kind);
            h.Cpu.Xmm[0] = a;
            h.Cpu.Xmm[1] = b;
            h.Cpu.Mxcsr = 0x1f80;
            h.Set(r => { r.Rip = SoftCpuHarness.Code; return r; });
            Assert.Equal(StepOutcome.Halted, h.RunToHalt());
            UInt128 expected = ToU(host(ToV(a), ToV(b)));
            Assert.True(expected == h.Cpu.Xmm[0], $"{name}: a={a:x32} b={b:x32} host={expected:x32} soft={h.Cpu.Xmm[0]:x32}");
        }
    }

    // Found by the 64-bit silicon harness (SiliconLong64Tests), each checked against the host CPU and the SDM.

    /// <summary>Runs one instruction on XMM0/XMM1 (and EAX) under <paramref name="mxcsr"/>: XMM0, MXCSR and EAX after.</summary>
    private static (UInt128 X0, uint Mxcsr, uint Eax) Run(Action<Assembler> emit, UInt128 x0, UInt128 x1, uint mxcsr)
    {
        using var h = SseHarness();
        h.Program(emit);
        h.Cpu.Xmm[0] = x0;
        h.Cpu.Xmm[1] = x1;
        h.Cpu.Mxcsr = mxcsr;
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        return (h.Cpu.Xmm[0], h.Cpu.Mxcsr, (uint)h.Regs.Rax);
    }

    private const uint Rn = 0x1f80, Rd = 0x3f80, Ru = 0x5f80, Rz = 0x7f80, Daz = 0x40;
    private const uint IE = 1, DE = 2, ZE = 4, UE = 0x10, PE = 0x20;

    [Fact]
    public void Conversions_to_integer_do_not_signal_the_denormal_exception()
    {
        // SDM: CVT(T)SS2SI, CVT(T)SD2SI, CVT(T)PS2DQ and CVT(T)PD2DQ raise only invalid and precision.
        var r = Run(a => a.cvttss2si(eax, xmm1), 0, 0x8000_0001, Rn);
        Assert.Equal((0u, Rn | PE), (r.Eax, r.Mxcsr));
        r = Run(a => a.cvtsd2si(eax, xmm1), 0, 0x000f_ffff_ffff_ffffUL, Ru);
        Assert.Equal((1u, Ru | PE), (r.Eax, r.Mxcsr));
        r = Run(a => a.cvtps2dq(xmm0, xmm1), 0, 0x0000_0001, Rn);
        Assert.Equal(Rn | PE, r.Mxcsr);
    }

    [Theory]
    [InlineData(0x7f00_0000u, 0x0000_0000u)] // 2^127: 2^-127 is tiny
    [InlineData(0xff7f_ffffu, 0x8000_0000u)] // -max: -0
    [InlineData(0x7e80_0000u, 0x0000_0000u)] // 2^126: the SDM leaves it to the part; silicon here (AMD) flushes
    [InlineData(0x7e00_0000u, 0x0100_0000u)] // 2^125: 2^-125 is normal
    public void Rcp_flushes_tiny_results_to_zero_of_the_operands_sign(uint x, uint expected)
    {
        var r = Run(a => a.rcpss(xmm0, xmm1), 0x1234_5678_0000_0000UL, x, Rn);
        Assert.Equal(expected, (uint)r.X0);
        Assert.Equal(0x1234_5678u, (uint)(r.X0 >> 32)); // the upper lanes are kept
        Assert.Equal(Rn, r.Mxcsr);
    }

    [Fact]
    public void Fxsave_writes_nothing_past_the_xmm_registers()
    {
        // Bytes 464-511 are software's (the SDM: the processor does not write them), and silicon leaves the reserved
        // bytes 416-463 alone too; outside 64-bit mode the XMM8-15 area (288-415) is reserved as well.
        using var h = SseHarness();
        for (uint k = 0; k < 512; k += 4) h.Memory.WriteObject(SoftCpuHarness.Data + k, 0xaaaa_aaaau);
        h.Program(a => a.fxsave(__[SoftCpuHarness.Data]));
        h.Cpu.Xmm[7] = new UInt128(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        h.Cpu.Mxcsr = Rz | PE;
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(Rz | PE, h.Read32(SoftCpuHarness.Data + 24));
        Assert.Equal(0x7654_3210u, h.Read32(SoftCpuHarness.Data + 160 + 7 * 16));
        for (uint k = 288; k < 512; k += 4) Assert.Equal(0xaaaa_aaaau, h.Read32(SoftCpuHarness.Data + k));
    }

    [Fact]
    public void Min_and_max_with_a_nan_return_the_source_as_daz_reads_it()
    {
        var r = Run(a => a.minss(xmm0, xmm1), 0x7fc0_0000, 0x0000_0005, Rn | Daz);
        Assert.Equal((UInt128)0, r.X0);
        Assert.Equal(Rn | Daz | IE, r.Mxcsr);
        r = Run(a => a.maxsd(xmm0, xmm1), 0xfff8_0000_0000_0000UL, 0x8000_0000_0000_0005UL, Rn | Daz);
        Assert.Equal((UInt128)0x8000_0000_0000_0000UL, r.X0);
        r = Run(a => a.minss(xmm0, xmm1), 0x7fc0_0000, 0x0000_0005, Rn);
        Assert.Equal((UInt128)5, r.X0);
    }

    [Fact]
    public void The_denormal_exception_yields_to_divide_by_zero_and_invalid()
    {
        var r = Run(a => a.divss(xmm0, xmm1), 0x0000_0001, 0, Rn);
        Assert.Equal(((UInt128)0x7f80_0000, Rn | ZE), (r.X0, r.Mxcsr));
        r = Run(a => a.sqrtsd(xmm0, xmm1), 0, 0x8000_0000_0000_0001UL, Rn);
        Assert.Equal(((UInt128)0xfff8_0000_0000_0000UL, Rn | IE), (r.X0, r.Mxcsr));
        r = Run(a => a.mulss(xmm0, xmm1), 0x0000_0001, 0x7f80_0000, Rn); // no higher exception: DE stays
        Assert.Equal(((UInt128)0x7f80_0000, Rn | DE), (r.X0, r.Mxcsr));
    }

    [Fact]
    public void Infinity_divided_by_zero_is_an_exact_infinity()
    {
        // Divide-by-zero is raised for finite dividends only; under DAZ a denormal divisor is that zero.
        var r = Run(a => a.divss(xmm0, xmm1), 0xff80_0000, 0x8000_0001, Rn | Daz);
        Assert.Equal(((UInt128)0x7f80_0000, Rn | Daz), (r.X0, r.Mxcsr));
        r = Run(a => a.divsd(xmm0, xmm1), 0x7ff0_0000_0000_0000UL, 0, Rn);
        Assert.Equal(((UInt128)0x7ff0_0000_0000_0000UL, Rn), (r.X0, r.Mxcsr));
    }

    [Theory]
    // Just below the smallest normal single, rounding up to it: not tiny after rounding (x86), so no UE and no FTZ.
    [InlineData(0x380f_ffff_f000_0000UL, Ru | 0x8000, 0x0080_0000u, PE)]
    [InlineData(0x380f_ffff_f000_0000UL, Rn, 0x0080_0000u, PE)]
    [InlineData(0x380f_ffff_f000_0000UL, Rz, 0x007f_ffffu, UE | PE)]
    // The largest single plus half an ulp: rounding to nearest overflows, toward zero or down gives the largest single.
    [InlineData(0x47ef_ffff_f000_0000UL, Rn, 0x7f80_0000u, 0x08 | PE)]
    [InlineData(0x47ef_ffff_f000_0000UL, Rz, 0x7f7f_ffffu, PE)]
    [InlineData(0x47ef_ffff_f000_0000UL, Rd, 0x7f7f_ffffu, PE)]
    [InlineData(0x47ef_ffff_f000_0000UL, Ru, 0x7f80_0000u, 0x08 | PE)]
    public void Overflow_and_tininess_are_detected_after_rounding(ulong source, uint mxcsr, uint expected, uint flags)
    {
        var r = Run(a => a.cvtsd2ss(xmm0, xmm1), 0, source, mxcsr);
        Assert.Equal((expected, mxcsr | flags), ((uint)r.X0, r.Mxcsr));
    }

    [Fact]
    public void An_exact_zero_sum_of_opposite_signs_is_negative_when_rounding_down()
    {
        UInt128 onePointFive = 0x3ff8_0000_0000_0000UL;
        Assert.Equal((UInt128)0x8000_0000_0000_0000UL, Run(a => a.subsd(xmm0, xmm0), onePointFive, 0, Rd).X0);
        Assert.Equal((UInt128)0, Run(a => a.subsd(xmm0, xmm0), onePointFive, 0, Rz).X0);
        Assert.Equal((UInt128)0x8000_0000_8000_0000UL, Run(a => a.addps(xmm0, xmm1), 0x3f80_0000_0000_0000UL, 0xbf80_0000_8000_0000UL, Rd).X0);
        Assert.Equal((UInt128)0x8000_0000, Run(a => a.addss(xmm0, xmm1), 0x8000_0000, 0x8000_0000, Rn).X0); // -0 + -0 = -0
    }

    [Theory]
    // (1 + 2^-52) × 2^-1022 × 0.5: half a subnormal ulp above 2^-1023, a tie (to even: 2^-1023), tiny and inexact.
    [InlineData(0x0010_0000_0000_0001UL, 0x3fe0_0000_0000_0000UL, Rn, 0x0008_0000_0000_0000UL, UE | PE)]
    [InlineData(0x0010_0000_0000_0001UL, 0x3fe0_0000_0000_0000UL, Ru, 0x0008_0000_0000_0001UL, UE | PE)]
    [InlineData(0x0010_0000_0000_0001UL, 0x3fe0_0000_0000_0000UL, Rz, 0x0008_0000_0000_0000UL, UE | PE)]
    // 2^-600 × 2^-600 = 2^-1200: zero (or the smallest subnormal rounding up), tiny and inexact.
    [InlineData(0x1a70_0000_0000_0000UL, 0x1a70_0000_0000_0000UL, Rn, 0UL, UE | PE)]
    [InlineData(0x1a70_0000_0000_0000UL, 0x1a70_0000_0000_0000UL, Ru, 1UL, UE | PE)]
    public void Double_multiplies_into_the_subnormal_range_round_and_flag_exactly(ulong x, ulong y, uint mxcsr, ulong expected, uint flags)
    {
        var r = Run(a => a.mulsd(xmm0, xmm1), x, y, mxcsr);
        Assert.Equal((UInt128)expected, r.X0);
        Assert.Equal(mxcsr | flags, r.Mxcsr);
    }

    [Fact]
    public void Double_divides_of_a_subnormal_dividend_round_by_the_exact_remainder()
    {
        // 2^-1074 / (3 × 2^-60) = 2^-1014 / 3, a normal number whose remainder is far below the smallest subnormal:
        // 1/3's mantissa rounds down to nearest, so rounding up takes the next one.
        var r = Run(a => a.divsd(xmm0, xmm1), 1UL, 0x3c48_0000_0000_0000UL, Ru);
        Assert.Equal(((UInt128)0x0075_5555_5555_5556UL, Ru | DE | PE), (r.X0, r.Mxcsr));
        r = Run(a => a.divsd(xmm0, xmm1), 1UL, 0x3c48_0000_0000_0000UL, Rn);
        Assert.Equal(((UInt128)0x0075_5555_5555_5555UL, Rn | DE | PE), (r.X0, r.Mxcsr));
    }

    [Fact]
    public void Double_square_roots_of_tiny_values_are_inexact()
    {
        // √(2^-1073) = √2 × 2^-537: irrational, so inexact; r × r falls far below the subnormal range.
        var r = Run(a => a.sqrtsd(xmm0, xmm1), 0, 2UL, Rn);
        Assert.Equal((UInt128)BitConverter.DoubleToUInt64Bits(Math.Sqrt(BitConverter.UInt64BitsToDouble(2))), r.X0);
        Assert.Equal(Rn | DE | PE, r.Mxcsr);
        var down = Run(a => a.sqrtsd(xmm0, xmm1), 0, 2UL, Rd);
        var up = Run(a => a.sqrtsd(xmm0, xmm1), 0, 2UL, Ru);
        Assert.Equal((ulong)down.X0 + 1, (ulong)up.X0);
    }
}
