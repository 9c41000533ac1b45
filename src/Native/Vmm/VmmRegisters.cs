// Register conversion between the accelerator contract's structs and vmm's register ids and seg_desc.
// Segment attributes: our SegmentRegister.Attributes already uses the layout of descriptor bytes 5-6 with the
// limit nibble zero, which is VMX's access-rights format bits 0-15; vmm adds "unusable" as bit 16, set here for
// a segment that is not present (a null selector in protected mode).
using ActorVmm.Core.Accel;

namespace ActorVmm.Native.Vmm;

public static class VmmRegisters
{
    /// <summary>vm_reg_name of CpuRegisters index 0-15 (x86 encoding order RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15).</summary>
    public static readonly VmRegName[] GprNames =
    [
        VmRegName.Rax, VmRegName.Rcx, VmRegName.Rdx, VmRegName.Rbx, VmRegName.Rsp, VmRegName.Rbp, VmRegName.Rsi, VmRegName.Rdi,
        VmRegName.R8, VmRegName.R9, VmRegName.R10, VmRegName.R11, VmRegName.R12, VmRegName.R13, VmRegName.R14, VmRegName.R15,
    ];

    /// <summary>The general state as one VM_GET/SET_REGISTER_SET: 16 GPRs, RIP, RFLAGS.</summary>
    public static readonly VmRegName[] GeneralSet = [.. GprNames, VmRegName.Rip, VmRegName.Rflags];

    /// <summary>Control registers, EFER and the segment selectors.</summary>
    public static readonly VmRegName[] ControlSet =
    [
        VmRegName.Cr0, VmRegName.Cr2, VmRegName.Cr3, VmRegName.Cr4, VmRegName.Efer,
        VmRegName.Cs, VmRegName.Ds, VmRegName.Es, VmRegName.Fs, VmRegName.Gs, VmRegName.Ss, VmRegName.Tr, VmRegName.Ldtr,
    ];

    public static readonly VmRegName[] Segments =
        [VmRegName.Cs, VmRegName.Ds, VmRegName.Es, VmRegName.Fs, VmRegName.Gs, VmRegName.Ss, VmRegName.Tr, VmRegName.Ldtr];

    public static SegDesc ToDesc(in SegmentRegister s) => new()
    {
        Base = s.Base,
        Limit = s.Limit,
        Access = s.Present ? s.Attributes : s.Attributes | SegDesc.Unusable,
    };

    public static SegmentRegister FromDesc(ushort selector, in SegDesc d)
    {
        var attrs = (ushort)(d.Access & 0xf0ff);
        if ((d.Access & SegDesc.Unusable) != 0) attrs &= 0xff7f;
        return new SegmentRegister { Selector = selector, Base = d.Base, Limit = d.Limit, Attributes = attrs };
    }

    public static ref SegmentRegister Segment(ref SystemRegisters s, VmRegName name)
    {
        switch (name)
        {
            case VmRegName.Cs: return ref s.Cs;
            case VmRegName.Ds: return ref s.Ds;
            case VmRegName.Es: return ref s.Es;
            case VmRegName.Fs: return ref s.Fs;
            case VmRegName.Gs: return ref s.Gs;
            case VmRegName.Ss: return ref s.Ss;
            case VmRegName.Tr: return ref s.Tr;
            case VmRegName.Ldtr: return ref s.Ldtr;
            default: throw new ArgumentOutOfRangeException(nameof(name), $"{name} is not a segment register");
        }
    }
}
