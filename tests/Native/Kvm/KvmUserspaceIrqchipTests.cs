// The KVM vCPU's userspace-irqchip path (kernel-irqchip=split and off) against a scripted kernel: this host has no
// /dev/kvm, so ScriptedKvm answers the ioctls KvmVm and KvmVcpu make and plays KVM's side of each KVM_RUN by
// writing the kvm_run page, as Linux's KVM API documentation describes it (Documentation/virt/kvm/api.rst:
// request_interrupt_window, ready_for_interrupt_injection, if_flag, cr8, apic_base, KVM_EXIT_IRQ_WINDOW_OPEN,
// KVM_EXIT_SET_TPR, KVM_EXIT_IOAPIC_EOI, KVM_INTERRUPT). The kvm_run offsets the backend uses are checked against
// gcc and linux/kvm.h in KvmAbiLayoutTests. What is asserted is the backend's half of that protocol: when it
// acknowledges (INTA), what it injects, when it asks for a window, where EOIs and TPR writes go.
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using ActorVmm.Core.Accel;
using ActorVmm.Native.Kvm;
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Tests.Kvm;

public sealed unsafe class KvmUserspaceIrqchipTests
{
    /// <summary>A Linux kernel with KVM, scripted: each KVM_RUN runs the next step against the kvm_run page.</summary>
    private sealed class ScriptedKvm : IKernelInterface
    {
        private int _nextFd = 100;
        private KvmRun* _run;
        public readonly Queue<Action<IntPtr>> Steps = new();
        public readonly List<string> Log = [];
        /// <summary>request_interrupt_window and cr8 as the backend left them at each KVM_RUN.</summary>
        public readonly List<(byte Window, ulong Cr8)> Entries = [];

        public HostOs Os => HostOs.Linux;

        public int TryOpen(string path, out KernelFd? fd)
        {
            fd = new KernelFd(this, _nextFd++, path);
            return 0;
        }

        public int Close(int fd) => 0;

        public int TryIoctl(KernelFd fd, IoctlRequest request, void* arg)
        {
            switch (request.Name)
            {
                case nameof(KvmIoctls.KVM_GET_API_VERSION): return KvmCaps.ApiVersion;
                case nameof(KvmIoctls.KVM_CHECK_EXTENSION): return 1;
                case nameof(KvmIoctls.KVM_CREATE_VM):
                case nameof(KvmIoctls.KVM_CREATE_VCPU): return _nextFd++;
                case nameof(KvmIoctls.KVM_GET_VCPU_MMAP_SIZE): return 3 * 4096;
                case nameof(KvmIoctls.KVM_GET_SUPPORTED_CPUID):
                    ((KvmCpuid2*)arg)->Nent = 0;
                    return 0;
                case nameof(KvmIoctls.KVM_ENABLE_CAP):
                    Log.Add($"enable-cap {((KvmEnableCap*)arg)->Cap} {((KvmEnableCap*)arg)->Args[0]}");
                    return 0;
                case nameof(KvmIoctls.KVM_INTERRUPT):
                    Log.Add($"KVM_INTERRUPT {((KvmInterrupt*)arg)->Irq:x2}");
                    return 0;
                case nameof(KvmIoctls.KVM_RUN):
                    Entries.Add((_run->RequestInterruptWindow, _run->Cr8));
                    _run->ExitReason = KvmExitReason.Shutdown; // an empty script ends the run
                    if (Steps.TryDequeue(out var step)) step((IntPtr)_run);
                    return 0;
                default: return 0;
            }
        }

        public void* Mmap(KernelFd fd, ulong length, MapProtection prot, long offset)
        {
            _run = (KvmRun*)NativeMemory.AlignedAlloc((nuint)length, 4096);
            NativeMemory.Clear(_run, (nuint)length);
            return _run;
        }

        public void* MmapAnonymous(ulong length)
        {
            void* p = NativeMemory.AlignedAlloc((nuint)length, 4096);
            NativeMemory.Clear(p, (nuint)length);
            return p;
        }

