// The "kernel" half of the soft accelerator (DESIGN.md §3): the interrupt controllers and timers a hypervisor keeps
// in the kernel, here the same Core device models run synchronously on the vCPU thread, with no messages. What is
// here depends on kernel-irqchip:
//   on     everything below.
//   split  only the local APICs and the APIC bus between them (MSIs, IPIs). The 8259, PIT, RTC, ACPI PM, IOAPIC and
//          HPET are platform devices (ActorVmm.Core.Machine.PlatformIrqchip): the userspace 8259's INTR drives LINT0
//          (SetExtIntLine), an ExtINT the CPU takes is acknowledged by the platform (TryAcknowledge says so), and a
//          level-triggered EOI is queued per APIC for the vCPU to hand to the platform's IOAPIC once it has left this
//          lock (TakeLevelEoi), as KVM's split irqchip exits to userspace with KVM_EXIT_IOAPIC_EOI.
//   off    nothing: the vCPU talks to the platform's userspace local APIC (SoftVcpu.Irqchip.cs).
// Present in on: what the KernelPlatform given at construction lists (KernelPlatform.Soft, everything, by default;
// KernelPlatform.Vmm or .Kvm make it behave as those kernels do, for their stand-ins: a device it lacks is no
// different from any other port or MMIO access, an ordinary exit to the platform, which then has the userspace
// model). The full set: the 8259A PIC pair (0x20, 0xa0, ELCR 0x4d0), the 8254 PIT (0x40-0x43, port 0x61), the MC146818
// RTC/CMOS (0x70-0x73), the ACPI PM block (at the platform's PM base, 0x600 by default: PM1 event/control at + 0 and
// + 4, the PM timer at + 8; with the PM timer alone, as vmm has it, only the 4 timer ports), the IOAPIC (MMIO 0xfec00000,
// 24 pins), the HPET (MMIO 0xfed00000, 3 timers, all periodic-capable and routable to IOAPIC input 2, as in
// QEMU's pc machine) and one local APIC per vCPU (its xAPIC page where the vCPU's IA32_APIC_BASE puts it,
// default 0xfee00000; the x2APIC MSRs 0x800-0x8ff and IA32_TSC_DEADLINE 0x6e0).
// Their accesses never leave the vCPU thread; everything else goes on to the platform's exit handler.
// Interrupt wiring, as on a PC and as QEMU's pc machine: ISA IRQ n (0-15) drives PIC input n and IOAPIC pin n,
// except IRQ0, which reaches IOAPIC pin 2 (the ACPI interrupt source override every PC firmware reports);
// GSI 16-23 are IOAPIC pins only. PIT OUT0 is IRQ0, the RTC IRQ8, SCI IRQ9; while the HPET's legacy
// replacement is on, the PIT and RTC are cut off and HPET timers 0 and 1 drive IRQ0/IRQ8 (IOAPIC pins 2/8).
// The PIC's INTR goes to LINT0 of every local APIC (virtual wire: the BSP's LINT0 is ExtINT at power-up);
// IOAPIC messages, MSIs and IPIs go through one router to the local APICs whose destination matches
// (lowest-priority messages to the matching APIC with the lowest processor priority). A level-triggered EOI
// in a local APIC is broadcast to the IOAPIC.
// The CPU side: at instruction-batch boundaries the vCPU advances the timers whose deadline has passed and,
// when the CPU can take an interrupt, asks its local APIC: the highest deliverable IRR vector first (IRR to
// ISR), else the PIC's vector through LINT0 in ExtINT mode (or straight from INTR while the APIC is
// hardware-disabled). The soft CPU keeps IA32_APIC_BASE itself; the local APIC follows it (enable, disable,
// relocation) before every access and at every batch boundary. ACPI S5 and the PM reset become the vCPU exits
// PowerOff and Reset, as a kernel reports them. The host's power button (PressPowerButton, QMP's
// system_powerdown through IPowerButton) sets PWRBTN_STS under the lock and so raises the SCI the guest enabled.
// INIT and start-up IPIs reach the target vCPU through ApicSignals (SoftVcpu: INIT reset, wait-for-SIPI) in on and
// split; a userspace LAPIC (off) counts them. Not here: SMI reaching the CPU (no SMM: counted, see ApicSignals),
// the TSC offset a guest WRMSR to the TSC makes (TSC-deadline compares with the VM clock's TSC).
// Lock: one lock for all kernel devices (they call each other: PIT -> PIC -> LAPIC, IOAPIC -> LAPIC -> IOAPIC);
// the only lock taken while it is held is a vCPU's event lock (NMI), which never waits for this one; the
// platform's exit handler is called only after it is released. In split the platform's PIC and IOAPIC call in
// here under their own locks (they come before this one); nothing here calls out to them.
using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;

