// SSE4.1 and SSE4.2's vector instructions for the software CPU (Intel SDM vol. 2): blends, dot products (with the
// SDM's intermediate roundings), element insert/extract, MPSADBW, PHMINPOSUW, the signed/unsigned minimum and
// maximum, sign and zero extension, 32-bit multiplies, PTEST, ROUNDPS/PD/SS/SD (imm8 or MXCSR rounding, imm8 bit 3
// suppressing the precision exception), packed 64-bit compares and the four string compares PCMPESTRI/PCMPESTRM/
// PCMPISTRI/PCMPISTRM with every imm8 mode. 128-bit memory operands must be aligned (#GP) except for the string
// compares; the narrower loads (PMOVSX/ZX, ROUNDSS/SD, INSERTPS m32, ...) have no alignment rule.
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    internal static Mnemonic[] Sse4Mnemonics =>
    [
        Mnemonic.Blendps, Mnemonic.Blendpd, Mnemonic.Blendvps, Mnemonic.Blendvpd, Mnemonic.Pblendvb, Mnemonic.Pblendw, Mnemonic.Dpps,
        Mnemonic.Dppd, Mnemonic.Extractps, Mnemonic.Insertps, Mnemonic.Mpsadbw, Mnemonic.Movntdqa, Mnemonic.Packusdw, Mnemonic.Pcmpeqq,
        Mnemonic.Pextrb, Mnemonic.Pextrd, Mnemonic.Pextrq, Mnemonic.Pinsrb, Mnemonic.Pinsrd, Mnemonic.Pinsrq, Mnemonic.Phminposuw,
        Mnemonic.Pmaxsb, Mnemonic.Pmaxsd, Mnemonic.Pmaxuw, Mnemonic.Pmaxud, Mnemonic.Pminsb, Mnemonic.Pminsd, Mnemonic.Pminuw,
        Mnemonic.Pminud, Mnemonic.Pmovsxbw, Mnemonic.Pmovsxbd, Mnemonic.Pmovsxbq, Mnemonic.Pmovsxwd, Mnemonic.Pmovsxwq,
        Mnemonic.Pmovsxdq, Mnemonic.Pmovzxbw, Mnemonic.Pmovzxbd, Mnemonic.Pmovzxbq, Mnemonic.Pmovzxwd, Mnemonic.Pmovzxwq,
        Mnemonic.Pmovzxdq, Mnemonic.Pmuldq, Mnemonic.Pmulld, Mnemonic.Ptest, Mnemonic.Roundps, Mnemonic.Roundpd, Mnemonic.Roundss,
        Mnemonic.Roundsd,
        // SSE4.2
        Mnemonic.Pcmpgtq, Mnemonic.Pcmpestri, Mnemonic.Pcmpestri64, Mnemonic.Pcmpestrm, Mnemonic.Pcmpestrm64, Mnemonic.Pcmpistri,
        Mnemonic.Pcmpistrm,
    ];

    private bool Sse4Instruction(in Instruction i)
    {
        var m = i.Mnemonic;
        switch (m)
        {
            case Mnemonic.Blendps or Mnemonic.Blendpd or Mnemonic.Pblendw:
                {
                    int bits = m == Mnemonic.Blendps ? 32 : m == Mnemonic.Blendpd ? 64 : 16;
                    UInt128 a = Dest(i), b = ReadVec(i, 1);
                    int imm = i.Immediate8;
                    for (int k = 0; k < 128 / bits; k++)
                    {
                        if (((imm >> k) & 1) != 0) a = (a & ~LaneMask(k, bits)) | (b & LaneMask(k, bits));
                    }
                    Dest(i) = a;
                    return true;
                }
            case Mnemonic.Blendvps or Mnemonic.Blendvpd or Mnemonic.Pblendvb:
                {
                    // The selector is XMM0's lane sign bits (an implicit operand).
                    int bits = m == Mnemonic.Blendvps ? 32 : m == Mnemonic.Blendvpd ? 64 : 8;
                    UInt128 a = Dest(i), b = ReadVec(i, 1), sel = Xmm[0];
                    for (int k = 0; k < 128 / bits; k++)
                    {
                        if (((sel >> (k * bits + bits - 1)) & 1) != 0) a = (a & ~LaneMask(k, bits)) | (b & LaneMask(k, bits));
                    }
                    Dest(i) = a;
                    return true;
                }
            case Mnemonic.Dpps or Mnemonic.Dppd: DotProduct(i, m == Mnemonic.Dpps); return true;
            case Mnemonic.Extractps or Mnemonic.Pextrb or Mnemonic.Pextrd or Mnemonic.Pextrq:
                {
                    int bits = m switch { Mnemonic.Pextrb => 8, Mnemonic.Pextrq => 64, _ => 32 };
                    UInt128 s = Xmm[XmmIndex(i.Op1Register)];
                    int k = i.Immediate8 & (128 / bits - 1);
                    ulong v = (ulong)(s >> (k * bits)) & SizeMask(bits);
                    if (i.Op0Kind == OpKind.Register) WriteReg(i.Op0Register, v); // zero-extended into r32/r64
                    else WriteMem(i, v, bits);
                    return true;
                }
            case Mnemonic.Pinsrb or Mnemonic.Pinsrd or Mnemonic.Pinsrq:
                {
                    int bits = m switch { Mnemonic.Pinsrb => 8, Mnemonic.Pinsrq => 64, _ => 32 };
                    ulong v = (i.Op1Kind == OpKind.Register ? ReadReg(i.Op1Register) : ReadMem(i, bits)) & SizeMask(bits);
                    int k = i.Immediate8 & (128 / bits - 1);
                    Dest(i) = (Dest(i) & ~LaneMask(k, bits)) | ((UInt128)v << (k * bits));
                    return true;
                }
            case Mnemonic.Insertps:
                {
                    int imm = i.Immediate8;
                    uint v = i.Op1Kind == OpKind.Register ? Get<uint>(Xmm[XmmIndex(i.Op1Register)], (imm >> 6) & 3) : (uint)ReadMem(i, 32);
                    UInt128 r = Dest(i);
                    Put(ref r, (imm >> 4) & 3, v);
                    for (int k = 0; k < 4; k++)
                    {
                        if (((imm >> k) & 1) != 0) Put(ref r, k, 0u);
                    }
                    Dest(i) = r;
                    return true;
                }
            case Mnemonic.Mpsadbw:
                {
                    UInt128 a = Dest(i), b = ReadVec(i, 1), r = 0;
                    int imm = i.Immediate8, aOff = ((imm >> 2) & 1) * 4, bOff = (imm & 3) * 4;
                    for (int k = 0; k < 8; k++)
                    {
                        int sum = 0;
                        for (int j = 0; j < 4; j++) sum += Math.Abs(Get<byte>(a, aOff + k + j) - Get<byte>(b, bOff + j));
                        Put(ref r, k, (ushort)sum);
                    }
                    Dest(i) = r;
                    return true;
                }
            case Mnemonic.Movntdqa: Dest(i) = ReadVec(i, 1); return true;
            case Mnemonic.Packusdw: Dest(i) = Pack(Dest(i), ReadVec(i, 1), 32, static v => (ulong)Math.Clamp((int)v, 0, 65535)); return true;
            case Mnemonic.Pcmpeqq: Dest(i) = Lanes<ulong>(Dest(i), ReadVec(i, 1), static (a, b) => a == b ? ulong.MaxValue : 0); return true;
            case Mnemonic.Pcmpgtq: Dest(i) = Lanes<long>(Dest(i), ReadVec(i, 1), static (a, b) => a > b ? -1L : 0); return true;
            case Mnemonic.Phminposuw:
                {
                    UInt128 s = ReadVec(i, 1);
                    int best = 0;
                    for (int k = 1; k < 8; k++)
                    {
                        if (Get<ushort>(s, k) < Get<ushort>(s, best)) best = k;
                    }
                    Dest(i) = Get<ushort>(s, best) | ((UInt128)(uint)best << 16);
                    return true;
                }
            case Mnemonic.Pmaxsb: Dest(i) = Lanes<sbyte>(Dest(i), ReadVec(i, 1), static (a, b) => Math.Max(a, b)); return true;
            case Mnemonic.Pmaxsd: Dest(i) = Lanes<int>(Dest(i), ReadVec(i, 1), static (a, b) => Math.Max(a, b)); return true;
            case Mnemonic.Pmaxuw: Dest(i) = Lanes<ushort>(Dest(i), ReadVec(i, 1), static (a, b) => Math.Max(a, b)); return true;
            case Mnemonic.Pmaxud: Dest(i) = Lanes<uint>(Dest(i), ReadVec(i, 1), static (a, b) => Math.Max(a, b)); return true;
            case Mnemonic.Pminsb: Dest(i) = Lanes<sbyte>(Dest(i), ReadVec(i, 1), static (a, b) => Math.Min(a, b)); return true;
            case Mnemonic.Pminsd: Dest(i) = Lanes<int>(Dest(i), ReadVec(i, 1), static (a, b) => Math.Min(a, b)); return true;
            case Mnemonic.Pminuw: Dest(i) = Lanes<ushort>(Dest(i), ReadVec(i, 1), static (a, b) => Math.Min(a, b)); return true;
            case Mnemonic.Pminud: Dest(i) = Lanes<uint>(Dest(i), ReadVec(i, 1), static (a, b) => Math.Min(a, b)); return true;
            case Mnemonic.Pmovsxbw or Mnemonic.Pmovsxbd or Mnemonic.Pmovsxbq or Mnemonic.Pmovsxwd or Mnemonic.Pmovsxwq or Mnemonic.Pmovsxdq
                or Mnemonic.Pmovzxbw or Mnemonic.Pmovzxbd or Mnemonic.Pmovzxbq or Mnemonic.Pmovzxwd or Mnemonic.Pmovzxwq or Mnemonic.Pmovzxdq:
                {
                    string name = m.ToString(); // Pmov{s,z}x{b,w,d}{w,d,q}
                    bool signed = name[4] == 's';
                    int from = WidthOf(name[6]), to = WidthOf(name[7]);
                    UInt128 s = ReadVec(i, 1), r = 0;
                    for (int k = 0; k < 128 / to; k++)
                    {
                        ulong x = (ulong)(s >> (k * from)) & SizeMask(from);
                        if (signed) x = (ulong)((long)(x << (64 - from)) >> (64 - from));
                        r |= (UInt128)(x & SizeMask(to)) << (k * to);
                    }
                    Dest(i) = r;
                    return true;
                }
            case Mnemonic.Pmuldq:
                {
                    UInt128 a = Dest(i), b = ReadVec(i, 1);
                    Dest(i) = new UInt128((ulong)((long)Get<int>(a, 2) * Get<int>(b, 2)), (ulong)((long)Get<int>(a, 0) * Get<int>(b, 0)));
                    return true;
                }
            case Mnemonic.Pmulld: Dest(i) = Lanes<int>(Dest(i), ReadVec(i, 1), static (a, b) => a * b); return true;
            case Mnemonic.Ptest:
                {
                    UInt128 a = Dest(i), b = ReadVec(i, 1);
                    SetArith(((a & b) == 0 ? ZF : 0) | ((~a & b) == 0 ? CF : 0)); // OF, SF, AF, PF cleared
                    return true;
                }
            case Mnemonic.Roundps or Mnemonic.Roundpd or Mnemonic.Roundss or Mnemonic.Roundsd:
                {
                    bool single = m is Mnemonic.Roundps or Mnemonic.Roundss, packed = m is Mnemonic.Roundps or Mnemonic.Roundpd;
                    int bits = single ? 32 : 64, imm = i.Immediate8;
                    int rc = (imm & 4) != 0 ? (int)(Mxcsr >> 13) & 3 : imm & 3;
                    UInt128 s = ReadVec(i, 1), r = packed ? 0 : Dest(i);
                    uint flags = 0;
                    for (int k = 0; k < (packed ? 128 / bits : 1); k++)
                    {
                        ulong x = (ulong)(s >> (k * bits)) & SizeMask(bits);
                        SetLane(ref r, k, bits, SseFloat.RoundToIntegral(x, single, rc, (imm & 8) != 0, Mxcsr, ref flags));
                    }
                    CommitFp(flags);
                    Dest(i) = r;
                    return true;
                }
            case Mnemonic.Pcmpestri or Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm or Mnemonic.Pcmpestrm64 or Mnemonic.Pcmpistri
                or Mnemonic.Pcmpistrm:
                StringCompare(i);
                return true;
            default:
                return false;
        }
    }

    private static int WidthOf(char c) => c switch { 'b' => 8, 'w' => 16, 'd' => 32, _ => 64 };

    private static UInt128 LaneMask(int k, int bits) => (bits == 64 ? (UInt128)ulong.MaxValue : (UInt128)((1UL << bits) - 1)) << (k * bits);

    /// <summary>
    /// DPPS/DPPD (SDM): the products of the lanes selected by imm8[7:4] (others +0.0), each rounded; DPPS sums them
    /// as (p0 + p1) + (p2 + p3), DPPD as p0 + p1, each addition rounded; the sum goes to the lanes imm8[3:0] selects
    /// (others +0.0). Every step is an SSE operation with MXCSR's rounding, DAZ, FTZ and flags.
    /// </summary>
    private void DotProduct(in Instruction i, bool single)
    {
        UInt128 a = Dest(i), b = ReadVec(i, 1), r = 0;
        int bits = single ? 32 : 64, lanes = 128 / bits, imm = i.Immediate8;
        ulong mask = SizeMask(bits);
        uint flags = 0;
        Span<ulong> p = stackalloc ulong[4];
        for (int k = 0; k < lanes; k++)
        {
            p[k] = ((imm >> (4 + k)) & 1) != 0
                ? SseFloat.Arith(SseFloat.Op.Mul, (ulong)(a >> (k * bits)) & mask, (ulong)(b >> (k * bits)) & mask, single, Mxcsr, ref flags)
                : 0;
        }
        ulong sum = SseFloat.Arith(SseFloat.Op.Add, p[0], p[1], single, Mxcsr, ref flags);
        if (single)
        {
            ulong high = SseFloat.Arith(SseFloat.Op.Add, p[2], p[3], single, Mxcsr, ref flags);
            sum = SseFloat.Arith(SseFloat.Op.Add, sum, high, single, Mxcsr, ref flags);
        }
        for (int k = 0; k < lanes; k++)
        {
            if (((imm >> k) & 1) != 0) SetLane(ref r, k, bits, sum);
        }
        CommitFp(flags);
        Dest(i) = r;
    }

    /// <summary>
    /// PCMPESTRI/PCMPESTRM/PCMPISTRI/PCMPISTRM (SDM vol. 2 §4.1): imm8[0] words or bytes, imm8[1] signed, imm8[3:2]
    /// the aggregation (equal any, ranges, equal each, equal ordered), imm8[5:4] the polarity, imm8[6] the most
    /// significant index or the expanded mask. Explicit lengths are |EAX| and |EDX| (RAX/RDX with REX.W) saturated
    /// to the element count; implicit ones end at the first zero element. The index goes to ECX, the mask to XMM0;
    /// CF = result ≠ 0, ZF = the second operand is short, SF = the first is short, OF = result bit 0, AF = PF = 0.
    /// </summary>
    private void StringCompare(in Instruction i)
    {
        var m = i.Mnemonic;
        UInt128 a = Dest(i), b = ReadVec(i, 1);
        int imm = i.Immediate8;
        bool words = (imm & 1) != 0, signed = (imm & 2) != 0;
        int n = words ? 8 : 16;
        bool explicitLength = m is Mnemonic.Pcmpestri or Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm or Mnemonic.Pcmpestrm64;
        int la, lb;
        if (explicitLength)
        {
            bool wide = m is Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm64;
            la = ExplicitLength(Gpr[0], wide, n);
            lb = ExplicitLength(Gpr[2], wide, n);
        }
        else
        {
            la = ImplicitLength(a, words, n);
            lb = ImplicitLength(b, words, n);
        }
        long Element(UInt128 v, int k) => words
            ? signed ? Get<short>(v, k) : Get<ushort>(v, k)
            : signed ? Get<sbyte>(v, k) : Get<byte>(v, k);

        int aggregation = (imm >> 2) & 3;
        uint res1 = 0;
        for (int j = 0; j < n; j++)
        {
            bool bit;
            switch (aggregation)
            {
                case 0: // equal any: b[j] is one of a's valid elements
                    bit = false;
                    for (int k = 0; k < la && !bit; k++) bit = j < lb && Element(a, k) == Element(b, j);
                    break;
                case 1: // ranges: a holds (low, high) pairs
                    bit = false;
                    for (int k = 0; k + 1 < la && j < lb && !bit; k += 2) // a pair with an invalid bound never matches
                        bit = Element(b, j) >= Element(a, k) && Element(b, j) <= Element(a, k + 1);
                    break;
                case 2: // equal each: both invalid compare true, one invalid false
                    bit = j >= la && j >= lb ? true : j >= la || j >= lb ? false : Element(a, j) == Element(b, j);
                    break;
                default: // equal ordered: a (the needle) starts at b[j]
                    bit = true;
                    for (int k = 0; k < n - j && bit; k++)
                    {
                        bool aValid = k < la, bValid = j + k < lb;
                        bit = !aValid ? true : !bValid ? false : Element(a, k) == Element(b, j + k);
                    }
                    break;
            }
            if (bit) res1 |= 1u << j;
        }
        uint all = (1u << n) - 1, validB = (1u << lb) - 1;
        uint res2 = ((imm >> 4) & 3) switch
        {
            1 => ~res1 & all,
            3 => (res1 ^ validB) & all, // negated only where b's elements are valid
            _ => res1,
        };
        uint flags = (res2 != 0 ? CF : 0) | (lb < n ? ZF : 0) | (la < n ? SF : 0) | ((res2 & 1) != 0 ? OF_ : 0);
        if (m is Mnemonic.Pcmpestri or Mnemonic.Pcmpestri64 or Mnemonic.Pcmpistri)
        {
            int index = res2 == 0 ? n : (imm & 0x40) != 0 ? 31 - System.Numerics.BitOperations.LeadingZeroCount(res2) : System.Numerics.BitOperations.TrailingZeroCount(res2);
            Gpr[1] = (uint)index; // ECX, zero-extended into RCX
        }
        else
        {
            UInt128 mask = 0;
            if ((imm & 0x40) == 0) mask = res2;
            else
            {
                int bits = words ? 16 : 8;
                for (int k = 0; k < n; k++)
                {
                    if (((res2 >> k) & 1) != 0) mask |= LaneMask(k, bits);
                }
            }
            Xmm[0] = mask;
        }
        SetArith(flags);
    }

    private static int ExplicitLength(ulong reg, bool wide, int n)
    {
        long v = wide ? (long)reg : (int)reg;
        // |v| saturated to n; the most negative value's magnitude is past any n.
        if (v == long.MinValue) return n;
        return (int)Math.Min(Math.Abs(v), n);
    }

    private static int ImplicitLength(UInt128 v, bool words, int n)
    {
        for (int k = 0; k < n; k++)
        {
            if ((words ? Get<ushort>(v, k) : Get<byte>(v, k)) == 0) return k;
        }
        return n;
    }
}
