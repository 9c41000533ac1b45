// Register state exchanged with the accelerator, as plain structs (get/set whole).
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace ActorVmm.Core.Accel;

/// <summary>General-purpose registers, instruction pointer and flags.</summary>
public struct CpuRegisters
{
    public ulong Rax, Rcx, Rdx, Rbx, Rsp, Rbp, Rsi, Rdi;
    public ulong R8, R9, R10, R11, R12, R13, R14, R15;
    public ulong Rip;
    public ulong Rflags;

    /// <summary>Register by its x86 encoding number (0 = RAX ... 15 = R15).</summary>
    [UnscopedRef]
    public ref ulong this[int index] => ref Unsafe.Add(ref Rax, index);
}

/// <summary>A segment register as the CPU caches it: selector plus the descriptor it was loaded from.</summary>
public struct SegmentRegister
{
    public ushort Selector;
    public ulong Base;
    public uint Limit;
    /// <summary>Descriptor attribute bits in the layout of descriptor bytes 5-6: type(4) S DPL(2) P | limit(4) AVL L D/B G, limit nibble zero.</summary>
    public ushort Attributes;

    public readonly bool Present => (Attributes & 0x80) != 0;

    /// <summary>A present segment built from its parts.</summary>
    public static SegmentRegister Make(ushort selector, ulong @base, uint limit, byte type, bool s, int dpl, bool l, bool db, bool g)
        => new()
        {
            Selector = selector,
            Base = @base,
            Limit = limit,
            Attributes = (ushort)(type | (s ? 0x10 : 0) | (dpl << 5) | 0x80 | (l ? 0x2000 : 0) | (db ? 0x4000 : 0) | (g ? 0x8000 : 0)),
        };

    /// <summary>Real-mode segment for a selector.</summary>
    public static SegmentRegister RealMode(ushort selector, bool code = false)
        => new() { Selector = selector, Base = (ulong)selector << 4, Limit = 0xffff, Attributes = (ushort)(code ? 0x9b : 0x93) };
}

public struct DescriptorTableRegister
{
    public ulong Base;
    public ushort Limit;
}

/// <summary>Segments, control registers, descriptor tables and the few MSRs that define the mode.</summary>
public struct SystemRegisters
{
    public SegmentRegister Cs, Ds, Es, Fs, Gs, Ss, Tr, Ldtr;
    public DescriptorTableRegister Gdtr, Idtr;
    public ulong Cr0, Cr2, Cr3, Cr4, Cr8;
    public ulong Efer;
    public ulong ApicBase;

    /// <summary>The state a PC vCPU has at power-on (Intel SDM vol. 3, table 9-1): real mode at F000:FFF0.</summary>
    public static SystemRegisters PowerOn()
    {
        var data = SegmentRegister.RealMode(0);
        return new SystemRegisters
        {
            Cs = new SegmentRegister { Selector = 0xf000, Base = 0xffff0000, Limit = 0xffff, Attributes = 0x9b },
            Ds = data, Es = data, Fs = data, Gs = data, Ss = data,
            Tr = new SegmentRegister { Limit = 0xffff, Attributes = 0x8b },
            Ldtr = new SegmentRegister { Limit = 0xffff, Attributes = 0x82 },
            Gdtr = new DescriptorTableRegister { Limit = 0xffff },
            Idtr = new DescriptorTableRegister { Limit = 0xffff },
            Cr0 = 0x60000010,
            ApicBase = 0xfee00900,
        };
    }
}