namespace ActorVmm.Native.Soft;

public sealed class SoftKernelDevices : IMachineControl
{
    /// <summary>The IOAPIC pin ISA IRQ0 reaches (the interrupt source override of the ACPI MADT).</summary>
    public const int Irq0IoApicPin = 2;

    /// <summary>
    /// The HPET timers' Tn_INT_ROUTE_CAP on this machine: IOAPIC input 2 only, as QEMU's i440FX pc machine offers
    /// (its q35 machine adds 8 and 16-23). Guests use legacy replacement or route 2.
    /// </summary>
    public const uint HpetRouteCapability = 1u << 2;

    private readonly Lock _lock = new();
    private readonly Action _wake;
    private readonly ApicRouter _router;
    private LocalApic[] _apics = [];
    private readonly Dictionary<LocalApic, Queue<byte>> _levelEois = [];
    private int _pendingStop; // 0 none, 1 power-off, 2 reset

    internal SoftKernelDevices(IrqchipMode mode, IClock clock, ulong ramBytes, int cpuCount, DateTime rtcStart, Action wake,
        KernelPlatform? platform = null)
    {
        Mode = mode;
        Platform = platform ?? KernelPlatform.Soft;
        Clock = clock;
        _wake = wake;
        _router = new ApicRouter(this);
        if (mode != IrqchipMode.On)
        {
            Bus = new BusBuilder().Build();
            return;
        }
        var pic = new Pic8259Pair(new PicIntr(this));
        var ioapic = new IoApic(_router);
        Pic = pic;
        IoApic = ioapic;
        var p = Platform;
        var b = new BusBuilder();
        b.AddPorts(new PortRange(0x20, 2), new DirectEndpoint(Pic.Master, _lock));
        b.AddPorts(new PortRange(0xa0, 2), new DirectEndpoint(Pic.Slave, _lock));
        b.AddPorts(new PortRange(0x4d0, 2), new DirectEndpoint(Pic.Elcr, _lock));
        b.AddMmio(new MmioRange(Core.Devices.IoApic.DefaultBase, Core.Devices.IoApic.MmioSize), new DirectEndpoint(IoApic, _lock));
        if (p.Has(KernelDevices.Hpet))
        {
            Hpet = new Hpet(clock, (pin, level) => ioapic.SetIrq(pin, level), (irq, level) => pic.SetIrq(irq, level),
                routeCapability: HpetRouteCapability, periodicTimers: Core.Devices.Hpet.TimerCount);
            b.AddMmio(new MmioRange(Core.Devices.Hpet.DefaultBase, Core.Devices.Hpet.MmioSize), new DirectEndpoint(Hpet, _lock));
        }
        if (p.Has(KernelDevices.Pit))
        {
            Pit = new Pit8254(clock, new LegacyTimerLine(this, 0));
            b.AddPorts(new PortRange(0x40, 4), new DirectEndpoint(Pit, _lock));
            b.AddPorts(new PortRange(0x61, 1), new DirectEndpoint(Pit.Port61, _lock));
        }
        if (p.Has(KernelDevices.Rtc))
        {
            Rtc = new Rtc146818(clock, new LegacyTimerLine(this, 8), rtcStart);
            Rtc.SetMemorySize(Math.Min(ramBytes, 0xC000_0000UL), ramBytes > 0xC000_0000UL ? ramBytes - 0xC000_0000UL : 0);
            Rtc.SetCpuCount(cpuCount);
            Rtc.SetBootOrder("cad"); // QEMU's default order for a PC (hard disk, floppy, CD-ROM); SeaBIOS reads it
            b.AddPorts(new PortRange(0x70, 4), new DirectEndpoint(Rtc, _lock));
        }
        if (p.Has(KernelDevices.Pm1))
        {
            // PM1 event/control, with the timer behind them when the kernel has it too.
            Pm = new AcpiPm(clock, new IsaLine(this, 9), this, p.PmBasePort, hasTimer: p.Has(KernelDevices.PmTimer));
            b.AddPorts(new PortRange(Pm.BasePort, (ushort)Pm.MappedLength), new DirectEndpoint(Pm, _lock));
        }
        else if (p.Has(KernelDevices.PmTimer))
        {
            // The PM timer alone (vmm: port 0x408); its PM1 registers are unreachable, so it never raises the SCI.
            Pm = new AcpiPm(clock, new IsaLine(this, 9), this, p.PmBasePort);
            b.AddPorts(new PortRange(p.PmTimerPort, AcpiPm.PmTimerLength), new OffsetEndpoint(new DirectEndpoint(Pm, _lock), AcpiPm.PmTimerOffset));
        }
        Bus = b.Build();
    }

