// The interrupt controllers and timers of kernel-irqchip=split and off (DESIGN.md §3) as platform devices:
// the same Core models the soft accelerator runs in its "kernel" for kernel-irqchip=on (8259A pair, 8254 PIT with
// port 0x61, MC146818 RTC/CMOS, ACPI PM block, IOAPIC, HPET; in off also one local APIC per vCPU), each wrapped
// as a HostedDevice: one IBusDevice with the model's own lock and its timer deadline, which a DeviceActor hosts
// and the vCPUs reach through the bus by its route (Direct or Mailbox).
// Wiring, exactly as the kernel-irqchip=on wiring (SoftKernelDevices) and QEMU's pc machine: ISA IRQ n (0-15)
// drives 8259 input n and IOAPIC pin n, IRQ0 reaching IOAPIC pin 2; GSI 16-23 are IOAPIC pins only. PIT OUT0 is
// IRQ0, the RTC IRQ8, SCI IRQ9; while the HPET's legacy replacement is on the PIT and RTC lines are cut off and
// HPET timers 0 and 1 drive IRQ0/IRQ8. Lines are synchronous calls into the PIC and IOAPIC under their locks.
// Where the interrupts go:
//   split  IOAPIC messages become IVm.SendMsi into the kernel local APICs. The 8259's INTR is every vCPU's
//          interrupt request (IVcpu.SetInterruptRequest), which the kernel LAPIC takes through LINT0 (ExtINT); the
//          vCPU then runs INTA here (IUserspaceIrqchip.TryAcknowledge: a read of the PIC's INTA window, through its
//          route) at the moment it takes the interrupt. A level-triggered EOI in a kernel LAPIC comes back as
//          KernelLapicEoi and is written to the IOAPIC's EOI register (0x40) through the IOAPIC's route.
//   off    the local APICs are LapicDevices too: the xAPIC page, the x2APIC and TSC-deadline MSRs, CR8 and the
//          CPU's IA32_APIC_BASE reach them from the vCPU's exit handler (IrqchipExitHandler) through the LAPIC's
//          route; the IOAPIC's messages and IPIs go to them through the APIC bus below; the 8259's INTR drives
//          their LINT0. A LAPIC with a deliverable interrupt raises its vCPU's interrupt request (which wakes it);
//          the vCPU's INTA at its interrupt window moves the vector from IRR to ISR, or for ExtINT hands the INTA on
//          to the 8259. Level EOIs go to the IOAPIC's EOI register through its route.
// Lock order (a thread takes locks only in this order): a DeviceActor's or DirectEndpoint's device lock (at most
// one) → PIT, RTC, ACPI PM, HPET, platform devices' own locks → PIC, IOAPIC → local APIC → the accelerator's
// kernel lock → a vCPU's event lock. A local APIC never calls out while it holds its lock: IPIs and EOIs it
// produces wait in its outbox and are sent once the lock is released.
// INIT and start-up IPIs (and INIT-mode LVTs) a userspace LAPIC accepts go to its vCPU through IVcpu.SignalInit and
// SignalStartup (the MP start-up protocol of the SDM vol. 3 §9.4: the LAPIC drops an INIT level de-assert; the vCPU
// takes a start-up only in wait-for-SIPI); NMIs through IVm.InjectNmi.
// kernel-irqchip=on: the accelerator's kernel has the local APICs, IOAPIC and 8259; this irqchip then hosts only the
// timers and ACPI registers its KernelPlatform lacks (KVM: RTC, ACPI PM block, HPET; vmm: the PM1 event/control
// block at 0x400 without the timer the kernel has at 0x408), and their lines, the HPET's included, are IVm.SetIrqLine
// on the kernel's GSIs. The vCPU side is only the timers (RunDueTimers); nothing is acknowledged here.
// Timers: the vCPU runs due deadlines at its batch boundaries when it can (the soft vCPU: IVcpu.RunsPlatformTimers);
// for a hardware kernel's vCPUs the timer service's delivery (KickVcpus) runs them on its own thread.
// Not here: SMI (no SMM; counted), x2APIC-format MSIs (the IOAPIC's messages are 8-bit destinations, as on the i440FX).
using System.Buffers.Binary;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Machine;

