// The "soft" accelerator: the Core accelerator contract implemented with the software CPU, for hosts
// without a hypervisor. Guest RAM is native memory (below 4 GiB in this stage, one region). In
// kernel-irqchip=on the interrupt controllers (PIC, IOAPIC, one local APIC per vCPU) and the timers run on the
// vCPU thread (SoftKernelDevices); the irqchip entry points drive their inputs (SetIrqLine: GSIs, SendMsi: the
// APIC bus). In split only the local APICs are here (SendMsi is the entry point; SetIrqLine is refused, as KVM
// refuses KVM_IRQ_LINE with a split irqchip); in off nothing is, and the vCPU takes its interrupts from the
// platform (SoftVcpu.Irqchip.cs). IPowerButton presses the in-kernel ACPI PM block's power button (QMP's
// system_powerdown; in split and off the PM block is a device actor instead). Time: host time, or instruction-driven in deterministic mode.
// SoftAccelerator(KernelPlatform) cuts the kernel side down to a real kernel's device set (KernelPlatform.Vmm, .Kvm)
// for the backends' stand-ins: the devices it lacks are the platform's, reached by ordinary exits, whose timers the
// vCPU runs at its batch boundaries as in split (the exit handler is then an IUserspaceIrqchip in on too).
// SMP (up to SmpCoherence.MaxMembers vCPUs, each run by its own host thread): vCPU 0 is the bootstrap processor;
// the others start in the wait-for-SIPI state and run only once an INIT and a start-up IPI reach them (Intel SDM
// vol. 3 §9.4: INIT resets the CPU, SIPI starts it in real mode at vector << 12; an INIT to the BSP restarts it at
// the reset vector). Guest RAM is shared; SmpCoherence keeps locked instructions atomic and decoded code coherent
// across vCPUs; each vCPU has its own TLB. A vCPU that halts with interrupts disabled (or waits for SIPI) parks
// until an NMI, INIT or SIPI; only when every vCPU is parked does Run report Halted (with one vCPU: at once).
using ActorVmm.Core.Accel;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Memory;

namespace ActorVmm.Native.Soft;

public sealed class SoftAccelerator : IAccelerator
{
    /// <summary>RAM this stage can give a guest: everything below the 3 GiB PCI hole.</summary>
    public const ulong MaxRamBytes = 3UL << 30;

    public string Name => "soft";

    /// <summary>vCPUs one soft VM can have (one bit each in SmpCoherence's page masks).</summary>
    public const int MaxVcpus = SmpCoherence.MaxMembers;

    /// <param name="kernel">
    /// What the soft kernel side provides in kernel-irqchip=on: everything by default (KernelPlatform.Soft); a subset
    /// makes it behave as a real kernel does (KernelPlatform.Vmm, KernelPlatform.Kvm, for the backends' stand-ins), the
    /// devices it lacks being ordinary exits to the platform.
    /// </param>
    public SoftAccelerator(KernelPlatform? kernel = null)
    {
        Capabilities = new(new HashSet<IrqchipMode> { IrqchipMode.On, IrqchipMode.Split, IrqchipMode.Off }, MaxVcpus, kernel ?? KernelPlatform.Soft);
    }

    public AcceleratorCapabilities Capabilities { get; }

    public IVm CreateVm(VmSpec spec)
    {
        if (spec.RamBytes == 0 || spec.RamBytes > MaxRamBytes)
            throw new ArgumentOutOfRangeException(nameof(spec), $"soft accelerator: RAM must be 1 byte to {MaxRamBytes >> 20} MiB, got {spec.RamBytes}");
        if (spec.VcpuCount < 1 || spec.VcpuCount > MaxVcpus)
            throw new ArgumentOutOfRangeException(nameof(spec), $"soft accelerator: {spec.VcpuCount} vCPUs: it supports 1 to {MaxVcpus}");
        if (!Capabilities.IrqchipModes.Contains(spec.Irqchip))
            throw new ArgumentOutOfRangeException(nameof(spec), $"soft accelerator: kernel-irqchip={spec.Irqchip.ToString().ToLowerInvariant()} is not supported yet");
        return new SoftVm(spec, Capabilities.KernelPlatform);
    }
}

public sealed unsafe class SoftVm : IVm, IPowerButton
{
    private readonly NativeRam? _ram;
    private readonly List<SoftVcpu> _vcpus = [];
    private readonly Lock _lock = new();