    public IrqchipMode Mode { get; }

    public IClock Clock { get; }

    /// <summary>What this kernel side provides in on (the devices below that are null in on are the platform's).</summary>
    public KernelPlatform Platform { get; }

    /// <summary>The 8259 pair (on only; null in split and off, where the platform has it).</summary>
    public Pic8259Pair? Pic { get; }

    public Pit8254? Pit { get; }

    public Rtc146818? Rtc { get; }

    public AcpiPm? Pm { get; }

    public IoApic? IoApic { get; }

    public Hpet? Hpet { get; }

    /// <summary>The local APICs, one per vCPU, in creation order.</summary>
    public IReadOnlyList<LocalApic> LocalApics => Volatile.Read(ref _apics);

    /// <summary>The ports and fixed MMIO ranges these devices answer (checked before the platform's bus).</summary>
    public Bus Bus { get; }

    /// <summary>MSIs whose address is outside the 0xfee00000 window (dropped).</summary>
    public long BadMsis { get; private set; }

    /// <summary>Creates the local APIC of vCPU <paramref name="id"/> (the BSP is vCPU 0).</summary>
    internal LocalApic AddLocalApic(int id, IApicCpu cpu)
    {
        if (Mode == IrqchipMode.Off) throw new InvalidOperationException("kernel-irqchip=off: the local APICs are not in the accelerator");
        lock (_lock)
        {
            LocalApic apic;
            if (IoApic is { } ioapic)
            {
                apic = new LocalApic((uint)id, bsp: id == 0, (long)SoftCpu.TscFrequencyHz, Clock, cpu, _router, ioapic.Eoi);
            }
            else
            {
                // Split: a level EOI waits here until the vCPU, outside this lock, hands it to the platform's IOAPIC.
                var eois = new Queue<byte>();
                apic = new LocalApic((uint)id, bsp: id == 0, (long)SoftCpu.TscFrequencyHz, Clock, cpu, _router, v =>
                {
                    if (eois.Count < 256) eois.Enqueue(v);
                });
                _levelEois[apic] = eois;
            }
            if (Pic?.IntrLevel == true) apic.SetLint(0, true);
            _apics = [.. _apics, apic];
            return apic;
        }
    }

    /// <summary>Split: the userspace 8259's INTR, on LINT0 of <paramref name="apic"/>.</summary>
    internal void SetExtIntLine(LocalApic apic, bool level)
    {
        lock (_lock) apic.SetLint(0, level);
    }

    /// <summary>Split: a level-triggered EOI of <paramref name="apic"/> still to be handed to the platform's IOAPIC.</summary>
    internal bool TakeLevelEoi(LocalApic apic, out byte vector)
    {
        lock (_lock)
        {
            if (_levelEois.TryGetValue(apic, out var q) && q.TryDequeue(out vector)) return true;
        }
        vector = 0;
        return false;
    }

