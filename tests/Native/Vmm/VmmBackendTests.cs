// The vmm(4) backend end to end over the in-process stand-in (StandIn/: test code, not a kernel): VM creation and
// destruction on 14.x and 15.x, memory, register set-up, the VM_RUN loop completing each exit kind (port I/O, REP
// string I/O over several exits, MMIO through the instruction emulator with and without kernel decoding, MSRs,
// #GP for an MSR nobody models), kicks from another thread, the interrupt ioctls, host-CPU pinning and the
// kernel-irqchip modes the kernel can or cannot give. The truth is the x86 semantics of the guest code run and
// the exit protocol of the ABI reference (section c.6).
using System.Text;
using ActorVmm.Core.Accel;
using ActorVmm.Native.Sys;
using ActorVmm.Native.Tests.Vmm.StandIn;
using ActorVmm.Native.Vmm;

namespace ActorVmm.Native.Tests.Vmm;

public sealed class VmmBackendTests
{
    private sealed class Recorder : IExitHandler
    {
        public readonly List<string> Events = [];
        public readonly List<byte> Outs = [];
        public readonly Queue<byte> Ins = new("xyz"u8.ToArray());
        public ushort MmioWord = 0x0100;

        public void PortRead(ushort port, Span<byte> data)
        {
            if (port == 0xe1)
            {
                data[0] = Ins.Dequeue();
                return;
            }
            Events.Add($"in {port:x} {data.Length}");
            data.Fill(0x7f);
        }

        public void PortWrite(ushort port, ReadOnlySpan<byte> data)
        {
            if (port == 0xe0) Outs.AddRange(data.ToArray());
            else Events.Add($"out {port:x} {Convert.ToHexString(data)}");
        }

        public void MmioRead(ulong gpa, Span<byte> data)
        {
            Events.Add($"mmio-read {gpa:x} {data.Length}");
            if (gpa == 0x90010) BitConverter.TryWriteBytes(data, 0xCAFEBABEu);
            else BitConverter.TryWriteBytes(data, MmioWord);
        }

        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data) => Events.Add($"mmio-write {gpa:x} {Convert.ToHexString(data)}");

        public bool MsrRead(uint msr, out ulong value)
        {
            Events.Add($"rdmsr {msr:x}");
            value = 0x1122334455667788;
            return msr == 0x1234;
        }

