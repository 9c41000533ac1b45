// MMX for the software CPU (Intel SDM vol. 1 ch. 9, vol. 3 ch. 12, vol. 2 for each instruction): the eight 64-bit
// MMX registers and every instruction form that names one. MMX itself: MOVD/MOVQ, packed add and subtract with
// wrap-around and with signed and unsigned saturation, PMULLW/PMULHW/PMADDWD, PCMPEQ/PCMPGT, PAND/PANDN/POR/PXOR,
// PSLL/PSRL/PSRA by a register, memory or imm8 count, PACKSSWB/PACKSSDW/PACKUSWB, PUNPCKL/PUNPCKH and EMMS. The mm
// forms that SSE adds (PSHUFW, PINSRW/PEXTRW, PMOVMSKB, PAVGB/PAVGW, PMINUB/PMAXUB/PMINSW/PMAXSW, PSADBW, PMULHUW,
// MASKMOVQ, MOVNTQ, CVTPI2PS/CVTPS2PI/CVTTPS2PI), SSE2 (PADDQ/PSUBQ, PMULUDQ, CVTPI2PD/CVTPD2PI/CVTTPD2PI,
// MOVQ2DQ/MOVDQ2Q) and SSSE3 (PSHUFB, PHADD/PHSUB, PMADDUBSW, PMULHRSW, PSIGN, PABS, PALIGNR).
//
// Aliasing (SDM vol. 3 §12.2): MMn is bits 63:0 of the x87 physical register Rn, whatever TOP says. Every form but
// EMMS sets TOP to 0 and every tag to valid (except CVTPI2PS/CVTPI2PD with a memory source, which name no MMX
// register: silicon leaves the x87 unit alone there); a form that writes an MMX register also sets that register's
// bits 79:64 (sign and exponent) to all ones; EMMS sets TOP to 0 and every tag to empty. So FXSAVE/FXRSTOR and FNSAVE/FRSTOR,
// which store the x87 registers, save and restore the MMX registers with them.
//
// Checks, in the SDM's order: CR0.EM is #UD (and so is a clear CR4.OSFXSR for the forms that also name an XMM
// register: the conversions, MOVQ2DQ and MOVDQ2Q), CR0.TS is #NM, and a pending unmasked x87 exception is #MF (with
// CR0.NE = 1; with NE = 0 it stays pending, as for the x87 itself). A fault, or an unmasked SIMD floating-point
// exception of a conversion (#XM/#UD as for SSE), leaves every register and the x87 state as they were.
using System.Runtime.InteropServices;
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    /// <summary>The mnemonics that only mm forms have; the other mm forms share theirs with XMM forms (SoftCpu.Sse.cs, Ssse3.cs).</summary>
    internal static Mnemonic[] MmxMnemonics =>
    [
        Mnemonic.Emms, Mnemonic.Pshufw, Mnemonic.Movntq, Mnemonic.Maskmovq, Mnemonic.Movq2dq, Mnemonic.Movdq2q, Mnemonic.Cvtpi2ps,
        Mnemonic.Cvtpi2pd, Mnemonic.Cvtps2pi, Mnemonic.Cvttps2pi, Mnemonic.Cvtpd2pi, Mnemonic.Cvttpd2pi,
    ];

    /// <summary>Per Iced code: 0 not an MMX form; 1 names an MMX register (or is EMMS); 2 names an XMM register too.</summary>
    private static readonly byte[] MmxFormKinds = BuildMmxFormKinds();

    private static byte[] BuildMmxFormKinds()
    {
        var t = new byte[(int)Enum.GetValues<Code>().Max() + 1];
        foreach (var code in Enum.GetValues<Code>())
        {
            if (code == Code.INVALID) continue;
            var info = code.ToOpCode();
            if (!info.IsInstruction || info.Encoding != EncodingKind.Legacy) continue;
            bool mm = code == Code.Emms, xmm = false;
            for (int n = 0; n < info.OpCount; n++)
            {
                var k = info.GetOpKind(n);
                mm |= k is OpCodeOperandKind.mm_reg or OpCodeOperandKind.mm_rm or OpCodeOperandKind.mm_or_mem;
                xmm |= k is OpCodeOperandKind.xmm_reg or OpCodeOperandKind.xmm_rm or OpCodeOperandKind.xmm_or_mem;
            }
            if (mm) t[(int)code] = (byte)(xmm ? 2 : 1);
        }
        return t;
    }

    /// <summary>True when <paramref name="code"/> names an MMX register or is EMMS.</summary>
    internal static bool IsMmxForm(Code code) => MmxFormKinds[(int)code] != 0;

    /// <summary>MMn: the significand of the x87 physical register Rn.</summary>
    internal ulong Mm(int n) => _fpr[n].Significand;

    /// <summary>Writes MMn as an MMX instruction does: bits 79:64 of Rn become all ones.</summary>
    private void SetMm(int n, ulong v) => _fpr[n] = new Float80(0xffff, v);

    private static int MmIndex(Register r) => r - Register.MM0;

    /// <summary>Operand n as 64 bits: an MMX register, or memory of the operand's size (4 or 8 bytes, zero-extended).</summary>
    private ulong MmSource(in Instruction i, int n)
        => i.GetOpKind(n) == OpKind.Register ? Mm(MmIndex(i.GetOpRegister(n))) : ReadMem(i, i.MemorySize.GetSize() * 8);

    /// <summary>An instruction form that names an MMX register (or EMMS); the caller checked that it is implemented.</summary>
    private bool MmxInstruction(in Instruction i)
    {
        if ((Cr0 & 4) != 0 || (MmxFormKinds[(int)i.Code] == 2 && (Cr4 & 0x200) == 0)) throw new CpuFault(ExUD, null);
        if ((Cr0 & 8) != 0) throw new CpuFault(ExNM, null);
        X87CheckPending();
        if (i.Mnemonic == Mnemonic.Emms)
        {
            _fvalid = 0;
            _ftop = 0;
            return true;
        }
        if (i.Op0Kind == OpKind.Register && i.Op0Register.IsMM())
        {
            int d = MmIndex(i.Op0Register);
            ulong r = MmxResult(i, Mm(d));
            SetMm(d, r);
        }
        else
        {
            MmxStore(i);
        }
        // The transition to MMX operation (SDM vol. 3 table 12-1), once the instruction has completed; CVTPI2PS and
        // CVTPI2PD from memory name no MMX register and make none (as silicon does).
        if (!(i.Mnemonic is Mnemonic.Cvtpi2ps or Mnemonic.Cvtpi2pd && i.Op1Kind == OpKind.Memory))
        {
            _ftop = 0;
            _fvalid = 0xff;
        }
        return true;
    }

    /// <summary>The forms whose destination is not an MMX register: stores, extractions, masks and conversions to XMM.</summary>
    private void MmxStore(in Instruction i)
    {
        switch (i.Mnemonic)
        {
            case Mnemonic.Movd or Mnemonic.Movq or Mnemonic.Movntq:
                {
                    ulong v = Mm(MmIndex(i.Op1Register));
                    int bits = i.Mnemonic == Mnemonic.Movd ? 32 : 64;
                    if (i.Op0Kind == OpKind.Register) WriteReg(i.Op0Register, bits == 32 ? (uint)v : v); // a 32-bit register is zero-extended
                    else WriteMem(i, v, bits);
                    return;
                }
            case Mnemonic.Pmovmskb:
                {
                    ulong v = Mm(MmIndex(i.Op1Register)), mask = 0;
                    for (int k = 0; k < 8; k++) mask |= ((v >> (8 * k + 7)) & 1) << k;
                    WriteReg(i.Op0Register, mask);
                    return;
                }
            case Mnemonic.Pextrw:
                WriteReg(i.Op0Register, (Mm(MmIndex(i.Op1Register)) >> (16 * (i.Immediate8 & 3))) & 0xffff);
                return;
            case Mnemonic.Maskmovq:
                {
                    // Stores the bytes of the first source whose mask byte (second source) has its top bit set, at DS:rDI.
                    ulong data = Mm(MmIndex(i.Op1Register)), mask = Mm(MmIndex(i.Op2Register));
                    for (int k = 0; k < 8; k++)
                    {
                        if (((mask >> (8 * k + 7)) & 1) != 0) MaskedStoreByte(i, k, (byte)(data >> (8 * k)));
                    }
                    return;
                }
            case Mnemonic.Movq2dq:
                Dest(i) = Mm(MmIndex(i.Op1Register));
                return;
            case Mnemonic.Cvtpi2ps:
                {
                    // Two doublewords to singles in the low quadword; the high quadword stays.
                    ulong s = MmSource(i, 1);
                    uint flags = 0;
                    ulong lo = SseFloat.FromInt((int)(uint)s, single: true, Mxcsr, ref flags);
                    ulong hi = SseFloat.FromInt((int)(uint)(s >> 32), single: true, Mxcsr, ref flags);
                    CommitFp(flags);
                    Dest(i) = (Dest(i) & ((UInt128)ulong.MaxValue << 64)) | (lo & 0xffff_ffff) | ((hi & 0xffff_ffff) << 32);
                    return;
                }
            case Mnemonic.Cvtpi2pd:
                {
                    ulong s = MmSource(i, 1); // exact: no exceptions
                    Dest(i) = new UInt128(BitConverter.DoubleToUInt64Bits((int)(uint)(s >> 32)), BitConverter.DoubleToUInt64Bits((int)(uint)s));
                    return;
                }
            default:
                throw new CpuFault(ExUD, null);
        }
    }

    /// <summary>The new value of the destination MMX register, from its old value <paramref name="a"/> and the sources.</summary>
    private ulong MmxResult(in Instruction i, ulong a)
    {
        var m = i.Mnemonic;
        switch (m)
        {
            // --- moves ---
            case Mnemonic.Movd or Mnemonic.Movq:
                // MOVD zero-extends its doubleword (a 32-bit register, or m32: MmSource reads the operand's size).
                return i.Op1Kind == OpKind.Register && !i.Op1Register.IsMM() ? ReadReg(i.Op1Register) : MmSource(i, 1);
            case Mnemonic.Movdq2q: return (ulong)Xmm[XmmIndex(i.Op1Register)];
            case Mnemonic.Pshufw:
                {
                    ulong s = MmSource(i, 1), r = 0;
                    int imm = i.Immediate8;
                    for (int k = 0; k < 4; k++) r |= ((s >> (16 * ((imm >> (2 * k)) & 3))) & 0xffff) << (16 * k);
                    return r;
                }
            case Mnemonic.Pinsrw:
                {
                    ulong w = i.Op1Kind == OpKind.Register ? ReadReg(i.Op1Register) & 0xffff : ReadMem(i, 16);
                    int at = 16 * (i.Immediate8 & 3);
                    return (a & ~(0xffffUL << at)) | (w << at);
                }

            // --- logic and arithmetic ---
            case Mnemonic.Pand: return a & MmSource(i, 1);
            case Mnemonic.Pandn: return ~a & MmSource(i, 1);
            case Mnemonic.Por: return a | MmSource(i, 1);
            case Mnemonic.Pxor: return a ^ MmSource(i, 1);
            case Mnemonic.Paddb: return Lanes64<byte>(a, MmSource(i, 1), static (x, y) => (byte)(x + y));
            case Mnemonic.Paddw: return Lanes64<ushort>(a, MmSource(i, 1), static (x, y) => (ushort)(x + y));
            case Mnemonic.Paddd: return Lanes64<uint>(a, MmSource(i, 1), static (x, y) => x + y);
            case Mnemonic.Paddq: return a + MmSource(i, 1);
            case Mnemonic.Psubb: return Lanes64<byte>(a, MmSource(i, 1), static (x, y) => (byte)(x - y));
            case Mnemonic.Psubw: return Lanes64<ushort>(a, MmSource(i, 1), static (x, y) => (ushort)(x - y));
            case Mnemonic.Psubd: return Lanes64<uint>(a, MmSource(i, 1), static (x, y) => x - y);
            case Mnemonic.Psubq: return a - MmSource(i, 1);
            case Mnemonic.Paddsb: return Lanes64<sbyte>(a, MmSource(i, 1), static (x, y) => (sbyte)Math.Clamp(x + y, sbyte.MinValue, sbyte.MaxValue));
            case Mnemonic.Paddsw: return Lanes64<short>(a, MmSource(i, 1), static (x, y) => SatW(x + y));
            case Mnemonic.Paddusb: return Lanes64<byte>(a, MmSource(i, 1), static (x, y) => (byte)Math.Min(x + y, 255));
            case Mnemonic.Paddusw: return Lanes64<ushort>(a, MmSource(i, 1), static (x, y) => (ushort)Math.Min(x + y, 65535));
            case Mnemonic.Psubsb: return Lanes64<sbyte>(a, MmSource(i, 1), static (x, y) => (sbyte)Math.Clamp(x - y, sbyte.MinValue, sbyte.MaxValue));
            case Mnemonic.Psubsw: return Lanes64<short>(a, MmSource(i, 1), static (x, y) => SatW(x - y));
            case Mnemonic.Psubusb: return Lanes64<byte>(a, MmSource(i, 1), static (x, y) => (byte)Math.Max(x - y, 0));
            case Mnemonic.Psubusw: return Lanes64<ushort>(a, MmSource(i, 1), static (x, y) => (ushort)Math.Max(x - y, 0));
            case Mnemonic.Pcmpeqb: return Lanes64<byte>(a, MmSource(i, 1), static (x, y) => x == y ? byte.MaxValue : (byte)0);
            case Mnemonic.Pcmpeqw: return Lanes64<ushort>(a, MmSource(i, 1), static (x, y) => x == y ? ushort.MaxValue : (ushort)0);
            case Mnemonic.Pcmpeqd: return Lanes64<uint>(a, MmSource(i, 1), static (x, y) => x == y ? uint.MaxValue : 0);
            case Mnemonic.Pcmpgtb: return Lanes64<sbyte>(a, MmSource(i, 1), static (x, y) => x > y ? (sbyte)-1 : (sbyte)0);
            case Mnemonic.Pcmpgtw: return Lanes64<short>(a, MmSource(i, 1), static (x, y) => x > y ? (short)-1 : (short)0);
            case Mnemonic.Pcmpgtd: return Lanes64<int>(a, MmSource(i, 1), static (x, y) => x > y ? -1 : 0);
            case Mnemonic.Pmullw: return Lanes64<short>(a, MmSource(i, 1), static (x, y) => (short)(x * y));
            case Mnemonic.Pmulhw: return Lanes64<short>(a, MmSource(i, 1), static (x, y) => (short)((x * y) >> 16));
            case Mnemonic.Pmulhuw: return Lanes64<ushort>(a, MmSource(i, 1), static (x, y) => (ushort)(((uint)x * y) >> 16));
            case Mnemonic.Pmulhrsw: return Lanes64<short>(a, MmSource(i, 1), static (x, y) => (short)((((x * y) >> 14) + 1) >> 1));
            case Mnemonic.Pmuludq: return (ulong)(uint)a * (uint)MmSource(i, 1);
            case Mnemonic.Pmaddwd:
                {
                    ulong b = MmSource(i, 1), r = 0;
                    for (int k = 0; k < 2; k++)
                    {
                        int s = (short)(a >> (32 * k)) * (short)(b >> (32 * k)) + (short)(a >> (32 * k + 16)) * (short)(b >> (32 * k + 16));
                        r |= (ulong)(uint)s << (32 * k);
                    }
                    return r;
                }
            case Mnemonic.Pmaddubsw:
                {
                    // The destination's bytes are unsigned, the source's signed.
                    ulong b = MmSource(i, 1), r = 0;
                    for (int k = 0; k < 4; k++)
                    {
                        int s = (byte)(a >> (16 * k)) * (sbyte)(b >> (16 * k)) + (byte)(a >> (16 * k + 8)) * (sbyte)(b >> (16 * k + 8));
                        r |= (ulong)(ushort)SatW(s) << (16 * k);
                    }
                    return r;
                }
            case Mnemonic.Pminub: return Lanes64<byte>(a, MmSource(i, 1), static (x, y) => Math.Min(x, y));
            case Mnemonic.Pmaxub: return Lanes64<byte>(a, MmSource(i, 1), static (x, y) => Math.Max(x, y));
            case Mnemonic.Pminsw: return Lanes64<short>(a, MmSource(i, 1), static (x, y) => Math.Min(x, y));
            case Mnemonic.Pmaxsw: return Lanes64<short>(a, MmSource(i, 1), static (x, y) => Math.Max(x, y));
            case Mnemonic.Pavgb: return Lanes64<byte>(a, MmSource(i, 1), static (x, y) => (byte)((x + y + 1) >> 1));
            case Mnemonic.Pavgw: return Lanes64<ushort>(a, MmSource(i, 1), static (x, y) => (ushort)((x + y + 1) >> 1));
            case Mnemonic.Psadbw:
                {
                    ulong b = MmSource(i, 1), sum = 0;
                    for (int k = 0; k < 8; k++) sum += (ulong)Math.Abs((byte)(a >> (8 * k)) - (byte)(b >> (8 * k)));
                    return sum; // bits 63:16 are zero
                }
            case Mnemonic.Psignb: return Lanes64<sbyte>(a, MmSource(i, 1), static (x, y) => y < 0 ? (sbyte)-x : y == 0 ? (sbyte)0 : x);
            case Mnemonic.Psignw: return Lanes64<short>(a, MmSource(i, 1), static (x, y) => y < 0 ? (short)-x : y == 0 ? (short)0 : x);
            case Mnemonic.Psignd: return Lanes64<int>(a, MmSource(i, 1), static (x, y) => y < 0 ? -x : y == 0 ? 0 : x);
            case Mnemonic.Pabsb: return Lanes64<sbyte>(MmSource(i, 1), 0, static (x, _) => (sbyte)Math.Abs((int)x));
            case Mnemonic.Pabsw: return Lanes64<short>(MmSource(i, 1), 0, static (x, _) => (short)Math.Abs((int)x));
            case Mnemonic.Pabsd: return Lanes64<int>(MmSource(i, 1), 0, static (x, _) => (int)Math.Abs((long)x));

            // --- shifts: the count is the whole source quadword, or imm8 ---
            case Mnemonic.Psllw or Mnemonic.Pslld or Mnemonic.Psllq or Mnemonic.Psrlw or Mnemonic.Psrld or Mnemonic.Psrlq or Mnemonic.Psraw
                or Mnemonic.Psrad:
                {
                    ulong count = i.GetOpKind(1) == OpKind.Immediate8 ? i.Immediate8 : MmSource(i, 1);
                    return (ulong)Shift(m, a, count);
                }

            // --- packs, unpacks, shuffles ---
            case Mnemonic.Packsswb: return Pack64(a, MmSource(i, 1), 16, static v => (byte)(sbyte)Math.Clamp((short)v, sbyte.MinValue, sbyte.MaxValue));
            case Mnemonic.Packuswb: return Pack64(a, MmSource(i, 1), 16, static v => (byte)Math.Clamp((int)(short)v, 0, 255));
            case Mnemonic.Packssdw: return Pack64(a, MmSource(i, 1), 32, static v => (ushort)(short)Math.Clamp((int)v, short.MinValue, short.MaxValue));
            case Mnemonic.Punpcklbw: return Interleave64(a, MmSource(i, 1), 8, high: false);
            case Mnemonic.Punpcklwd: return Interleave64(a, MmSource(i, 1), 16, high: false);
            case Mnemonic.Punpckldq: return Interleave64(a, MmSource(i, 1), 32, high: false);
            case Mnemonic.Punpckhbw: return Interleave64(a, MmSource(i, 1), 8, high: true);
            case Mnemonic.Punpckhwd: return Interleave64(a, MmSource(i, 1), 16, high: true);
            case Mnemonic.Punpckhdq: return Interleave64(a, MmSource(i, 1), 32, high: true);
            case Mnemonic.Pshufb:
                {
                    ulong b = MmSource(i, 1), r = 0;
                    for (int k = 0; k < 8; k++)
                    {
                        int sel = (int)(b >> (8 * k)) & 0xff;
                        if ((sel & 0x80) == 0) r |= ((a >> (8 * (sel & 7))) & 0xff) << (8 * k);
                    }
                    return r;
                }
            case Mnemonic.Phaddw or Mnemonic.Phsubw or Mnemonic.Phaddsw or Mnemonic.Phsubsw:
                {
                    // The destination's pairs give the low two words, the source's the high two.
                    ulong b = MmSource(i, 1), r = 0;
                    for (int k = 0; k < 4; k++)
                    {
                        ulong s = k < 2 ? a : b;
                        int x = (short)(s >> (32 * (k & 1))), y = (short)(s >> (32 * (k & 1) + 16));
                        short v = m switch
                        {
                            Mnemonic.Phaddw => (short)(x + y),
                            Mnemonic.Phsubw => (short)(x - y),
                            Mnemonic.Phaddsw => SatW(x + y),
                            _ => SatW(x - y),
                        };
                        r |= (ulong)(ushort)v << (16 * k);
                    }
                    return r;
                }
            case Mnemonic.Phaddd or Mnemonic.Phsubd:
                {
                    ulong b = MmSource(i, 1);
                    uint lo = m == Mnemonic.Phaddd ? (uint)a + (uint)(a >> 32) : (uint)a - (uint)(a >> 32);
                    uint hi = m == Mnemonic.Phaddd ? (uint)b + (uint)(b >> 32) : (uint)b - (uint)(b >> 32);
                    return lo | ((ulong)hi << 32);
                }
            case Mnemonic.Palignr:
                {
                    // dest:src as 16 bytes (the source low), shifted right by imm8 bytes; zeros come in from the top.
                    ulong b = MmSource(i, 1), r = 0;
                    int shift = i.Immediate8;
                    for (int k = 0; k < 8; k++)
                    {
                        int at = k + shift;
                        ulong v = at < 8 ? (b >> (8 * at)) & 0xff : at < 16 ? (a >> (8 * (at - 8))) & 0xff : 0;
                        r |= v << (8 * k);
                    }
                    return r;
                }

            // --- conversions from XMM or memory ---
            case Mnemonic.Cvtps2pi or Mnemonic.Cvttps2pi:
                {
                    ulong s = i.Op1Kind == OpKind.Register ? (ulong)Xmm[XmmIndex(i.Op1Register)] : ReadMem(i, 64);
                    bool t = m == Mnemonic.Cvttps2pi;
                    uint flags = 0;
                    ulong lo = SseFloat.ToInt(s & 0xffff_ffff, single: true, t, 32, Mxcsr, ref flags);
                    ulong hi = SseFloat.ToInt(s >> 32, single: true, t, 32, Mxcsr, ref flags);
                    CommitFp(flags);
                    return (lo & 0xffff_ffff) | (hi << 32);
                }
            case Mnemonic.Cvtpd2pi or Mnemonic.Cvttpd2pi:
                {
                    UInt128 s = ReadVec(i, 1); // an m128 must be 16-byte aligned
                    bool t = m == Mnemonic.Cvttpd2pi;
                    uint flags = 0;
                    ulong lo = SseFloat.ToInt((ulong)s, single: false, t, 32, Mxcsr, ref flags);
                    ulong hi = SseFloat.ToInt((ulong)(s >> 64), single: false, t, 32, Mxcsr, ref flags);
                    CommitFp(flags);
                    return (lo & 0xffff_ffff) | (hi << 32);
                }
            default:
                throw new CpuFault(ExUD, null);
        }
    }

    /// <summary>Lane-wise f over two 64-bit values read as T lanes.</summary>
    private static ulong Lanes64<T>(ulong a, ulong b, Func<T, T, T> f)
        where T : unmanaged
    {
        var x = MemoryMarshal.Cast<ulong, T>(MemoryMarshal.CreateSpan(ref a, 1));
        var y = MemoryMarshal.Cast<ulong, T>(MemoryMarshal.CreateSpan(ref b, 1));
        for (int k = 0; k < x.Length; k++) x[k] = f(x[k], y[k]);
        return a;
    }

    /// <summary>PUNPCKL/PUNPCKH on 64 bits: interleaves the lanes of the low (or high) doublewords of a and b.</summary>
    private static ulong Interleave64(ulong a, ulong b, int bits, bool high)
    {
        ulong x = high ? a >> 32 : a & 0xffff_ffff, y = high ? b >> 32 : b & 0xffff_ffff;
        ulong mask = bits == 32 ? 0xffff_ffffUL : (1UL << bits) - 1, r = 0;
        for (int k = 0; k < 32 / bits; k++)
        {
            r |= ((x >> (k * bits)) & mask) << (2 * k * bits);
            r |= ((y >> (k * bits)) & mask) << ((2 * k + 1) * bits);
        }
        return r;
    }

    /// <summary>PACKSS/PACKUS on 64 bits: each lane of a, then of b, narrowed to half width with saturation.</summary>
    private static ulong Pack64(ulong a, ulong b, int srcBits, Func<ulong, ulong> narrow)
    {
        int lanes = 64 / srcBits, outBits = srcBits / 2;
        ulong mask = (1UL << srcBits) - 1, r = 0;
        for (int k = 0; k < lanes; k++) r |= narrow((a >> (k * srcBits)) & mask) << (k * outBits);
        for (int k = 0; k < lanes; k++) r |= narrow((b >> (k * srcBits)) & mask) << ((lanes + k) * outBits);
        return r;
    }
}