    /// <summary>
    /// Drives GSI <paramref name="gsi"/>: 0-15 are ISA IRQs (PIC input and IOAPIC pin, IRQ0 on pin 2; IRQ2 is
    /// the cascade and reaches only IOAPIC pin 2), 16-23 IOAPIC pins. False for a GSI that does not exist.
    /// </summary>
    public bool SetIrq(int gsi, bool level)
    {
        if ((uint)gsi >= Core.Devices.IoApic.PinCount || Mode != IrqchipMode.On) return false;
        lock (_lock) DriveIsaOrGsi(gsi, level);
        return true;
    }

    /// <summary>The host pressed the ACPI power button: PWRBTN_STS, and the SCI if the guest enabled it. False when the PM block is not here (split, off).</summary>
    public bool PressPowerButton()
    {
        if (Pm is not { } pm || !Platform.Has(KernelDevices.Pm1)) return false;
        lock (_lock) pm.PressPowerButton();
        return true;
    }

    private void DriveIsaOrGsi(int gsi, bool level)
    {
        if (gsi < 16 && gsi != 2) Pic!.SetIrq(gsi, level);
        IoApic!.SetIrq(gsi == 0 ? Irq0IoApicPin : gsi, level);
    }

    /// <summary>An MSI write (address 0xfee0xxxx, data): routed to the local APICs like an IOAPIC message.</summary>
    public void SendMsi(ulong address, uint data)
    {
        lock (_lock)
        {
            if (ApicMessage.TryFromMsi(address, data, out var message)) _router.Deliver(message);
            else BadMsis++;
        }
    }

    /// <summary>Runs the timers up to now.</summary>
    public void Advance()
    {
        lock (_lock)
        {
            long now = Clock.NowNanoseconds;
            Pit?.Advance(now);
            Rtc?.Advance(now);
            Pm?.Advance(now);
            Hpet?.Advance(now);
            foreach (var apic in _apics) apic.Advance(now);
        }
    }

    /// <summary>The earliest timer deadline, or null.</summary>
    public long? NextDeadlineNs
    {
        get
        {
            lock (_lock)
            {
                long? next = Min(Min(Min(Pit?.NextDeadlineNs, Rtc?.NextDeadlineNs), Pm?.NextDeadlineNs), Hpet?.NextDeadlineNs);
                foreach (var apic in _apics) next = Min(next, apic.NextDeadlineNs);
                return next;
            }
        }
    }

    private static long? Min(long? a, long? b) => a is null ? b : b is null ? a : Math.Min(a.Value, b.Value);

    /// <summary>
    /// The interrupt acknowledge cycle of the CPU that owns <paramref name="apic"/>: the local APIC's highest
    /// deliverable vector (IRR to ISR), else the PIC's vector through LINT0 (ExtINT) or the INTR pin of a
    /// hardware-disabled APIC. False when nothing is pending. In split the 8259 is the platform's:
    /// <paramref name="extInt"/> says the APIC took an ExtINT whose vector the caller must get from the platform's INTA.
    /// </summary>
    public bool TryAcknowledge(LocalApic apic, out byte vector, out bool extInt)
    {
        extInt = false;
        lock (_lock)
        {
            if (apic.HasInterrupt(out _))
            {
                vector = apic.Acknowledge();
                return true;
            }
            if (apic.ExtIntPending)
            {
                apic.AcknowledgeExtInt();
                if (Pic is null)
                {
                    extInt = true;
                }
                else if (Pic.IntrLevel)
                {
                    vector = (byte)Pic.Acknowledge();
                    return true;
                }
            }
            vector = 0;
            return false;
        }
    }

    /// <summary>True when the CPU that owns <paramref name="apic"/> has an interrupt to take (wakes it from HLT).</summary>
    public bool InterruptPending(LocalApic apic)
    {
        lock (_lock) return apic.HasInterrupt(out _) || (apic.ExtIntPending && (Pic?.IntrLevel ?? true));
    }

