// The KVM backend (src/Native/Kvm) over the KVM stand-in (tests/Native/Kvm/StandIn: test code, not a kernel): the
// backend's own calls from VM creation to close, each KVM exit kind and its completion as api.rst describes it, the
// interrupt paths of kernel-irqchip=off and split, and kicks. Programs are hand-assembled; the truth for each is the
// x86 semantics of the instructions and the kernel ABI (request numbers checked against KvmIoctls, which
// KvmAbiLayoutTests checks against gcc and linux/kvm.h).
using System.Text;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Machine;
using ActorVmm.Native.Kvm;
using ActorVmm.Native.Tests.Kvm.StandIn;

namespace ActorVmm.Native.Tests.Kvm;

public sealed class KvmStandInBackendTests
{
    /// <summary>Records port and MMIO exits; port 0xe0/0xe1 are a byte sink and source; a write to 0x80 (or <see cref="StopPort"/>) kicks the vCPU to end Run.</summary>
    private sealed class Recorder : IExitHandler, IUserspaceIrqchip
    {
        public readonly List<string> Events = [];
        public readonly List<byte> Outs = [];
        public readonly Queue<byte> Ins = new("xyz"u8.ToArray());
        public readonly Queue<byte> Acks = new();
        public IVcpu? Vcpu;
        public Action<ushort>? OnOut;
        public uint MmioValue = 0xCAFEBABE;

        public void PortRead(ushort port, Span<byte> data)
        {
            if (port == 0xe1) data[0] = Ins.Dequeue();
            else
            {
                Events.Add($"in {port:x} {data.Length}");
                data.Fill(0x7f);
            }
        }

        public void PortWrite(ushort port, ReadOnlySpan<byte> data)
        {
            if (port == 0xe0) Outs.AddRange(data.ToArray());
            else Events.Add($"out {port:x} {Convert.ToHexString(data)}");
            OnOut?.Invoke(port);
            if (port == 0x80) Vcpu?.Kick();
        }

        public void MmioRead(ulong gpa, Span<byte> data)
        {
            Events.Add($"mmio-read {gpa:x} {data.Length}");
            BitConverter.TryWriteBytes(data, MmioValue);
        }

        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data) => Events.Add($"mmio-write {gpa:x} {Convert.ToHexString(data)}");

        public bool MsrRead(uint msr, out ulong value)
        {
            value = 0;
            return false;
        }

        public bool MsrWrite(uint msr, ulong value) => false;

        public bool TryAcknowledge(int vcpuId, out byte vector)
        {
            Events.Add("inta");
            return Acks.TryDequeue(out vector);
        }

        public void KernelLapicEoi(int vcpuId, byte vector) => Events.Add($"eoi {vector:x2}");

        public uint ReadTaskPriority(int vcpuId) => 0;

        public void WriteTaskPriority(int vcpuId, uint tpr) => Events.Add($"tpr {tpr:x}");

        public void ApicBaseChanged(int vcpuId, ulong value)
        {
        }

        public long? NextDeadlineNs => null;