/// <summary>One device of the userspace irqchip and where it is mapped (a port range, plus its alias ranges, or MMIO).</summary>
public sealed record IrqchipDevice(HostedDevice Device, PortRange? Ports, MmioRange? Mmio, IReadOnlyList<(PortRange Range, ulong Bias)> Aliases);

/// <summary>The split/off irqchip of one machine: its hosted devices, their wiring, and the vCPU side.</summary>
public sealed class PlatformIrqchip
{
    /// <summary>The IOAPIC pin ISA IRQ0 reaches (the interrupt source override of the ACPI MADT).</summary>
    public const int Irq0IoApicPin = 2;

    /// <summary>The HPET's Tn_INT_ROUTE_CAP: IOAPIC input 2 only, as on the kernel-irqchip=on machine.</summary>
    public const uint HpetRouteCapability = 1u << 2;

    public const string PicName = "pic", PitName = "pit", RtcName = "rtc", PmName = "acpi-pm", IoApicName = "ioapic", HpetName = "hpet";

    private readonly IVm _vm;
    private volatile bool _hpetLegacy;
    private IVcpu[] _vcpus = [];
    private HostedLapic[] _lapics = [];

    /// <param name="kernel">
    /// kernel-irqchip=on only: what the accelerator's kernel provides; this irqchip then hosts exactly the timers and
    /// ACPI registers it lacks (PIT, RTC, ACPI PM block or part of it, HPET), their lines going to IVm.SetIrqLine.
    /// </param>
    public PlatformIrqchip(IrqchipMode mode, IVm vm, IClock clock, IMachineControl control, ulong ramBytes, int vcpuCount, DateTime rtcStart,
        KernelPlatform? kernel = null)
    {
        if (mode == IrqchipMode.On && kernel is null)
            throw new ArgumentException("kernel-irqchip=on: the kernel's device set is needed to know what userspace must add", nameof(kernel));
        Mode = mode;
        _vm = vm;
        Clock = clock;
        // Split and off: everything here. On: only what the kernel lacks (the interrupt controllers never).
        var missing = mode == IrqchipMode.On ? kernel!.Missing : KernelDevices.All;
        Missing = missing;
        var devices = new List<IrqchipDevice>();
        if (mode != IrqchipMode.On)
        {
            _pic = new HostedPic(new PicIntr(this));
            _ioApic = new HostedModel<IoApic>(new IoApic(mode == IrqchipMode.Split ? new KernelMsi(vm) : new ApicBus(this)));
            devices.Add(new(_pic, new PortRange(0x20, 2), null, [(new PortRange(0xa0, 2), HostedPic.SlaveOffset), (new PortRange(0x4d0, 2), HostedPic.ElcrOffset)]));
        }
        if ((missing & KernelDevices.Pit) != 0)
        {
            _pit = new HostedPit(clock, new LegacyTimerLine(this, 0));
            devices.Add(new(_pit, new PortRange(0x40, 4), null, [(new PortRange(0x61, 1), HostedPit.Port61Offset)]));
        }
        if ((missing & KernelDevices.Rtc) != 0)
        {
            var rtc = new Rtc146818(clock, new LegacyTimerLine(this, 8), rtcStart);
            rtc.SetMemorySize(Math.Min(ramBytes, 0xC000_0000UL), ramBytes > 0xC000_0000UL ? ramBytes - 0xC000_0000UL : 0);
            rtc.SetCpuCount(vcpuCount);
            rtc.SetBootOrder("cad"); // as in the kernel-irqchip=on machine: QEMU's default PC order, which SeaBIOS reads
            _rtc = new HostedModel<Rtc146818>(rtc, (m, now) => m.Advance(now), m => m.NextDeadlineNs);
            devices.Add(new(_rtc, new PortRange(0x70, 4), null, []));
        }
        if ((missing & (KernelDevices.Pm1 | KernelDevices.PmTimer)) != 0)
        {
            ushort pmBase = mode == IrqchipMode.On ? kernel!.PmBasePort : DefaultPmBasePort;
            bool pm1 = (missing & KernelDevices.Pm1) != 0, timer = (missing & KernelDevices.PmTimer) != 0;
            // PM1 event/control with or without the timer (vmm: the kernel has the timer at base + 8), or the timer alone.
            var pm = new AcpiPm(clock, Line(9), control, pmBase, hasTimer: timer);
            _pm = new HostedModel<AcpiPm>(pm, (m, now) => m.Advance(now), m => m.NextDeadlineNs);
            devices.Add(pm1
                ? new(_pm, new PortRange(pmBase, (ushort)pm.MappedLength), null, [])
                : new(_pm, null, null, [(new PortRange(pm.PmTimerBlock, AcpiPm.PmTimerLength), (ulong)AcpiPm.PmTimerOffset)]));
        }
        if (_ioApic is not null) devices.Add(new(_ioApic, null, new MmioRange(Devices.IoApic.DefaultBase, Devices.IoApic.MmioSize), []));
        if ((missing & KernelDevices.Hpet) != 0)
        {
            var hpet = new Hpet(clock, SetIoApicPin, SetPicInput, routeCapability: HpetRouteCapability, periodicTimers: Devices.Hpet.TimerCount);
            _hpet = new HostedModel<Hpet>(hpet, (m, now) => m.Advance(now), m => m.NextDeadlineNs, m => _hpetLegacy = m.LegacyReplacement);
            devices.Add(new(_hpet, null, new MmioRange(Devices.Hpet.DefaultBase, Devices.Hpet.MmioSize), []));
        }
        if (mode == IrqchipMode.Off)
        {
            _lapics = new HostedLapic[vcpuCount];
            for (int i = 0; i < vcpuCount; i++)
            {
                _lapics[i] = new HostedLapic(i, clock, new ApicBus(this), LapicEoi, id => _vm.InjectNmi(id));
                devices.Add(new IrqchipDevice(_lapics[i], null, null, []));
            }
        }
        HostedDevices = devices;
        // The Direct route under a lock of its own until a machine builder maps each device with its route.
        foreach (var d in devices) Endpoints[d.Device.Name] = new DirectEndpoint(d.Device);
    }