    internal SoftVm(VmSpec spec, KernelPlatform? kernel = null) : this(spec, kernel, null)
    {
    }

    /// <summary>
    /// A VM whose RAM is <paramref name="externalRam"/> (RamBytes long, owned and freed by the caller), or its own when
    /// null. For test stand-ins of hypervisors whose userspace supplies guest memory (KVM_SET_USER_MEMORY_REGION).
    /// </summary>
    internal SoftVm(VmSpec spec, KernelPlatform? kernel, byte* externalRam)
    {
        Spec = spec;
        if (externalRam == null) _ram = new NativeRam(spec.RamBytes);
        Memory = new GuestMemory([new GuestRegion("ram", 0, spec.RamBytes, externalRam != null ? externalRam : _ram!.Pointer)]);
        Clock = new SoftClock(spec.Deterministic);
        Smp = spec.VcpuCount > 1 ? new SmpCoherence(Memory, spec.VcpuCount) : null;
        // Deterministic runs get a fixed wall-clock start so the RTC reads the same every run.
        var rtcStart = spec.Deterministic ? new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc) : DateTime.UtcNow;
        Kernel = new SoftKernelDevices(spec.Irqchip, Clock, spec.RamBytes, spec.VcpuCount, rtcStart, WakeAll, kernel ?? KernelPlatform.Soft);
    }

    IClock? IVm.Clock => Clock;

    public VmSpec Spec { get; }

    public GuestMemory Memory { get; }

    /// <summary>The in-kernel PIC and timers (kernel-irqchip=on).</summary>
    public SoftKernelDevices Kernel { get; }

    internal SoftClock Clock { get; }

    /// <summary>What the vCPUs share beyond RAM (atomics, cross-modifying code); null with one vCPU.</summary>
    internal SmpCoherence? Smp { get; }

    /// <summary>vCPUs parked: halted with interrupts disabled, or waiting for SIPI (SoftVcpu.Park).</summary>
    internal int Parked;

    /// <summary>vCPUs inside Run and not waiting: deterministic time may skip ahead only when none is.</summary>
    internal int Busy;

    public IVcpu CreateVcpu(int id)
    {
        lock (_lock)
        {
            if ((uint)id >= (uint)Spec.VcpuCount) throw new ArgumentOutOfRangeException(nameof(id), $"vCPU {id} does not exist: this VM has {Spec.VcpuCount} (0-{Spec.VcpuCount - 1})");
            if (_vcpus.Any(v => v.Id == id)) throw new InvalidOperationException($"vCPU {id} already exists");
            var vcpu = new SoftVcpu(this, id);
            if (Spec.Irqchip != IrqchipMode.Off) vcpu.Apic = Kernel.AddLocalApic(id, new SoftVcpu.ApicSignals(vcpu));
            _vcpus.Add(vcpu);
            return vcpu;
        }
    }

    public void SetIrqLine(int gsi, bool level)
    {
        if ((uint)gsi >= 24) throw new ArgumentOutOfRangeException(nameof(gsi), $"GSI {gsi} does not exist (0-23)");
        if (Spec.Irqchip != IrqchipMode.On)
            throw new InvalidOperationException($"kernel-irqchip={Spec.Irqchip.ToString().ToLowerInvariant()}: no in-kernel PIC or IOAPIC to drive GSI {gsi}");
        Kernel.SetIrq(gsi, level);
    }

    /// <summary>An MSI: decoded and delivered through the in-kernel APIC bus, as a kernel irqchip does.</summary>
    public void SendMsi(ulong address, uint data)
    {
        if (Spec.Irqchip == IrqchipMode.Off) throw new InvalidOperationException("kernel-irqchip=off: no in-kernel local APIC to take an MSI");
        Kernel.SendMsi(address, data);
    }

    /// <summary>The in-kernel ACPI PM block's power button (QMP's system_powerdown).</summary>
    public bool PressPowerButton() => Kernel.PressPowerButton();

    public void InjectNmi(int vcpuId)
    {
        lock (_lock)
        {
            foreach (var v in _vcpus.Where(v => v.Id == vcpuId)) v.QueueNmi();
        }
    }

    private void WakeAll()
    {
        SoftVcpu[] vcpus;
        lock (_lock) vcpus = [.. _vcpus];
        foreach (var v in vcpus) v.Wake();
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var v in _vcpus) v.Dispose();
            _vcpus.Clear();
        }
        _ram?.Dispose();
    }
}