        public bool MsrWrite(uint msr, ulong value)
        {
            Events.Add($"wrmsr {msr:x} {value:x}");
            return true;
        }
    }

    // Real-mode test program at 0x1000 (16-bit code): port I/O, REP OUTSB (20 bytes: two exits' worth), REP INSB,
    // RDMSR, MMIO read and read-modify-write through DS=0x9000 (GPA 0x90000 is outside the 512 KiB of RAM).
    private static readonly byte[] Program =
    [
        0xBA, 0x80, 0x00,             // mov dx, 0x80
        0xB0, 0x41,                   // mov al, 0x41
        0xEE,                         // out dx, al
        0xEC,                         // in al, dx
        0x66, 0x89, 0xC5,             // mov ebp, eax
        0xBA, 0xE0, 0x00,             // mov dx, 0xe0
        0xBE, 0x00, 0x20,             // mov si, 0x2000
        0xB9, 0x14, 0x00,             // mov cx, 20
        0xFC,                         // cld
        0xF3, 0x6E,                   // rep outsb
        0xBA, 0xE1, 0x00,             // mov dx, 0xe1
        0xBF, 0x00, 0x30,             // mov di, 0x3000
        0xB9, 0x03, 0x00,             // mov cx, 3
        0xF3, 0x6C,                   // rep insb
        0x66, 0xB9, 0x34, 0x12, 0, 0, // mov ecx, 0x1234
        0x0F, 0x32,                   // rdmsr
        0x66, 0x89, 0xC7,             // mov edi, eax
        0x66, 0x89, 0xD6,             // mov esi, edx
        0xB8, 0x00, 0x90,             // mov ax, 0x9000
        0x8E, 0xD8,                   // mov ds, ax
        0x66, 0x8B, 0x1E, 0x10, 0x00, // mov ebx, [0x10]
        0x83, 0x06, 0x20, 0x00, 0x05, // add word [0x20], 5
        0xFA,                         // cli
        0xF4,                         // hlt
    ];

    private static VmmVm NewVm(VmmStandIn kernel, ulong ram = 0x80000)
        => (VmmVm)new VmmAccelerator(kernel).CreateVm(new VmSpec(ram, 1, IrqchipMode.On));

    private static void StartRealMode(IVcpu vcpu, ulong rip, ulong rax = 0)
    {
        var sys = SystemRegisters.PowerOn();
        sys.Cs = SegmentRegister.RealMode(0, code: true);
        vcpu.SetSystemRegisters(sys);
        vcpu.SetRegisters(new CpuRegisters { Rip = rip, Rflags = 2, Rax = rax, Rsp = 0x7000 });
    }

    [Theory]
    [InlineData(VmmGeneration.FreeBsd15, true)]
    [InlineData(VmmGeneration.FreeBsd15, false)]
    [InlineData(VmmGeneration.FreeBsd14, true)]
    public void Every_exit_kind_in_the_test_program_is_completed_as_the_protocol_says(VmmGeneration generation, bool kernelDecodes)
    {
        var kernel = new VmmStandIn(generation) { KernelDecodes = kernelDecodes };
        using var vm = NewVm(kernel);
        Assert.Equal(generation, vm.Generation);
        vm.Memory.Write(0x1000, Program);
        vm.Memory.Write(0x2000, "ABCDEFGHIJKLMNOPQRST"u8);
        var vcpu = (VmmVcpu)vm.CreateVcpu(0);
        StartRealMode(vcpu, 0x1000, rax: 0xAABBCC00);
        var h = new Recorder();

        var exit = vcpu.Run(h);

        Assert.Equal(VcpuExitKind.Halted, exit.Kind);
        Assert.Equal(["out 80 41", "in 80 1", "rdmsr 1234", "mmio-read 90010 4", "mmio-read 90020 2", "mmio-write 90020 0501"], h.Events);
        Assert.Equal("ABCDEFGHIJKLMNOPQRST", Encoding.ASCII.GetString([.. h.Outs]));
        var mem = new byte[3];
        vm.Memory.Read(0x3000, mem);
        Assert.Equal("xyz", Encoding.ASCII.GetString(mem));
        var r = vcpu.GetRegisters();
        Assert.Equal(0xAABBCC7FUL, r.Rbp);             // IN AL merged into EAX, bits 31:8 kept
        Assert.Equal(0x55667788UL, r.Rdi);             // RDMSR: EAX
        Assert.Equal(0x11223344UL, r.Rsi);             // RDMSR: EDX
        Assert.Equal(0xCAFEBABEUL, r.Rbx);             // MMIO load
        Assert.Equal(0x1000UL + (ulong)Program.Length, r.Rip);
        // REP OUTSB took more than one exit (16 elements per exit) and REP INSB one.
        Assert.True(vcpu.ExitCounts[(int)VmExitCode.InOutStr] >= 3, $"{vcpu.ExitCounts[(int)VmExitCode.InOutStr]} string I/O exits");
        Assert.Equal(2, vcpu.ExitCounts[(int)VmExitCode.InstEmul]);
        Assert.Equal(1, vcpu.ExitCounts[(int)VmExitCode.Suspended]);
    }

    [Fact]
    public void An_msr_nobody_models_raises_gp_in_the_guest()
    {
        var kernel = new VmmStandIn();
        using var vm = NewVm(kernel);
        // IVT vector 13 -> 0000:5000; the #GP handler marks BP and halts.
        vm.Memory.WriteObject<uint>(13 * 4, 0x0000_5000);
        vm.Memory.Write(0x5000, [0xBD, 0x47, 0x47, 0xFA, 0xF4]);                         // mov bp, 0x4747; cli; hlt
        vm.Memory.Write(0x1000, [0x66, 0xB9, 0x99, 0x99, 0, 0, 0x0F, 0x32, 0xBD, 1, 0, 0xFA, 0xF4]); // mov ecx,0x9999; rdmsr; mov bp,1; cli; hlt
        var vcpu = vm.CreateVcpu(0);
        StartRealMode(vcpu, 0x1000);
        var h = new Recorder();
        Assert.Equal(VcpuExitKind.Halted, vcpu.Run(h).Kind);
        Assert.Equal(["rdmsr 9999"], h.Events);
        Assert.Equal(0x4747UL, vcpu.GetRegisters().Rbp);
    }

    [Fact]
    public void Kick_from_another_thread_returns_kicked_and_the_vcpu_runs_on_after()
    {
        var kernel = new VmmStandIn();
        using var vm = NewVm(kernel);
        vm.Memory.Write(0x1000, [0xEB, 0xFE]); // jmp $
        var vcpu = vm.CreateVcpu(0);
        StartRealMode(vcpu, 0x1000);
        for (int round = 0; round < 2; round++)
        {
            using var kicker = new Timer(_ => vcpu.Kick(), null, 50, Timeout.Infinite);
            Assert.Equal(VcpuExitKind.Kicked, vcpu.Run(new Recorder()).Kind);
            Assert.False(kernel.FindVm(vm.Name)!.Vcpu!.InDebugSet); // VM_RESUME_CPU was issued
        }
        Assert.Equal(0x1000UL, vcpu.GetRegisters().Rip);
    }

    [Fact]
    public void Interrupt_entry_points_issue_the_isa_ioapic_msi_and_nmi_ioctls()
    {
        var kernel = new VmmStandIn();
        using var vm = NewVm(kernel);
        vm.CreateVcpu(0);
        vm.SetIrqLine(4, true);
        vm.SetIrqLine(4, false);
        ((IVm)vm).PulseIrq(0);
        vm.SetIrqLine(17, true);
        ((IVm)vm).PulseIrq(18);
        vm.SendMsi(0xfee00000, 0x31);
        vm.InjectNmi(0);
        Assert.Equal(["isa-assert 4 pin 4", "isa-deassert 4 pin 4", "isa-pulse 0 pin 2", "ioapic-assert 17", "ioapic-pulse 18", "msi fee00000 0031", "nmi 0"],
            kernel.FindVm(vm.Name)!.IrqLog);
        Assert.Throws<ArgumentOutOfRangeException>(() => vm.SetIrqLine(32, true));
    }

    [Theory]
    [InlineData(VmmGeneration.FreeBsd14)]
    [InlineData(VmmGeneration.FreeBsd15)]
    public void A_vm_is_created_with_its_generations_interface_and_destroyed_on_dispose(VmmGeneration generation)
    {
        var kernel = new VmmStandIn(generation);
        var vm = NewVm(kernel, 0x100000);
        Assert.Equal([vm.Name], kernel.VmNames);
        var standIn = kernel.FindVm(vm.Name)!;
        Assert.Equal((ushort)1, standIn.Topology.Cores);
        Assert.Equal(generation == VmmGeneration.FreeBsd15 ? "VMMCTL_VM_CREATE" : "VM_SET_TOPOLOGY", kernel.Log.First());
        vm.Dispose();
        Assert.Empty(kernel.VmNames);
        Assert.True(standIn.Destroyed);
    }

    [Fact]
    public void Probe_reports_the_generation_or_why_vmm_is_not_usable()
    {
        Assert.Equal(new VmmAvailability(true, VmmGeneration.FreeBsd15, "/dev/vmmctl (FreeBSD 15.x interface)"), VmmProbe.Probe(new VmmStandIn(VmmGeneration.FreeBsd15)));
        Assert.Equal(VmmGeneration.FreeBsd14, VmmProbe.Probe(new VmmStandIn(VmmGeneration.FreeBsd14)).Generation);
        if (OperatingSystem.IsLinux())
        {
            var here = VmmProbe.Probe(HostKernel.Instance);
            Assert.False(here.Usable);
            Assert.Contains("this host runs Linux", here.Detail);
        }
    }

    [Fact]
    public void Split_and_off_are_refused_with_what_this_kernel_lacks_with_or_without_the_seed_extension()
    {
        var stock = new VmmAccelerator(new VmmStandIn());
        var e = Assert.Throws<ActorVmm.Core.Machine.MachineConfigException>(() => stock.CreateVm(new VmSpec(0x80000, 1, IrqchipMode.Split)));
        Assert.Contains("VM_SET_FLAGS", e.Message);
        Assert.Contains("ENOTTY", e.Message);
        var seedKernel = new VmmStandIn(seedExtensions: true);
        var seed = Assert.Throws<ActorVmm.Core.Machine.MachineConfigException>(() => new VmmAccelerator(seedKernel).CreateVm(new VmSpec(0x80000, 1, IrqchipMode.Split)));
        Assert.Equal(VmmAccelerator.SplitSeedRefusal, seed.Message);
        Assert.Contains("VM_GET_FLAGS", seedKernel.Log); // the reason was the kernel's answer, not a guess
        Assert.Empty(seedKernel.VmNames);                // and the half-made VM was destroyed
        var off = Assert.Throws<ActorVmm.Core.Machine.MachineConfigException>(() => new VmmAccelerator(seedKernel).CreateVm(new VmSpec(0x80000, 1, IrqchipMode.Off)));
        Assert.Contains("interrupt window", off.Message);
        Assert.Empty(new VmmStandIn().VmNames);
    }

    [Fact]
    public void Vcpu_threads_are_pinned_to_the_requested_host_cpus()
    {
        var kernel = new VmmStandIn();
        using var vm = (VmmVm)new VmmAccelerator(kernel, hostCpus: [3]).CreateVm(new VmSpec(0x80000, 1, IrqchipMode.On));
        vm.Memory.Write(0x1000, [0xFA, 0xF4]);
        var vcpu = vm.CreateVcpu(0);
        StartRealMode(vcpu, 0x1000);
        vcpu.Run(new Recorder());
        Assert.Equal([3], kernel.PinnedTo!);
    }

    [Fact]
    public void Registers_round_trip_through_the_register_and_descriptor_ioctls()
    {
        using var vm = NewVm(new VmmStandIn());
        var vcpu = vm.CreateVcpu(0);
        var sys = SystemRegisters.PowerOn();
        sys.Cr0 = 0x11;
        sys.Cs = SegmentRegister.Make(0x08, 0, 0xffff_ffff, 0xb, s: true, dpl: 0, l: false, db: true, g: true);
        sys.Ds = SegmentRegister.Make(0x10, 0x1000, 0xffff_ffff, 0x3, s: true, dpl: 0, l: false, db: true, g: true);
        sys.Fs = default; // null selector in protected mode: unusable
        sys.Gdtr = new DescriptorTableRegister { Base = 0x5000, Limit = 0x17 };
        sys.Idtr = new DescriptorTableRegister { Base = 0x6000, Limit = 0x7ff };
        vcpu.SetSystemRegisters(sys);
        var regs = new CpuRegisters { Rax = 1, Rcx = 2, Rdx = 3, Rbx = 4, Rsp = 5, Rbp = 6, Rsi = 7, Rdi = 8, R8 = 9, R15 = 16, Rip = 0x1234, Rflags = 0x202 };
        vcpu.SetRegisters(regs);
        var back = vcpu.GetSystemRegisters();
        Assert.Equal(sys.Cs, back.Cs);
        Assert.Equal(sys.Ds, back.Ds);
        Assert.False(back.Fs.Present);
        Assert.Equal(sys.Gdtr, back.Gdtr);
        Assert.Equal(sys.Idtr, back.Idtr);
        Assert.Equal(sys.Cr0, back.Cr0);
        Assert.Equal(regs, vcpu.GetRegisters());
    }
}