    /// <summary>The ACPI PM block's base in split and off (QEMU's PIIX4 at 0x600).</summary>
    public const ushort DefaultPmBasePort = 0x600;

    /// <summary>The names of the devices an irqchip hosts for <paramref name="missing"/> (what userspace adds), in mapping order.</summary>
    public static IReadOnlyList<string> HostedNames(IrqchipMode mode, KernelDevices missing, int vcpuCount)
    {
        var names = new List<string>();
        if (mode != IrqchipMode.On) names.Add(PicName);
        if ((missing & KernelDevices.Pit) != 0) names.Add(PitName);
        if ((missing & KernelDevices.Rtc) != 0) names.Add(RtcName);
        if ((missing & (KernelDevices.Pm1 | KernelDevices.PmTimer)) != 0) names.Add(PmName);
        if (mode != IrqchipMode.On) names.Add(IoApicName);
        if ((missing & KernelDevices.Hpet) != 0) names.Add(HpetName);
        if (mode == IrqchipMode.Off)
        {
            for (int i = 0; i < vcpuCount; i++) names.Add($"lapic{i}");
        }
        return names;
    }

    public IrqchipMode Mode { get; }

    public IClock Clock { get; }

    /// <summary>The devices this irqchip hosts because the accelerator's kernel does not: everything in split and off.</summary>
    public KernelDevices Missing { get; }

    private readonly HostedPic? _pic;
    private readonly HostedPit? _pit;
    private readonly HostedModel<Rtc146818>? _rtc;
    private readonly HostedModel<AcpiPm>? _pm;
    private readonly HostedModel<IoApic>? _ioApic;
    private readonly HostedModel<Hpet>? _hpet;