public sealed partial class SoftVcpu : IVcpu
{
    /// <summary>Instructions per Run slice (a few milliseconds of guest time), after which Run returns SliceEnd.</summary>
    public const long SliceInstructions = 2_000_000;

    /// <summary>Instructions between checks for timer deadlines and interrupt requests.</summary>
    private const int Batch = 2048;

    private readonly SoftVm _vm;
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private readonly Lock _eventLock = new();
    private readonly Queue<byte> _interrupts = new();
    private SoftCpu? _cpu;
    private IExitHandler? _handler;
    private int _kick;
    private bool _nmi;
    private bool _pendingInit;
    private int _pendingSipi = -1;
    private bool _waitForSipi;
    private long _unsupportedApicSignals;
    private long _ignoredStartups;
    private CpuRegisters _pendingRegs;
    private SystemRegisters _pendingSregs = SystemRegisters.PowerOn();

    internal SoftVcpu(SoftVm vm, int id)
    {
        _vm = vm;
        Id = id;
        _pendingRegs.Rflags = 2;
        _waitForSipi = id != 0; // application processors wait for INIT and SIPI (SDM vol. 3 §9.4.1)
    }

    public int Id { get; }

    /// <summary>The bootstrap processor (vCPU 0): an INIT restarts it at the reset vector instead of waiting for SIPI.</summary>
    public bool IsBootstrapProcessor => Id == 0;

    /// <summary>True while the vCPU waits for a start-up IPI (application processors until started, and after an INIT).</summary>
    public bool WaitingForStartup
    {
        get
        {
            lock (_eventLock) return _waitForSipi;
        }
    }

    /// <summary>CR8 reads and writes go to the LAPIC's TPR, under the kernel devices' lock.</summary>
    private sealed class ApicTaskPriority(SoftKernelDevices kernel, LocalApic apic) : ITaskPriority
    {
        public uint Tpr
        {
            get => kernel.ReadTpr(apic);
            set => kernel.WriteTpr(apic, value);
        }
    }

    /// <summary>This vCPU's local APIC (in the kernel devices).</summary>
    /// <remarks>Null in kernel-irqchip=off (the platform has the local APIC).</remarks>
    public LocalApic? Apic { get; internal set; }

    /// <summary>SMI signals the soft CPU cannot act on (no SMM); counted.</summary>
    public long UnsupportedApicSignals => Interlocked.Read(ref _unsupportedApicSignals);

    /// <summary>Start-up IPIs that found the vCPU not waiting for one (ignored, as the SDM says).</summary>
    public long IgnoredStartups => Interlocked.Read(ref _ignoredStartups);

    public ulong InstructionsRetired => _cpu?.InstructionsRetired ?? 0;

    /// <summary>The soft vCPU runs a userspace irqchip's due timers at its batch boundaries (SoftVcpu.Irqchip.cs).</summary>
    public bool RunsPlatformTimers => true;

    /// <summary>The soft CPU (created on the first Run), for tests and statistics.</summary>
    internal SoftCpu? Cpu => _cpu;