        public nint PrepareKickableThread() => 1;

        public int KickThread(nint token) => 0;

        public int Munmap(void* address, nuint length)
        {
            NativeMemory.AlignedFree(address);
            return 0;
        }

        public int TrySysctlWrite(string name, ReadOnlySpan<byte> newValue) => 2;

        public int TrySysctlReadInt(string name, out int value)
        {
            value = 0;
            return 2;
        }

        public int Access(string path) => 0;

        public int SetThreadAffinity(ReadOnlySpan<int> cpus) => 0;
    }

    /// <summary>The platform side: an 8259-like request line that INTA lowers, a TPR register, EOIs and APIC-base changes recorded.</summary>
    private sealed class Chip(Queue<byte> vectors) : IExitHandler, IUserspaceIrqchip
    {
        public IVcpu? Vcpu;
        public readonly ConcurrentQueue<string> Events = new();
        public uint Tpr;

        public bool TryAcknowledge(int vcpuId, out byte vector)
        {
            bool got = vectors.TryDequeue(out vector);
            Events.Enqueue(got ? $"inta {vcpuId} {vector:x2}" : $"inta {vcpuId} none");
            if (vectors.Count == 0) Vcpu!.SetInterruptRequest(false); // the last pending request was taken
            return got;
        }

        public void KernelLapicEoi(int vcpuId, byte vector) => Events.Enqueue($"eoi {vcpuId} {vector:x2}");

        public uint ReadTaskPriority(int vcpuId) => Tpr;

        public void WriteTaskPriority(int vcpuId, uint tpr)
        {
            Tpr = tpr;
            Events.Enqueue($"tpr {tpr:x2}");
        }

        public void ApicBaseChanged(int vcpuId, ulong value) => Events.Enqueue($"apic-base {value:x}");

        public long? NextDeadlineNs => null;

        public void RunDueTimers(long nowNs)
        {
        }

        public void PortRead(ushort port, Span<byte> data) => data.Clear();

        public void PortWrite(ushort port, ReadOnlySpan<byte> data)
        {
        }

        public void MmioRead(ulong gpa, Span<byte> data) => data.Clear();

        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data)
        {
        }

        public bool MsrRead(uint msr, out ulong value)
        {
            value = 0;
            return false;
        }

