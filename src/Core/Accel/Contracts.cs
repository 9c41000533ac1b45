// The accelerator contract (DESIGN.md §2): one contract, three implementations (vmm, kvm, soft).
// An accelerator creates VMs; a VM owns guest memory, vCPUs and the kernel irqchip entry points;
// a vCPU runs guest code, calling an IExitHandler for each PIO/MMIO/MSR exit and returning only for
// what the vCPU's owner must decide (VcpuExit).
using ActorVmm.Core.Memory;

namespace ActorVmm.Core.Accel;

/// <summary>Where interrupt controllers and timers live (QEMU's -machine kernel-irqchip=).</summary>
public enum IrqchipMode
{
    On,
    Split,
    Off,
}

public sealed record AcceleratorCapabilities(
    IReadOnlySet<IrqchipMode> IrqchipModes,
    int MaxVcpus,
    bool KernelKeepsTime);

/// <summary>What a VM is made of, as the accelerator needs to know it.</summary>
public sealed record VmSpec(ulong RamBytes, int VcpuCount, IrqchipMode Irqchip)
{
    /// <summary>Deterministic time: the clock advances with retired instructions (soft only).</summary>
    public bool Deterministic { get; init; }
}

public interface IAccelerator
{
    /// <summary>The -accel name: "soft", "kvm" or "vmm".</summary>
    string Name { get; }

    AcceleratorCapabilities Capabilities { get; }

    IVm CreateVm(VmSpec spec);
}

/// <summary>A virtual machine inside the accelerator. Irq entry points are thread-safe.</summary>
public interface IVm : IDisposable
{
    VmSpec Spec { get; }

    GuestMemory Memory { get; }

    IVcpu CreateVcpu(int id);

    /// <summary>Raise or lower a kernel-irqchip input line (on mode).</summary>
    void SetIrqLine(int gsi, bool level);

    /// <summary>Deliver an MSI to the kernel LAPICs (split mode).</summary>
    void SendMsi(ulong address, uint data);

    /// <summary>Raise then lower an edge line.</summary>
    void PulseIrq(int gsi)
    {
        SetIrqLine(gsi, true);
        SetIrqLine(gsi, false);
    }

    void InjectNmi(int vcpuId);

    /// <summary>
    /// The clock the accelerator keeps for this VM (TSC, in-kernel timers), which devices outside the accelerator
    /// must share so their time agrees with the guest's; null when the accelerator keeps none (host time).
    /// </summary>
    Devices.IClock? Clock => null;
}

public interface IVcpu : IDisposable
{
    int Id { get; }

    /// <summary>Runs guest code until something the owner must decide happens. Not thread-safe: call only from the vCPU's own thread.</summary>
    VcpuExit Run(IExitHandler handler);

    /// <summary>Makes a running or about-to-run <see cref="Run"/> return promptly with <see cref="VcpuExitKind.Kicked"/>. Thread-safe.</summary>
    void Kick();

    CpuRegisters GetRegisters();

    void SetRegisters(in CpuRegisters registers);

    SystemRegisters GetSystemRegisters();

    void SetSystemRegisters(in SystemRegisters registers);

    /// <summary>Userspace-irqchip mode (off): asks for <paramref name="vector"/> to be injected at the next interrupt window.</summary>
    void QueueInterrupt(byte vector);

    /// <summary>
    /// The CPU's interrupt request from an interrupt controller outside the accelerator (a level; thread-safe):
    /// in kernel-irqchip=split the userspace 8259's INTR, which reaches the CPU through the kernel local APIC's
    /// LINT0; in kernel-irqchip=off the userspace local APIC's "an interrupt is deliverable". While it is high the
    /// vCPU leaves HLT and, at its next interrupt window, runs the acknowledge cycle through
    /// <see cref="IUserspaceIrqchip.TryAcknowledge"/> on its exit handler.
    /// </summary>
    void SetInterruptRequest(bool level) => throw new NotSupportedException($"{GetType().Name}: no userspace interrupt request in this backend");

    /// <summary>
    /// Kernel-irqchip=off: an INIT from the userspace local APIC (an INIT IPI, INIT level assert, or an INIT-mode LVT;
    /// the APIC has already filtered out the level de-assert). Thread-safe: the vCPU takes it at its next instruction
    /// boundary (kicking it out of HLT or wait-for-SIPI): an application processor resets into wait-for-SIPI, the
    /// bootstrap processor resets and runs on at the reset vector (Intel SDM vol. 3 §9.4).
    /// </summary>
    void SignalInit() => throw new NotSupportedException($"{GetType().Name}: INIT from a userspace local APIC is not supported by this backend");

    /// <summary>
    /// Kernel-irqchip=off: a start-up IPI from the userspace local APIC. Thread-safe. Taken only by a vCPU in
    /// wait-for-SIPI (or one with an INIT pending), which starts in real mode at CS:IP = (vector &lt;&lt; 8):0;
    /// ignored (and counted) otherwise, as the SDM says.
    /// </summary>
    void SignalStartup(byte vector) => throw new NotSupportedException($"{GetType().Name}: start-up IPIs from a userspace local APIC are not supported by this backend");

    /// <summary>Guest instructions retired so far, where the backend counts them (soft); otherwise 0.</summary>
    ulong InstructionsRetired { get; }
}

/// <summary>
/// Called by the backend on the vCPU thread for each exit the platform emulates. Handlers never throw for
/// guest misbehaviour: an unclaimed port or bad width is counted and answered as hardware does (all-ones).
/// </summary>
public interface IExitHandler
{
    void PortRead(ushort port, Span<byte> data);

    void PortWrite(ushort port, ReadOnlySpan<byte> data);

    void MmioRead(ulong gpa, Span<byte> data);

    void MmioWrite(ulong gpa, ReadOnlySpan<byte> data);

    /// <summary>An MSR the backend does not model itself. False: the guest gets #GP.</summary>
    bool MsrRead(uint msr, out ulong value);

    /// <summary>An MSR the backend does not model itself. False: the guest gets #GP.</summary>
    bool MsrWrite(uint msr, ulong value);
}

/// <summary>Why <see cref="IVcpu.Run"/> returned. Shared by every backend.</summary>
public enum VcpuExitKind
{
    /// <summary>The run slice ended (instruction budget or deadline); call Run again.</summary>
    SliceEnd,
    /// <summary><see cref="IVcpu.Kick"/> was called.</summary>
    Kicked,
    /// <summary>HLT with interrupts disabled (nothing can ever wake it) or a halt the kernel hands to userspace.</summary>
    Halted,
    /// <summary>Triple fault or shutdown cycle.</summary>
    Shutdown,
    /// <summary>The platform asked for a reset (kernel-side reset line).</summary>
    Reset,
    /// <summary>The platform powered off (kernel-side, e.g. vmm's suspend).</summary>
    PowerOff,
    /// <summary>Debug exception for the debugger.</summary>
    Debug,
    /// <summary>The backend failed (entry failure, internal error): Detail says what.</summary>
    Error,
}

public readonly record struct VcpuExit(VcpuExitKind Kind, string? Detail = null)
{
    public static readonly VcpuExit SliceEnd = new(VcpuExitKind.SliceEnd);
    public static readonly VcpuExit Kicked = new(VcpuExitKind.Kicked);

    public override string ToString() => Detail is null ? Kind.ToString() : $"{Kind}: {Detail}";
}