    public HostedPic Pic => _pic ?? throw NotHere(PicName);

    public HostedPit Pit => _pit ?? throw NotHere(PitName);

    public HostedModel<Rtc146818> Rtc => _rtc ?? throw NotHere(RtcName);

    public HostedModel<AcpiPm> Pm => _pm ?? throw NotHere(PmName);

    public HostedModel<IoApic> IoApic => _ioApic ?? throw NotHere(IoApicName);

    public HostedModel<Hpet> Hpet => _hpet ?? throw NotHere(HpetName);

    /// <summary>
    /// The host pressed the ACPI power button (QMP's system_powerdown): PWRBTN_STS in the PM block hosted here, and
    /// the SCI if the guest enabled it. False when the PM1 registers are not here (the kernel's, or soft on).
    /// </summary>
    public bool PressPowerButton()
    {
        if (_pm is not { } pm || (Missing & KernelDevices.Pm1) == 0) return false;
        pm.Locked(m => m.PressPowerButton());
        return true;
    }

    /// <summary>Whether the device named <paramref name="name"/> is hosted here.</summary>
    public bool Hosts(string name) => HostedDevices.Any(d => d.Device.Name == name);

    private InvalidOperationException NotHere(string name)
        => new($"kernel-irqchip={Mode.ToString().ToLowerInvariant()}: the {name} is the accelerator kernel's, not a platform device");

    /// <summary>The userspace local APICs (off), by vCPU; empty in split.</summary>
    public IReadOnlyList<HostedLapic> LocalApics => _lapics;

    /// <summary>Every hosted device and where the bus maps it (the LAPICs are reached through the exit handler only).</summary>
    public IReadOnlyList<IrqchipDevice> HostedDevices { get; }

    /// <summary>IOAPIC messages the APIC bus found no destination for (off).</summary>
    public long UndeliveredMessages => Interlocked.Read(ref _undelivered);

    private long _undelivered;

    /// <summary>
    /// The endpoint through which each hosted device is reached, by name: set by the machine builder before any vCPU
    /// runs, read-only afterwards.
    /// </summary>
    public Dictionary<string, BusEndpoint> Endpoints { get; } = [];

    /// <summary>The interrupt line of ISA IRQ / GSI <paramref name="gsi"/> for a platform device (UART, i8042, SCI).</summary>
    public IIrqLine Line(int gsi) => new IsaLine(this, gsi);

    /// <summary>Drives GSI <paramref name="gsi"/>: PIC input and IOAPIC pin for 0-15 (IRQ0 on pin 2, IRQ2 only the pin), IOAPIC pin for 16-23.</summary>
    public void SetIrq(int gsi, bool level)
    {
        if ((uint)gsi >= Devices.IoApic.PinCount) return;
        if (Mode == IrqchipMode.On)
        {
            _vm.SetIrqLine(gsi, level); // the kernel's PIC and IOAPIC
            return;
        }
        if (gsi < 16 && gsi != 2) Pic.SetIrq(gsi, level);
        SetIoApicPin(gsi == 0 ? Irq0IoApicPin : gsi, level);
    }

    /// <summary>
    /// An HPET output on an IOAPIC input. In on the kernel's IOAPIC is reached through its GSI, as QEMU's HPET drives
    /// its GSI lines (input 2 is GSI 2, which reaches no 8259 input: the cascade).
    /// </summary>
    private void SetIoApicPin(int pin, bool level)
    {
        if (Mode == IrqchipMode.On) _vm.SetIrqLine(pin, level);
        else IoApic.Locked(m => m.SetIrq(pin, level));
    }

    /// <summary>An HPET legacy-replacement output on an 8259 input (IRQ0, IRQ8): in on the kernel's ISA line.</summary>
    private void SetPicInput(int irq, bool level)
    {
        if (Mode == IrqchipMode.On) _vm.SetIrqLine(irq, level);
        else Pic.SetIrq(irq, level);
    }

