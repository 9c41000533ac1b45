// IA-32e mode on the soft CPU, register by register against the Intel SDM (vol. 3 §2.5, §4.5, §5.8.8, §6.14;
// vol. 2 for SYSCALL/SYSRET, SWAPGS, MUL/DIV): entering and leaving long mode, its control-register and EFER
// rules, 4-level paging with NX, canonical checks, 128-bit multiply and divide against .NET's UInt128,
// RIP-relative operands under an aliased mapping, and SYSCALL/SYSRET/SWAPGS. tests/Guests/longmode.asm covers the
// same ground end to end against QEMU.
using ActorVmm.Core.Accel;
using ActorVmm.Native.Soft;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace ActorVmm.Native.Tests.Soft;

public sealed class LongModeTests
{
    private const ulong Pml4 = 0x40000, Pdpt = 0x41000, Pd = 0x42000, Pt = 0x43000, PtAlias = 0x44000;
    private const ulong Alias = 0x200000; // linear page mapped onto the code page too
    private const ushort Code64 = 0x28, Data64 = 0x30;

    /// <summary>Identity-maps the harness's 1 MiB with 4 KiB pages (user, writable) and adds the GDT's 64-bit segments.</summary>
    private static SoftCpuHarness LongHarness(bool enter = true)
    {
        var h = new SoftCpuHarness();
        var m = h.Memory;
        m.WriteObject(Pml4, Pdpt | 7);
        m.WriteObject(Pdpt, Pd | 7);
        m.WriteObject(Pd, Pt | 7);
        m.WriteObject(Pd + 8, PtAlias | 7);
        for (ulong p = 0; p < 256; p++) m.WriteObject(Pt + p * 8, (p << 12) | 7);
        m.WriteObject(PtAlias, (ulong)SoftCpuHarness.Code | 7);
        m.WriteObject(SoftCpuHarness.Gdt + Code64, 0x00af9b000000ffffUL); // 64-bit code, DPL 0
        m.WriteObject(SoftCpuHarness.Gdt + Data64, 0x00cf93000000ffffUL);
        m.WriteObject(SoftCpuHarness.Gdt + 0x38, 0x00cff3000000ffffUL);   // data, DPL 3
        m.WriteObject(SoftCpuHarness.Gdt + 0x40, 0x00affb000000ffffUL);   // 64-bit code, DPL 3
        var sys = h.Cpu.GetSystemRegisters();
        sys.Gdtr = new DescriptorTableRegister { Base = SoftCpuHarness.Gdt, Limit = 0x47 };
        if (enter)
        {
            // A 64-bit IDT: every exception goes to a HLT at Handler, so a test sees the first event it raised.
            const ulong idt = 0x60000;
            for (ulong v = 0; v < 32; v++)
            {
                ulong target = SoftCpuHarness.Handler;
                m.WriteObject(idt + v * 16, (target & 0xffff) | ((ulong)Code64 << 16) | (0x8eUL << 40) | ((target >> 16 & 0xffff) << 48));
                m.WriteObject(idt + v * 16 + 8, target >> 32);
            }
            m.WriteObject(SoftCpuHarness.Handler, (byte)0xf4);
            m.WriteObject(idt + 12 * 16 + 4, (byte)1); // #SS on IST1: a bad RSP cannot take its own fault
            sys.Idtr = new DescriptorTableRegister { Base = idt, Limit = 32 * 16 - 1 };
            const ulong tss = 0x61000;
            m.WriteObject(tss + 0x24, 0x70000UL); // IST1
            sys.Tr = SegmentRegister.Make(0x48, tss, 0x67, 0xb, s: false, dpl: 0, l: false, db: false, g: false);
        }
        if (enter)
        {
            sys.Cs = SegmentRegister.Make(Code64, 0, 0xffffffff, 0xb, s: true, dpl: 0, l: true, db: false, g: true);
            sys.Cr0 = 0x8000_0011;
            sys.Cr3 = Pml4;
            sys.Cr4 = 0x20;
            sys.Efer = SoftCpu.EferLme | SoftCpu.EferLma;
        }
        h.Cpu.SetSystemRegisters(sys);
        return h;
    }