        public void RunDueTimers(long nowNs)
        {
        }
    }

    private static IVm NewVm(KvmStandIn kernel, IrqchipMode mode, int vcpus = 1) => new KvmAccelerator(kernel).CreateVm(new VmSpec(0x80000, vcpus, mode));

    private static void RealModeAt(IVcpu vcpu, ulong rip, ulong rax = 0)
    {
        var sys = vcpu.GetSystemRegisters();
        sys.Cs = SegmentRegister.RealMode(0, code: true);
        sys.Ds = sys.Es = sys.Ss = SegmentRegister.RealMode(0);
        vcpu.SetSystemRegisters(sys);
        vcpu.SetRegisters(new CpuRegisters { Rip = rip, Rflags = 2, Rax = rax, Rsp = 0x7000 });
    }

    [Fact]
    public void The_stand_in_answers_the_request_numbers_linux_kvm_h_defines()
    {
        var byName = KvmIoctls.All.ToDictionary(r => r.Name, r => r.Value);
        Assert.Equal(KvmStandIn.RUN, byName["KVM_RUN"]);
        Assert.Equal(KvmStandIn.GET_SREGS, byName["KVM_GET_SREGS"]);
        Assert.Equal(KvmStandIn.SET_USER_MEMORY_REGION, byName["KVM_SET_USER_MEMORY_REGION"]);
        Assert.Equal(KvmStandIn.GET_SUPPORTED_CPUID, byName["KVM_GET_SUPPORTED_CPUID"]);
        Assert.Equal(KvmStandIn.ENABLE_CAP, byName["KVM_ENABLE_CAP"]);
        Assert.Equal(KvmStandIn.SIGNAL_MSI, byName["KVM_SIGNAL_MSI"]);
        Assert.Equal(KvmStandIn.INTERRUPT, byName["KVM_INTERRUPT"]);
        Assert.Equal(KvmStandIn.SET_IDENTITY_MAP_ADDR, byName["KVM_SET_IDENTITY_MAP_ADDR"]);
        Assert.Equal(KvmStandIn.GET_MSRS, byName["KVM_GET_MSRS"]);
        Assert.Equal(KvmStandIn.SET_CPUID2, byName["KVM_SET_CPUID2"]);
    }

    [Fact]
    public void The_probe_finds_api_12_and_offers_every_irqchip_mode()
    {
        var kernel = new KvmStandIn();
        var a = KvmAccelerator.Probe(kernel);
        Assert.True(a.Usable, a.Detail);
        Assert.Equal(new HashSet<IrqchipMode> { IrqchipMode.On, IrqchipMode.Split, IrqchipMode.Off }, a.Modes.ToHashSet());
        Assert.Equal(0, kernel.OpenFiles);
    }

    [Fact]
    public void On_creates_the_kernel_irqchip_and_pit_sets_the_pc_gsi_routes_and_drives_gsis_with_kvm_irq_line()
    {
        var kernel = new KvmStandIn();
        using var vm = NewVm(kernel, IrqchipMode.On);
        vm.CreateVcpu(0);
        var sk = kernel.Vms.Single();
        Assert.Equal(IrqchipMode.On, sk.Mode);
        Assert.True(sk.Pit);
        Assert.Contains((0u, 2u, 2u), sk.GsiRoutes); // ISA IRQ0 on IOAPIC pin 2, as the MADT says
        vm.SetIrqLine(4, true);
        vm.SetIrqLine(4, false);
        Assert.Equal(["irq 4 1", "irq 4 0"], sk.IrqLog);
        Assert.NotNull(sk.Soft!.Kernel.Pit);     // KVM's kernel set: PIT, PIC, IOAPIC, LAPIC ...
        Assert.Null(sk.Soft.Kernel.Hpet);        // ... and not the HPET, RTC or ACPI PM (userspace's)
        Assert.Null(sk.Soft.Kernel.Rtc);
    }

    [Theory]
    [InlineData(IrqchipMode.On)]
    [InlineData(IrqchipMode.Off)]
    [InlineData(IrqchipMode.Split)]
    public void Creating_a_vm_makes_the_calls_kvm_wants_and_closing_it_releases_everything(IrqchipMode mode)
    {
        var kernel = new KvmStandIn();
        var vm = NewVm(kernel, mode);
        var vcpu = vm.CreateVcpu(0);
        var sk = kernel.Vms.Single();
        Assert.Equal(mode, sk.Mode);
        Assert.Equal(KvmVm.TssAddress, sk.TssAddress);
        Assert.Equal(KvmVm.IdentityMapAddress, sk.IdentityMapAddress);
        Assert.Equal(mode == IrqchipMode.Split ? 24 : 0, sk.SplitIrqchipRoutes);
        // Guest memory written by the backend is the soft CPU's memory.
        vm.Memory.Write(0x5000, "shared"u8);
        var back = new byte[6];
        Assert.True(sk.Soft!.Memory.TryRead(0x5000, back));
        Assert.Equal("shared", Encoding.ASCII.GetString(back));
        // KVM_SET_CPUID2 got the host's supported leaves with this vCPU's initial APIC ID.
        var leaf1 = sk.Vcpus.Single().Cpuid.Single(e => e.Function == 1);
        Assert.Equal(0u, leaf1.Ebx >> 24);
        Assert.Contains(sk.Vcpus.Single().Cpuid, e => e.Function == 0x8000_0001 && (e.Edx & (1u << 29)) != 0); // LM
        var svc = sk.Vcpus.Single();
        vm.Dispose();
        Assert.True(sk.Destroyed);
        Assert.True(svc.Freed);
        Assert.Empty(kernel.Vms);
        Assert.Equal(0, kernel.OpenFiles);
        Assert.Equal(0, kernel.LiveAnonymousMappings);
        Assert.Equal(["KVM_GET_API_VERSION", "KVM_CHECK_EXTENSION"], kernel.Log.Take(2));
    }

    [Fact]
    public void Registers_and_segments_go_through_kvm_regs_and_kvm_sregs_unchanged()
    {
        var kernel = new KvmStandIn();
        using var vm = NewVm(kernel, IrqchipMode.Off);
        var vcpu = vm.CreateVcpu(0);
        var regs = new CpuRegisters { Rax = 1, Rbx = 2, Rcx = 3, Rdx = 4, Rsi = 5, Rdi = 6, Rsp = 7, Rbp = 8, R8 = 9, R15 = 0x1515, Rip = 0x1234, Rflags = 0x202 };
        vcpu.SetRegisters(regs);
        Assert.Equal(regs, vcpu.GetRegisters());
        var sys = vcpu.GetSystemRegisters();
        sys.Cs = SegmentRegister.Make(0x08, 0, 0xffff_ffff, 0xb, s: true, dpl: 0, l: true, db: false, g: true);
        sys.Ds = SegmentRegister.Make(0x10, 0x1000, 0xfffff, 0x3, s: true, dpl: 3, l: false, db: true, g: false);
        sys.Gdtr = new DescriptorTableRegister { Base = 0x500, Limit = 0x27 };
        sys.Cr0 = 0x8000_0011;
        sys.Cr3 = 0x9000;
        sys.Cr4 = 0x20;
        sys.Efer = 0x500;
        vcpu.SetSystemRegisters(sys);
        var got = vcpu.GetSystemRegisters();
        Assert.Equal(sys.Cs, got.Cs);
        Assert.Equal(sys.Ds, got.Ds);
        Assert.Equal(sys.Gdtr, got.Gdtr);
        Assert.Equal((sys.Cr0, sys.Cr3, sys.Cr4, sys.Efer), (got.Cr0, got.Cr3, got.Cr4, got.Efer));
        Assert.Contains("KVM_SET_SREGS", kernel.Log);
    }

    private static readonly byte[] PortStringMmioProgram =
    [
        0xBA, 0x81, 0x00, 0xB0, 0x41, 0xEE, 0xEC, 0x66, 0x89, 0xC5,       // mov dx,0x81; mov al,0x41; out dx,al; in al,dx; mov ebp,eax
        0xBA, 0xE0, 0x00, 0xBE, 0x00, 0x20, 0xB9, 0x14, 0x00, 0xFC, 0xF3, 0x6E, // rep outsb (20 bytes) to 0xe0
        0xBA, 0xE1, 0x00, 0xBF, 0x00, 0x30, 0xB9, 0x03, 0x00, 0xF3, 0x6C, // rep insb (3 bytes) from 0xe1
        0xB8, 0x00, 0x90, 0x8E, 0xD8, 0x66, 0x8B, 0x1E, 0x10, 0x00,       // ds = 0x9000; mov ebx, [0x10]
        0x66, 0x81, 0x0E, 0x20, 0x00, 0x00, 0x01, 0x00, 0x00,             // or dword [0x20], 0x100 (read-modify-write of MMIO)
        0xE6, 0x80,                                                       // out 0x80, al (the recorder kicks)
        0xEB, 0xFE,                                                       // jmp $
    ];

    [Theory]
    [InlineData(IrqchipMode.Off)]
    [InlineData(IrqchipMode.Split)]
    public void Port_string_and_mmio_exits_complete_as_api_rst_says(IrqchipMode mode)
    {
        var kernel = new KvmStandIn();
        using var vm = NewVm(kernel, mode);
        vm.Memory.Write(0x1000, PortStringMmioProgram);
        vm.Memory.Write(0x2000, "ABCDEFGHIJKLMNOPQRST"u8);
        var vcpu = vm.CreateVcpu(0);
        RealModeAt(vcpu, 0x1000, rax: 0xAABBCC00);
        var h = new Recorder { Vcpu = vcpu };
        Assert.Equal(VcpuExitKind.Kicked, vcpu.Run(h).Kind);
        Assert.Equal(["out 81 41", "in 81 1", "mmio-read 90010 4", "mmio-read 90020 4", "mmio-write 90020 BEBBFECA", "out 80 00"], h.Events);
        Assert.Equal("ABCDEFGHIJKLMNOPQRST", Encoding.ASCII.GetString([.. h.Outs]));
        var mem = new byte[3];
        vm.Memory.Read(0x3000, mem);
        Assert.Equal("xyz", Encoding.ASCII.GetString(mem));
        var r = vcpu.GetRegisters();
        Assert.Equal(0xAABBCC7FUL, r.Rbp);   // IN AL merged into RAX on the next KVM_RUN
        Assert.Equal(0xCAFEBABEUL, r.Rbx);   // the MMIO read's data from kvm_run.mmio.data
        Assert.Equal(0UL, r.Rcx);            // REP INSB finished
        Assert.Equal(0x3003UL, r.Rdi);
        Assert.Equal(0x2014UL, r.Rsi);
        var sv = kernel.Vms.Single().Vcpus.Single();
        Assert.Equal(5, sv.Exits[KvmStandInVcpu.ExitIo]);   // out, in, one 20-element OUTS, one 3-element INS, out 0x80
        Assert.Equal(3, sv.Exits[KvmStandInVcpu.ExitMmio]); // one read, then the read and the write of the OR
    }

    [Fact]
    public void Immediate_exit_and_a_kick_from_another_thread_end_kvm_run_with_eintr()
    {
        var kernel = new KvmStandIn();
        using var vm = NewVm(kernel, IrqchipMode.Split);
        vm.Memory.Write(0x1000, [0xEB, 0xFE]);
        var vcpu = vm.CreateVcpu(0);
        RealModeAt(vcpu, 0x1000);
        vcpu.Kick(); // before KVM_RUN: immediate_exit
        Assert.Equal(VcpuExitKind.Kicked, vcpu.Run(new Recorder()).Kind);
        using var kicker = new Timer(_ => vcpu.Kick(), null, 50, Timeout.Infinite);
        Assert.Equal(VcpuExitKind.Kicked, vcpu.Run(new Recorder()).Kind);
        var sv = kernel.Vms.Single().Vcpus.Single();
        Assert.True(sv.Interrupted >= 1);
        Assert.True(sv.Exits[KvmStandInVcpu.ExitIntr] >= 1);
    }

    [Fact]
    public void Off_hlt_exits_to_userspace_and_a_triple_fault_is_shutdown()
    {
        var kernel = new KvmStandIn();
        using var vm = NewVm(kernel, IrqchipMode.Off);
        // cli; hlt  — then at 0x1010: a protected-mode-free triple fault: lidt [0x1020] (limit 0); int3
        vm.Memory.Write(0x1000, [0xFA, 0xF4]);
        vm.Memory.Write(0x1010, [0x0F, 0x01, 0x1E, 0x20, 0x10, 0xCC]);
        vm.Memory.Write(0x1020, new byte[6]);
        var vcpu = vm.CreateVcpu(0);
        RealModeAt(vcpu, 0x1000);
        var exit = vcpu.Run(new Recorder());
        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(0x1002UL, vcpu.GetRegisters().Rip); // KVM_EXIT_HLT: past the HLT
        var sv = kernel.Vms.Single().Vcpus.Single();
        Assert.Equal(1, sv.Exits[KvmStandInVcpu.ExitHlt]);
        RealModeAt(vcpu, 0x1010);
        Assert.Equal(VcpuExitKind.Shutdown, vcpu.Run(new Recorder()).Kind);
        Assert.Equal(1, sv.Exits[KvmStandInVcpu.ExitShutdown]);
    }

    // Real-mode IVT entry 0x20 -> 0000:2000, the handler: mov al,0x55; out 0x80,al (the recorder kicks); jmp $.
    private static void InstallHandler(IVm vm, byte vector = 0x20)
    {
        vm.Memory.Write((ulong)vector * 4, [0x00, 0x20, 0x00, 0x00]);
        vm.Memory.Write(0x2000, [0xB0, 0x55, 0xE6, 0x80, 0xEB, 0xFE]);
    }

    [Fact]
    public void Off_queued_interrupt_waits_for_the_window_kvm_reports_then_is_injected_with_kvm_interrupt()
    {
        var kernel = new KvmStandIn();
        using var vm = NewVm(kernel, IrqchipMode.Off);
        InstallHandler(vm);
        // cli; out 0x81 (nothing); mov cx,200; loop $; sti; jmp $
        vm.Memory.Write(0x1000, [0xFA, 0xE6, 0x81, 0xB9, 0xC8, 0x00, 0xE2, 0xFE, 0xFB, 0xEB, 0xFE]);
        var vcpu = vm.CreateVcpu(0);
        RealModeAt(vcpu, 0x1000);
        var h = new Recorder { Vcpu = vcpu };
        h.OnOut = port =>
        {
            if (port == 0x81) vcpu.QueueInterrupt(0x20); // while IF = 0: the backend must ask for a window
        };
        Assert.Equal(VcpuExitKind.Kicked, vcpu.Run(h).Kind);
        Assert.Equal(["out 81 00", "out 80 55"], h.Events);
        var sv = kernel.Vms.Single().Vcpus.Single();
        Assert.Equal([0x20], sv.InjectedVectors);
        Assert.Equal(1, sv.Exits[KvmStandInVcpu.ExitIrqWindowOpen]); // opened by STI (after its shadow)
        Assert.Contains("KVM_INTERRUPT", kernel.Log);
    }

    [Fact]
    public void Off_userspace_lapic_acknowledges_when_if_is_set_and_the_vector_is_delivered()
    {
        var kernel = new KvmStandIn();
        using var vm = NewVm(kernel, IrqchipMode.Off);
        InstallHandler(vm, 0x31);
        vm.Memory.Write(0x1000, [0xFB, 0xF4, 0xEB, 0xFD]); // sti; hlt; jmp $-1 (back to hlt)
        var vcpu = vm.CreateVcpu(0);
        RealModeAt(vcpu, 0x1000);
        var h = new Recorder { Vcpu = vcpu };
        h.Acks.Enqueue(0x31);
        using var raise = new Timer(_ => vcpu.SetInterruptRequest(true), null, 30, Timeout.Infinite); // arrives while halted
        Assert.Equal(VcpuExitKind.Kicked, vcpu.Run(h).Kind);
        Assert.Equal(["inta", "out 80 55"], h.Events.Where(e => e != "inta" || h.Events.IndexOf(e) == h.Events.LastIndexOf("inta")).ToArray()[^2..]);
        var sv = kernel.Vms.Single().Vcpus.Single();
        Assert.Equal([0x31], sv.InjectedVectors);
        Assert.True(sv.Exits[KvmStandInVcpu.ExitHlt] >= 1); // HLT with IF = 1 exits to userspace in off
    }

    [Fact]
    public void Split_extint_from_the_userspace_pic_is_injected_when_the_kernel_lapic_accepts_pic_interrupts()
    {
        var kernel = new KvmStandIn();
        using var vm = NewVm(kernel, IrqchipMode.Split);
        InstallHandler(vm, 0x28);
        vm.Memory.Write(0x1000, [0xFB, 0xEB, 0xFE]); // sti; jmp $
        var vcpu = vm.CreateVcpu(0);
        RealModeAt(vcpu, 0x1000);
        var h = new Recorder { Vcpu = vcpu };
        h.Acks.Enqueue(0x28);
        vcpu.SetInterruptRequest(true); // the 8259's INTR; the BSP's LINT0 is ExtINT at power-up
        Assert.Equal(VcpuExitKind.Kicked, vcpu.Run(h).Kind);
        Assert.Equal("out 80 55", h.Events[^1]);
        Assert.Equal([0x28], kernel.Vms.Single().Vcpus.Single().InjectedVectors);
    }

    [Fact]
    public void Split_level_triggered_msi_eoi_comes_back_as_kvm_exit_ioapic_eoi()
    {
        var kernel = new KvmStandIn();
        using var vm = NewVm(kernel, IrqchipMode.Split);
        // Flat 32-bit protected mode. IDT at 0x500 with a gate for 0x31 -> 0x2000. Main at 0x1000:
        // mov dword [0xfee000f0], 0x1ff (APIC on); out 0x81, al (the test sends the MSI); sti; jmp $
        vm.Memory.Write(0x1000, [0xC7, 0x05, 0xF0, 0x00, 0xE0, 0xFE, 0xFF, 0x01, 0x00, 0x00, 0xE6, 0x81, 0xFB, 0xEB, 0xFE]);
        // ISR: mov dword [0xfee000b0], 0 (EOI); out 0x80, al; jmp $
        vm.Memory.Write(0x2000, [0xC7, 0x05, 0xB0, 0x00, 0xE0, 0xFE, 0x00, 0x00, 0x00, 0x00, 0xE6, 0x80, 0xEB, 0xFE]);
        vm.Memory.Write(0x500 + 0x31 * 8, [0x00, 0x20, 0x08, 0x00, 0x00, 0x8E, 0x00, 0x00]); // 32-bit interrupt gate, CS 8
        vm.Memory.Write(0x600, [0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 0, 0x9A, 0xCF, 0, 0xFF, 0xFF, 0, 0, 0, 0x92, 0xCF, 0]); // GDT: null, flat code, flat data
        var vcpu = vm.CreateVcpu(0);
        var sys = vcpu.GetSystemRegisters();
        sys.Cs = SegmentRegister.Make(0x08, 0, 0xffff_ffff, 0xb, s: true, dpl: 0, l: false, db: true, g: true);
        sys.Ds = sys.Es = sys.Ss = SegmentRegister.Make(0x10, 0, 0xffff_ffff, 0x3, s: true, dpl: 0, l: false, db: true, g: true);
        sys.Idtr = new DescriptorTableRegister { Base = 0x500, Limit = 0x7ff };
        sys.Gdtr = new DescriptorTableRegister { Base = 0x600, Limit = 23 };
        sys.Cr0 = 0x11;
        vcpu.SetSystemRegisters(sys);
        vcpu.SetRegisters(new CpuRegisters { Rip = 0x1000, Rflags = 2, Rsp = 0x7000 });
        var h = new Recorder { Vcpu = vcpu };
        h.OnOut = port =>
        {
            if (port == 0x81) vm.SendMsi(0xfee0_0000, 0xC031); // fixed, level, assert, vector 0x31
        };
        Assert.Equal(VcpuExitKind.Kicked, vcpu.Run(h).Kind);
        Assert.Equal(["out 81 00", "eoi 31", "out 80 00"], h.Events);
        var svm = kernel.Vms.Single();
        Assert.Equal(["msi fee00000 c031"], svm.IrqLog);
        Assert.Equal(1, svm.Vcpus.Single().Exits[KvmStandInVcpu.ExitIoapicEoi]);
    }
}