    /// <summary>The vCPUs, once created: their interrupt requests are driven from here.</summary>
    public void AttachVcpus(IReadOnlyList<IVcpu> vcpus)
    {
        _vcpus = [.. vcpus];
        if (Mode == IrqchipMode.Split)
        {
            bool level;
            lock (_intrLock) level = _intrLevel;
            foreach (var v in _vcpus) v.SetInterruptRequest(level);
        }
        foreach (var lapic in _lapics)
        {
            lapic.Vcpu = _vcpus.FirstOrDefault(v => v.Id == lapic.Id);
        }
    }

    /// <summary>
    /// Makes every vCPU leave its run promptly (IVcpu.Kick): the timer service's delivery of a Direct-route device's
    /// deadline, which the vCPU then runs at its next batch boundary (RunDueTimers); when some vCPU does not run
    /// platform timers (IVcpu.RunsPlatformTimers: KVM, vmm) the due deadlines are run here first.
    /// </summary>
    public void KickVcpus()
    {
        // A hardware kernel's vCPUs (KVM, vmm) never run platform timers at batch boundaries, so a kick alone would
        // advance nothing: the deadline is run here, on the timer service's thread, under the Direct route's lock, as
        // QEMU's timers run on its main loop beside a kernel irqchip. The soft vCPU runs them itself (its next batch
        // boundary), so a running guest never sees them change between two of its instructions.
        var vcpus = _vcpus;
        if (vcpus.Length == 0 || vcpus.Any(v => !v.RunsPlatformTimers)) RunDueTimers(Clock.NowNanoseconds);
        foreach (var v in vcpus) v.Kick();
    }

    private readonly Lock _intrLock = new();
    private bool _intrLevel;

    /// <summary>The exit handler of vCPU <paramref name="vcpuId"/>: the platform's dispatcher plus the irqchip's vCPU side.</summary>
    public IrqchipExitHandler CreateExitHandler(int vcpuId, IExitHandler platform) => new(this, vcpuId, platform);

    /// <summary>The earliest timer deadline of the hosted devices, or null.</summary>
    public long? NextDeadlineNs
    {
        get
        {
            long min = long.MaxValue;
            foreach (var d in HostedDevices) min = Math.Min(min, d.Device.Timer.DeadlineNs);
            return min == long.MaxValue ? null : min;
        }
    }

    /// <summary>Deterministic mode: the vCPU runs every due timer itself, whatever the device's route (lock-step).</summary>
    public bool LockStep { get; init; }

    /// <summary>
    /// Advances the hosted devices whose deadline has passed, on the calling (vCPU) thread: those on the Direct route
    /// under their device lock, as a Direct access is made; those on the Mailbox route only in lock-step
    /// (deterministic) mode, otherwise the timer service delivers theirs to their actors.
    /// </summary>
    public void RunDueTimers(long nowNs)
    {
        foreach (var (device, directLock) in VcpuTimed)
        {
            if (device.Timer.DeadlineNs > nowNs) continue;
            if (directLock is null)
            {
                device.Advance(nowNs);
                continue;
            }
            lock (directLock) device.Advance(nowNs);
        }
    }

    private (HostedDevice Device, Lock? DirectLock)[]? _vcpuTimed;

    /// <summary>The devices whose timers the vCPU runs, with the Direct route's lock (null: lock-step on the Mailbox route).</summary>
    private (HostedDevice Device, Lock? DirectLock)[] VcpuTimed => _vcpuTimed ??= [..
        HostedDevices.Select(d => (d.Device, Endpoint: EndpointOf(d.Device)))
            .Where(d => LockStep || d.Endpoint is DirectEndpoint)
            .Select(d => (d.Device, d.Endpoint is DirectEndpoint direct ? direct.Lock : null))];

    /// <summary>The earliest deadline the vCPU runs itself (RunDueTimers): the Direct-route devices', or all in lock-step.</summary>
    public long? NextVcpuDeadlineNs
    {
        get
        {
            long min = long.MaxValue;
            foreach (var (device, _) in VcpuTimed) min = Math.Min(min, device.Timer.DeadlineNs);
            return min == long.MaxValue ? null : min;
        }
    }

