// 64-bit mode behaviour that the silicon differential run (tests/Native/Silicon/SiliconLong64Tests) found the soft
// CPU getting wrong, each pinned by a focused program.
using ActorVmm.Core.Accel;
using ActorVmm.Native.Soft;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace ActorVmm.Native.Tests.Soft;

public sealed class SoftCpuLongModeTests
{
    private const ulong Pml4 = 0x20000;

    /// <summary>Runs a 64-bit program (followed by HLT) at <see cref="SoftCpuHarness.Code"/> with RAX, RCX and RDX preset.</summary>
    private static CpuRegisters Run64(Action<Assembler> prog, ulong rax, ulong rcx = 0, ulong rdx = 0)
    {
        using var h = new SoftCpuHarness();
        // Identity-map the first 2 MiB with one large page: PML4 -> PDPT -> PD (PS).
        h.Memory.WriteObject(Pml4, (Pml4 + 0x1000) | 3);
        h.Memory.WriteObject(Pml4 + 0x1000, (Pml4 + 0x2000) | 3);
        h.Memory.WriteObject(Pml4 + 0x2000, 0x83UL);
        var sys = h.Cpu.GetSystemRegisters();
        sys.Cs = SegmentRegister.Make(0x08, 0, 0xffff_ffff, 0xb, s: true, dpl: 0, l: true, db: false, g: true);
        sys.Cr0 = 0x8000_0011;
        sys.Cr3 = Pml4;
        sys.Cr4 = 0x20;
        sys.Efer = 0x500;
        h.Cpu.SetSystemRegisters(sys);
        var a = new Assembler(64);
        prog(a);
        a.hlt();
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), SoftCpuHarness.Code);
        h.Memory.Write(SoftCpuHarness.Code, ms.ToArray());
        h.Set(r => { r.Rax = rax; r.Rcx = rcx; r.Rdx = rdx; r.Rip = SoftCpuHarness.Code; r.Rflags = 2; return r; });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        return h.Regs;
    }

    [Fact]
    public void Cmov_32_bit_clears_the_upper_half_even_when_the_condition_is_false()
    {
        // CMP sets ZF, so CMOVNE does not move; the 32-bit destination is still written back zero-extended.
        var r = Run64(a => { a.cmp(eax, eax); a.cmovne(eax, ecx); }, rax: 0x1234_5678_9abc_def0, rcx: 0x1111);
        Assert.Equal(0x9abc_def0UL, r.Rax);
    }

    [Fact]
    public void Cmov_64_bit_keeps_the_destination_when_the_condition_is_false()
    {
        var r = Run64(a => { a.cmp(eax, eax); a.cmovne(rax, rcx); }, rax: 0x1234_5678_9abc_def0, rcx: 0x1111);
        Assert.Equal(0x1234_5678_9abc_def0UL, r.Rax);
    }

    [Fact]
    public void Shift_32_bit_by_zero_clears_the_upper_half_and_keeps_the_flags()
    {
        // STC then SHL EAX, CL with CL = 32 (masked to 0): no flag changes, but EAX is written, clearing RAX[63:32].
        var r = Run64(a => { a.stc(); a.shl(eax, cl); }, rax: 0xffff_ffff_8000_0001, rcx: 32);
        Assert.Equal(0x8000_0001UL, r.Rax);
        Assert.Equal(1UL, r.Rflags & 1);
    }

    [Fact]
    public void Rotate_32_bit_by_an_immediate_zero_clears_the_upper_half()
    {
        var r = Run64(a => a.rol(edx, 0), rax: 0, rdx: 0xdead_beef_0000_0042);
        Assert.Equal(0x42UL, r.Rdx);
    }

    [Fact]
    public void Double_shift_32_bit_by_zero_clears_the_upper_half()
    {
        var r = Run64(a => a.shld(eax, edx, cl), rax: 0x5555_5555_0000_0007, rcx: 0x40, rdx: 0xffff_ffff_ffff_ffff);
        Assert.Equal(7UL, r.Rax);
    }

    [Fact]
    public void Shift_64_bit_by_zero_keeps_the_whole_register()
    {
        var r = Run64(a => a.shr(rax, cl), rax: 0xffff_ffff_8000_0001, rcx: 64);
        Assert.Equal(0xffff_ffff_8000_0001UL, r.Rax);
    }
}