    /// <summary>The LAPIC's TPR (register 0x80), as MOV from CR8 reads it.</summary>
    internal uint ReadTpr(LocalApic apic)
    {
        lock (_lock) return apic.TaskPriority;
    }

    /// <summary>
    /// MOV to CR8: the LAPIC's TPR, through the register interface of its mode (the xAPIC page or, in x2APIC mode,
    /// MSR 0x808); a lower priority may let a pending interrupt through at the next boundary.
    /// </summary>
    internal void WriteTpr(LocalApic apic, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BitConverter.TryWriteBytes(b, value & 0xff);
        lock (_lock)
        {
            if (apic.X2ApicMode) apic.WriteMsr((uint)(LocalApic.X2ApicMsrFirst + LocalApic.TPR), value & 0xff);
            else apic.Write(LocalApic.TPR << 4, b);
        }
    }

    /// <summary>
    /// Makes <paramref name="apic"/> follow the CPU's IA32_APIC_BASE (enable, disable, base address). The soft CPU
    /// has already refused the values the SDM makes #GP; a transition the APIC model refuses on top of that
    /// (none for the values the soft CPU allows) leaves the APIC as it was.
    /// </summary>
    internal void SyncApicBase(LocalApic apic, ulong cpuApicBase)
    {
        if (apic.ApicBaseMsr == cpuApicBase) return;
        lock (_lock) apic.WriteMsr(LocalApic.IA32_APIC_BASE, cpuApicBase);
    }

    /// <summary>ACPI S5 or reset from the in-kernel PM block: taken by the vCPU as a PowerOff or Reset exit.</summary>
    public void RequestStop(MachineStopRequest request)
    {
        Interlocked.Exchange(ref _pendingStop, request.Reason == MachineStopReason.Reset ? 2 : 1);
        _wake();
    }

    /// <summary>The stop the guest asked the kernel devices for, once.</summary>
    internal VcpuExit? TakePendingStop() => Interlocked.Exchange(ref _pendingStop, 0) switch
    {
        1 => new VcpuExit(VcpuExitKind.PowerOff, "ACPI S5 (SLP_EN with SLP_TYP = S5)"),
        2 => new VcpuExit(VcpuExitKind.Reset, "reset through the ACPI PM block"),
        _ => null,
    };

    /// <summary>An ISA interrupt line of a kernel device (SCI): PIC input and IOAPIC pin.</summary>
    private sealed class IsaLine(SoftKernelDevices owner, int irq) : IIrqLine
    {
        public void Set(bool level) => owner.DriveIsaOrGsi(irq, level);
    }

    /// <summary>
    /// The PIT's IRQ0 or the RTC's IRQ8: cut off while the HPET's legacy replacement routes its timers 0 and 1
    /// there instead (as the HPET specification says and QEMU's pc machine does).
    /// </summary>
    private sealed class LegacyTimerLine(SoftKernelDevices owner, int irq) : IIrqLine
    {
        public void Set(bool level)
        {
            if (owner.Hpet?.LegacyReplacement != true) owner.DriveIsaOrGsi(irq, level);
        }
    }

    /// <summary>The PIC's INTR output: LINT0 of every local APIC (wired together, as on a PC board).</summary>
    private sealed class PicIntr(SoftKernelDevices owner) : IIrqLine
    {
        public void Set(bool level)
        {
            foreach (var apic in owner._apics) apic.SetLint(0, level);
            if (level) owner._wake();
        }
    }

    /// <summary>
    /// The APIC bus: delivers an IOAPIC message, MSI or IPI to every local APIC its destination matches, or, for
    /// lowest priority, to the matching one with the lowest processor priority (the first on a tie).
    /// </summary>
    private sealed class ApicRouter(SoftKernelDevices owner) : IInterruptSink
    {
        public long Undelivered { get; private set; }

