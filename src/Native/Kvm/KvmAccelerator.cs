// The "kvm" accelerator: guest code runs in Linux KVM, the platform is emulated by ActorVmm's actors.
// kernel-irqchip=on: KVM_CREATE_IRQCHIP (LAPIC, IOAPIC, 8259 pair in the kernel) + KVM_CREATE_PIT2; lines are
// driven with KVM_IRQ_LINE. split: KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP, 24 routes): the LAPIC stays in the kernel,
// the IOAPIC and PIC are userspace's, and their messages reach the kernel LAPICs with KVM_SIGNAL_MSI. off: no
// kernel irqchip; interrupts are injected with KVM_INTERRUPT when the guest opens an interrupt window.
// KVM keeps only the PIT among the timers (DESIGN.md §3): the HPET, RTC and ACPI PM timer are the platform's.
// Usability (probe): /dev/kvm exists and opens read-write, KVM_GET_API_VERSION is 12, and the capabilities each
// mode needs are present (user memory; irqchip + PIT2 for on; split irqchip + MSI for split).
using ActorVmm.Core.Accel;
using ActorVmm.Core.Machine;
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Kvm;

/// <summary>What the KVM probe found: usable or why not, and which irqchip modes this kernel offers.</summary>
public sealed record KvmAvailability(bool Usable, string Detail, IReadOnlySet<IrqchipMode> Modes);

public sealed class KvmAccelerator : IAccelerator
{
    public const string Device = "/dev/kvm";

    private readonly IKernelInterface _kernel;

    public KvmAccelerator(IKernelInterface kernel, IReadOnlyList<int>? hostCpus = null)
    {
        _kernel = kernel;
        HostCpus = hostCpus;
    }

    public string Name => "kvm";

    public AcceleratorCapabilities Capabilities { get; } =
        new(new HashSet<IrqchipMode> { IrqchipMode.On, IrqchipMode.Split, IrqchipMode.Off }, MaxVcpus: 255, KernelPlatform.Kvm);

    public IReadOnlyList<int>? HostCpus { get; }

    internal IKernelInterface Kernel => _kernel;

    public static unsafe KvmAvailability Probe(IKernelInterface kernel)
    {
        var none = new HashSet<IrqchipMode>();
        if (kernel.Os != HostOs.Linux) return new(false, $"KVM is Linux's hypervisor; this host runs {HostPlatform.Describe(kernel.Os)}", none);
        int e = kernel.Access(Device);
        if (e == Errno.ENOENT) return new(false, $"no {Device} (no KVM in this kernel, kvm_intel/kvm_amd not loaded, or no hardware virtualization)", none);
        if (e is Errno.EACCES or Errno.EPERM) return new(false, $"{Device}: permission denied (add the user to the kvm group)", none);
        if (e != 0) return new(false, $"{Device}: {Errno.Describe(e, kernel.Os)}", none);
        e = kernel.TryOpen(Device, out var fd);
        if (e != 0) return new(false, $"open {Device}: {Errno.Describe(e, kernel.Os)}", none);
        using (fd)
        {
            int version = kernel.TryIoctl(fd!, KvmIoctls.KVM_GET_API_VERSION, null);
            if (version != KvmCaps.ApiVersion) return new(false, $"{Device}: KVM API version {version}, expected {KvmCaps.ApiVersion}", none);
            bool Has(int cap) => kernel.TryIoctl(fd!, KvmIoctls.KVM_CHECK_EXTENSION, (void*)cap) > 0;
            if (!Has(KvmCaps.KVM_CAP_USER_MEMORY)) return new(false, $"{Device}: the kernel lacks KVM_CAP_USER_MEMORY", none);
            var modes = new HashSet<IrqchipMode> { IrqchipMode.Off };
            if (Has(KvmCaps.KVM_CAP_IRQCHIP) && Has(KvmCaps.KVM_CAP_PIT2)) modes.Add(IrqchipMode.On);
            if (Has(KvmCaps.KVM_CAP_SPLIT_IRQCHIP) && Has(KvmCaps.KVM_CAP_SIGNAL_MSI)) modes.Add(IrqchipMode.Split);
            return new(true, $"{Device} (API {version})", modes);
        }
    }

    public IVm CreateVm(VmSpec spec)
    {
        if (spec.Deterministic)
            throw new MachineConfigException("kvm accelerator: deterministic time needs the software CPU (-accel soft)");
        var a = Probe(_kernel);
        if (!a.Usable) throw new MachineConfigException($"kvm accelerator: {a.Detail}");
        if (!a.Modes.Contains(spec.Irqchip))
            throw new MachineConfigException($"kvm accelerator: kernel-irqchip={spec.Irqchip.ToString().ToLowerInvariant()} needs capabilities this kernel lacks " +
                (spec.Irqchip == IrqchipMode.On ? "(KVM_CAP_IRQCHIP, KVM_CAP_PIT2)" : "(KVM_CAP_SPLIT_IRQCHIP, KVM_CAP_SIGNAL_MSI)"));
        return new KvmVm(this, spec);
    }
}
