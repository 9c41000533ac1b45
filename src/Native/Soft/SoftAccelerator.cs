// The "soft" accelerator: the Core accelerator contract implemented with the software CPU, for hosts
// without a hypervisor. Guest RAM is native memory (below 4 GiB in this stage, one region). In
// kernel-irqchip=on the interrupt controllers (PIC, IOAPIC, one local APIC per vCPU) and the timers run on the
// vCPU thread (SoftKernelDevices); the irqchip entry points drive their inputs (SetIrqLine: GSIs, SendMsi: the
// APIC bus); IPowerButton presses the in-kernel ACPI PM block's power button (QMP's system_powerdown). Time:
// host time, or instruction-driven in deterministic mode.
using ActorVmm.Core.Accel;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Memory;

namespace ActorVmm.Native.Soft;

public sealed class SoftAccelerator : IAccelerator
{
    /// <summary>RAM this stage can give a guest: everything below the 3 GiB PCI hole.</summary>
    public const ulong MaxRamBytes = 3UL << 30;

    public string Name => "soft";

    public AcceleratorCapabilities Capabilities { get; } = new(new HashSet<IrqchipMode> { IrqchipMode.On }, MaxVcpus: 1, KernelKeepsTime: true);

    public IVm CreateVm(VmSpec spec)
    {
        if (spec.RamBytes == 0 || spec.RamBytes > MaxRamBytes)
            throw new ArgumentOutOfRangeException(nameof(spec), $"soft accelerator: RAM must be 1 byte to {MaxRamBytes >> 20} MiB, got {spec.RamBytes}");
        if (spec.VcpuCount != 1) throw new ArgumentOutOfRangeException(nameof(spec), "soft accelerator: one vCPU in this stage");
        if (!Capabilities.IrqchipModes.Contains(spec.Irqchip))
            throw new ArgumentOutOfRangeException(nameof(spec), $"soft accelerator: kernel-irqchip={spec.Irqchip.ToString().ToLowerInvariant()} is not supported yet");
        return new SoftVm(spec);
    }
}

public sealed unsafe class SoftVm : IVm, IPowerButton
{
    private readonly NativeRam _ram;
    private readonly List<SoftVcpu> _vcpus = [];
    private readonly Lock _lock = new();

    internal SoftVm(VmSpec spec)
    {
        Spec = spec;
        _ram = new NativeRam(spec.RamBytes);
        Memory = new GuestMemory([new GuestRegion("ram", 0, spec.RamBytes, _ram.Pointer)]);
        Clock = new SoftClock(spec.Deterministic);
        // Deterministic runs get a fixed wall-clock start so the RTC reads the same every run.
        var rtcStart = spec.Deterministic ? new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc) : DateTime.UtcNow;
        Kernel = new SoftKernelDevices(Clock, spec.RamBytes, spec.VcpuCount, rtcStart, WakeAll);
    }

    public VmSpec Spec { get; }

    public GuestMemory Memory { get; }

    /// <summary>The in-kernel PIC and timers (kernel-irqchip=on).</summary>
    public SoftKernelDevices Kernel { get; }

    internal SoftClock Clock { get; }

    public IVcpu CreateVcpu(int id)
    {
        lock (_lock)
        {
            if (_vcpus.Any(v => v.Id == id)) throw new InvalidOperationException($"vCPU {id} already exists");
            var vcpu = new SoftVcpu(this, id);
            vcpu.Apic = Kernel.AddLocalApic(id, new SoftVcpu.ApicSignals(vcpu));
            _vcpus.Add(vcpu);
            return vcpu;
        }
    }

    public void SetIrqLine(int gsi, bool level)
    {
        if ((uint)gsi >= 24) throw new ArgumentOutOfRangeException(nameof(gsi), $"GSI {gsi} does not exist (0-23)");
        Kernel.SetIrq(gsi, level);
    }

    /// <summary>An MSI: decoded and delivered through the in-kernel APIC bus, as a kernel irqchip does.</summary>
    public void SendMsi(ulong address, uint data) => Kernel.SendMsi(address, data);

    /// <summary>The in-kernel ACPI PM block's power button (QMP's system_powerdown).</summary>
    public void PressPowerButton() => Kernel.PressPowerButton();

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
        _ram.Dispose();
    }
}