/// <summary>The run loop fed with exits the software CPU never produces, scripted into the stand-in's VM_RUN.</summary>
public sealed unsafe class VmmScriptedExitTests
{
    private static (VmmVm Vm, IVcpu Vcpu, StandInVcpu StandIn) Setup()
    {
        var kernel = new VmmStandIn();
        var vm = (VmmVm)new VmmAccelerator(kernel).CreateVm(new VmSpec(0x80000, 1, IrqchipMode.On));
        vm.Memory.Write(0x1000, [0xFA, 0xF4]); // cli; hlt: the run ends Halted once the scripted exits are used up
        var vcpu = vm.CreateVcpu(0);
        var sys = SystemRegisters.PowerOn();
        sys.Cs = SegmentRegister.RealMode(0, code: true);
        vcpu.SetSystemRegisters(sys);
        vcpu.SetRegisters(new CpuRegisters { Rip = 0x1000, Rflags = 2 });
        return (vm, vcpu, kernel.FindVm(vm.Name)!.Vcpu!);
    }

    private static Action<nint> Exit(VmExitCode code, Action<nint>? fill = null) => p =>
    {
        ((VmExit*)p)->ExitCode = code;
        ((VmExit*)p)->Rip = 0x1000;
        fill?.Invoke(p);
    };

