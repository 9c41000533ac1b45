// SSE3 and SSSE3 for the software CPU (Intel SDM vol. 2): SSE3's horizontal and alternating single/double
// arithmetic (through SseFloat, with MXCSR rounding and flags; an unmasked exception leaves the destination alone),
// the duplicating moves and LDDQU (in SoftCpu.Sse.cs with the other loads); SSSE3's byte shuffle, horizontal
// integer add/subtract, multiply-add, rounded high multiply, sign, absolute value and byte alignment on XMM
// registers (their mm forms are in SoftCpu.Mmx.cs). MONITOR/MWAIT are not offered (CPUID.1:ECX[3] clear): #UD.
using System.Runtime.CompilerServices;
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    // Properties: static fields of other files of this partial class initialise in an order not to rely on.
    internal static Mnemonic[] Sse3Mnemonics =>
    [
        Mnemonic.Addsubps, Mnemonic.Addsubpd, Mnemonic.Haddps, Mnemonic.Haddpd, Mnemonic.Hsubps, Mnemonic.Hsubpd, Mnemonic.Movshdup,
        Mnemonic.Movsldup, Mnemonic.Movddup, Mnemonic.Lddqu,
        // SSSE3
        Mnemonic.Pshufb, Mnemonic.Phaddw, Mnemonic.Phaddd, Mnemonic.Phaddsw, Mnemonic.Phsubw, Mnemonic.Phsubd, Mnemonic.Phsubsw,
        Mnemonic.Pmaddubsw, Mnemonic.Pmulhrsw, Mnemonic.Psignb, Mnemonic.Psignw, Mnemonic.Psignd, Mnemonic.Pabsb, Mnemonic.Pabsw,
        Mnemonic.Pabsd, Mnemonic.Palignr,
    ];

    /// <summary>Lane k of v read as T (little-endian lanes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T Get<T>(UInt128 v, int k)
        where T : unmanaged => Unsafe.Add(ref Unsafe.As<UInt128, T>(ref v), k);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put<T>(ref UInt128 v, int k, T x)
        where T : unmanaged => Unsafe.Add(ref Unsafe.As<UInt128, T>(ref v), k) = x;

    private static short SatW(int v) => (short)Math.Clamp(v, short.MinValue, short.MaxValue);

    private bool Sse3Instruction(in Instruction i)
    {
        var m = i.Mnemonic;
        switch (m)
        {
            case Mnemonic.Addsubps or Mnemonic.Addsubpd or Mnemonic.Haddps or Mnemonic.Haddpd or Mnemonic.Hsubps or Mnemonic.Hsubpd:
                {
                    bool single = m is Mnemonic.Addsubps or Mnemonic.Haddps or Mnemonic.Hsubps;
                    int bits = single ? 32 : 64, lanes = 128 / bits;
                    ulong mask = single ? 0xffff_ffffUL : ulong.MaxValue;
                    UInt128 a = Dest(i), b = ReadVec(i, 1), r = 0;
                    ulong Lane(int n) => (ulong)((n < lanes ? a : b) >> ((n % lanes) * bits)) & mask; // a's lanes, then b's
                    uint flags = 0;
                    for (int k = 0; k < lanes; k++)
                    {
                        ulong v = m switch
                        {
                            Mnemonic.Addsubps or Mnemonic.Addsubpd =>
                                SseFloat.Arith((k & 1) == 0 ? SseFloat.Op.Sub : SseFloat.Op.Add, Lane(k), Lane(lanes + k), single, Mxcsr, ref flags),
                            Mnemonic.Haddps or Mnemonic.Haddpd => SseFloat.Arith(SseFloat.Op.Add, Lane(2 * k), Lane(2 * k + 1), single, Mxcsr, ref flags),
                            _ => SseFloat.Arith(SseFloat.Op.Sub, Lane(2 * k), Lane(2 * k + 1), single, Mxcsr, ref flags),
                        };
                        SetLane(ref r, k, bits, v);
                    }
                    CommitFp(flags);
                    Dest(i) = r;
                    return true;
                }
            case Mnemonic.Movshdup or Mnemonic.Movsldup:
                {
                    UInt128 s = ReadVec(i, 1), r = 0;
                    int odd = m == Mnemonic.Movshdup ? 1 : 0;
                    for (int k = 0; k < 4; k++) Put(ref r, k, Get<uint>(s, (k & ~1) | odd));
                    Dest(i) = r;
                    return true;
                }
            case Mnemonic.Movddup:
                {
                    ulong lo = (ulong)ReadVec(i, 1);
                    Dest(i) = new UInt128(lo, lo);
                    return true;
                }

            // --- SSSE3 ---
            case Mnemonic.Pshufb:
                {
                    UInt128 a = Dest(i), b = ReadVec(i, 1), r = 0;
                    for (int k = 0; k < 16; k++)
                    {
                        byte sel = Get<byte>(b, k);
                        Put(ref r, k, (sel & 0x80) != 0 ? (byte)0 : Get<byte>(a, sel & 15));
                    }
                    Dest(i) = r;
                    return true;
                }
            case Mnemonic.Phaddw or Mnemonic.Phsubw or Mnemonic.Phaddsw or Mnemonic.Phsubsw:
                {
                    UInt128 a = Dest(i), b = ReadVec(i, 1), r = 0;
                    for (int k = 0; k < 8; k++)
                    {
                        UInt128 s = k < 4 ? a : b;
                        int x = Get<short>(s, 2 * (k & 3)), y = Get<short>(s, 2 * (k & 3) + 1);
                        short v = m switch
                        {
                            Mnemonic.Phaddw => (short)(x + y),
                            Mnemonic.Phsubw => (short)(x - y),
                            Mnemonic.Phaddsw => SatW(x + y),
                            _ => SatW(x - y),
                        };
                        Put(ref r, k, v);
                    }
                    Dest(i) = r;
                    return true;
                }
            case Mnemonic.Phaddd or Mnemonic.Phsubd:
                {
                    UInt128 a = Dest(i), b = ReadVec(i, 1), r = 0;
                    for (int k = 0; k < 4; k++)
                    {
                        UInt128 s = k < 2 ? a : b;
                        uint x = Get<uint>(s, 2 * (k & 1)), y = Get<uint>(s, 2 * (k & 1) + 1);
                        Put(ref r, k, m == Mnemonic.Phaddd ? x + y : x - y);
                    }
                    Dest(i) = r;
                    return true;
                }
            case Mnemonic.Pmaddubsw:
                {
                    // The destination's bytes are unsigned, the source's signed.
                    UInt128 a = Dest(i), b = ReadVec(i, 1), r = 0;
                    for (int k = 0; k < 8; k++)
                        Put(ref r, k, SatW(Get<byte>(a, 2 * k) * Get<sbyte>(b, 2 * k) + Get<byte>(a, 2 * k + 1) * Get<sbyte>(b, 2 * k + 1)));
                    Dest(i) = r;
                    return true;
                }
            case Mnemonic.Pmulhrsw:
                Dest(i) = Lanes<short>(Dest(i), ReadVec(i, 1), static (a, b) => (short)((((a * b) >> 14) + 1) >> 1));
                return true;
            case Mnemonic.Psignb: Dest(i) = Lanes<sbyte>(Dest(i), ReadVec(i, 1), static (a, b) => b < 0 ? (sbyte)-a : b == 0 ? (sbyte)0 : a); return true;
            case Mnemonic.Psignw: Dest(i) = Lanes<short>(Dest(i), ReadVec(i, 1), static (a, b) => b < 0 ? (short)-a : b == 0 ? (short)0 : a); return true;
            case Mnemonic.Psignd: Dest(i) = Lanes<int>(Dest(i), ReadVec(i, 1), static (a, b) => b < 0 ? -a : b == 0 ? 0 : a); return true;
            case Mnemonic.Pabsb: Dest(i) = Lanes<sbyte>(ReadVec(i, 1), 0, static (a, _) => (sbyte)Math.Abs((int)a)); return true;
            case Mnemonic.Pabsw: Dest(i) = Lanes<short>(ReadVec(i, 1), 0, static (a, _) => (short)Math.Abs((int)a)); return true;
            case Mnemonic.Pabsd: Dest(i) = Lanes<int>(ReadVec(i, 1), 0, static (a, _) => (int)Math.Abs((long)a)); return true;
            case Mnemonic.Palignr:
                {
                    // dest:src as 32 bytes (the source low), shifted right by imm8 bytes; zeros come in from the top.
                    UInt128 a = Dest(i), b = ReadVec(i, 1), r = 0;
                    int shift = i.Immediate8;
                    for (int k = 0; k < 16; k++)
                    {
                        int at = k + shift;
                        Put(ref r, k, at < 16 ? Get<byte>(b, at) : at < 32 ? Get<byte>(a, at - 16) : (byte)0);
                    }
                    Dest(i) = r;
                    return true;
                }
            default:
                return Sse4Instruction(i);
        }
    }
}