    private static void Load64(SoftCpuHarness h, ulong at, Action<Assembler> build)
    {
        var a = new Assembler(64);
        build(a);
        a.hlt();
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), at);
        h.Memory.Write(at, ms.ToArray());
    }

    [Fact]
    public void Paging_with_LME_activates_IA32e_mode_and_a_far_jump_enters_64_bit_code()
    {
        using var h = LongHarness(enter: false);
        const uint target = SoftCpuHarness.Code + 0x100;
        h.Program(a =>
        {
            a.mov(eax, cr4); a.or(eax, 0x20); a.mov(cr4, eax);
            a.mov(eax, (uint)Pml4); a.mov(cr3, eax);
            a.mov(ecx, 0xc0000080); a.rdmsr(); a.or(eax, 0x100); a.wrmsr();
            a.mov(eax, cr0); a.or(eax, unchecked((int)0x8000_0000)); a.mov(cr0, eax);
            a.jmp(Code64, target);
        });
        Load64(h, target, a => { a.mov(rax, 0x1122_3344_5566_7788); a.mov(r9, rax); a.shl(r9, 4); });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(SoftCpu.EferLme | SoftCpu.EferLma, h.Cpu.GetSystemRegisters().Efer);
        Assert.Equal(0x1223_3445_5667_7880UL, h.Regs.R9);
        Assert.Equal(0x1122_3344_5566_7788UL, h.Regs.Rax);
    }

    [Fact]
    public void Paging_with_LME_but_without_PAE_is_GP()
    {
        using var h = LongHarness(enter: false);
        h.SetGate(13, SoftCpuHarness.Handler);
        h.Memory.WriteObject(SoftCpuHarness.Handler, (byte)0xf4);
        h.Program(a =>
        {
            a.mov(eax, (uint)Pml4); a.mov(cr3, eax);
            a.mov(ecx, 0xc0000080); a.rdmsr(); a.or(eax, 0x100); a.wrmsr();
            a.mov(eax, cr0); a.or(eax, unchecked((int)0x8000_0000)); a.mov(cr0, eax);
        });
        Assert.Equal(StepOutcome.Exception, StepUntilEvent(h));
        Assert.Equal(new ExceptionRecord(13, 0), h.Cpu.LastException);
    }

    [Fact]
    public void EFER_LME_cannot_change_while_paging_is_on_and_PAE_cannot_be_cleared_in_IA32e_mode()
    {
        using var h = LongHarness();
        Load64(h, SoftCpuHarness.Code, a => { a.mov(ecx, 0xc0000080); a.xor(eax, eax); a.xor(edx, edx); a.wrmsr(); });
        Assert.Equal(StepOutcome.Exception, StepUntilEvent(h));
        Assert.Equal(new ExceptionRecord(13, 0), h.Cpu.LastException);

        using var h2 = LongHarness();
        Load64(h2, SoftCpuHarness.Code, a => { a.xor(eax, eax); a.mov(cr4, rax); });
        Assert.Equal(StepOutcome.Exception, StepUntilEvent(h2));
        Assert.Equal(new ExceptionRecord(13, 0), h2.Cpu.LastException);
    }

    [Theory]
    [InlineData(0xffff_ffff_ffff_ffffUL, 0xffff_ffff_ffff_ffffUL)]
    [InlineData(0x8000_0000_0000_0001UL, 0x7fff_ffff_ffff_fff3UL)]
    [InlineData(0x1234_5678_9abc_def0UL, 0x10UL)]
    public void Mul_and_div_of_64_bit_operands_use_128_bit_rdx_rax(ulong a, ulong b)
    {
        using var h = LongHarness();
        Load64(h, SoftCpuHarness.Code, x =>
        {
            x.mov(rax, (long)a); x.mov(rcx, (long)b); x.mul(rcx); x.mov(r8, rax); x.mov(r9, rdx);
            x.mov(rbx, rdx); x.add(rbx, 1); x.div(rbx); x.mov(r10, rax); x.mov(r11, rdx); // divisor > RDX: the quotient fits
            x.mov(rax, (long)a); x.mov(rcx, (long)b); x.imul(rcx); x.mov(r12, rax); x.mov(r13, rdx);
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        var r = h.Regs;
        UInt128 product = (UInt128)a * b;
        Assert.Equal((ulong)product, r.R8);
        Assert.Equal((ulong)(product >> 64), r.R9);
        ulong divisor = (ulong)(product >> 64) + 1;
        Assert.Equal((ulong)(product / divisor), r.R10);
        Assert.Equal((ulong)(product % divisor), r.R11);
        Int128 signedProduct = (Int128)(long)a * (long)b;
        Assert.Equal((ulong)signedProduct, r.R12);
        Assert.Equal((ulong)(signedProduct >> 64), r.R13);
    }

    [Fact]
    public void Div_whose_quotient_needs_more_than_64_bits_is_DE()
    {
        using var h = LongHarness();
        Load64(h, SoftCpuHarness.Code, a => { a.mov(rdx, 5); a.xor(eax, eax); a.mov(rcx, 5); a.div(rcx); });
        Assert.Equal(StepOutcome.Exception, StepUntilEvent(h));
        Assert.Equal(new ExceptionRecord(0, null), h.Cpu.LastException);
        Assert.Equal(5UL, h.Regs.Rdx); // nothing written
    }

    [Fact]
    public void Non_canonical_data_address_is_GP_and_non_canonical_stack_is_SS()
    {
        using var h = LongHarness();
        Load64(h, SoftCpuHarness.Code, a => { a.mov(rax, unchecked((long)0x8000_0000_0000_0000UL)); a.mov(rbx, __qword_ptr[rax]); });
        Assert.Equal(StepOutcome.Exception, StepUntilEvent(h));
        Assert.Equal(new ExceptionRecord(13, 0), h.Cpu.LastException);

        using var h2 = LongHarness();
        Load64(h2, SoftCpuHarness.Code, a => { a.mov(rsp, unchecked((long)0x8000_0000_0000_0008UL)); a.push(rax); });
        Assert.Equal(StepOutcome.Exception, StepUntilEvent(h2));
        Assert.Equal(new ExceptionRecord(12, 0), h2.Cpu.LastException);
    }

    [Fact]
    public void Fetch_from_an_XD_page_with_NXE_is_a_page_fault_with_the_ID_bit()
    {
        using var h = LongHarness();
        const ulong page = 0x50000;
        h.Memory.WriteObject(Pt + (page >> 12) * 8, page | 7 | (1UL << 63));
        h.Memory.WriteObject(page, (byte)0xf4); // HLT that must not run
        var sys = h.Cpu.GetSystemRegisters();
        sys.Efer |= SoftCpu.EferNxe;
        h.Cpu.SetSystemRegisters(sys);
        Load64(h, SoftCpuHarness.Code, a => { a.mov(rax, (long)page); a.jmp(rax); });
        Assert.Equal(StepOutcome.Exception, StepUntilEvent(h));
        Assert.Equal(new ExceptionRecord(14, 0x11), h.Cpu.LastException); // present, fetch (I/D)
        Assert.Equal(page, h.Cpu.GetSystemRegisters().Cr2);
    }

    [Fact]
    public void XD_bit_without_NXE_is_a_reserved_bit_page_fault()
    {
        using var h = LongHarness();
        const ulong page = 0x50000;
        h.Memory.WriteObject(Pt + (page >> 12) * 8, page | 7 | (1UL << 63));
        Load64(h, SoftCpuHarness.Code, a => { a.mov(rax, (long)page); a.mov(rbx, __qword_ptr[rax]); });
        Assert.Equal(StepOutcome.Exception, StepUntilEvent(h));
        Assert.Equal(new ExceptionRecord(14, 0x9), h.Cpu.LastException); // present, RSVD, read
    }

    [Fact]
    public void Rip_relative_operands_use_the_linear_rip_when_the_code_page_is_mapped_twice()
    {
        using var h = LongHarness();
        // The same code page runs at its identity address and at Alias; LEA [rip] must give each linear address.
        Load64(h, SoftCpuHarness.Code, a =>
        {
            var here = a.CreateLabel();
            a.Label(ref here);
            a.lea(rax, __[here]);
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal((ulong)SoftCpuHarness.Code, h.Regs.Rax);
        h.Set(r => { r.Rip = Alias; return r; });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(Alias, h.Regs.Rax);
    }

    [Fact]
    public void Syscall_and_sysret_follow_STAR_LSTAR_and_SFMASK()
    {
        using var h = LongHarness();
        const ulong entry = SoftCpuHarness.Code + 0x200, user = SoftCpuHarness.Code + 0x400;
        var cpu = h.Cpu;
        var sys = cpu.GetSystemRegisters();
        sys.Efer |= SoftCpu.EferSce;
        cpu.SetSystemRegisters(sys);
        Assert.True(cpu.TryWriteMsr(SoftCpu.MsrStar, (0x30UL << 48) | ((ulong)Code64 << 32)));
        Assert.True(cpu.TryWriteMsr(SoftCpu.MsrLstar, entry));
        Assert.True(cpu.TryWriteMsr(SoftCpu.MsrSfmask, 0x400)); // DF
        Load64(h, SoftCpuHarness.Code, a => { a.std(); a.syscall(); });
        Load64(h, entry, a =>
        {
            a.pushfq(); a.pop(rbx); a.mov(r14, rcx); a.mov(r15, r11); a.mov(rcx, (long)user); a.mov(r11, 0x2); a.sysretq();
        });
        Load64(h, user, a => { a.mov(ax, cs); a.mov(bp, ss); a.movzx(rdx, ax); });
        // HLT at ring 3 is #GP: step until the user code has run.
        for (int i = 0; i < 100 && cpu.GetRegisters().Rip != user + 3 + 3 + 4; i++) cpu.Step();
        var r = h.Regs;
        Assert.Equal(SoftCpuHarness.Code + 3UL, r.R14);        // RCX = the instruction after SYSCALL (STD, SYSCALL)
        Assert.Equal(0x402UL, r.R15 & 0x402);                  // R11 = RFLAGS at SYSCALL (DF set)
        Assert.Equal(0UL, r.Rbx & 0x400);                      // SFMASK cleared DF in the kernel
        Assert.Equal(0x43UL, r.Rdx);                           // SYSRET: CS = STAR[63:48] + 16, RPL 3
        Assert.Equal(0x3bUL, r.Rbp & 0xffff);                  //         SS = STAR[63:48] + 8, RPL 3
    }

    [Fact]
    public void Syscall_without_EFER_SCE_is_UD_and_swapgs_swaps_the_gs_bases()
    {
        using var h = LongHarness();
        Load64(h, SoftCpuHarness.Code, a => a.syscall());
        Assert.Equal(StepOutcome.Exception, StepUntilEvent(h));
        Assert.Equal(new ExceptionRecord(6, null), h.Cpu.LastException);

        using var h2 = LongHarness();
        Assert.True(h2.Cpu.TryWriteMsr(SoftCpu.MsrGsBase, 0x1000));
        Assert.True(h2.Cpu.TryWriteMsr(SoftCpu.MsrKernelGsBase, 0x2000));
        Assert.False(h2.Cpu.TryWriteMsr(SoftCpu.MsrKernelGsBase + 0, 0x8000_0000_0000_0000)); // not canonical
        h2.Memory.WriteObject(0x2010UL, 0xfeed_f00d_cafe_beefUL);
        Load64(h2, SoftCpuHarness.Code, a => { a.swapgs(); a.mov(rax, __qword_ptr.gs[0x10]); });
        Assert.Equal(StepOutcome.Halted, h2.RunToHalt());
        Assert.Equal(0xfeed_f00d_cafe_beefUL, h2.Regs.Rax);
        Assert.True(h2.Cpu.TryReadMsr(SoftCpu.MsrKernelGsBase, out ulong other));
        Assert.Equal(0x1000UL, other);
    }

    [Fact]
    public void Ltr_loads_a_64_bit_tss_whose_base_is_above_4_gib()
    {
        using var h = LongHarness();
        const ulong tssBase = 0xffff_fe00_0000_1000; // where Linux keeps it (cpu_entry_area)
        ulong low = 0x67 | ((tssBase & 0xff_ffff) << 16) | (0x89UL << 40) | (((tssBase >> 24) & 0xff) << 56);
        h.Memory.WriteObject(SoftCpuHarness.Gdt + 0x48, low);
        h.Memory.WriteObject(SoftCpuHarness.Gdt + 0x50, tssBase >> 32);
        var sys = h.Cpu.GetSystemRegisters();
        sys.Gdtr = new DescriptorTableRegister { Base = SoftCpuHarness.Gdt, Limit = 0x57 };
        h.Cpu.SetSystemRegisters(sys);
        Load64(h, SoftCpuHarness.Code, a => { a.mov(eax, 0x48); a.ltr(ax); });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        var tr = h.Cpu.GetSystemRegisters().Tr;
        Assert.Equal(tssBase, tr.Base);
        Assert.Equal(0x8b, tr.Attributes & 0x8f); // present, busy 64-bit TSS
        Assert.Equal(0x8bUL, (h.Memory.ReadObject<ulong>(SoftCpuHarness.Gdt + 0x48) >> 40) & 0xff); // busy in the GDT too
    }

    [Fact]
    public void X2apic_mode_is_offered_with_a_local_apic_and_its_invalid_transitions_fault()
    {
        using var h = LongHarness();
        var cpu = h.Cpu;
        Assert.False(cpu.TryWriteMsr(SoftCpu.MsrApicBase, 0xfee0_0c00)); // no local APIC wired: EXTD is reserved
        cpu.TaskPriority = new FakeTpr();
        Assert.False(cpu.TryWriteMsr(SoftCpu.MsrApicBase, 0xfee0_0400)); // EXTD without EN
        Assert.True(cpu.TryWriteMsr(SoftCpu.MsrApicBase, 0xfee0_0c00));  // xAPIC -> x2APIC
        Assert.False(cpu.TryWriteMsr(SoftCpu.MsrApicBase, 0xfee0_0800)); // x2APIC -> xAPIC directly
        Assert.True(cpu.TryWriteMsr(SoftCpu.MsrApicBase, 0xfee0_0000));  // x2APIC -> disabled
        Assert.True(cpu.TryWriteMsr(SoftCpu.MsrApicBase, 0xfee0_0800));  // disabled -> xAPIC
        Load64(h, SoftCpuHarness.Code, a => { a.mov(eax, 1); a.cpuid(); });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(1UL << 21, h.Regs.Rcx & (1UL << 21));
    }

    private sealed class FakeTpr : ITaskPriority
    {
        public uint Tpr { get; set; }
    }

    [Fact]
    public void Cr8_is_the_local_apic_tpr_and_cpuid_then_offers_the_apic()
    {
        using var h = LongHarness();
        var tpr = new FakeTpr { Tpr = 0x50 };
        h.Cpu.TaskPriority = tpr;
        h.Cpu.ApicId = 3;
        Load64(h, SoftCpuHarness.Code, a =>
        {
            a.mov(r12, cr8); a.mov(eax, 9); a.mov(cr8, rax);
            a.mov(eax, 1); a.cpuid();
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(5UL, h.Regs.R12);          // TPR 0x50: CR8 = TPR[7:4]
        Assert.Equal(0x90u, tpr.Tpr);           // CR8 = 9: TPR = 0x90
        Assert.Equal(1UL << 9, h.Regs.Rdx & (1UL << 9));
        Assert.Equal(3UL, (h.Regs.Rbx >> 24) & 0xff);
    }

    private static StepOutcome StepUntilEvent(SoftCpuHarness h)
    {
        for (int i = 0; i < 1000; i++)
        {
            var o = h.Cpu.Step();
            if (o != StepOutcome.Retired) return o;
        }
        throw new Xunit.Sdk.XunitException("no event");
    }
}
