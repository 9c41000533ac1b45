// SSE and SSE2 for the software CPU (Intel SDM vol. 1 ch. 10-11, vol. 2): the XMM registers and MXCSR, FXSAVE
// and FXRSTOR, data movement, the 128-bit integer instructions, packed and scalar single/double arithmetic,
// compares and conversions with MXCSR rounding and exception flags (SseFloat.cs), shuffles and unpacks, and the
// cache-control and fence instructions (no-ops on an emulated, coherent memory). Legacy SSE rules: CR0.EM or a
// clear CR4.OSFXSR is #UD, CR0.TS is #NM, a 128-bit memory operand must be 16-byte aligned except for the
// unaligned moves, and an unmasked SIMD floating-point exception is #XM with CR4.OSXMMEXCPT, else #UD, with the
// destination left as it was. SSE3, SSSE3 and SSE4.1/4.2 live in SoftCpu.Ssse3.cs and SoftCpu.Sse4.cs; the forms
// that name an MMX register (MMX itself and the mm forms of SSE, SSE2 and SSSE3) go to SoftCpu.Mmx.cs.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    internal const byte ExXM = 19;

    /// <summary>XMM0-15, low quadword first (as UInt128 lays them out).</summary>
    internal readonly UInt128[] Xmm = new UInt128[16];

    internal uint Mxcsr = 0x1f80;

    /// <summary>The MXCSR bits that may be set (DAZ included), as FXSAVE reports in MXCSR_MASK.</summary>
    internal const uint MxcsrMask = 0xffff;

    private static readonly bool[] UnalignedOk = BuildUnalignedOk();

    private static bool[] BuildUnalignedOk()
    {
        var t = new bool[(int)Enum.GetValues<Mnemonic>().Max() + 1];
        // The string compares' m128 may be unaligned too (SDM vol. 2, PCMPESTRI etc.: no alignment requirement).
        foreach (var m in (ReadOnlySpan<Mnemonic>)[Mnemonic.Movups, Mnemonic.Movupd, Mnemonic.Movdqu, Mnemonic.Lddqu, Mnemonic.Pcmpestri,
                     Mnemonic.Pcmpestri64, Mnemonic.Pcmpestrm, Mnemonic.Pcmpestrm64, Mnemonic.Pcmpistri, Mnemonic.Pcmpistrm])
            t[(int)m] = true;
        return t;
    }

    /// <summary>Legacy SSE availability: #UD with CR0.EM or without CR4.OSFXSR, #NM with CR0.TS.</summary>
    private void CheckSse()
    {
        if ((Cr0 & 4) != 0 || (Cr4 & 0x200) == 0) throw new CpuFault(ExUD, null);
        if ((Cr0 & 8) != 0) throw new CpuFault(ExNM, null);
    }

    private static int XmmIndex(Register r) => r - Register.XMM0;

    /// <summary>Linear address of the memory operand (for alignment checks).</summary>
    private ulong OperandLinear(in Instruction i)
    {
        ref var seg = ref MemorySegment(i, out _);
        ulong ea = EffectiveOffset(i);
        if (Mode64) return ea + (Unsafe.AreSame(ref seg, ref Fs) || Unsafe.AreSame(ref seg, ref Gs) ? seg.Base : 0);
        return (seg.Base + ea) & 0xffff_ffff;
    }

    /// <summary>Operand n as 128 bits: an XMM register, or memory of the operand's size (zero-extended).</summary>
    private UInt128 ReadVec(in Instruction i, int n)
    {
        if (i.GetOpKind(n) == OpKind.Register)
        {
            var r = i.GetOpRegister(n);
            return r.IsXMM() ? Xmm[XmmIndex(r)] : ReadReg(r);
        }
        int size = i.MemorySize.GetSize();
        if (size == 16)
        {
            if (!UnalignedOk[(int)i.Mnemonic] && (OperandLinear(i) & 15) != 0) throw new CpuFault(ExGP, 0);
            ulong lo = ReadMem(i, 64), hi = ReadMem(i, 64, 8);
            return new UInt128(hi, lo);
        }
        return ReadMem(i, size * 8);
    }

    private void WriteVecMem(in Instruction i, UInt128 v, int size)
    {
        if (size == 16)
        {
            if (!UnalignedOk[(int)i.Mnemonic] && (OperandLinear(i) & 15) != 0) throw new CpuFault(ExGP, 0);
            // Both halves are checked (and may fault) before either is written.
            ReadMem(i, 64, 8);
            WriteMem(i, (ulong)v, 64);
            WriteMem(i, (ulong)(v >> 64), 64, 8);
            return;
        }
        WriteMem(i, (ulong)v, size * 8);
    }

    private ref UInt128 Dest(in Instruction i) => ref Xmm[XmmIndex(i.Op0Register)];

    /// <summary>MASKMOVDQU/MASKMOVQ: byte <paramref name="k"/> of the store to DS:rDI (a segment override applies; the
    /// address size, 67h, picks RDI, EDI or DI).</summary>
    private void MaskedStoreByte(in Instruction i, int k, byte value)
    {
        ref var seg = ref MemorySegment(i, out byte fault);
        WriteSeg(ref seg, fault, (Gpr[7] + (ulong)k) & StringAddressMask(i.Op0Kind), value, 1);
    }

    /// <summary>SSE/SSE2 instructions; false for anything else.</summary>
    private bool SimdInstruction(in Instruction i)
    {
        var m = i.Mnemonic;
        if ((uint)m >= (uint)SimdKinds.Length || SimdKinds[(int)m] == 0) return false;
        if (!Implements(i.Code)) return false;
        if (IsMmxForm(i.Code)) return MmxInstruction(i); // MMX and the mm forms of SSE-SSSE3 (SoftCpu.Mmx.cs)
        if (SimdKinds[(int)m] == 2) return CacheControl(i);
        if (SimdKinds[(int)m] == 3) return BitExtInstruction(i);
        CheckSse();
        switch (m)
        {
            // --- moves ---
            case Mnemonic.Movaps or Mnemonic.Movups or Mnemonic.Movapd or Mnemonic.Movupd or Mnemonic.Movdqa or Mnemonic.Movdqu
                or Mnemonic.Movntps or Mnemonic.Movntpd or Mnemonic.Movntdq or Mnemonic.Lddqu:
                if (i.Op0Kind == OpKind.Register) Dest(i) = ReadVec(i, 1);
                else WriteVecMem(i, Xmm[XmmIndex(i.Op1Register)], 16);
                return true;
            case Mnemonic.Movss or Mnemonic.Movsd:
                {
                    int size = m == Mnemonic.Movss ? 4 : 8;
                    UInt128 low = size == 4 ? 0xffff_ffffUL : ulong.MaxValue;
                    if (i.Op0Kind != OpKind.Register) WriteVecMem(i, Xmm[XmmIndex(i.Op1Register)], size);
                    else if (i.Op1Kind == OpKind.Register) Dest(i) = (Dest(i) & ~low) | (Xmm[XmmIndex(i.Op1Register)] & low);
                    else Dest(i) = ReadVec(i, 1); // from memory: the rest is zeroed
                    return true;
                }
            case Mnemonic.Movd or Mnemonic.Movq:
                {
                    if (i.Op0Kind == OpKind.Register && i.Op0Register.IsXMM())
                    {
                        int bits = m == Mnemonic.Movd ? 32 : 64;
                        UInt128 v = i.Op1Kind == OpKind.Register && i.Op1Register.IsXMM() ? Xmm[XmmIndex(i.Op1Register)] : ReadVec(i, 1);
                        Dest(i) = v & (bits == 32 ? 0xffff_ffffUL : ulong.MaxValue);
                    }
                    else
                    {
                        ulong v = (ulong)Xmm[XmmIndex(i.Op1Register)];
                        int bits = m == Mnemonic.Movd ? 32 : 64;
                        if (i.Op0Kind == OpKind.Register) WriteReg(i.Op0Register, bits == 32 ? (uint)v : v);
                        else WriteMem(i, v, bits);
                    }
                    return true;
                }
            case Mnemonic.Movlps or Mnemonic.Movlpd:
                if (i.Op0Kind == OpKind.Register) Dest(i) = (Dest(i) & ((UInt128)ulong.MaxValue << 64)) | (ulong)ReadVec(i, 1);
                else WriteMem(i, (ulong)Xmm[XmmIndex(i.Op1Register)], 64);
                return true;
            case Mnemonic.Movhps or Mnemonic.Movhpd:
                if (i.Op0Kind == OpKind.Register) Dest(i) = ((UInt128)(ulong)ReadVec(i, 1) << 64) | (ulong)Dest(i);
                else WriteMem(i, (ulong)(Xmm[XmmIndex(i.Op1Register)] >> 64), 64);
                return true;
            case Mnemonic.Movhlps: Dest(i) = (Dest(i) & ((UInt128)ulong.MaxValue << 64)) | (ulong)(Xmm[XmmIndex(i.Op1Register)] >> 64); return true;
            case Mnemonic.Movlhps: Dest(i) = ((UInt128)(ulong)Xmm[XmmIndex(i.Op1Register)] << 64) | (ulong)Dest(i); return true;
            case Mnemonic.Movmskps or Mnemonic.Movmskpd or Mnemonic.Pmovmskb:
                {
                    UInt128 v = Xmm[XmmIndex(i.Op1Register)];
                    int lane = m == Mnemonic.Movmskps ? 32 : m == Mnemonic.Movmskpd ? 64 : 8;
                    ulong mask = 0;
                    for (int k = 0; k < 128 / lane; k++) mask |= (ulong)((v >> (k * lane + lane - 1)) & 1) << k;
                    WriteReg(i.Op0Register, mask);
                    return true;
                }
            case Mnemonic.Maskmovdqu:
                {
                    UInt128 data = Xmm[XmmIndex(i.Op1Register)], mask = Xmm[XmmIndex(i.Op2Register)];
                    for (int k = 0; k < 16; k++)
                    {
                        if (((mask >> (k * 8 + 7)) & 1) != 0) MaskedStoreByte(i, k, (byte)(data >> (k * 8)));
                    }
                    return true;
                }

            // --- MXCSR and state ---
            case Mnemonic.Ldmxcsr:
                {
                    uint v = (uint)ReadMem(i, 32);
                    if ((v & ~MxcsrMask) != 0) throw new CpuFault(ExGP, 0);
                    Mxcsr = v;
                    return true;
                }
            case Mnemonic.Stmxcsr: WriteMem(i, Mxcsr, 32); return true;

            // --- integer ---
            case Mnemonic.Pand or Mnemonic.Andps or Mnemonic.Andpd: Dest(i) &= ReadVec(i, 1); return true;
            case Mnemonic.Por or Mnemonic.Orps or Mnemonic.Orpd: Dest(i) |= ReadVec(i, 1); return true;
            case Mnemonic.Pxor or Mnemonic.Xorps or Mnemonic.Xorpd: Dest(i) ^= ReadVec(i, 1); return true;
            case Mnemonic.Pandn or Mnemonic.Andnps or Mnemonic.Andnpd: Dest(i) = ~Dest(i) & ReadVec(i, 1); return true;
            case Mnemonic.Paddb: Dest(i) = Lanes<byte>(Dest(i), ReadVec(i, 1), static (a, b) => (byte)(a + b)); return true;
            case Mnemonic.Paddw: Dest(i) = Lanes<ushort>(Dest(i), ReadVec(i, 1), static (a, b) => (ushort)(a + b)); return true;
            case Mnemonic.Paddd: Dest(i) = Lanes<uint>(Dest(i), ReadVec(i, 1), static (a, b) => a + b); return true;
            case Mnemonic.Paddq: Dest(i) = Lanes<ulong>(Dest(i), ReadVec(i, 1), static (a, b) => a + b); return true;
            case Mnemonic.Psubb: Dest(i) = Lanes<byte>(Dest(i), ReadVec(i, 1), static (a, b) => (byte)(a - b)); return true;
            case Mnemonic.Psubw: Dest(i) = Lanes<ushort>(Dest(i), ReadVec(i, 1), static (a, b) => (ushort)(a - b)); return true;
            case Mnemonic.Psubd: Dest(i) = Lanes<uint>(Dest(i), ReadVec(i, 1), static (a, b) => a - b); return true;
            case Mnemonic.Psubq: Dest(i) = Lanes<ulong>(Dest(i), ReadVec(i, 1), static (a, b) => a - b); return true;
            case Mnemonic.Paddsb: Dest(i) = Lanes<sbyte>(Dest(i), ReadVec(i, 1), static (a, b) => (sbyte)Math.Clamp(a + b, sbyte.MinValue, sbyte.MaxValue)); return true;
            case Mnemonic.Paddsw: Dest(i) = Lanes<short>(Dest(i), ReadVec(i, 1), static (a, b) => (short)Math.Clamp(a + b, short.MinValue, short.MaxValue)); return true;
            case Mnemonic.Paddusb: Dest(i) = Lanes<byte>(Dest(i), ReadVec(i, 1), static (a, b) => (byte)Math.Min(a + b, 255)); return true;
            case Mnemonic.Paddusw: Dest(i) = Lanes<ushort>(Dest(i), ReadVec(i, 1), static (a, b) => (ushort)Math.Min(a + b, 65535)); return true;
            case Mnemonic.Psubsb: Dest(i) = Lanes<sbyte>(Dest(i), ReadVec(i, 1), static (a, b) => (sbyte)Math.Clamp(a - b, sbyte.MinValue, sbyte.MaxValue)); return true;
            case Mnemonic.Psubsw: Dest(i) = Lanes<short>(Dest(i), ReadVec(i, 1), static (a, b) => (short)Math.Clamp(a - b, short.MinValue, short.MaxValue)); return true;
            case Mnemonic.Psubusb: Dest(i) = Lanes<byte>(Dest(i), ReadVec(i, 1), static (a, b) => (byte)Math.Max(a - b, 0)); return true;
            case Mnemonic.Psubusw: Dest(i) = Lanes<ushort>(Dest(i), ReadVec(i, 1), static (a, b) => (ushort)Math.Max(a - b, 0)); return true;
            case Mnemonic.Pcmpeqb: Dest(i) = Lanes<byte>(Dest(i), ReadVec(i, 1), static (a, b) => a == b ? byte.MaxValue : (byte)0); return true;
            case Mnemonic.Pcmpeqw: Dest(i) = Lanes<ushort>(Dest(i), ReadVec(i, 1), static (a, b) => a == b ? ushort.MaxValue : (ushort)0); return true;
            case Mnemonic.Pcmpeqd: Dest(i) = Lanes<uint>(Dest(i), ReadVec(i, 1), static (a, b) => a == b ? uint.MaxValue : 0); return true;
            case Mnemonic.Pcmpgtb: Dest(i) = Lanes<sbyte>(Dest(i), ReadVec(i, 1), static (a, b) => a > b ? (sbyte)-1 : (sbyte)0); return true;
            case Mnemonic.Pcmpgtw: Dest(i) = Lanes<short>(Dest(i), ReadVec(i, 1), static (a, b) => a > b ? (short)-1 : (short)0); return true;
            case Mnemonic.Pcmpgtd: Dest(i) = Lanes<int>(Dest(i), ReadVec(i, 1), static (a, b) => a > b ? -1 : 0); return true;
            case Mnemonic.Pmullw: Dest(i) = Lanes<short>(Dest(i), ReadVec(i, 1), static (a, b) => (short)(a * b)); return true;
            case Mnemonic.Pmulhw: Dest(i) = Lanes<short>(Dest(i), ReadVec(i, 1), static (a, b) => (short)((a * b) >> 16)); return true;
            case Mnemonic.Pmulhuw: Dest(i) = Lanes<ushort>(Dest(i), ReadVec(i, 1), static (a, b) => (ushort)(((uint)a * b) >> 16)); return true;
            case Mnemonic.Pminub: Dest(i) = Lanes<byte>(Dest(i), ReadVec(i, 1), static (a, b) => Math.Min(a, b)); return true;
            case Mnemonic.Pmaxub: Dest(i) = Lanes<byte>(Dest(i), ReadVec(i, 1), static (a, b) => Math.Max(a, b)); return true;
            case Mnemonic.Pminsw: Dest(i) = Lanes<short>(Dest(i), ReadVec(i, 1), static (a, b) => Math.Min(a, b)); return true;
            case Mnemonic.Pmaxsw: Dest(i) = Lanes<short>(Dest(i), ReadVec(i, 1), static (a, b) => Math.Max(a, b)); return true;
            case Mnemonic.Pavgb: Dest(i) = Lanes<byte>(Dest(i), ReadVec(i, 1), static (a, b) => (byte)((a + b + 1) >> 1)); return true;
            case Mnemonic.Pavgw: Dest(i) = Lanes<ushort>(Dest(i), ReadVec(i, 1), static (a, b) => (ushort)((a + b + 1) >> 1)); return true;
            case Mnemonic.Pmuludq:
                {
                    UInt128 a = Dest(i), b = ReadVec(i, 1);
                    ulong lo = (ulong)(uint)a * (uint)b, hi = (ulong)(uint)(a >> 64) * (uint)(b >> 64);
                    Dest(i) = new UInt128(hi, lo);
                    return true;
                }
            case Mnemonic.Pmaddwd:
                {
                    UInt128 a = Dest(i), b = ReadVec(i, 1), r = 0;
                    for (int k = 0; k < 4; k++)
                    {
                        int s = (short)(a >> (32 * k)) * (short)(b >> (32 * k)) + (short)(a >> (32 * k + 16)) * (short)(b >> (32 * k + 16));
                        r |= (UInt128)(uint)s << (32 * k);
                    }
                    Dest(i) = r;
                    return true;
                }
            case Mnemonic.Psadbw:
                {
                    UInt128 a = Dest(i), b = ReadVec(i, 1);
                    ulong lo = 0, hi = 0;
                    for (int k = 0; k < 8; k++) lo += (ulong)Math.Abs((byte)(a >> (8 * k)) - (byte)(b >> (8 * k)));
                    for (int k = 8; k < 16; k++) hi += (ulong)Math.Abs((byte)(a >> (8 * k)) - (byte)(b >> (8 * k)));
                    Dest(i) = new UInt128(hi, lo);
                    return true;
                }
            case Mnemonic.Psllw or Mnemonic.Pslld or Mnemonic.Psllq or Mnemonic.Psrlw or Mnemonic.Psrld or Mnemonic.Psrlq or Mnemonic.Psraw
                or Mnemonic.Psrad:
                {
                    ulong count;
                    if (i.GetOpKind(1) == OpKind.Immediate8)
                    {
                        count = i.Immediate8;
                    }
                    else
                    {
                        UInt128 c = ReadVec(i, 1); // the count is the whole low quadword
                        count = (ulong)c;
                    }
                    Dest(i) = Shift(m, Dest(i), count);
                    return true;
                }
            case Mnemonic.Pslldq or Mnemonic.Psrldq:
                {
                    int bytes = Math.Min((int)i.Immediate8, 16);
                    Dest(i) = bytes == 16 ? 0 : m == Mnemonic.Pslldq ? Dest(i) << (8 * bytes) : Dest(i) >> (8 * bytes);
                    return true;
                }
            case Mnemonic.Punpcklbw: Dest(i) = Interleave(Dest(i), ReadVec(i, 1), 1, high: false); return true;
            case Mnemonic.Punpcklwd: Dest(i) = Interleave(Dest(i), ReadVec(i, 1), 2, high: false); return true;
            case Mnemonic.Punpckldq or Mnemonic.Unpcklps: Dest(i) = Interleave(Dest(i), ReadVec(i, 1), 4, high: false); return true;
            case Mnemonic.Punpcklqdq or Mnemonic.Unpcklpd: Dest(i) = Interleave(Dest(i), ReadVec(i, 1), 8, high: false); return true;
            case Mnemonic.Punpckhbw: Dest(i) = Interleave(Dest(i), ReadVec(i, 1), 1, high: true); return true;
            case Mnemonic.Punpckhwd: Dest(i) = Interleave(Dest(i), ReadVec(i, 1), 2, high: true); return true;
            case Mnemonic.Punpckhdq or Mnemonic.Unpckhps: Dest(i) = Interleave(Dest(i), ReadVec(i, 1), 4, high: true); return true;
            case Mnemonic.Punpckhqdq or Mnemonic.Unpckhpd: Dest(i) = Interleave(Dest(i), ReadVec(i, 1), 8, high: true); return true;
            case Mnemonic.Packsswb: Dest(i) = Pack(Dest(i), ReadVec(i, 1), 16, static v => (ulong)(byte)(sbyte)Math.Clamp((short)v, sbyte.MinValue, sbyte.MaxValue)); return true;
            case Mnemonic.Packuswb: Dest(i) = Pack(Dest(i), ReadVec(i, 1), 16, static v => (ulong)(byte)Math.Clamp((int)(short)v, 0, 255)); return true;
            case Mnemonic.Packssdw: Dest(i) = Pack(Dest(i), ReadVec(i, 1), 32, static v => (ulong)(ushort)(short)Math.Clamp((int)v, short.MinValue, short.MaxValue)); return true;
            case Mnemonic.Pshufd:
                {
                    UInt128 s = ReadVec(i, 1), r = 0;
                    int imm = i.Immediate8;
                    for (int k = 0; k < 4; k++) r |= ((s >> (32 * ((imm >> (2 * k)) & 3))) & 0xffff_ffffUL) << (32 * k);
                    Dest(i) = r;
                    return true;
                }
            case Mnemonic.Pshuflw or Mnemonic.Pshufhw:
                {
                    UInt128 s = ReadVec(i, 1);
                    int imm = i.Immediate8, half = m == Mnemonic.Pshufhw ? 64 : 0;
                    ulong src = (ulong)(s >> half), r = 0;
                    for (int k = 0; k < 4; k++) r |= ((src >> (16 * ((imm >> (2 * k)) & 3))) & 0xffff) << (16 * k);
                    Dest(i) = half == 0 ? (s & ((UInt128)ulong.MaxValue << 64)) | r : ((UInt128)r << 64) | (ulong)s;
                    return true;
                }
            case Mnemonic.Shufps:
                {
                    UInt128 a = Dest(i), b = ReadVec(i, 1);
                    int imm = i.Immediate8;
                    UInt128 r = ((a >> (32 * (imm & 3))) & 0xffff_ffffUL) | (((a >> (32 * ((imm >> 2) & 3))) & 0xffff_ffffUL) << 32)
                        | (((b >> (32 * ((imm >> 4) & 3))) & 0xffff_ffffUL) << 64) | (((b >> (32 * ((imm >> 6) & 3))) & 0xffff_ffffUL) << 96);
                    Dest(i) = r;
                    return true;
                }
            case Mnemonic.Shufpd:
                {
                    UInt128 a = Dest(i), b = ReadVec(i, 1);
                    int imm = i.Immediate8;
                    Dest(i) = new UInt128((ulong)(b >> (64 * ((imm >> 1) & 1))), (ulong)(a >> (64 * (imm & 1))));
                    return true;
                }
            case Mnemonic.Pextrw:
                {
                    UInt128 s = Xmm[XmmIndex(i.Op1Register)];
                    ulong w = (ulong)(s >> (16 * (i.Immediate8 & 7))) & 0xffff;
                    if (i.Op0Kind == OpKind.Register) WriteReg(i.Op0Register, w);
                    else WriteMem(i, w, 16);
                    return true;
                }
            case Mnemonic.Pinsrw:
                {
                    ulong w = i.Op1Kind == OpKind.Register ? ReadReg(i.Op1Register) & 0xffff : ReadMem(i, 16);
                    int at = 16 * (i.Immediate8 & 7);
                    Dest(i) = (Dest(i) & ~((UInt128)0xffff << at)) | ((UInt128)w << at);
                    return true;
                }
            default:
                return FloatInstruction(i) || Sse3Instruction(i); // then SSSE3, SSE4.1, SSE4.2
        }
    }

    // Declared before SimdKinds, whose initializer reads it (static fields initialise in textual order).
    internal static readonly Mnemonic[] SseMnemonics =
    [
        Mnemonic.Movaps, Mnemonic.Movups, Mnemonic.Movapd, Mnemonic.Movupd, Mnemonic.Movdqa, Mnemonic.Movdqu, Mnemonic.Movntps,
        Mnemonic.Movntpd, Mnemonic.Movntdq, Mnemonic.Movss, Mnemonic.Movsd, Mnemonic.Movd, Mnemonic.Movq, Mnemonic.Movlps,
        Mnemonic.Movlpd, Mnemonic.Movhps, Mnemonic.Movhpd, Mnemonic.Movhlps, Mnemonic.Movlhps, Mnemonic.Movmskps, Mnemonic.Movmskpd,
        Mnemonic.Pmovmskb, Mnemonic.Maskmovdqu, Mnemonic.Ldmxcsr, Mnemonic.Stmxcsr, Mnemonic.Pand, Mnemonic.Andps, Mnemonic.Andpd,
        Mnemonic.Por, Mnemonic.Orps, Mnemonic.Orpd, Mnemonic.Pxor, Mnemonic.Xorps, Mnemonic.Xorpd, Mnemonic.Pandn, Mnemonic.Andnps,
        Mnemonic.Andnpd, Mnemonic.Paddb, Mnemonic.Paddw, Mnemonic.Paddd, Mnemonic.Paddq, Mnemonic.Psubb, Mnemonic.Psubw, Mnemonic.Psubd,
        Mnemonic.Psubq, Mnemonic.Paddsb, Mnemonic.Paddsw, Mnemonic.Paddusb, Mnemonic.Paddusw, Mnemonic.Psubsb, Mnemonic.Psubsw,
        Mnemonic.Psubusb, Mnemonic.Psubusw, Mnemonic.Pcmpeqb, Mnemonic.Pcmpeqw, Mnemonic.Pcmpeqd, Mnemonic.Pcmpgtb, Mnemonic.Pcmpgtw,
        Mnemonic.Pcmpgtd, Mnemonic.Pmullw, Mnemonic.Pmulhw, Mnemonic.Pmulhuw, Mnemonic.Pminub, Mnemonic.Pmaxub, Mnemonic.Pminsw,
        Mnemonic.Pmaxsw, Mnemonic.Pavgb, Mnemonic.Pavgw, Mnemonic.Pmuludq, Mnemonic.Pmaddwd, Mnemonic.Psadbw, Mnemonic.Psllw,
        Mnemonic.Pslld, Mnemonic.Psllq, Mnemonic.Psrlw, Mnemonic.Psrld, Mnemonic.Psrlq, Mnemonic.Psraw, Mnemonic.Psrad, Mnemonic.Pslldq,
        Mnemonic.Psrldq, Mnemonic.Punpcklbw, Mnemonic.Punpcklwd, Mnemonic.Punpckldq, Mnemonic.Punpcklqdq, Mnemonic.Punpckhbw,
        Mnemonic.Punpckhwd, Mnemonic.Punpckhdq, Mnemonic.Punpckhqdq, Mnemonic.Unpcklps, Mnemonic.Unpcklpd, Mnemonic.Unpckhps,
        Mnemonic.Unpckhpd, Mnemonic.Packsswb, Mnemonic.Packuswb, Mnemonic.Packssdw, Mnemonic.Pshufd, Mnemonic.Pshuflw, Mnemonic.Pshufhw,
        Mnemonic.Shufps, Mnemonic.Shufpd, Mnemonic.Pextrw, Mnemonic.Pinsrw,
        Mnemonic.Addps, Mnemonic.Addpd, Mnemonic.Addss, Mnemonic.Addsd, Mnemonic.Subps, Mnemonic.Subpd, Mnemonic.Subss, Mnemonic.Subsd,
        Mnemonic.Mulps, Mnemonic.Mulpd, Mnemonic.Mulss, Mnemonic.Mulsd, Mnemonic.Divps, Mnemonic.Divpd, Mnemonic.Divss, Mnemonic.Divsd,
        Mnemonic.Minps, Mnemonic.Minpd, Mnemonic.Minss, Mnemonic.Minsd, Mnemonic.Maxps, Mnemonic.Maxpd, Mnemonic.Maxss, Mnemonic.Maxsd,
        Mnemonic.Sqrtps, Mnemonic.Sqrtpd, Mnemonic.Sqrtss, Mnemonic.Sqrtsd, Mnemonic.Cmpps, Mnemonic.Cmppd, Mnemonic.Cmpss, Mnemonic.Cmpsd,
        Mnemonic.Comiss, Mnemonic.Comisd, Mnemonic.Ucomiss, Mnemonic.Ucomisd, Mnemonic.Cvtsi2ss, Mnemonic.Cvtsi2sd, Mnemonic.Cvtss2si,
        Mnemonic.Cvttss2si, Mnemonic.Cvtsd2si, Mnemonic.Cvttsd2si, Mnemonic.Cvtss2sd, Mnemonic.Cvtsd2ss, Mnemonic.Cvtdq2ps,
        Mnemonic.Cvtps2dq, Mnemonic.Cvttps2dq, Mnemonic.Cvtdq2pd, Mnemonic.Cvtpd2dq, Mnemonic.Cvttpd2dq, Mnemonic.Cvtps2pd,
        Mnemonic.Cvtpd2ps, Mnemonic.Rcpps, Mnemonic.Rcpss, Mnemonic.Rsqrtps, Mnemonic.Rsqrtss,
    ];

    /// <summary>
    /// 0: not SIMD; 1: SSE-SSE4.2 on XMM registers (checked for CR0/CR4); 2: cache control and fences (no SSE state);
    /// 3: POPCNT, CRC32, MOVBE, LZCNT/TZCNT (general-purpose registers only).
    /// </summary>
    private static readonly byte[] SimdKinds = BuildSimdKinds();

    private static byte[] BuildSimdKinds()
    {
        var t = new byte[(int)Enum.GetValues<Mnemonic>().Max() + 1];
        foreach (var m in SseMnemonics) t[(int)m] = 1;
        foreach (var m in Sse3Mnemonics) t[(int)m] = 1;
        foreach (var m in Sse4Mnemonics) t[(int)m] = 1;
        foreach (var m in MmxMnemonics) t[(int)m] = 1;
        foreach (var m in BitExtMnemonics) t[(int)m] = 3;
        foreach (var m in (ReadOnlySpan<Mnemonic>)[Mnemonic.Sfence, Mnemonic.Lfence, Mnemonic.Mfence, Mnemonic.Prefetchnta, Mnemonic.Prefetcht0,
                     Mnemonic.Prefetcht1, Mnemonic.Prefetcht2, Mnemonic.Clflush, Mnemonic.Movnti, Mnemonic.Fxsave, Mnemonic.Fxrstor,
                     Mnemonic.Fxsave64, Mnemonic.Fxrstor64])
            t[(int)m] = 2;
        return t;
    }

    /// <summary>Fences, prefetches, CLFLUSH, MOVNTI and FXSAVE/FXRSTOR: no SSE enable check beyond what each needs.</summary>
    private bool CacheControl(in Instruction i)
    {
        switch (i.Mnemonic)
        {
            case Mnemonic.Clflush:
                // The line must be addressable: a fault here is the same as for a byte read.
                ReadMem(i, 8);
                return true;
            case Mnemonic.Movnti:
                WriteMem(i, ReadReg(i.Op1Register), RegBits[(int)i.Op1Register]);
                return true;
            case Mnemonic.Fxsave or Mnemonic.Fxsave64: Fxsave(i, i.Mnemonic == Mnemonic.Fxsave64); return true;
            case Mnemonic.Fxrstor or Mnemonic.Fxrstor64: Fxrstor(i, i.Mnemonic == Mnemonic.Fxrstor64); return true;
            case Mnemonic.Mfence:
                if (_smp is not null) Interlocked.MemoryBarrier(); // other vCPUs' threads: the host's full fence
                return true;
            default:
                return true; // SFENCE, LFENCE, PREFETCHh: stores leave the host in order (x86-64 hosts are TSO)
        }
    }

    /// <summary>
    /// FXSAVE: the 512-byte area (16-byte aligned, else #GP): x87 state in bytes 0-159 from the x87 unit, MXCSR at
    /// 24, MXCSR_MASK at 28, XMM0-7 (XMM0-15 in 64-bit mode) from byte 160. CR0.EM or CR0.TS: #NM. The bytes after
    /// the last XMM register (reserved, and 464-511 which the SDM leaves to software) are not written, as on silicon.
    /// </summary>
    private void Fxsave(in Instruction i, bool rexW)
    {
        if ((Cr0 & 0xc) != 0) throw new CpuFault(ExNM, null);
        if ((OperandLinear(i) & 15) != 0) throw new CpuFault(ExGP, 0);
        Span<byte> area = stackalloc byte[512];
        area.Clear();
        SaveX87ToFxsave(area, rexW); // bytes 0-23 and 32-159: the x87 unit's part
        BitConverter.TryWriteBytes(area[24..], Mxcsr);
        BitConverter.TryWriteBytes(area[28..], MxcsrMask);
        int count = Mode64 ? 16 : 8;
        for (int r = 0; r < count; r++) MemoryMarshal.Write(area[(160 + 16 * r)..], in Xmm[r]);
        ReadMem(i, 64, 504); // the whole area must be writable before any of it is written
        for (int k = 0; k < 160 + 16 * count; k += 8) WriteMem(i, BitConverter.ToUInt64(area[k..]), 64, (ulong)k);
    }

    private void Fxrstor(in Instruction i, bool rexW)
    {
        if ((Cr0 & 0xc) != 0) throw new CpuFault(ExNM, null);
        if ((OperandLinear(i) & 15) != 0) throw new CpuFault(ExGP, 0);
        Span<byte> area = stackalloc byte[512];
        for (int k = 0; k < 512; k += 8) BitConverter.TryWriteBytes(area[k..], ReadMem(i, 64, (ulong)k));
        uint mxcsr = BitConverter.ToUInt32(area[24..]);
        if ((mxcsr & ~MxcsrMask) != 0) throw new CpuFault(ExGP, 0);
        LoadX87FromFxsave(area, rexW);
        Mxcsr = mxcsr;
        int count = Mode64 ? 16 : 8;
        for (int r = 0; r < count; r++) Xmm[r] = MemoryMarshal.Read<UInt128>(area[(160 + 16 * r)..]);
    }

    /// <summary>Lane-wise f over two 128-bit values read as T lanes.</summary>
    private static UInt128 Lanes<T>(UInt128 a, UInt128 b, Func<T, T, T> f)
        where T : unmanaged
    {
        var x = MemoryMarshal.Cast<UInt128, T>(MemoryMarshal.CreateSpan(ref a, 1));
        var y = MemoryMarshal.Cast<UInt128, T>(MemoryMarshal.CreateSpan(ref b, 1));
        for (int k = 0; k < x.Length; k++) x[k] = f(x[k], y[k]);
        return a;
    }

    private static UInt128 Shift(Mnemonic m, UInt128 v, ulong count)
    {
        int lane = m switch
        {
            Mnemonic.Psllw or Mnemonic.Psrlw or Mnemonic.Psraw => 16,
            Mnemonic.Pslld or Mnemonic.Psrld or Mnemonic.Psrad => 32,
            _ => 64,
        };
        bool arithmetic = m is Mnemonic.Psraw or Mnemonic.Psrad, left = m is Mnemonic.Psllw or Mnemonic.Pslld or Mnemonic.Psllq;
        UInt128 r = 0;
        ulong laneMask = lane == 64 ? ulong.MaxValue : (1UL << lane) - 1;
        for (int k = 0; k < 128 / lane; k++)
        {
            ulong x = (ulong)(v >> (k * lane)) & laneMask;
            ulong y;
            if (count >= (ulong)lane)
            {
                y = arithmetic && ((x >> (lane - 1)) & 1) != 0 ? laneMask : 0;
            }
            else if (left)
            {
                y = (x << (int)count) & laneMask;
            }
            else if (arithmetic)
            {
                long sx = (long)(x << (64 - lane)) >> (64 - lane);
                y = (ulong)(sx >> (int)count) & laneMask;
            }
            else
            {
                y = x >> (int)count;
            }
            r |= (UInt128)y << (k * lane);
        }
        return r;
    }

    /// <summary>PUNPCKL/H and UNPCKL/H: interleaves the low (or high) halves' lanes of a and b.</summary>
    private static UInt128 Interleave(UInt128 a, UInt128 b, int laneBytes, bool high)
    {
        int lanes = 8 / laneBytes, bits = laneBytes * 8;
        ulong x = (ulong)(high ? a >> 64 : a), y = (ulong)(high ? b >> 64 : b);
        ulong mask = bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;
        UInt128 r = 0;
        for (int k = 0; k < lanes; k++)
        {
            r |= (UInt128)((x >> (k * bits)) & mask) << (2 * k * bits);
            r |= (UInt128)((y >> (k * bits)) & mask) << ((2 * k + 1) * bits);
        }
        return r;
    }

    /// <summary>PACKSS/PACKUS: each source lane (a's, then b's) narrowed to half width with saturation.</summary>
    private static UInt128 Pack(UInt128 a, UInt128 b, int srcBits, Func<ulong, ulong> narrow)
    {
        int lanes = 128 / srcBits, outBits = srcBits / 2;
        ulong mask = (1UL << srcBits) - 1;
        UInt128 r = 0;
        for (int k = 0; k < lanes; k++) r |= (UInt128)narrow((ulong)(a >> (k * srcBits)) & mask) << (k * outBits);
        for (int k = 0; k < lanes; k++) r |= (UInt128)narrow((ulong)(b >> (k * srcBits)) & mask) << ((lanes + k) * outBits);
        return r;
    }
}