        public void Deliver(in ApicMessage message)
        {
            LocalApic? lowest = null;
            bool any = false;
            foreach (var apic in owner._apics)
            {
                if (!apic.Matches(message)) continue;
                any = true;
                if (message.DeliveryMode == ApicDeliveryMode.LowestPriority)
                {
                    if (lowest is null || apic.ProcessorPriority < lowest.ProcessorPriority) lowest = apic;
                }
                else
                {
                    apic.AcceptMessage(message);
                }
            }
            lowest?.AcceptMessage(message);
            if (!any) Undelivered++;
        }
    }

    /// <summary>
    /// Routes one vCPU's accesses: the kernel devices' ports, the fixed MMIO ranges (IOAPIC, HPET), this vCPU's
    /// local APIC page and MSRs here; everything else to the platform's handler. Before touching the local APIC it
    /// brings the APIC base (and, in deterministic mode, the clock) up to date with the CPU. In split and off, where
    /// the platform has the timers, the clock is brought up to date before every platform exit too; in split a level
    /// EOI the local APIC signalled is handed to the platform (KernelLapicEoi) once the kernel lock is released; in
    /// off (no local APIC here) the CPU's IA32_APIC_BASE is handed to the platform's local APIC when it changes.
    /// </summary>
    internal sealed class ExitFilter(SoftKernelDevices kernel, IExitHandler platform, LocalApic? apic, SoftClock clock, int vcpuId = 0) : IExitHandler
    {
        private int _mmioHit = -1;
        // In on the platform is an IUserspaceIrqchip only when it hosts devices this kernel side lacks (their timers).
        private readonly IUserspaceIrqchip? _irqchip = platform as IUserspaceIrqchip;
        private ulong _userApicBase;

        public IExitHandler Platform { get; } = platform;

        /// <summary>The CPU these exits come from (set once the CPU exists).</summary>
        public SoftCpu? Cpu { get; set; }

        private void Sync()
        {
            if (Cpu is not { } cpu) return;
            if (clock.Deterministic) clock.SetInstructions(cpu.InstructionsRetired);
            if (apic is not null) kernel.SyncApicBase(apic, cpu.ApicBase);
            else SyncUserspaceApicBase(cpu.ApicBase);
        }

        /// <summary>Off: the platform's local APIC follows the CPU's IA32_APIC_BASE.</summary>
        internal void SyncUserspaceApicBase(ulong apicBase)
        {
            if (_irqchip is null || apicBase == _userApicBase) return;
            _userApicBase = apicBase;
            _irqchip.ApicBaseChanged(vcpuId, apicBase);
        }

        /// <summary>Split and off, deterministic: the platform's timers read the clock, so it must be the CPU's now.</summary>
        private void SyncClockForPlatform()
        {
            if (_irqchip is not null && clock.Deterministic && Cpu is { } cpu) clock.SetInstructions(cpu.InstructionsRetired);
        }

        /// <summary>Split: level EOIs of this vCPU's local APIC, for the platform's IOAPIC (outside the kernel lock).</summary>
        private void ForwardLevelEois()
        {
            if (_irqchip is null || apic is null) return;
            while (kernel.TakeLevelEoi(apic, out byte vector)) _irqchip.KernelLapicEoi(vcpuId, vector);
        }

        public void PortRead(ushort port, Span<byte> data)
        {
            var e = kernel.Bus.Pio.Lookup(port, out ushort offset);
            if (e is null)
            {
                SyncClockForPlatform();
                Platform.PortRead(port, data);
                return;
            }
            if (clock.Deterministic && Cpu is { } cpu) clock.SetInstructions(cpu.InstructionsRetired);
            e.Read(offset, data);
        }

        public void PortWrite(ushort port, ReadOnlySpan<byte> data)
        {
            var e = kernel.Bus.Pio.Lookup(port, out ushort offset);
            if (e is null)
            {
                SyncClockForPlatform();
                Platform.PortWrite(port, data);
                return;
            }
            if (clock.Deterministic && Cpu is { } cpu) clock.SetInstructions(cpu.InstructionsRetired);
            e.Write(offset, data);
        }

        private bool InApicPage(ulong gpa) => apic is not null && apic.MmioEnabled && gpa - apic.BaseAddress < LocalApic.MmioSize;