    internal BusEndpoint EndpointOf(HostedDevice device) => Endpoints[device.Name];

    /// <summary>A level EOI from a local APIC: a write of the vector to the IOAPIC's EOI register through its route.</summary>
    internal void LapicEoi(byte vector)
    {
        Span<byte> b = stackalloc byte[4];
        b.Clear();
        b[0] = vector;
        var endpoint = EndpointOf(IoApic);
        Interlocked.Increment(ref endpoint.Accesses);
        endpoint.Write(Devices.IoApic.EoiRegister, b);
    }

    private sealed class IsaLine(PlatformIrqchip chip, int gsi) : IIrqLine
    {
        public void Set(bool level) => chip.SetIrq(gsi, level);
    }

    /// <summary>The PIT's IRQ0 or the RTC's IRQ8: cut off while the HPET's legacy replacement owns those lines.</summary>
    private sealed class LegacyTimerLine(PlatformIrqchip chip, int irq) : IIrqLine
    {
        public void Set(bool level)
        {
            if (!chip._hpetLegacy) chip.SetIrq(irq, level);
        }
    }

    /// <summary>The 8259's INTR: every vCPU's interrupt request (split) or every userspace LAPIC's LINT0 (off).</summary>
    private sealed class PicIntr(PlatformIrqchip chip) : IIrqLine
    {
        public void Set(bool level)
        {
            if (chip.Mode == IrqchipMode.Split)
            {
                lock (chip._intrLock)
                {
                    chip._intrLevel = level;
                    foreach (var v in chip._vcpus) v.SetInterruptRequest(level);
                }
            }
            else
            {
                foreach (var lapic in chip._lapics) lapic.SetLint(0, level);
            }
        }
    }

    /// <summary>Split: the IOAPIC's messages as MSIs into the accelerator's kernel local APICs.</summary>
    private sealed class KernelMsi(IVm vm) : IInterruptSink
    {
        public void Deliver(in ApicMessage message) => vm.SendMsi(message.MsiAddress, message.MsiData);
    }

    /// <summary>
    /// Off: the APIC bus between the userspace local APICs: a message goes to every APIC its destination matches, or,
    /// for lowest priority, to the matching one with the lowest processor priority (the first on a tie).
    /// </summary>
    private sealed class ApicBus(PlatformIrqchip chip) : IInterruptSink
    {
        public void Deliver(in ApicMessage message)
        {
            HostedLapic? lowest = null;
            byte lowestPpr = 0;
            bool any = false;
            foreach (var lapic in chip._lapics)
            {
                bool lowPri = message.DeliveryMode == ApicDeliveryMode.LowestPriority;
                if (!lapic.Offer(message, accept: !lowPri)) continue;
                any = true;
                if (!lowPri) continue;
                byte ppr = lapic.ProcessorPriority;
                if (lowest is null || ppr < lowestPpr)
                {
                    lowest = lapic;
                    lowestPpr = ppr;
                }
            }
            lowest?.Accept(message);
            if (!any) Interlocked.Increment(ref chip._undelivered);
        }
    }
}

/// <summary>
/// One vCPU's exit handler in kernel-irqchip=split and off: ports, MMIO and MSRs go to the platform's dispatcher,
/// except (off) this vCPU's local APIC page where its IA32_APIC_BASE puts it and the APIC MSRs, which go to its
/// userspace LAPIC through the LAPIC's route; plus the vCPU side of the userspace irqchip (INTA, EOI, CR8, timers).
/// </summary>
public sealed class IrqchipExitHandler : IExitHandler, IUserspaceIrqchip
{
    private readonly PlatformIrqchip _chip;
    private readonly int _vcpu;
    private readonly IExitHandler _platform;
    private readonly BusEndpoint? _lapic;
    private ulong _apicBase = LocalApic.DefaultBase | LocalApic.BaseEnable;