    public VcpuExit Run(IExitHandler handler)
    {
        var cpu = EnsureCpu(handler);
        var kernel = _vm.Kernel;
        var clock = _vm.Clock;
        if (Interlocked.Exchange(ref _kick, 0) != 0) return VcpuExit.Kicked;
        var smp = cpu.Smp;
        bool deterministicSingle = clock.Deterministic && smp is null;
        long budget = SliceInstructions;
        long nextDeadline = NextDeadline(kernel);
        Interlocked.Increment(ref _vm.Busy);
        try
        {
            while (budget > 0)
            {
                if (deterministicSingle) clock.SetInstructions(cpu.InstructionsRetired);
                if (Apic is not null) kernel.SyncApicBase(Apic, cpu.ApicBase);
                else _filter!.SyncUserspaceApicBase(cpu.ApicBase);
                if (clock.NowNanoseconds >= nextDeadline)
                {
                    kernel.Advance();
                    RunUserspaceTimers(clock);
                    nextDeadline = NextDeadline(kernel);
                }
                TakeStartupSignals(cpu);
                if (Volatile.Read(ref _waitForSipi))
                {
                    if (Park(cpu, kernel) is { } parkedExit) return parkedExit;
                    nextDeadline = NextDeadline(kernel);
                    continue;
                }
                DeliverQueuedEvents(cpu, kernel);
                ulong before = cpu.InstructionsRetired;
                StepOutcome outcome;
                if (smp is null)
                {
                    outcome = cpu.Run(Math.Min(budget, Batch), ref _kick);
                }
                else
                {
                    cpu.SmpBoundary();
                    smp.EnterGuest();
                    try
                    {
                        outcome = cpu.Run(Math.Min(budget, Batch), ref _kick);
                    }
                    finally
                    {
                        smp.LeaveGuest();
                    }
                }
                budget -= (long)(cpu.InstructionsRetired - before) + 1;
                if (kernel.TakePendingStop() is { } stop) return stop;
                nextDeadline = NextDeadline(kernel); // the guest may have programmed a timer
                switch (outcome)
                {
                    case StepOutcome.Shutdown:
                        return new VcpuExit(VcpuExitKind.Shutdown, $"triple fault ({cpu.LastException?.Vector switch { byte v => $"last exception vector {v}", null => "no exception recorded" }})");
                    case StepOutcome.Halted:
                        if (!cpu.InterruptWindowOpen && !HasQueuedEvents())
                        {
                            // HLT with interrupts disabled: only an NMI, INIT or SIPI can wake it.
                            if (smp is null) return new VcpuExit(VcpuExitKind.Halted, "HLT with interrupts disabled");
                            if (Park(cpu, kernel) is { } parkedExit) return parkedExit;
                            break;
                        }
                        if (!WaitForEvent(cpu, kernel, nextDeadline)) return VcpuExit.Kicked;
                        break;
                }
                if (Interlocked.Exchange(ref _kick, 0) != 0) return VcpuExit.Kicked;
            }
            return VcpuExit.SliceEnd;
        }
        finally
        {
            Interlocked.Decrement(ref _vm.Busy);
        }
    }

    private SoftCpu EnsureCpu(IExitHandler handler)
    {
        if (_cpu is null || !ReferenceEquals(handler, _handler))
        {
            var regs = _cpu?.GetRegisters() ?? _pendingRegs;
            var sregs = _cpu?.GetSystemRegisters() ?? _pendingSregs;
            var filter = new SoftKernelDevices.ExitFilter(_vm.Kernel, handler, Apic, _vm.Clock, Id);
            _cpu = new SoftCpu(_vm.Memory, filter);
            filter.Cpu = _cpu;
            _filter = filter;
            _handler = handler;
            _userIrqchip = handler as IUserspaceIrqchip;
            _cpu.SetSystemRegisters(sregs);
            _cpu.SetRegisters(regs);
            _cpu.TaskPriority = Apic is not null ? new ApicTaskPriority(_vm.Kernel, Apic) : UserspaceTaskPriority();
            _cpu.ApicId = (uint)Id;
            var clock = _vm.Clock;
            var cpu = _cpu;
            if (_vm.Smp is { } smp)
            {
                cpu.JoinSmp(smp.Join(Id));
                if (clock.Deterministic) clock.AttachCpu(Id, _vm.Spec.VcpuCount, cpu);
            }
            // The TSC runs at 1 GHz on the VM clock; in deterministic mode it counts every retired instruction (with
            // several vCPUs: every vCPU's, so all of them read one TSC that never goes back).
            _cpu.TimeStampCounter = !clock.Deterministic ? () => (ulong)clock.NowNanoseconds
                : _vm.Smp is null ? () => cpu.InstructionsRetired + (ulong)clock.Skipped
                : () => (ulong)clock.NowNanoseconds;
        }
        return _cpu;
    }

    private bool HasQueuedEvents()
    {
        lock (_eventLock) return _nmi || _interrupts.Count > 0 || _pendingInit;
    }

    /// <summary>
    /// INIT and start-up IPIs, at an instruction boundary on the vCPU's own thread: INIT resets the CPU (the local APIC
    /// reset itself already) and puts an application processor in wait-for-SIPI (the BSP runs on at the reset vector);
    /// a start-up IPI starts a waiting CPU at vector &lt;&lt; 12.
    /// </summary>
    private void TakeStartupSignals(SoftCpu cpu)
    {
        if (!Volatile.Read(ref _pendingInit) && Volatile.Read(ref _pendingSipi) < 0) return; // the common case: no lock
        bool init;
        int sipi = -1;
        lock (_eventLock)
        {
            if (!_pendingInit && _pendingSipi < 0) return;
            init = _pendingInit;
            _pendingInit = false;
            if (init)
            {
                _waitForSipi = !IsBootstrapProcessor;
                _nmi = false;
                _interrupts.Clear();
            }
            if (_waitForSipi && _pendingSipi >= 0)
            {
                sipi = _pendingSipi;
                _waitForSipi = false;
            }
            _pendingSipi = -1;
        }
        if (init) cpu.InitReset();
        if (sipi >= 0) cpu.StartUp((byte)sipi);
    }

