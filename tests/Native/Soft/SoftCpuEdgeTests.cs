using ActorVmm.Native.Soft;
using static Iced.Intel.AssemblerRegisters;

namespace ActorVmm.Native.Tests.Soft;

public sealed class SoftCpuEdgeTests
{
    private static CpuRegistersLite Run(Action<Iced.Intel.Assembler> prog)
    {
        using var h = new SoftCpuHarness();
        h.Program(prog);
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        var r = h.Regs;
        return new(r.Rax, r.Rbx, r.Rcx, r.Rdx, r.Rflags);
    }

    internal readonly record struct CpuRegistersLite(ulong Eax, ulong Ebx, ulong Ecx, ulong Edx, ulong Flags);

    [Fact]
    public void ShiftCountZero_LeavesFlags_CountMaskedTo5Bits()
    {
        // SHL by CL=0 changes nothing, flags included (CF set by STC stays). SHL by 33 shifts by 1.
        var r = Run(a => { a.mov(eax, 5); a.stc(); a.xor(ecx, ecx); a.stc(); a.shl(eax, cl); a.setc(bl); a.mov(edx, 3); a.mov(cl, 33); a.shl(edx, cl); });
        Assert.Equal(5UL, r.Eax); Assert.Equal(1UL, r.Ebx & 0xff); Assert.Equal(6UL, r.Edx);
    }

    [Fact]
    public void Sar_Negative_And_Rcl8_ModNine()
    {
        // SAR -8 by 2 = -2. RCL AL(0x01) by 9 with CF=0 rotates a full 9-bit circle: AL=0x01, CF=0.
        var r = Run(a => { a.mov(eax, -8); a.sar(eax, 2); a.mov(bl, 1); a.clc(); a.rcl(bl, 9); a.setc(bh); });
        Assert.Equal(0xfffffffeUL, r.Eax);
        Assert.Equal(0x0001UL, r.Ebx & 0xffff);
    }

    [Fact]
    public void Cmpxchg8b_NotEqual_LoadsEdxEax()
    {
        using var h = new SoftCpuHarness();
        h.Memory.WriteObject(SoftCpuHarness.Data, 0x0102030405060708UL);
        h.Program(a => { a.xor(eax, eax); a.xor(edx, edx); a.cmpxchg8b(__qword_ptr[SoftCpuHarness.Data]); });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(0x05060708UL, h.Regs.Rax); Assert.Equal(0x01020304UL, h.Regs.Rdx);
        Assert.Equal(0UL, h.Regs.Rflags & 0x40);
    }

    [Fact]
    public void Movzx_Movsx_Cwde_Cdq_Xchg()
    {
        var r = Run(a => { a.mov(ecx, 0x80ff); a.movzx(eax, cl); a.movsx(ebx, cx); a.mov(edx, 0); a.xchg(eax, edx); a.mov(ax, unchecked((short)0x8000)); a.cwde(); });
        Assert.Equal(0xffff8000UL, r.Eax); Assert.Equal(0xffff80ffUL, r.Ebx); Assert.Equal(0xffUL, r.Edx);
    }
}
