// What a vCPU asks of interrupt controllers and timers that live outside the accelerator (DESIGN.md §3,
// kernel-irqchip=split and off). The platform's exit handler implements it beside IExitHandler; the backend
// calls it on the vCPU's own thread, like an exit, never while it holds a lock of its own.
// On KVM these are the userspace halves of KVM_INTERRUPT (the INTA the VMM runs before it injects),
// KVM_EXIT_IOAPIC_EOI (split) and the CR8 / TPR sync of a userspace local APIC (off).
namespace ActorVmm.Core.Accel;

public interface IUserspaceIrqchip
{
    /// <summary>
    /// The CPU takes an external interrupt now: the interrupt acknowledge cycle. In split the kernel LAPIC has found
    /// ExtINT on LINT0 and this is the 8259's INTA; in off the userspace LAPIC moves its highest deliverable vector
    /// from IRR to ISR, or, for ExtINT, hands the INTA on to the 8259. False: nothing to take after all.
    /// </summary>
    bool TryAcknowledge(int vcpuId, out byte vector);

    /// <summary>Split: the kernel LAPIC of <paramref name="vcpuId"/> signalled EOI of level-triggered <paramref name="vector"/> (for the IOAPIC).</summary>
    void KernelLapicEoi(int vcpuId, byte vector);

    /// <summary>Off: MOV from CR8 reads the userspace LAPIC's TPR.</summary>
    uint ReadTaskPriority(int vcpuId);

    /// <summary>Off: MOV to CR8 writes the userspace LAPIC's TPR.</summary>
    void WriteTaskPriority(int vcpuId, uint tpr);

    /// <summary>Off: the CPU's IA32_APIC_BASE changed (the CPU validates and keeps it; the userspace LAPIC follows).</summary>
    void ApicBaseChanged(int vcpuId, ulong value);

    /// <summary>The earliest deadline (ns on the VM clock) of the timers outside the accelerator that the vCPU runs itself, or null.</summary>
    long? NextDeadlineNs { get; }

    /// <summary>
    /// Runs the timers outside the accelerator whose deadline is at or before <paramref name="nowNs"/> on the calling
    /// vCPU thread, at an instruction-batch boundary: in deterministic mode all of them, in lock-step with the
    /// instruction clock; on host time those reached directly (a running vCPU is the one thread sure to be on a
    /// CPU; the timer service delivers the others, and these too when no vCPU runs).
    /// </summary>
    void RunDueTimers(long nowNs);
}