    private void DeliverQueuedEvents(SoftCpu cpu, SoftKernelDevices kernel)
    {
        lock (_eventLock)
        {
            if (_nmi)
            {
                cpu.RaiseNmi();
                _nmi = false;
            }
            if (_interrupts.Count > 0 && !cpu.HasPendingExternalInterrupt && cpu.InterruptWindowOpen)
                cpu.RaiseExternalInterrupt(_interrupts.Dequeue());
        }
        // The local APIC (and through it the PIC) is asked only when the CPU can take the interrupt now.
        if (cpu.HasPendingExternalInterrupt || !cpu.InterruptWindowOpen) return;
        if (Apic is null)
        {
            AcknowledgeUserspace(cpu);
        }
        else if (kernel.TryAcknowledge(Apic, out byte vector, out bool extInt))
        {
            cpu.RaiseExternalInterrupt(vector);
        }
        else if (extInt && _userIrqchip is { } chip && chip.TryAcknowledge(Id, out vector))
        {
            cpu.RaiseExternalInterrupt(vector); // split: the ExtINT's vector from the platform's 8259 (INTA)
        }
    }

    /// <summary>
    /// SMP: the vCPU waits for something only an NMI, INIT or start-up IPI brings (HLT with interrupts disabled, or
    /// wait-for-SIPI), while timers go on. Returns null when such a signal came (run on), Kicked when kicked, and
    /// Halted when every vCPU of the VM is parked: nothing is left that could wake any of them.
    /// </summary>
    private VcpuExit? Park(SoftCpu cpu, SoftKernelDevices kernel)
    {
        Interlocked.Decrement(ref _vm.Busy);
        int parked = Interlocked.Increment(ref _vm.Parked);
        try
        {
            if (parked == _vm.Spec.VcpuCount)
                return new VcpuExit(VcpuExitKind.Halted, "every vCPU halted with interrupts disabled or waiting for a start-up IPI");
            var clock = _vm.Clock;
            while (true)
            {
                if (Volatile.Read(ref _kick) != 0) return VcpuExit.Kicked;
                lock (_eventLock)
                {
                    if (_nmi || _pendingInit || (_waitForSipi && _pendingSipi >= 0)) return null;
                    if (!_waitForSipi && cpu.IsHalted && cpu.InterruptWindowOpen) return null; // no longer parked (INIT to the BSP)
                }
                long next = NextDeadline(kernel);
                long now = clock.NowNanoseconds;
                if (now >= next)
                {
                    kernel.Advance(); // other vCPUs' timers may be due while this one sleeps
                    RunUserspaceTimers(clock);
                    continue;
                }
                long waitNs = clock.Deterministic ? 1_000_000 : Math.Min(next - now, 50_000_000);
                _wake.Wait(TimeSpan.FromTicks(Math.Max(1, waitNs / 100)));
            }
        }
        finally
        {
            Interlocked.Decrement(ref _vm.Parked);
            Interlocked.Increment(ref _vm.Busy);
        }
    }

    /// <summary>Blocks a halted vCPU until an interrupt, NMI, timer deadline or kick. False when kicked.</summary>
    private bool WaitForEvent(SoftCpu cpu, SoftKernelDevices kernel, long nextDeadline)
    {
        var clock = _vm.Clock;
        Interlocked.Decrement(ref _vm.Busy);
        try
        {
            while (true)
            {
                if (Volatile.Read(ref _kick) != 0) return false;
                if (HasQueuedEvents() || (Apic is not null ? kernel.InterruptPending(Apic) : Volatile.Read(ref _interruptRequest))) return true;
                nextDeadline = NextDeadline(kernel);
                long now = clock.NowNanoseconds;
                if (now >= nextDeadline) return true;
                if (clock.Deterministic)
                {
                    // Nothing runs while halted: time jumps to the next timer. With several vCPUs only once none of
                    // them is running (their instructions are the clock); until then this one waits for them.
                    if (nextDeadline == long.MaxValue || Volatile.Read(ref _vm.Busy) != 0)
                    {
                        _wake.Wait(TimeSpan.FromMilliseconds(nextDeadline == long.MaxValue ? 50 : 1));
                        continue;
                    }
                    clock.SkipTo(nextDeadline);
                    return true;
                }
                long waitNs = Math.Min(nextDeadline - now, 50_000_000);
                _wake.Wait(TimeSpan.FromTicks(Math.Max(1, waitNs / 100)));
            }
        }
        finally
        {
            Interlocked.Increment(ref _vm.Busy);
        }
    }

