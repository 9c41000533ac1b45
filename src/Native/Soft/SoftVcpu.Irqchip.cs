// The soft vCPU's side of an irqchip outside the accelerator (DESIGN.md §3, kernel-irqchip=split and off), as a
// hardware accelerator's vCPU loop does it with a userspace PIC or local APIC (QEMU's kvm_arch_pre_run with
// KVM_INTERRUPT): the platform raises or lowers the vCPU's interrupt request (SetInterruptRequest, which wakes a
// halted vCPU); at an instruction-batch boundary where the CPU can take an interrupt, the vCPU runs the
// acknowledge cycle through the platform (IUserspaceIrqchip.TryAcknowledge on its exit handler: in off the local
// APIC moves the vector from IRR to ISR there and then, or hands ExtINT to the 8259's INTA) and injects the vector
// it gets. In split the request is the 8259's INTR on the kernel local APIC's LINT0 and only an ExtINT is taken
// from the platform. CR8 is the platform local APIC's TPR in off. The platform's due timers are run here at batch
// boundaries too (RunDueTimers): in deterministic mode all of them, in lock-step with the instruction clock (while
// halted, time skips to the earliest deadline of the kernel's and the platform's timers alike); on host time those
// on the Direct route, whichever of this thread and the timer service gets there first.
using ActorVmm.Core.Accel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftVcpu
{
    private SoftKernelDevices.ExitFilter? _filter;
    private IUserspaceIrqchip? _userIrqchip;
    private bool _interruptRequest;

    /// <summary>Split: the platform 8259's INTR on this vCPU's LINT0. Off: the platform local APIC's request.</summary>
    public void SetInterruptRequest(bool level)
    {
        if (Apic is not null)
        {
            _vm.Kernel.SetExtIntLine(Apic, level); // the local APIC signals the vCPU if it takes ExtINT
            return;
        }
        Volatile.Write(ref _interruptRequest, level);
        if (level) Wake();
    }

    /// <summary>True while the platform's local APIC (off) has an interrupt for this vCPU.</summary>
    public bool InterruptRequested => Volatile.Read(ref _interruptRequest);

    /// <summary>The earliest timer deadline the vCPU must wake for: the kernel's and the platform's it runs itself.</summary>
    private long NextDeadline(SoftKernelDevices kernel)
    {
        long next = kernel.NextDeadlineNs ?? long.MaxValue;
        if (_userIrqchip is { } chip) next = Math.Min(next, chip.NextDeadlineNs ?? long.MaxValue);
        return next;
    }

    /// <summary>The platform's due timers, on this thread (deterministic mode: all of them, at this instruction count).</summary>
    private void RunUserspaceTimers(SoftClock clock)
    {
        if (_userIrqchip is { } chip) chip.RunDueTimers(clock.NowNanoseconds);
    }

    /// <summary>Off: the INTA cycle through the platform while the request is up and the CPU can take it.</summary>
    private void AcknowledgeUserspace(SoftCpu cpu)
    {
        if (!Volatile.Read(ref _interruptRequest) || _userIrqchip is not { } chip) return;
        if (chip.TryAcknowledge(Id, out byte vector)) cpu.RaiseExternalInterrupt(vector);
    }

    /// <summary>Off: CR8 is the platform local APIC's TPR; without a userspace irqchip the CPU has no local APIC.</summary>
    private ITaskPriority? UserspaceTaskPriority() => _userIrqchip is { } chip ? new PlatformTaskPriority(chip, Id) : null;

    private sealed class PlatformTaskPriority(IUserspaceIrqchip chip, int vcpuId) : ITaskPriority
    {
        public uint Tpr
        {
            get => chip.ReadTaskPriority(vcpuId);
            set => chip.WriteTaskPriority(vcpuId, value);
        }
    }
}