    private sealed class NoDevices : IExitHandler
    {
        public void PortRead(ushort port, Span<byte> data) => data.Fill(0xff);
        public void PortWrite(ushort port, ReadOnlySpan<byte> data) { }
        public void MmioRead(ulong gpa, Span<byte> data) => data.Fill(0xff);
        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data) { }
        public bool MsrRead(uint msr, out ulong value) { value = 0; return false; }
        public bool MsrWrite(uint msr, ulong value) => false;
    }

    [Fact]
    public void Bogus_reqidle_pause_and_mtrap_re_enter_the_guest()
    {
        var (vm, vcpu, standIn) = Setup();
        using (vm)
        {
            foreach (var c in new[] { VmExitCode.Bogus, VmExitCode.ReqIdle, VmExitCode.Pause, VmExitCode.Mtrap })
                standIn.ScriptedExits.Enqueue(Exit(c));
            Assert.Equal(VcpuExitKind.Halted, vcpu.Run(new NoDevices()).Kind);
            Assert.True(standIn.ScriptedExits.IsEmpty);
        }
    }

    [Theory]
    [InlineData(VmSuspendHow.Reset, VcpuExitKind.Reset)]
    [InlineData(VmSuspendHow.PowerOff, VcpuExitKind.PowerOff)]
    [InlineData(VmSuspendHow.Halt, VcpuExitKind.Halted)]
    [InlineData(VmSuspendHow.TripleFault, VcpuExitKind.Shutdown)]
    [InlineData(VmSuspendHow.Destroy, VcpuExitKind.Error)]
    public void Suspended_says_why_the_vm_stopped(VmSuspendHow how, VcpuExitKind expected)
    {
        var (vm, vcpu, standIn) = Setup();
        using (vm)
        {
            standIn.ScriptedExits.Enqueue(Exit(VmExitCode.Suspended, p => ((VmExit*)p)->SuspendHow = how));
            Assert.Equal(expected, vcpu.Run(new NoDevices()).Kind);
        }
    }

    [Fact]
    public void A_vmx_exit_ends_the_run_with_the_kernels_codes()
    {
        var (vm, vcpu, standIn) = Setup();
        using (vm)
        {
            standIn.ScriptedExits.Enqueue(Exit(VmExitCode.Vmx, p =>
            {
                var e = (VmExit*)p;
                e->VmxStatus = 0;
                e->VmxExitReason = 33;
                e->VmxQualification = 0x80000021;
                e->VmxInstError = 7;
            }));
            var r = vcpu.Run(new NoDevices());
            Assert.Equal(VcpuExitKind.Error, r.Kind);
            Assert.Equal("vmm: VMX exit at rip 0x1000: status 0, exit reason 33, qualification 0x80000021, instruction error 7", r.Detail);
        }
    }

    [Fact]
    public void An_unknown_exit_code_and_a_task_switch_end_the_run_as_errors()
    {
        var (vm, vcpu, standIn) = Setup();
        using (vm)
        {
            standIn.ScriptedExits.Enqueue(Exit((VmExitCode)99));
            Assert.Equal("vmm: unhandled exit 99 (99) at rip 0x1000", vcpu.Run(new NoDevices()).Detail);
            standIn.ScriptedExits.Enqueue(Exit(VmExitCode.TaskSwitch));
            Assert.Equal(VcpuExitKind.Error, vcpu.Run(new NoDevices()).Kind);
        }
    }

    [Fact]
    public void A_kernel_hlt_exit_with_interrupts_off_is_halted_and_with_them_on_re_enters()
    {
        var (vm, vcpu, standIn) = Setup();
        using (vm)
        {
            standIn.ScriptedExits.Enqueue(Exit(VmExitCode.Hlt, p => ((VmExit*)p)->HltRflags = 0x202));
            standIn.ScriptedExits.Enqueue(Exit(VmExitCode.Hlt, p => ((VmExit*)p)->HltRflags = 0x002));
            var r = vcpu.Run(new NoDevices());
            Assert.Equal(new VcpuExit(VcpuExitKind.Halted, "HLT with interrupts disabled"), r);
            Assert.True(standIn.ScriptedExits.IsEmpty);
            Assert.Equal(0x1000UL, vcpu.GetRegisters().Rip); // the scripted exits did not move the guest
        }
    }
}