    internal void Wake() => Signal();

    /// <summary>
    /// Wakes a halted vCPU. Other threads (the VM actor tearing the machine down, device timers) may signal a vCPU
    /// whose VM was just disposed: that is a no-op, not an error.
    /// </summary>
    private void Signal()
    {
        if (Volatile.Read(ref _disposed) != 0) return;
        try
        {
            _wake.Release();
        }
        catch (ObjectDisposedException)
        {
            // disposed between the check and the release: nobody is left to wake
        }
    }

    private int _disposed;

    public void Kick()
    {
        Interlocked.Exchange(ref _kick, 1);
        Signal();
    }

    public void QueueInterrupt(byte vector)
    {
        lock (_eventLock)
        {
            if (_interrupts.Count < 256) _interrupts.Enqueue(vector);
        }
        Signal();
    }

    internal void QueueNmi()
    {
        lock (_eventLock) _nmi = true;
        Signal();
    }

    /// <summary>
    /// Leaves the wait-for-SIPI state without a start-up IPI, to run from the registers set (as KVM_SET_MP_STATE
    /// RUNNABLE does): for hosts that start every vCPU themselves, and tests.
    /// </summary>
    public void MakeRunnable()
    {
        lock (_eventLock) _waitForSipi = false;
    }

    /// <summary>Kernel-irqchip=off: INIT from the platform's local APIC (IVcpu contract).</summary>
    public void SignalInit() => QueueInit();

    /// <summary>Kernel-irqchip=off: a start-up IPI from the platform's local APIC (IVcpu contract).</summary>
    public void SignalStartup(byte vector) => QueueStartup(vector);

    /// <summary>INIT from the local APIC (an INIT IPI or an INIT-mode LVT): taken at the vCPU's next instruction boundary.</summary>
    internal void QueueInit()
    {
        lock (_eventLock)
        {
            _pendingInit = true;
            _pendingSipi = -1;
        }
        Signal();
    }

    /// <summary>A start-up IPI: kept for a vCPU that waits for one (or will, after a pending INIT); ignored otherwise.</summary>
    internal void QueueStartup(byte vector)
    {
        lock (_eventLock)
        {
            if (_pendingSipi < 0 && (_waitForSipi || _pendingInit)) _pendingSipi = vector;
            else Interlocked.Increment(ref _ignoredStartups);
        }
        Signal();
    }

    /// <summary>
    /// What the local APIC tells this vCPU. Called under the kernel devices' lock, possibly on another vCPU's thread
    /// (IPIs): it only records the signal and wakes the vCPU (the vCPU's event lock is a leaf below the kernel lock).
    /// </summary>
    internal sealed class ApicSignals(SoftVcpu vcpu) : IApicCpu
    {
        public void SignalInterrupt() => vcpu.Wake();

        public void SignalNmi() => vcpu.QueueNmi();

        public void SignalSmi() => Interlocked.Increment(ref vcpu._unsupportedApicSignals);

        public void SignalInit() => vcpu.QueueInit();

        public void SignalStartup(byte vector) => vcpu.QueueStartup(vector);
    }

    public CpuRegisters GetRegisters() => _cpu?.GetRegisters() ?? _pendingRegs;

    public void SetRegisters(in CpuRegisters registers)
    {
        if (_cpu is not null) _cpu.SetRegisters(registers);
        else _pendingRegs = registers;
    }

    public SystemRegisters GetSystemRegisters() => _cpu?.GetSystemRegisters() ?? _pendingSregs;

    public void SetSystemRegisters(in SystemRegisters registers)
    {
        if (_cpu is not null) _cpu.SetSystemRegisters(registers);
        else _pendingSregs = registers;
    }

    public void Dispose()
    {
        Volatile.Write(ref _disposed, 1);
        _wake.Dispose();
    }
}