        public void MmioRead(ulong gpa, Span<byte> data)
        {
            Sync();
            if (InApicPage(gpa))
            {
                lock (kernel._lock) apic!.Read(gpa - apic.BaseAddress, data);
                return;
            }
            var e = kernel.Bus.Mmio.Lookup(gpa, ref _mmioHit, out ulong offset);
            if (e is null) Platform.MmioRead(gpa, data);
            else e.Read(offset, data);
        }

        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data)
        {
            Sync();
            if (InApicPage(gpa))
            {
                lock (kernel._lock) apic!.Write(gpa - apic.BaseAddress, data);
                ForwardLevelEois();
                return;
            }
            var e = kernel.Bus.Mmio.Lookup(gpa, ref _mmioHit, out ulong offset);
            if (e is null) Platform.MmioWrite(gpa, data);
            else e.Write(offset, data);
        }

        private bool IsApicMsr(uint msr) => apic is not null && msr != LocalApic.IA32_APIC_BASE && LocalApic.HandlesMsr(msr);

        public bool MsrRead(uint msr, out ulong value)
        {
            if (!IsApicMsr(msr))
            {
                if (apic is null) Sync();
                return Platform.MsrRead(msr, out value);
            }
            Sync();
            lock (kernel._lock) return apic!.ReadMsr(msr, out value);
        }

        public bool MsrWrite(uint msr, ulong value)
        {
            if (!IsApicMsr(msr))
            {
                if (apic is null) Sync();
                return Platform.MsrWrite(msr, value);
            }
            Sync();
            bool ok;
            lock (kernel._lock) ok = apic!.WriteMsr(msr, value);
            ForwardLevelEois();
            return ok;
        }
    }
}

/// <summary>
/// The soft accelerator's one clock: host time since the VM was created, or, in deterministic mode, guest
/// instructions retired (1 ns each) plus the time skipped while the vCPU was halted waiting for a timer. With
/// several vCPUs (AttachCpu) deterministic time is the sum of every vCPU's retired instructions plus the skips:
/// it advances with all of them and never goes back, but which vCPU retires what when depends on host thread
/// scheduling, so such runs are not reproducible.
/// </summary>
internal sealed class SoftClock(bool deterministic) : IClock
{
    private readonly long _start = System.Diagnostics.Stopwatch.GetTimestamp();
    private long _instructions;
    private long _skipped;
    private SoftCpu?[]? _cpus;

    /// <summary>Deterministic SMP: vCPU <paramref name="id"/> of <paramref name="count"/> counts towards the clock.</summary>
    public void AttachCpu(int id, int count, SoftCpu cpu)
    {
        Interlocked.CompareExchange(ref _cpus, new SoftCpu?[count], null);
        Volatile.Write(ref _cpus![id], cpu);
    }

    private long SmpInstructions(SoftCpu?[] cpus)
    {
        long sum = 0;
        foreach (var c in cpus) sum += (long)(c?.InstructionsRetired ?? 0);
        return sum;
    }

    public bool Deterministic { get; } = deterministic;

    /// <summary>Nanoseconds skipped while halted (deterministic mode).</summary>
    public long Skipped => Volatile.Read(ref _skipped);

    public long NowNanoseconds => Deterministic
        ? (Volatile.Read(ref _cpus) is { } cpus ? SmpInstructions(cpus) : Volatile.Read(ref _instructions)) + Volatile.Read(ref _skipped)
        : (long)((System.Diagnostics.Stopwatch.GetTimestamp() - _start) * (1e9 / System.Diagnostics.Stopwatch.Frequency));

    /// <summary>Deterministic mode, one vCPU: the vCPU reports its retired-instruction count (with several the clock reads them).</summary>
    public void SetInstructions(ulong retired) => Volatile.Write(ref _instructions, (long)retired);

    /// <summary>Deterministic mode: a halted vCPU jumps time forward to the next deadline.</summary>
    public void SkipTo(long deadline)
    {
        long now = NowNanoseconds;
        if (deadline > now) Interlocked.Add(ref _skipped, deadline - now);
    }
}