    internal IrqchipExitHandler(PlatformIrqchip chip, int vcpuId, IExitHandler platform)
    {
        _chip = chip;
        _vcpu = vcpuId;
        _platform = platform;
        if (chip.Mode == IrqchipMode.Off && vcpuId < chip.LocalApics.Count) _lapic = chip.EndpointOf(chip.LocalApics[vcpuId]);
    }

    public IExitHandler Platform => _platform;

    public void PortRead(ushort port, Span<byte> data) => _platform.PortRead(port, data);

    public void PortWrite(ushort port, ReadOnlySpan<byte> data) => _platform.PortWrite(port, data);

    private bool InApicPage(ulong gpa)
        => _lapic is not null && (_apicBase & (LocalApic.BaseEnable | LocalApic.BaseExtd)) == LocalApic.BaseEnable
           && gpa - (_apicBase & 0xf_ffff_f000UL) < LocalApic.MmioSize;

    public void MmioRead(ulong gpa, Span<byte> data)
    {
        if (!InApicPage(gpa))
        {
            _platform.MmioRead(gpa, data);
            return;
        }
        _lapic!.Accesses++;
        _lapic.Read(gpa - (_apicBase & 0xf_ffff_f000UL), data);
    }

    public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data)
    {
        if (!InApicPage(gpa))
        {
            _platform.MmioWrite(gpa, data);
            return;
        }
        _lapic!.Accesses++;
        _lapic.Write(gpa - (_apicBase & 0xf_ffff_f000UL), data);
    }

    public bool MsrRead(uint msr, out ulong value)
    {
        if (_lapic is null || HostedLapic.MsrOffset(msr) is not ulong offset) return _platform.MsrRead(msr, out value);
        Span<byte> b = stackalloc byte[9];
        _lapic.Accesses++;
        _lapic.Read(offset, b);
        value = BinaryPrimitives.ReadUInt64LittleEndian(b);
        return b[8] == 1;
    }

    public bool MsrWrite(uint msr, ulong value)
    {
        if (_lapic is null || HostedLapic.MsrOffset(msr) is not ulong offset) return _platform.MsrWrite(msr, value);
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        _lapic.Accesses++;
        _lapic.Write(offset, b);
        Span<byte> status = stackalloc byte[1];
        _lapic.Read(HostedLapic.MsrStatusOffset, status);
        return status[0] == 1;
    }

    public bool TryAcknowledge(int vcpuId, out byte vector)
    {
        Span<byte> b = stackalloc byte[2];
        if (_lapic is not null)
        {
            _lapic.Accesses++;
            _lapic.Read(HostedLapic.IntaOffset, b);
            if (b[0] == HostedLapic.IntaVector)
            {
                vector = b[1];
                return true;
            }
            if (b[0] != HostedLapic.IntaExtInt)
            {
                vector = 0;
                return false;
            }
        }
        // ExtINT: the 8259's INTA cycle, through the PIC's route.
        var pic = _chip.EndpointOf(_chip.Pic);
        Interlocked.Increment(ref pic.Accesses);
        pic.Read(HostedPic.IntaOffset, b);
        vector = b[1];
        return b[0] == 1;
    }

    public void KernelLapicEoi(int vcpuId, byte vector) => _chip.LapicEoi(vector);

    public uint ReadTaskPriority(int vcpuId)
    {
        if (_lapic is null) return 0;
        Span<byte> b = stackalloc byte[4];
        _lapic.Read(HostedLapic.TprOffset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public void WriteTaskPriority(int vcpuId, uint tpr)
    {
        if (_lapic is null) return;
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, tpr);
        _lapic.Write(HostedLapic.TprOffset, b);
    }

    public void ApicBaseChanged(int vcpuId, ulong value)
    {
        _apicBase = value;
        if (_lapic is null) return;
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        _lapic.Write(HostedLapic.ApicBaseOffset, b);
    }

    public long? NextDeadlineNs => _chip.NextVcpuDeadlineNs;

    public void RunDueTimers(long nowNs) => _chip.RunDueTimers(nowNs);
}
