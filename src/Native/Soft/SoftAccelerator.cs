// The "soft" accelerator: the Core accelerator contract implemented with the software CPU, for hosts
// without a hypervisor. Guest RAM is native memory (below 4 GiB in this stage, one region). The kernel
// irqchip entry points record line state; the in-vCPU interrupt controllers that consume them come with
// the platform devices (kernel-irqchip=on). Time: host time, or instruction-driven in deterministic mode.
using ActorVmm.Core.Accel;
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

public sealed unsafe class SoftVm : IVm
{
    private readonly NativeRam _ram;
    private readonly List<SoftVcpu> _vcpus = [];
    private readonly bool[] _lines = new bool[256];
    private readonly Lock _lock = new();

    internal SoftVm(VmSpec spec)
    {
        Spec = spec;
        _ram = new NativeRam(spec.RamBytes);
        Memory = new GuestMemory([new GuestRegion("ram", 0, spec.RamBytes, _ram.Pointer)]);
    }

    public VmSpec Spec { get; }

    public GuestMemory Memory { get; }

    public IVcpu CreateVcpu(int id)
    {
        lock (_lock)
        {
            if (_vcpus.Any(v => v.Id == id)) throw new InvalidOperationException($"vCPU {id} already exists");
            var vcpu = new SoftVcpu(this, id);
            _vcpus.Add(vcpu);
            return vcpu;
        }
    }

    /// <summary>The last level each GSI was driven to (the in-vCPU irqchip reads these).</summary>
    public bool GetIrqLine(int gsi)
    {
        lock (_lock) return (uint)gsi < _lines.Length && _lines[gsi];
    }

    public void SetIrqLine(int gsi, bool level)
    {
        if ((uint)gsi >= _lines.Length) throw new ArgumentOutOfRangeException(nameof(gsi));
        lock (_lock) _lines[gsi] = level;
    }

    public void SendMsi(ulong address, uint data)
    {
        // Fixed-delivery MSI to the vCPU named in the destination field (physical mode).
        int dest = (int)((address >> 12) & 0xff);
        byte vector = (byte)data;
        lock (_lock)
        {
            foreach (var v in _vcpus.Where(v => v.Id == dest)) v.QueueInterrupt(vector);
        }
    }

    public void InjectNmi(int vcpuId)
    {
        lock (_lock)
        {
            foreach (var v in _vcpus.Where(v => v.Id == vcpuId)) v.QueueNmi();
        }
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

    private readonly SoftVm _vm;
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private readonly Lock _eventLock = new();
    private readonly Queue<byte> _interrupts = new();
    private SoftCpu? _cpu;
    private IExitHandler? _handler;
    private int _kick;
    private bool _nmi;
    private CpuRegisters _pendingRegs;
    private SystemRegisters _pendingSregs = SystemRegisters.PowerOn();
    private readonly long _startTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();

    internal SoftVcpu(SoftVm vm, int id)
    {
        _vm = vm;
        Id = id;
        _pendingRegs.Rflags = 2;
    }

    public int Id { get; }

    public ulong InstructionsRetired => _cpu?.InstructionsRetired ?? 0;

    public VcpuExit Run(IExitHandler handler)
    {
        var cpu = EnsureCpu(handler);
        if (Interlocked.Exchange(ref _kick, 0) != 0) return VcpuExit.Kicked;
        long budget = SliceInstructions;
        while (budget > 0)
        {
            DeliverQueuedEvents(cpu);
            ulong before = cpu.InstructionsRetired;
            var outcome = cpu.Run(Math.Min(budget, 65_536), ref _kick);
            budget -= (long)(cpu.InstructionsRetired - before) + 1;
            switch (outcome)
            {
                case StepOutcome.Shutdown:
                    return new VcpuExit(VcpuExitKind.Shutdown, $"triple fault ({cpu.LastException?.Vector switch { byte v => $"last exception vector {v}", null => "no exception recorded" }})");
                case StepOutcome.Halted:
                    if (!cpu.InterruptWindowOpen && !HasQueuedEvents()) return new VcpuExit(VcpuExitKind.Halted, "HLT with interrupts disabled");
                    if (!WaitForEvent()) return VcpuExit.Kicked;
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
            _cpu = new SoftCpu(_vm.Memory, handler);
            _handler = handler;
            _cpu.SetSystemRegisters(sregs);
            _cpu.SetRegisters(regs);
            if (_vm.Spec.Deterministic)
            {
                var cpu = _cpu;
                _cpu.TimeStampCounter = () => cpu.InstructionsRetired;
            }
            else
            {
                long start = _startTimestamp;
                _cpu.TimeStampCounter = () => (ulong)((System.Diagnostics.Stopwatch.GetTimestamp() - start) * (1e9 / System.Diagnostics.Stopwatch.Frequency));
            }
        }
        return _cpu;
    }

    private bool HasQueuedEvents()
    {
        lock (_eventLock) return _nmi || _interrupts.Count > 0;
    }

    private void DeliverQueuedEvents(SoftCpu cpu)
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
    }

    /// <summary>Blocks a halted vCPU until an interrupt, ExNMI or kick arrives. False when kicked.</summary>
    private bool WaitForEvent()
    {
        while (true)
        {
            if (Volatile.Read(ref _kick) != 0) return false;
            if (HasQueuedEvents()) return true;
            _wake.Wait(TimeSpan.FromMilliseconds(50));
        }
    }

    public void Kick()
    {
        Interlocked.Exchange(ref _kick, 1);
        _wake.Release();
    }

    public void QueueInterrupt(byte vector)
    {
        lock (_eventLock)
        {
            if (_interrupts.Count < 256) _interrupts.Enqueue(vector);
        }
        _wake.Release();
    }

    internal void QueueNmi()
    {
        lock (_eventLock) _nmi = true;
        _wake.Release();
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

    public void Dispose() => _wake.Dispose();
}
