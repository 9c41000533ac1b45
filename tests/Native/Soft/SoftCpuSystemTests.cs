using ActorVmm.Core.Accel;
using ActorVmm.Native.Soft;
using static Iced.Intel.AssemblerRegisters;

namespace ActorVmm.Native.Tests.Soft;

public sealed class SoftCpuSystemTests
{
    private const uint D = SoftCpuHarness.Data;

    [Fact]
    public void RepMovs_ForwardAndBackward()
    {
        using var h = new SoftCpuHarness();
        for (uint i = 0; i < 16; i++) h.Memory.WriteObject(D + i, (byte)(i + 1));
        h.Program(a =>
        {
            a.cld(); a.mov(esi, D); a.mov(edi, D + 0x100); a.mov(ecx, 16); a.rep.movsb();
            a.std(); a.mov(esi, D + 12); a.mov(edi, D + 0x20c); a.mov(ecx, 4); a.rep.movsd(); a.cld();
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        for (uint i = 0; i < 16; i++) Assert.Equal((byte)(i + 1), h.Memory.ReadObject<byte>(D + 0x100 + i));
        for (uint i = 0; i < 16; i++) Assert.Equal((byte)(i + 1), h.Memory.ReadObject<byte>(D + 0x200 + i));
        // DF=1: ESI/EDI end 4 dwords below their start.
        Assert.Equal((ulong)(D + 12 - 16), h.Regs.Rsi);
        Assert.Equal((ulong)(D + 0x20c - 16), h.Regs.Rdi);
    }

    [Fact]
    public void RepeCmpsb_StopsAtFirstDifference_RepneScasb()
    {
        using var h = new SoftCpuHarness();
        h.Memory.Write(D, "abcdef"u8);
        h.Memory.Write(D + 0x100, "abcXef"u8);
        h.Program(a =>
        {
            a.mov(esi, D); a.mov(edi, D + 0x100); a.mov(ecx, 6); a.repe.cmpsb(); a.mov(ebx, ecx); a.mov(edx, esi);
            a.mov(edi, D); a.mov(al, (byte)'e'); a.mov(ecx, 6); a.repne.scasb();
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        var r = h.Regs;
        // Mismatch at index 3: 4 iterations, ECX=2, ESI past the 'd'.
        Assert.Equal(2UL, r.Rbx); Assert.Equal((ulong)(D + 4), r.Rdx);
        // 'e' found at index 4: 5 iterations, ECX=1, EDI=D+5, ZF=1.
        Assert.Equal(1UL, r.Rcx); Assert.Equal((ulong)(D + 5), r.Rdi);
        Assert.Equal(0x40UL, r.Rflags & 0x40);
    }

    [Fact]
    public void RepStosd_MoreThanOneChunk_FinishesAndLods()
    {
        using var h = new SoftCpuHarness();
        const int n = 10_000;
        h.Program(a => { a.mov(edi, D); a.mov(eax, unchecked((int)0xdeadbeef)); a.mov(ecx, n); a.rep.stosd(); a.mov(esi, D + 4 * (n - 1)); a.xor(eax, eax); a.lodsd(); });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        var r = h.Regs;
        Assert.Equal(0UL, r.Rcx);
        Assert.Equal((ulong)(D + 4 * n), r.Rdi);
        Assert.Equal(0xdeadbeefUL, r.Rax);
        Assert.Equal(0xdeadbeefu, h.Read32(D + 4 * (n - 1)));
        Assert.Equal(0u, h.Read32(D + 4 * n));
    }

    [Fact]
    public void PortIo_And_Mmio_ReachExitHandler()
    {
        using var h = new SoftCpuHarness();
        h.Memory.Write(D, "hi"u8);
        h.Program(a =>
        {
            a.mov(dx, 0x3f8); a.mov(al, 0x41); a.@out(dx, al);
            a.mov(eax, 0xcafe); a.@out(0x80, ax);
            a.@in(eax, dx); a.mov(ebx, eax);
            a.mov(esi, D); a.mov(ecx, 2); a.rep.outsb();
            a.mov(edi, D + 0x10); a.insw();
            a.mov(__dword_ptr[0x200000], 0x55aa);   // outside 1 MiB RAM
            a.mov(ecx, __dword_ptr[0x300004]);
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        var e = h.Exits;
        Assert.Equal([(0x3f8, 1, 0x41u), (0x80, 2, 0xcafeu), (0x3f8, 1, (uint)'h'), (0x3f8, 1, (uint)'i')], e.PortWrites.Select(w => ((int)w.Port, w.Width, w.Data)).ToList());
        Assert.Equal([(0x3f8, 4), (0x3f8, 2)], e.PortReads.Select(p => ((int)p.Port, p.Width)).ToList());
        Assert.Equal(0x12345678UL, h.Regs.Rbx);
        Assert.Equal((ushort)0x5678, h.Memory.ReadObject<ushort>(D + 0x10));
        Assert.Equal([(0x200000UL, 4, 0x55aaUL)], e.MmioWrites);
        Assert.Equal([(0x300004UL, 4)], e.MmioReads);
        Assert.Equal(0x55667788UL, h.Regs.Rcx);
    }

    [Fact]
    public void Ud2_And_Unimplemented_RaiseUD()
    {
        foreach (var sse in new[] { false, true })
        {
            using var h = new SoftCpuHarness();
            h.SetGate(6, SoftCpuHarness.Handler);
            h.Load(SoftCpuHarness.Handler, a => a.hlt());
            h.Program(a => { if (sse) a.addps(xmm0, xmm1); else a.ud2(); });
            Assert.Equal(StepOutcome.Halted, h.RunToHalt());
            Assert.Equal(new ExceptionRecord(6, null), h.Cpu.LastException);
            // Fault: saved EIP is the faulting instruction.
            Assert.Equal((uint)SoftCpuHarness.Code, h.Read32(SoftCpuHarness.Stack - 12));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Gp_OnBadSelector_PushesErrorCode_GateKindControlsIf(bool trap)
    {
        using var h = new SoftCpuHarness();
        h.SetGate(13, SoftCpuHarness.Handler, trap);
        h.Load(SoftCpuHarness.Handler, a => { a.pushfd(); a.pop(edx); a.hlt(); });
        h.Program(a => { a.sti(); a.mov(eax, 0x2b); a.mov(ds, ax); });   // selector 0x28 is past the GDT limit
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(new ExceptionRecord(13, 0x28), h.Cpu.LastException);
        const uint s = SoftCpuHarness.Stack;
        Assert.Equal(0x28u, h.Read32(s - 16));                        // error code
        Assert.Equal(SoftCpuHarness.Code + 1 + 5u, h.Read32(s - 12));  // EIP of the mov ds
        Assert.Equal(0x08u, h.Read32(s - 8));                          // CS
        Assert.Equal(0x200u, h.Read32(s - 4) & 0x200);                 // EFLAGS had IF
        Assert.Equal(trap ? 0x200UL : 0UL, h.Regs.Rdx & 0x200);
    }

    [Fact]
    public void NotPresentGate_RaisesNp_AndIntoInt3IntIret()
    {
        using var h = new SoftCpuHarness();
        h.SetGate(0x40, 0x5000, present: false);
        h.SetGate(11, SoftCpuHarness.Handler);
        h.Load(SoftCpuHarness.Handler, a => a.hlt());
        h.Program(a => a.@int(0x40));
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        // #NP error code for an IDT entry: index<<3 | IDT bit (2) | EXT=0.
        Assert.Equal(new ExceptionRecord(11, 0x40 * 8 + 2), h.Cpu.LastException);

        using var g = new SoftCpuHarness();
        g.SetGate(3, 0x5000); g.SetGate(4, 0x5100); g.SetGate(0x21, 0x5200);
        g.Load(0x5000, a => { a.add(ebx, 1); a.iretd(); });
        g.Load(0x5100, a => { a.add(ebx, 0x10); a.iretd(); });
        g.Load(0x5200, a => { a.add(ebx, 0x100); a.iretd(); });
        g.Program(a => { a.xor(ebx, ebx); a.int3(); a.into(); a.mov(eax, 0x7fffffff); a.add(eax, 1); a.into(); a.@int(0x21); a.mov(ecx, esp); });
        Assert.Equal(StepOutcome.Halted, g.RunToHalt());
        Assert.Equal(0x111UL, g.Regs.Rbx);   // INTO without OF does nothing
        Assert.Equal((ulong)SoftCpuHarness.Stack, g.Regs.Rcx);
    }

    [Fact]
    public void FaultDuringDelivery_IsDoubleFault_NoIdtIsShutdown()
    {
        using var h = new SoftCpuHarness();
        var s = h.Cpu.GetSystemRegisters();
        s.Idtr.Limit = 8 * 9 - 1;   // vectors 0..8 only
        h.Cpu.SetSystemRegisters(s);
        h.SetGate(8, SoftCpuHarness.Handler);
        h.Load(SoftCpuHarness.Handler, a => a.hlt());
        h.Program(a => a.@int(0x30));  // beyond the limit -> #GP; #GP (13) beyond the limit too -> #DF
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal((byte)8, h.Cpu.LastException?.Vector);
        Assert.Equal(0u, h.Read32(SoftCpuHarness.Stack - 16));   // #DF error code 0

        using var g = new SoftCpuHarness();
        var t = g.Cpu.GetSystemRegisters();
        t.Idtr.Limit = 0;
        g.Cpu.SetSystemRegisters(t);
        g.Program(a => a.ud2());
        Assert.Equal(StepOutcome.Shutdown, g.RunToHalt());
        Assert.True(g.Cpu.IsShutdown);
    }

    [Fact]
    public void StiShadow_DelaysExternalInterruptByOneInstruction()
    {
        using var h = new SoftCpuHarness();
        h.SetGate(0x20, SoftCpuHarness.Handler);
        h.Load(SoftCpuHarness.Handler, a => { a.mov(edx, ebx); a.hlt(); });
        h.Program(a => { a.xor(ebx, ebx); a.sti(); a.inc(ebx); a.inc(ebx); a.inc(ebx); });
        h.Cpu.Step(); h.Cpu.Step();            // xor, sti
        h.Cpu.RaiseExternalInterrupt(0x20);
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(1UL, h.Regs.Rdx);         // exactly one inc ran after STI
    }

    [Fact]
    public void MovSsShadow_DelaysExternalInterrupt()
    {
        using var h = new SoftCpuHarness();
        h.SetGate(0x20, SoftCpuHarness.Handler);
        h.Load(SoftCpuHarness.Handler, a => { a.mov(edx, ebx); a.hlt(); });
        h.Set(r => { r.Rflags = 0x202; return r; });
        h.Program(a => { a.xor(ebx, ebx); a.mov(eax, 0x10); a.mov(ss, ax); a.inc(ebx); a.inc(ebx); });
        h.Cpu.Step(); h.Cpu.Step(); h.Cpu.Step();   // xor, mov eax, mov ss
        h.Cpu.RaiseExternalInterrupt(0x20);
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(1UL, h.Regs.Rdx);
    }

    [Fact]
    public void SelfModifyingCode_NewInstructionRuns()
    {
        using var h = new SoftCpuHarness();
        // Loop twice over "target: inc eax" and then patch target to "inc ebx" (0x43) between passes.
        h.Program(a =>
        {
            var top = a.CreateLabel();
            a.mov(ecx, 2); a.xor(eax, eax); a.xor(ebx, ebx);
            a.Label(ref top);
            a.inc(eax);   // the patched instruction (first in the loop)
            a.mov(__byte_ptr[SoftCpuHarness.Code + 9], 0x43);   // target = Code + 5 (mov ecx) + 2 + 2
            a.dec(ecx); a.jnz(top);
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(1UL, h.Regs.Rax);
        Assert.Equal(1UL, h.Regs.Rbx);
    }

    [Fact]
    public void SelfModifyingCode_NewInstructionRuns_InTheRunLoop()
    {
        // The same patch through Run's tight loop, whose fetch cache keeps the current code page: a store to that
        // page must drop it (DecodeCache.Generation), so the second pass runs "inc ebx".
        using var h = new SoftCpuHarness();
        h.Program(a =>
        {
            var top = a.CreateLabel();
            a.mov(ecx, 2); a.xor(eax, eax); a.xor(ebx, ebx);
            a.Label(ref top);
            a.inc(eax);
            a.mov(__byte_ptr[SoftCpuHarness.Code + 9], 0x43);
            a.dec(ecx); a.jnz(top);
        });
        int stop = 0;
        Assert.Equal(StepOutcome.Halted, h.Cpu.Run(1000, ref stop));
        Assert.Equal(1UL, h.Regs.Rax);
        Assert.Equal(1UL, h.Regs.Rbx);
    }
}

public sealed class SoftVcpuTests
{
    private static (IVm Vm, IVcpu Vcpu) Make(Action<Iced.Intel.Assembler> prog, bool deterministic = false, uint eflags = 2, Action<IVm>? setup = null)
    {
        var vm = new SoftAccelerator().CreateVm(new VmSpec(1 << 20, 1, IrqchipMode.On) { Deterministic = deterministic });
        using var h = new SoftCpuHarness();
        h.Program(prog);
        var bytes = new byte[0x2000];
        h.Memory.Read(SoftCpuHarness.Code, bytes);
        vm.Memory.Write(SoftCpuHarness.Code, bytes);
        var gdt = new byte[0x20]; h.Memory.Read(SoftCpuHarness.Gdt, gdt); vm.Memory.Write(SoftCpuHarness.Gdt, gdt);
        setup?.Invoke(vm);
        var v = vm.CreateVcpu(0);
        v.SetSystemRegisters(h.Cpu.GetSystemRegisters());
        var r = h.Regs; r.Rflags = eflags;
        v.SetRegisters(r);
        return (vm, v);
    }

    [Fact]
    public void EndlessLoop_EndsSlice_KickReturnsKicked()
    {
        var (vm, v) = Make(a => { var l = a.CreateLabel(); a.Label(ref l); a.jmp(l); });
        using var _ = vm;
        Assert.Equal(VcpuExitKind.SliceEnd, v.Run(new FakeExits()).Kind);
        using var timer = new Timer(_ => v.Kick(), null, 50, Timeout.Infinite);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        VcpuExitKind k;
        do k = v.Run(new FakeExits()).Kind; while (k == VcpuExitKind.SliceEnd && sw.ElapsedMilliseconds < 5000);
        Assert.Equal(VcpuExitKind.Kicked, k);
    }

    [Fact]
    public void Hlt_IfClear_Halted_TripleFault_Shutdown()
    {
        var (vm, v) = Make(a => a.cli());
        using (vm) Assert.Equal(VcpuExitKind.Halted, v.Run(new FakeExits()).Kind);
        var (vm2, v2) = Make(a => a.ud2());
        var s = v2.GetSystemRegisters(); s.Idtr.Limit = 0; v2.SetSystemRegisters(s);
        using (vm2) Assert.Equal(VcpuExitKind.Shutdown, v2.Run(new FakeExits()).Kind);
    }

    [Fact]
    public void Hlt_IfSet_WakesOnQueuedInterrupt()
    {
        const uint idt = SoftCpuHarness.Idt;
        var (vm, v) = Make(a => { a.sti(); a.hlt(); a.mov(ecx, 0x77); a.cli(); }, setup: vm =>
        {
            using var h = new SoftCpuHarness();
            h.SetGate(0x30, SoftCpuHarness.Handler);
            h.Load(SoftCpuHarness.Handler, a => { a.mov(ebx, 0x99); a.iretd(); });
            var b = new byte[0x800]; h.Memory.Read(idt, b); vm.Memory.Write(idt, b);
            var c = new byte[0x100]; h.Memory.Read(SoftCpuHarness.Handler, c); vm.Memory.Write(SoftCpuHarness.Handler, c);
        });
        using var _ = vm;
        using var timer = new Timer(_ => v.QueueInterrupt(0x30), null, 50, Timeout.Infinite);
        // A wake-up that never comes must fail the test, not hang it: a kick ends Run with Kicked.
        using var guard = new Timer(_ => v.Kick(), null, 10_000, Timeout.Infinite);
        // Waits in HLT until the interrupt; the handler runs, IRET returns, then CLI; HLT ends the run.
        Assert.Equal(VcpuExitKind.Halted, v.Run(new FakeExits()).Kind);
        var r = v.GetRegisters();
        Assert.Equal(0x99UL, r.Rbx);
        Assert.Equal(0x77UL, r.Rcx);
    }

    [Fact]
    public void Deterministic_RdtscCountsInstructions()
    {
        var (vm, v) = Make(a => { a.cli(); a.nop(); a.nop(); a.rdtsc(); }, deterministic: true);
        using var _ = vm;
        Assert.Equal(VcpuExitKind.Halted, v.Run(new FakeExits()).Kind);
        // cli, nop, nop retired before RDTSC reads the counter.
        Assert.Equal(3UL, v.GetRegisters().Rax);
    }

    [Fact]
    public void Lar_Lsl_Verr_Verw_LookSelectorsUpWithoutFaulting()
    {
        // The harness GDT: 0x08 flat code (execute/read), 0x10 flat data (read/write), 0x18 data not present.
        using var h = new SoftCpuHarness();
        h.Program(a =>
        {
            a.mov(ecx, 0x08); a.verr(cx); a.setz(bl);            // readable code: ZF=1
            a.verw(cx); a.setz(bh);                              // code is never writable: ZF=0
            a.mov(ecx, 0x10); a.verw(cx); a.setz(dl);            // writable data: ZF=1
            a.lar(eax, ecx);                                     // access rights of 0x10
            a.lsl(esi, ecx);                                     // byte-granular limit of 0x10
            a.mov(edi, 0x1234); a.mov(ecx, 0x28); a.lsl(edi, ecx); a.setz(dh); // past the GDT limit: ZF=0, EDI kept
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        var r = h.Regs;
        Assert.Equal(1UL, r.Rbx & 0xff);
        Assert.Equal(0UL, (r.Rbx >> 8) & 0xff);
        Assert.Equal(1UL, r.Rdx & 0xff);
        Assert.Equal(0x00c09300UL, r.Rax); // descriptor bits 8-15 and 20-23 (limit 19:16 masked out)
        Assert.Equal(0xffffffffUL, r.Rsi);
        Assert.Equal(0x1234UL, r.Rdi);
        Assert.Equal(0UL, (r.Rdx >> 8) & 0xff);
    }

    [Fact]
    public void BiosSignId_AcceptsTheWriteBeforeCpuid_AndReadsNoMicrocode()
    {
        // IA32_BIOS_SIGN_ID (0x8b): software writes 0, runs CPUID, reads the microcode signature from bits 63:32
        // (SDM vol. 3 §10.11.7.1). No microcode update is loaded on this CPU: the signature reads 0.
        using var h = new SoftCpuHarness();
        Assert.True(h.Cpu.TryWriteMsr(0x8b, 0));
        Assert.True(h.Cpu.TryReadMsr(0x8b, out ulong v));
        Assert.Equal(0UL, v >> 32);
    }

    [Fact]
    public void PlatformId_reads_platform_zero_and_is_read_only()
    {
        // IA32_PLATFORM_ID (0x17) exists on the family-6 Intel CPU this CPU reports (CPUID vendor GenuineIntel):
        // bits 52:50 give the platform (SDM vol. 3 §10.11.2), everything else is reserved; the MSR is
        // read-only, so WRMSR to it is #GP(0).
        using var h = new SoftCpuHarness();
        Assert.True(h.Cpu.TryReadMsr(0x17, out ulong v));
        Assert.Equal(0UL, v & ~(7UL << 50));
        Assert.False(h.Cpu.TryWriteMsr(0x17, v));
    }

    [Fact]
    public void Kicking_or_interrupting_a_vcpu_after_its_vm_is_disposed_does_nothing()
    {
        // The VM actor's teardown may kick a vCPU whose VM is already gone (seen as an ObjectDisposedException that
        // restarted the VM actor and hung the process).
        var vm = new SoftAccelerator().CreateVm(new VmSpec(1 << 20, 1, IrqchipMode.On));
        var v = (SoftVcpu)vm.CreateVcpu(0);
        vm.Dispose();
        v.Kick();
        v.QueueInterrupt(0x30);
    }
}
