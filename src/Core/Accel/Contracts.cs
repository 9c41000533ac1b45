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

/// <summary>The interrupt controllers, timers and ACPI registers a kernel can provide in kernel-irqchip=on.</summary>
[Flags]
public enum KernelDevices
{
    None = 0,
    /// <summary>One local APIC per vCPU (xAPIC page, x2APIC and TSC-deadline MSRs).</summary>
    Lapic = 1 << 0,
    /// <summary>The IOAPIC at MMIO 0xfec00000.</summary>
    IoApic = 1 << 1,
    /// <summary>The 8259A pair (0x20, 0xa0) and ELCR (0x4d0).</summary>
    Pic = 1 << 2,
    /// <summary>The 8254 PIT (0x40-0x43) and port 0x61.</summary>
    Pit = 1 << 3,
    /// <summary>The HPET at MMIO 0xfed00000.</summary>
    Hpet = 1 << 4,
    /// <summary>The MC146818 RTC/CMOS (0x70-0x73).</summary>
    Rtc = 1 << 5,
    /// <summary>The ACPI PM timer (PM_TMR_BLK, PM block base + 8).</summary>
    PmTimer = 1 << 6,
    /// <summary>The ACPI PM1a event and control registers (PM block base + 0 and + 4: SCI, power button, S5).</summary>
    Pm1 = 1 << 7,
    All = Lapic | IoApic | Pic | Pit | Hpet | Rtc | PmTimer | Pm1,
}

/// <summary>
/// What an accelerator's kernel provides in kernel-irqchip=on (the machine builder adds userspace models for the rest),
/// and where the ACPI PM block is: PM1a_EVT at <see cref="PmBasePort"/> (4 bytes), PM1a_CNT at + 4 (2), PM_TMR at + 8
/// (4), whichever side provides each. The interrupt controllers (local APICs, IOAPIC, 8259) are always the kernel's
/// in on: that is what the mode means.
/// </summary>
public sealed record KernelPlatform
{
    /// <summary>The soft accelerator's kernel side (SoftKernelDevices): everything, PM block at 0x600 (QEMU's PIIX4).</summary>
    public static readonly KernelPlatform Soft = new(KernelDevices.All, 0x600);

    /// <summary>
    /// FreeBSD vmm(4): LAPIC, IOAPIC, 8259, PIT, HPET, RTC and the PM timer alone at 0x408 (bhyve's layout: PM1a_EVT
    /// 0x400, PM1a_CNT 0x404, PM_TMR 0x408; bhyve emulates the PM1 registers in userspace).
    /// </summary>
    public static readonly KernelPlatform Vmm = new(KernelDevices.All & ~KernelDevices.Pm1, 0x400);

    /// <summary>Linux KVM (KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2): LAPIC, IOAPIC, 8259 and PIT; PM block at 0x600 in userspace.</summary>
    public static readonly KernelPlatform Kvm = new(KernelDevices.Lapic | KernelDevices.IoApic | KernelDevices.Pic | KernelDevices.Pit, 0x600);

    /// <summary>The interrupt controllers kernel-irqchip=on cannot do without.</summary>
    public const KernelDevices Required = KernelDevices.Lapic | KernelDevices.IoApic | KernelDevices.Pic;

    /// <exception cref="ArgumentException">A required interrupt controller is missing, or the PM block does not fit the port space.</exception>
    public KernelPlatform(KernelDevices devices, ushort pmBasePort)
    {
        if ((devices & ~KernelDevices.All) != 0)
            throw new ArgumentException($"kernel devices: unknown flags 0x{(int)(devices & ~KernelDevices.All):x}", nameof(devices));
        if ((devices & Required) != Required)
            throw new ArgumentException($"kernel devices {devices}: kernel-irqchip=on needs the kernel's {Required} (missing {Required & ~devices})", nameof(devices));
        if (pmBasePort > 0x10000 - 12)
            throw new ArgumentException($"ACPI PM block at 0x{pmBasePort:x}: its 12 bytes do not fit the port space", nameof(pmBasePort));
        Devices = devices;
        PmBasePort = pmBasePort;
    }

    public KernelDevices Devices { get; }

    /// <summary>PM1a_EVT_BLK; PM1a_CNT_BLK and PM_TMR_BLK are at + 4 and + 8.</summary>
    public ushort PmBasePort { get; }

    public ushort Pm1EventPort => PmBasePort;

    public ushort Pm1ControlPort => (ushort)(PmBasePort + 4);

    public ushort PmTimerPort => (ushort)(PmBasePort + 8);

    /// <summary>True when the kernel provides every device in <paramref name="devices"/>.</summary>
    public bool Has(KernelDevices devices) => (Devices & devices) == devices;

    /// <summary>The devices userspace must add in kernel-irqchip=on.</summary>
    public KernelDevices Missing => KernelDevices.All & ~Devices;

    public override string ToString() => $"{Devices} (PM block 0x{PmBasePort:x})";
}

/// <param name="KernelPlatform">What the kernel provides in kernel-irqchip=on.</param>
public sealed record AcceleratorCapabilities(
    IReadOnlySet<IrqchipMode> IrqchipModes,
    int MaxVcpus,
    KernelPlatform KernelPlatform);

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

    /// <summary>
    /// Whether <see cref="Run"/> itself runs the due timers of a userspace irqchip on its exit handler
    /// (IUserspaceIrqchip.RunDueTimers at its instruction-batch boundaries, as the soft vCPU does). False (KVM, vmm: the
    /// kernel runs the guest, not us): a kick alone advances no platform timer, so the timer service runs them itself.
    /// </summary>
    bool RunsPlatformTimers => false;
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