        public bool MsrWrite(uint msr, ulong value) => false;
    }

    private static (IVm Vm, IVcpu Vcpu) Create(ScriptedKvm kernel, IrqchipMode mode)
    {
        var vm = new KvmAccelerator(kernel).CreateVm(new VmSpec(0x10000, 1, mode));
        return (vm, vm.CreateVcpu(0));
    }

    private static void Exit(IntPtr page, KvmExitReason reason, byte ready, byte ifFlag, Action<IntPtr>? more = null)
    {
        var run = (KvmRun*)page;
        run->ExitReason = reason;
        run->ReadyForInterruptInjection = ready;
        run->IfFlag = ifFlag;
        more?.Invoke(page);
    }

    [Fact]
    public void Split_asks_for_a_window_then_acknowledges_and_injects_when_kvm_is_ready_and_forwards_ioapic_eois()
    {
        var kernel = new ScriptedKvm();
        var (vm, vcpu) = Create(kernel, IrqchipMode.Split);
        using var _ = vm;
        var chip = new Chip(new Queue<byte>([0x20])) { Vcpu = vcpu };
        Assert.Contains($"enable-cap {KvmCaps.KVM_CAP_SPLIT_IRQCHIP} 24", kernel.Log);
        vcpu.SetInterruptRequest(true);
        // Entry 1: not ready (the run page starts zeroed) → only a window request. KVM exits IRQ_WINDOW_OPEN, ready.
        kernel.Steps.Enqueue(p => Exit(p, KvmExitReason.IrqWindowOpen, ready: 1, ifFlag: 1));
        // Entry 2: INTA + KVM_INTERRUPT; the line is low again → no window request. KVM exits IOAPIC_EOI for 0x31.
        kernel.Steps.Enqueue(p => Exit(p, KvmExitReason.IoapicEoi, ready: 1, ifFlag: 1, q => ((KvmRun*)q)->EoiVector = 0x31));
        // Entry 3: nothing to inject; the empty script shuts down.
        var exit = vcpu.Run(chip);
        Assert.Equal(VcpuExitKind.Shutdown, exit.Kind);
        Assert.Equal([(1, 0UL), (0, 0UL), (0, 0UL)], kernel.Entries.Select(e => (e.Window, e.Cr8)).ToArray());
        Assert.Equal(["KVM_INTERRUPT 20"], kernel.Log.Where(l => l.StartsWith("KVM_INTERRUPT", StringComparison.Ordinal)));
        Assert.Equal(["inta 0 20", "eoi 0 31"], chip.Events);
    }

    [Fact]
    public void Split_injects_while_if_is_clear_because_kvm_readiness_already_includes_the_lapic_and_rflags_if()
    {
        var kernel = new ScriptedKvm();
        var (vm, vcpu) = Create(kernel, IrqchipMode.Split);
        using var _ = vm;
        var chip = new Chip(new Queue<byte>([0x21])) { Vcpu = vcpu };
        kernel.Steps.Enqueue(p => Exit(p, KvmExitReason.IrqWindowOpen, ready: 1, ifFlag: 0));
        vcpu.SetInterruptRequest(true);
        vcpu.Run(chip);
        Assert.Equal(["inta 0 21"], chip.Events);
        Assert.Contains("KVM_INTERRUPT 21", kernel.Log);
    }

    [Fact]
    public void Off_waits_for_rflags_if_syncs_cr8_with_the_userspace_tpr_and_reports_apic_base_changes()
    {
        var kernel = new ScriptedKvm();
        var (vm, vcpu) = Create(kernel, IrqchipMode.Off);
        using var _ = vm;
        var chip = new Chip(new Queue<byte>([0x30])) { Vcpu = vcpu, Tpr = 0x50 };
        vcpu.SetInterruptRequest(true);
        // Entry 1: cr8 = TPR[7:4] = 5. KVM: ready but IF clear; the guest lowered CR8 to 2 (SET_TPR) and moved APIC_BASE.
        kernel.Steps.Enqueue(p => Exit(p, KvmExitReason.SetTpr, ready: 1, ifFlag: 0, q =>
        {
            ((KvmRun*)q)->Cr8 = 2;
            ((KvmRun*)q)->ApicBase = 0xfee00900;
        }));
        // Entry 2: IF clear → no INTA, a window request; cr8 = 2 from the TPR now 0x20. KVM: window open with IF set.
        kernel.Steps.Enqueue(p => Exit(p, KvmExitReason.IrqWindowOpen, ready: 1, ifFlag: 1, q =>
        {
            ((KvmRun*)q)->Cr8 = 2;
            ((KvmRun*)q)->ApicBase = 0xfee00900;
        }));
        // Entry 3: INTA + KVM_INTERRUPT 0x30, no window request.
        vcpu.Run(chip);
        Assert.Equal([(1, 5UL), (1, 2UL), (0, 2UL)], kernel.Entries.Select(e => (e.Window, e.Cr8)).ToArray());
        Assert.Equal(["tpr 20", "apic-base fee00900", "inta 0 30"], chip.Events);
        Assert.Contains("KVM_INTERRUPT 30", kernel.Log);
    }

    [Fact]
    public void The_interrupt_request_is_refused_in_kernel_irqchip_on()
    {
        var kernel = new ScriptedKvm();
        var (vm, vcpu) = Create(kernel, IrqchipMode.On);
        using var _ = vm;
        Assert.Throws<InvalidOperationException>(() => vcpu.SetInterruptRequest(true));
    }
}
