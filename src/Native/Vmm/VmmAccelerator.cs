// The "vmm" accelerator: guest code runs in FreeBSD's vmm(4), the platform is emulated by ActorVmm's actors
// (DESIGN.md §2-3). kernel-irqchip=on uses vmm's in-kernel LAPIC, IOAPIC, 8259 pair, PIT, HPET, RTC and PM
// timer. split is refused on every kernel, with the reason of the kernel at hand (VM_GET_FLAGS on the new VM): a
// stock kernel lacks the seed project's extension (ENOTTY); a seed kernel has it (VM_SET_FLAGS with VM_OP_F_QEMU,
// which hands the PIC, PIT, RTC, PM-timer ports and the HPET window to userspace), but it keeps the IOAPIC window
// in the kernel and adds no EOI exit and no ExtINT injection, which the platform's userspace IOAPIC and 8259 need
// (docs/freebsd.md, "kernel-irqchip modes"). off is refused on every kernel: vmm
// always claims the local APIC page and has no ioctl that injects an external interrupt at an interrupt window
// (the seed's plan for one was never published), so a userspace LAPIC cannot be built on it.
// All kernel calls go through IKernelInterface: HostKernel on a FreeBSD host, a stand-in in tests.
using ActorVmm.Core.Accel;
using ActorVmm.Core.Machine;
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Vmm;

public sealed class VmmAccelerator : IAccelerator
{
    private readonly IKernelInterface _kernel;
    private readonly VmmGeneration? _generation;

    /// <param name="kernel">The kernel (HostKernel.Instance on FreeBSD; a stand-in in tests).</param>
    /// <param name="hostCpus">Host CPUs to pin vCPU threads to (vCPU i on hostCpus[i % n]); null: no pinning.</param>
    /// <param name="generation">Force an ABI generation instead of probing (tests).</param>
    public VmmAccelerator(IKernelInterface kernel, IReadOnlyList<int>? hostCpus = null, VmmGeneration? generation = null)
    {
        _kernel = kernel;
        HostCpus = hostCpus;
        _generation = generation;
    }

    public string Name => "vmm";

    /// <summary>VM_MAXCPU in 14.x/15.x GENERIC kernels is bounded by hw.vmm.maxcpu; 16 is the bhyve default.</summary>
    public AcceleratorCapabilities Capabilities { get; } = new(new HashSet<IrqchipMode> { IrqchipMode.On, IrqchipMode.Split }, MaxVcpus: 16, KernelPlatform.Vmm);

    public IReadOnlyList<int>? HostCpus { get; }

    internal IKernelInterface Kernel => _kernel;

    public IVm CreateVm(VmSpec spec)
    {
        if (spec.Irqchip == IrqchipMode.Off)
            throw new MachineConfigException(OffRefusal);
        if (spec.Deterministic)
            throw new MachineConfigException("vmm accelerator: deterministic time needs the software CPU (-accel soft); vmm's timers run on host time");
        var availability = VmmProbe.Probe(_kernel);
        if (!availability.Usable) throw new MachineConfigException($"vmm accelerator: {availability.Detail}");
        return new VmmVm(this, spec, _generation ?? availability.Generation);
    }

    /// <summary>Why kernel-irqchip=off cannot run on vmm(4), stock or seed-extended.</summary>
    public const string OffRefusal =
        "vmm accelerator: kernel-irqchip=off needs a userspace local APIC, and this kernel lacks what that takes: vmm always " +
        "emulates the LAPIC page at 0xfee00000 in the kernel and has no ioctl that injects an external interrupt at the guest's " +
        "interrupt window (VM_SET_INTINFO ignores RFLAGS.IF; the seed project's planned 'generic event injection' was never published)";

    /// <summary>Why kernel-irqchip=split was refused on a kernel that has the seed's extension (reference a.8, c.9).</summary>
    public const string SplitSeedRefusal =
        "vmm accelerator: kernel-irqchip=split: this kernel has the seed project's VM_SET_FLAGS/VM_GET_FLAGS (VM_OP_F_QEMU), but that " +
        "extension only hands the PIC, PIT, RTC and PM-timer ports and the HPET window to userspace. The kernel still claims the IOAPIC " +
        "window at 0xfec00000 (a userspace IOAPIC there is unreachable), sends level-triggered EOIs only to its own IOAPIC (no EOI exit), " +
        "and has no ioctl that injects the 8259's ExtINT at the guest's interrupt window, so a userspace IOAPIC and PIC cannot drive the " +
        "guest. Use kernel-irqchip=on";

    /// <summary>Why kernel-irqchip=split was refused on a kernel without the seed's extension.</summary>
    public static string SplitRefusal(int errno, HostOs os) =>
        "vmm accelerator: kernel-irqchip=split needs the seed project's vmm extension (VM_SET_FLAGS/VM_GET_FLAGS, ioctl 0x80047679/0x4004767a, " +
        "flag VM_OP_F_QEMU: PIC, PIT, RTC and PM-timer ports and the HPET window handed to userspace); this kernel lacks it " +
        $"(VM_GET_FLAGS: {Errno.Describe(errno, os)}). Use kernel-irqchip=on, or a kernel built from the seed's fork";
}
