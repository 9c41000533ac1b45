// Lazy flags. Arithmetic instructions record their operands, result, width and kind; CF, PF, AF, ZF, SF and
// OF are computed only when something reads them (a Jcc reads one or two; PUSHF reads all). Instructions
// whose flags are irregular (shifts, rotates, multiplies, BCD) compute them at once and store them
// materialized. The other EFLAGS bits (TF, IF, DF, IOPL, NT, RF, VM, ExAC, ID) live in _flags.
using System.Numerics;
using System.Runtime.CompilerServices;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    internal const uint CF = 1u << 0, PF = 1u << 2, AF = 1u << 4, ZF = 1u << 6, SF = 1u << 7, TF = 1u << 8, IF = 1u << 9,
        DF = 1u << 10, OF_ = 1u << 11, IOPL = 3u << 12, NT = 1u << 14, RF = 1u << 16, VM = 1u << 17, AC_ = 1u << 18, ID = 1u << 21;

    internal const uint ArithMask = CF | PF | AF | ZF | SF | OF_;

    private enum LazyOp : byte
    {
        /// <summary>Flags are in _arith.</summary>
        None,
        Add,
        Adc,
        Sub,
        Sbb,
        Logic,
        Inc,
        Dec,
        Neg,
    }

    private uint _flags = 0x2;    // non-arithmetic EFLAGS bits (bit 1 always set)
    private uint _arith;          // materialized arithmetic flags when _op == None
    private LazyOp _op;
    private ulong _res, _a, _b;
    private int _bits = 32;
    private bool _carryIn;        // CF before ADC/SBB, or the preserved CF for INC/DEC

    /// <summary>Architectural EFLAGS.</summary>
    internal ulong Rflags
    {
        get => (_flags & ~ArithMask) | ArithFlags() | 0x2;
        set
        {
            _flags = ((uint)value & ~ArithMask & 0x003f_7fd5u) | 0x2;
            _arith = (uint)value & ArithMask;
            _op = LazyOp.None;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SetLazy(LazyOp op, ulong a, ulong b, ulong res, int bits)
    {
        _op = op;
        _a = a;
        _b = b;
        _res = res;
        _bits = bits;
    }

    /// <summary>Stores materialized arithmetic flags (only the bits in <paramref name="mask"/> change).</summary>
    private void SetArith(uint value, uint mask = ArithMask)
    {
        // Replacing all six flags needs nothing of the old ones (no lazy evaluation).
        _arith = mask == ArithMask ? value & mask : (ArithFlags() & ~mask) | (value & mask);
        _op = LazyOp.None;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong SizeMask(int bits) => ulong.MaxValue >> (64 - bits);

    private static bool Parity(ulong v) => (BitOperations.PopCount((uint)(v & 0xff)) & 1) == 0;

    /// <summary>SF, ZF and PF of a result of <paramref name="bits"/> bits.</summary>
    private static uint SzpFlags(ulong res, int bits)
    {
        res &= SizeMask(bits);
        uint f = 0;
        if (res == 0) f |= ZF;
        if ((res >> (bits - 1) & 1) != 0) f |= SF;
        if (Parity(res)) f |= PF;
        return f;
    }

    private uint ArithFlags()
    {
        if (_op == LazyOp.None) return _arith;
        ulong mask = SizeMask(_bits);
        ulong a = _a & mask, b = _b & mask, r = _res & mask;
        ulong sign = 1UL << (_bits - 1);
        uint f = SzpFlags(r, _bits);
        switch (_op)
        {
            case LazyOp.Add:
                if (r < a) f |= CF;
                if (((a ^ r) & (b ^ r) & sign) != 0) f |= OF_;
                f |= (uint)((a ^ b ^ r) & 0x10);
                break;
            case LazyOp.Adc:
                if (r < a || (_carryIn && r == a)) f |= CF;
                if (((a ^ r) & (b ^ r) & sign) != 0) f |= OF_;
                f |= (uint)((a ^ b ^ r) & 0x10);
                break;
            case LazyOp.Sub:
                if (a < b) f |= CF;
                if (((a ^ b) & (a ^ r) & sign) != 0) f |= OF_;
                f |= (uint)((a ^ b ^ r) & 0x10);
                break;
            case LazyOp.Sbb:
                if (a < b || (_carryIn && a == b)) f |= CF;
                if (((a ^ b) & (a ^ r) & sign) != 0) f |= OF_;
                f |= (uint)((a ^ b ^ r) & 0x10);
                break;
            case LazyOp.Logic:
                break;
            case LazyOp.Inc:
                if (_carryIn) f |= CF;
                if (r == sign) f |= OF_;
                f |= (uint)((a ^ 1 ^ r) & 0x10);
                break;
            case LazyOp.Dec:
                if (_carryIn) f |= CF;
                if (r == sign - 1) f |= OF_;
                f |= (uint)((a ^ 1 ^ r) & 0x10);
                break;
            case LazyOp.Neg:
                if (b != 0) f |= CF;
                if (b == sign) f |= OF_;
                f |= (uint)((b ^ r) & 0x10);
                break;
        }
        return f;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool GetCf()
    {
        switch (_op)
        {
            case LazyOp.None: return (_arith & CF) != 0;
            case LazyOp.Add: return (_res & SizeMask(_bits)) < (_a & SizeMask(_bits));
            case LazyOp.Sub: return (_a & SizeMask(_bits)) < (_b & SizeMask(_bits));
            case LazyOp.Logic: return false;
            default: return (ArithFlags() & CF) != 0;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool GetZf() => _op == LazyOp.None ? (_arith & ZF) != 0 : (_res & SizeMask(_bits)) == 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool GetSf() => _op == LazyOp.None ? (_arith & SF) != 0 : ((_res >> (_bits - 1)) & 1) != 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool GetOf()
    {
        // The common producers directly (CMP/SUB, ADD, logic); the others through the full evaluation.
        ulong sign = 1UL << (_bits - 1);
        switch (_op)
        {
            case LazyOp.None: return (_arith & OF_) != 0;
            case LazyOp.Sub: return ((_a ^ _b) & (_a ^ _res) & sign) != 0;
            case LazyOp.Add: return ((_a ^ _res) & (_b ^ _res) & sign) != 0;
            case LazyOp.Logic: return false;
            default: return (ArithFlags() & OF_) != 0;
        }
    }

    private bool GetPf() => _op == LazyOp.None ? (_arith & PF) != 0 : Parity(_res);

    private bool GetAf() => (ArithFlags() & AF) != 0;

    /// <summary>Evaluates condition code <paramref name="cc"/> (the low nibble of Jcc/SETcc/CMOVcc opcodes).</summary>
    private bool Condition(int cc)
    {
        bool r = (cc >> 1) switch
        {
            0 => GetOf(),
            1 => GetCf(),
            2 => GetZf(),
            3 => GetCf() || GetZf(),
            4 => GetSf(),
            5 => GetPf(),
            6 => GetSf() != GetOf(),
            _ => GetZf() || GetSf() != GetOf(),
        };
        return (cc & 1) != 0 ? !r : r;
    }
}