public sealed class SoftVcpu : IVcpu
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
    private long _unsupportedApicSignals;
    private CpuRegisters _pendingRegs;
    private SystemRegisters _pendingSregs = SystemRegisters.PowerOn();

    internal SoftVcpu(SoftVm vm, int id)
    {
        _vm = vm;
        Id = id;
        _pendingRegs.Rflags = 2;
    }

    public int Id { get; }

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
    public LocalApic Apic { get; internal set; } = null!;

    /// <summary>INIT, start-up IPI and SMI signals the soft CPU cannot act on yet (one vCPU, no SMM); counted.</summary>
    public long UnsupportedApicSignals => Interlocked.Read(ref _unsupportedApicSignals);

    public ulong InstructionsRetired => _cpu?.InstructionsRetired ?? 0;

    public VcpuExit Run(IExitHandler handler)
    {
        var cpu = EnsureCpu(handler);
        var kernel = _vm.Kernel;
        var clock = _vm.Clock;
        if (Interlocked.Exchange(ref _kick, 0) != 0) return VcpuExit.Kicked;
        long budget = SliceInstructions;
        long nextDeadline = kernel.NextDeadlineNs ?? long.MaxValue;
        while (budget > 0)
        {
            if (clock.Deterministic) clock.SetInstructions(cpu.InstructionsRetired);
            kernel.SyncApicBase(Apic, cpu.ApicBase);
            if (clock.NowNanoseconds >= nextDeadline)
            {
                kernel.Advance();
                nextDeadline = kernel.NextDeadlineNs ?? long.MaxValue;
            }
            DeliverQueuedEvents(cpu, kernel);
            ulong before = cpu.InstructionsRetired;
            var outcome = cpu.Run(Math.Min(budget, Batch), ref _kick);
            budget -= (long)(cpu.InstructionsRetired - before) + 1;
            if (kernel.TakePendingStop() is { } stop) return stop;
            nextDeadline = kernel.NextDeadlineNs ?? long.MaxValue; // the guest may have programmed a timer
            switch (outcome)
            {
                case StepOutcome.Shutdown:
                    return new VcpuExit(VcpuExitKind.Shutdown, $"triple fault ({cpu.LastException?.Vector switch { byte v => $"last exception vector {v}", null => "no exception recorded" }})");
                case StepOutcome.Halted:
                    if (!cpu.InterruptWindowOpen && !HasQueuedEvents()) return new VcpuExit(VcpuExitKind.Halted, "HLT with interrupts disabled");
                    if (!WaitForEvent(cpu, kernel, nextDeadline)) return VcpuExit.Kicked;
                    break;
            }
            if (Interlocked.Exchange(ref _kick, 0) != 0) return VcpuExit.Kicked;
        }
        return VcpuExit.SliceEnd;
    }

    private SoftCpu EnsureCpu(IExitHandler handler)
    {
        if (_cpu is null || !ReferenceEquals(handler, _handler))
        {
            var regs = _cpu?.GetRegisters() ?? _pendingRegs;
            var sregs = _cpu?.GetSystemRegisters() ?? _pendingSregs;
            var filter = new SoftKernelDevices.ExitFilter(_vm.Kernel, handler, Apic, _vm.Clock);
            _cpu = new SoftCpu(_vm.Memory, filter);
            filter.Cpu = _cpu;
            _handler = handler;
            _cpu.SetSystemRegisters(sregs);
            _cpu.SetRegisters(regs);
            _cpu.TaskPriority = new ApicTaskPriority(_vm.Kernel, Apic);
            _cpu.ApicId = (uint)Id;
            var clock = _vm.Clock;
            var cpu = _cpu;
            // The TSC runs at 1 GHz on the VM clock; in deterministic mode it counts every retired instruction.
            _cpu.TimeStampCounter = clock.Deterministic
                ? () => cpu.InstructionsRetired + (ulong)clock.Skipped
                : () => (ulong)clock.NowNanoseconds;
        }
        return _cpu;
    }

    private bool HasQueuedEvents()
    {
        lock (_eventLock) return _nmi || _interrupts.Count > 0;
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
        if (!cpu.HasPendingExternalInterrupt && cpu.InterruptWindowOpen && kernel.TryAcknowledge(Apic, out byte vector))
            cpu.RaiseExternalInterrupt(vector);
    }

    /// <summary>Blocks a halted vCPU until an interrupt, NMI, timer deadline or kick. False when kicked.</summary>
    private bool WaitForEvent(SoftCpu cpu, SoftKernelDevices kernel, long nextDeadline)
    {
        var clock = _vm.Clock;
        while (true)
        {
            if (Volatile.Read(ref _kick) != 0) return false;
            if (HasQueuedEvents() || kernel.InterruptPending(Apic)) return true;
            nextDeadline = kernel.NextDeadlineNs ?? long.MaxValue;
            long now = clock.NowNanoseconds;
            if (now >= nextDeadline) return true;
            if (clock.Deterministic)
            {
                if (nextDeadline == long.MaxValue)
                {
                    _wake.Wait(TimeSpan.FromMilliseconds(50));
                    continue;
                }
                clock.SkipTo(nextDeadline); // nothing runs while halted: time jumps to the next timer
                return true;
            }
            long waitNs = Math.Min(nextDeadline - now, 50_000_000);
            _wake.Wait(TimeSpan.FromTicks(Math.Max(1, waitNs / 100)));
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
    /// What the local APIC tells this vCPU. Called under the kernel devices' lock: it only wakes the vCPU or
    /// queues an NMI (the vCPU's event lock is a leaf below the kernel lock).
    /// </summary>
    internal sealed class ApicSignals(SoftVcpu vcpu) : IApicCpu
    {
        public void SignalInterrupt() => vcpu.Wake();

        public void SignalNmi() => vcpu.QueueNmi();

        public void SignalSmi() => Interlocked.Increment(ref vcpu._unsupportedApicSignals);

        public void SignalInit() => Interlocked.Increment(ref vcpu._unsupportedApicSignals);

        public void SignalStartup(byte vector) => Interlocked.Increment(ref vcpu._unsupportedApicSignals);
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
