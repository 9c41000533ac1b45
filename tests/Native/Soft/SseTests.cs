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
}
