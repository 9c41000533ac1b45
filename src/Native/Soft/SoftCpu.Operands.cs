// Operand access for the interpreter: Iced registers mapped to the register file, effective addresses with
// 16-, 32- and 64-bit (incl. RIP-relative) addressing, and width-generic reads and writes of register, memory and immediate operands.
using System.Runtime.CompilerServices;
using ActorVmm.Core.Accel;
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    private static readonly int RegisterCount = (int)Enum.GetValues<Register>().Max() + 1;

    // Per Iced Register: index into Gpr (or segment number), width in bits, and whether it is AH/CH/DH/BH.
    private static readonly sbyte[] RegIndex = new sbyte[RegisterCount];
    private static readonly byte[] RegBits = new byte[RegisterCount];
    private static readonly bool[] RegHigh8 = new bool[RegisterCount];

    static SoftCpu()
    {
        Array.Fill(RegIndex, (sbyte)-1);
        for (var r = Register.AL; r <= Register.R15L; r++)
        {
            int n = r - Register.AL;
            bool high = n is >= 4 and <= 7;
            // AL..BL are 0-3; AH..BH the high bytes of 0-3; SPL..DIL 4-7; R8L..R15L 8-15.
            RegIndex[(int)r] = (sbyte)(n < 4 ? n : n - 4);
            RegHigh8[(int)r] = high;
            RegBits[(int)r] = 8;
        }
        for (int n = 0; n < 16; n++)
        {
            RegIndex[(int)Register.AX + n] = (sbyte)n; RegBits[(int)Register.AX + n] = 16;
            RegIndex[(int)Register.EAX + n] = (sbyte)n; RegBits[(int)Register.EAX + n] = 32;
            RegIndex[(int)Register.RAX + n] = (sbyte)n; RegBits[(int)Register.RAX + n] = 64;
        }
        for (int n = 0; n < 6; n++)
        {
            RegIndex[(int)Register.ES + n] = (sbyte)n;
            RegBits[(int)Register.ES + n] = 16;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong ReadReg(Register r)
    {
        int i = RegIndex[(int)r];
        switch (RegBits[(int)r])
        {
            case 8: return RegHigh8[(int)r] ? (Gpr[i] >> 8) & 0xff : Gpr[i] & 0xff;
            case 16: return Gpr[i] & 0xffff;
            case 32: return Gpr[i] & 0xffff_ffff;
            default: return Gpr[i];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void WriteReg(Register r, ulong v)
    {
        int i = RegIndex[(int)r];
        switch (RegBits[(int)r])
        {
            case 8:
                if (RegHigh8[(int)r]) Gpr[i] = (Gpr[i] & ~0xff00UL) | ((v & 0xff) << 8);
                else Gpr[i] = (Gpr[i] & ~0xffUL) | (v & 0xff);
                break;
            case 16: Gpr[i] = (Gpr[i] & ~0xffffUL) | (v & 0xffff); break;
            case 32: Gpr[i] = v & 0xffff_ffff; break; // zero-extends, as 64-bit mode requires (and harmless elsewhere)
            default: Gpr[i] = v; break;
        }
    }

    /// <summary>Width in bits of operand 0 (a register or memory).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int OpBits(in Instruction i, int n = 0)
        => i.GetOpKind(n) == OpKind.Register ? RegBits[(int)i.GetOpRegister(n)] : i.MemorySize.GetSize() * 8;

    /// <summary>Address size of the memory operand in bits (16 or 32).</summary>
    private static int AddressBits(in Instruction i)
    {
        var b = i.MemoryBase;
        if (b != Register.None) return RegBits[(int)b];
        var x = i.MemoryIndex;
        if (x != Register.None) return RegBits[(int)x];
        return i.MemoryDisplSize == 2 ? 16 : 32;
    }

    /// <summary>Offset of the memory operand within its segment.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong EffectiveOffset(in Instruction i)
    {
        if (Mode64) return EffectiveOffset64(i);
        ulong ea = i.MemoryDisplacement32;
        var b = i.MemoryBase;
        if (b != Register.None) ea += ReadReg(b);
        var x = i.MemoryIndex;
        if (x != Register.None) ea += ReadReg(x) * (uint)i.MemoryIndexScale;
        return AddressBits(i) == 16 ? ea & 0xffff : ea & 0xffff_ffff;
    }

    /// <summary>
    /// 64-bit mode addressing: 64-bit registers (or 32-bit ones with 0x67, truncated), a sign-extended displacement,
    /// and RIP-relative operands. Decoded instructions are cached by physical address, so Iced's RIP-relative
    /// address is relative to the physical next IP; the displacement applies to the linear RIP.
    /// </summary>
    private ulong EffectiveOffset64(in Instruction i)
    {
        ulong ea = i.MemoryDisplacement64;
        var b = i.MemoryBase;
        if (b == Register.RIP) return _nextRip + (ea - i.NextIP);
        if (b == Register.EIP) return (_nextRip + (ea - i.NextIP)) & 0xffff_ffff;
        bool a32 = false;
        if (b != Register.None)
        {
            ea += ReadReg(b);
            a32 = RegBits[(int)b] == 32;
        }
        var x = i.MemoryIndex;
        if (x != Register.None)
        {
            ea += ReadReg(x) * (uint)i.MemoryIndexScale;
            a32 |= RegBits[(int)x] == 32;
        }
        return a32 ? ea & 0xffff_ffff : ea;
    }

    private ref SegmentRegister MemorySegment(in Instruction i, out byte faultVector)
    {
        var s = i.MemorySegment;
        faultVector = s == Register.SS ? ExSS : ExGP;
        return ref Sreg(RegIndex[(int)s]);
    }

    private ulong ReadMem(in Instruction i, int bits, ulong extraOffset = 0)
    {
        ref var seg = ref MemorySegment(i, out byte fv);
        ulong off = EffectiveOffset(i) + extraOffset;
        if (!Mode64) off &= AddressBits(i) == 16 ? 0xffffUL : 0xffff_ffffUL;
        if (_atomic != AtomicPhase.Off) return AtomicRead(ref seg, fv, off, bits / 8); // a locked instruction on SMP (SoftCpu.Smp.cs)
        return ReadSeg(ref seg, fv, off, bits / 8);
    }

    private void WriteMem(in Instruction i, ulong v, int bits, ulong extraOffset = 0)
    {
        ref var seg = ref MemorySegment(i, out byte fv);
        ulong off = EffectiveOffset(i) + extraOffset;
        if (!Mode64) off &= AddressBits(i) == 16 ? 0xffffUL : 0xffff_ffffUL;
        if (_atomic != AtomicPhase.Off)
        {
            AtomicWrite(ref seg, fv, off, v, bits / 8);
            return;
        }
        WriteSeg(ref seg, fv, off, v, bits / 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong ReadOp(in Instruction i, int n, int bits)
    {
        switch (i.GetOpKind(n))
        {
            case OpKind.Register: return ReadReg(i.GetOpRegister(n));
            case OpKind.Memory: return ReadMem(i, bits);
            default: return i.GetImmediate(n) & SizeMask(bits);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void WriteOp(in Instruction i, int n, ulong v, int bits)
    {
        if (i.GetOpKind(n) == OpKind.Register) WriteReg(i.GetOpRegister(n), v);
        else WriteMem(i, v, bits);
    }
}
