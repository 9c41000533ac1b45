// General-purpose-register extensions for the software CPU (Intel SDM vol. 2): POPCNT, CRC32 (SSE4.2's CRC-32C
// step, no SSE state involved), MOVBE and LZCNT (ABM); TZCNT's encoding runs as BSF, BMI1 not being offered. None of them looks at CR0.EM, CR4.OSFXSR or CR0.TS.
using System.Buffers.Binary;
using System.Numerics;
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    internal static Mnemonic[] BitExtMnemonics => [Mnemonic.Popcnt, Mnemonic.Crc32, Mnemonic.Lzcnt, Mnemonic.Tzcnt, Mnemonic.Movbe];

    /// <summary>CRC-32C (Castagnoli, reflected polynomial 82F63B78h) one byte at a time, no inversion: CRC32's step.</summary>
    private static readonly uint[] Crc32cTable = BuildCrc32cTable();

    private static uint[] BuildCrc32cTable()
    {
        var t = new uint[256];
        for (uint b = 0; b < 256; b++)
        {
            uint c = b;
            for (int k = 0; k < 8; k++) c = (c >> 1) ^ ((c & 1) != 0 ? 0x82F6_3B78u : 0);
            t[b] = c;
        }
        return t;
    }

    /// <summary>CRC32's update of <paramref name="crc"/> with the low <paramref name="bytes"/> bytes of <paramref name="data"/>, least significant first.</summary>
    internal static uint Crc32cUpdate(uint crc, ulong data, int bytes)
    {
        for (int k = 0; k < bytes; k++) crc = (crc >> 8) ^ Crc32cTable[(byte)(crc ^ (data >> (8 * k)))];
        return crc;
    }

    private bool BitExtInstruction(in Instruction i)
    {
        switch (i.Mnemonic)
        {
            case Mnemonic.Popcnt:
                {
                    ulong v = ReadOp(i, 1, OpBits(i, 1));
                    WriteReg(i.Op0Register, (ulong)BitOperations.PopCount(v));
                    SetArith(v == 0 ? ZF : 0); // OF, SF, AF, CF, PF cleared
                    return true;
                }
            case Mnemonic.Lzcnt:
                {
                    int bits = OpBits(i, 1);
                    ulong v = ReadOp(i, 1, bits);
                    int n = v == 0 ? bits : BitOperations.LeadingZeroCount(v) - (64 - bits);
                    WriteReg(i.Op0Register, (ulong)n);
                    // CF: the source was zero; ZF: the result is zero; OF, SF, AF, PF: undefined (left as they were).
                    SetArith((v == 0 ? CF : 0) | (n == 0 ? ZF : 0), CF | ZF);
                    return true;
                }
            case Mnemonic.Tzcnt:
                {
                    // F3 0F BC on a CPU without BMI1 (which CPUID does not offer here: its VEX-encoded instructions are
                    // not implemented) is BSF with an ignored REP prefix, as on the processors before BMI1: code such
                    // as Linux's "rep; bsf" relies on it.
                    int bits = OpBits(i, 1);
                    ulong v = ReadOp(i, 1, bits);
                    if (v == 0)
                    {
                        SetArith(ZF, ZF); // the destination is left as it was
                        return true;
                    }
                    WriteReg(i.Op0Register, (ulong)BitOperations.TrailingZeroCount(v));
                    SetArith(0, ZF);
                    return true;
                }
            case Mnemonic.Crc32:
                {
                    int bits = OpBits(i, 1);
                    ulong v = ReadOp(i, 1, bits);
                    WriteReg(i.Op0Register, Crc32cUpdate((uint)ReadReg(i.Op0Register), v, bits / 8)); // zero-extended into r64
                    return true;
                }
            case Mnemonic.Movbe:
                {
                    // MOVBE has only register <-> memory forms.
                    if (i.Op0Kind == OpKind.Register)
                    {
                        int bits = OpBits(i, 0);
                        WriteReg(i.Op0Register, Swap(ReadMem(i, bits), bits));
                    }
                    else
                    {
                        int bits = OpBits(i, 1);
                        WriteMem(i, Swap(ReadReg(i.Op1Register), bits), bits);
                    }
                    return true;
                }
            default:
                return false;
        }

        static ulong Swap(ulong v, int bits) => bits switch
        {
            16 => BinaryPrimitives.ReverseEndianness((ushort)v),
            32 => BinaryPrimitives.ReverseEndianness((uint)v),
            _ => BinaryPrimitives.ReverseEndianness(v),
        };
    }
}
