// Test doubles for the accelerator contract: a VM with real native guest memory and a vCPU whose Run is a
// script, so the actors are tested without a CPU. The script gets the exit handler, as a backend would
// call it for PIO/MMIO exits, and returns the VcpuExit the backend would.
using System.Collections.Concurrent;
using System.Text;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Memory;

namespace ActorVmm.Actors.Tests;

/// <summary>What one Run call does: the fake vCPU, the call number (0-based) and the exit handler.</summary>
public delegate VcpuExit VcpuScript(FakeVcpu vcpu, int call, IExitHandler handler);

public sealed class FakeVcpu(int id, VcpuScript script) : IVcpu
{
    private int _kickPending;
    private int _runs;
    private CpuRegisters _regs;
    private SystemRegisters _sregs;

    public int Id { get; } = id;
    public int Runs => Volatile.Read(ref _runs);
    public int Kicks;
    public volatile bool Disposed;
    public int RunThreadId;

    /// <summary>True once, after Kick, as a backend's run loop sees it.</summary>
    public bool TakeKick() => Interlocked.Exchange(ref _kickPending, 0) != 0;

    public VcpuExit Run(IExitHandler handler)
    {
        RunThreadId = Environment.CurrentManagedThreadId;
        int call = Interlocked.Increment(ref _runs) - 1;
        if (TakeKick()) return VcpuExit.Kicked;
        return script(this, call, handler);
    }

    public void Kick()
    {
        Interlocked.Increment(ref Kicks);
        Volatile.Write(ref _kickPending, 1);
    }

    public CpuRegisters GetRegisters() => _regs;
    public void SetRegisters(in CpuRegisters registers) => _regs = registers;
    public SystemRegisters GetSystemRegisters() => _sregs;
    public void SetSystemRegisters(in SystemRegisters registers) => _sregs = registers;
    public void QueueInterrupt(byte vector) { }
    public ulong InstructionsRetired => 0;
    public void Dispose() => Disposed = true;
}

public sealed unsafe class FakeVm : IVm
{
    private readonly NativeRam _ram;
    private readonly VcpuScript _script;

    public FakeVm(VmSpec spec, VcpuScript script)
    {
        Spec = spec;
        _script = script;
        _ram = new NativeRam(spec.RamBytes);
        Memory = new GuestMemory([new GuestRegion("ram", 0, spec.RamBytes, _ram.Pointer)]);
    }

    public VmSpec Spec { get; }
    public GuestMemory Memory { get; }
    public List<FakeVcpu> Vcpus { get; } = [];
    public ConcurrentQueue<(int Gsi, bool Level)> IrqLines { get; } = new();
    public volatile bool Disposed;

    public IVcpu CreateVcpu(int id)
    {
        var v = new FakeVcpu(id, _script);
        Vcpus.Add(v);
        return v;
    }

    public void SetIrqLine(int gsi, bool level) => IrqLines.Enqueue((gsi, level));
    public void SendMsi(ulong address, uint data) { }
    public void InjectNmi(int vcpuId) { }

    public void Dispose()
    {
        // Memory stays readable for assertions after the VM actor disposed it; the RAM is freed with the test process.
        Disposed = true;
    }
}

/// <summary>Creates FakeVms; each VM (machine generation) can run a different script.</summary>
public sealed class FakeAccelerator(Func<int, VcpuScript> scriptForVm) : IAccelerator
{
    public FakeAccelerator(VcpuScript script) : this(_ => script)
    {
    }

    public string Name => "fake";
    public AcceleratorCapabilities Capabilities { get; } = new(new HashSet<IrqchipMode> { IrqchipMode.On }, 1, KernelPlatform.Soft);
    public ConcurrentQueue<FakeVm> Vms { get; } = new();

    public IVm CreateVm(VmSpec spec)
    {
        var vm = new FakeVm(spec, scriptForVm(Vms.Count));
        Vms.Enqueue(vm);
        return vm;
    }
}

/// <summary>Collects bytes written to it.</summary>
public sealed class RecordingSink : IByteSink
{
    private readonly List<byte> _bytes = [];

    public void Write(ReadOnlySpan<byte> data)
    {
        lock (_bytes) _bytes.AddRange(data.ToArray());
    }

    public string Text
    {
        get
        {
            lock (_bytes) return Encoding.ASCII.GetString([.. _bytes]);
        }
    }
}

/// <summary>Builds a minimal multiboot a.out-kludge kernel by hand (header at offset 0, loaded at 1 MiB).</summary>
public static class TestKernel
{
    public const uint LoadAddress = 0x100000;
    public const uint Entry = LoadAddress + 32;

    public static byte[] Build(byte[]? code = null)
    {
        code ??= [0xf4]; // hlt
        var image = new byte[32 + code.Length];
        const uint magic = 0x1BADB002, flags = 0x00010000;
        uint[] header = [magic, flags, unchecked(0u - magic - flags), LoadAddress, LoadAddress, 0, 0, Entry];
        for (int i = 0; i < header.Length; i++) BitConverter.TryWriteBytes(image.AsSpan(i * 4), header[i]);
        code.CopyTo(image, 32);
        return image;
    }
}

/// <summary>Machine control that ignores stop requests (for platform parts built without a VM actor).</summary>
public sealed class NoMachineStop : Core.Devices.IMachineControl
{
    public void RequestStop(Core.Devices.MachineStopRequest request)
    {
    }
}

/// <summary>
/// A vCPU that records what the platform's userspace irqchip signals it: the interrupt request line
/// (<see cref="Requests"/>, <see cref="Level"/>) and the INIT and start-up IPIs (<see cref="Signals"/>).
/// <paramref name="takesStartup"/> false: INIT and STARTUP throw NotSupportedException, as the contract's
/// defaults do for a backend without them.
/// </summary>
public sealed class SignalRecorder(int id, bool takesStartup = true) : IVcpu
{
    public readonly ConcurrentQueue<bool> Requests = new();
    public readonly List<string> Signals = [];
    public volatile bool Level;

    public int Id { get; } = id;

    public void SetInterruptRequest(bool level)
    {
        Level = level;
        Requests.Enqueue(level);
    }

    public void SignalInit()
    {
        if (!takesStartup) throw new NotSupportedException("no INIT here");
        lock (Signals) Signals.Add("INIT");
    }

    public void SignalStartup(byte vector)
    {
        if (!takesStartup) throw new NotSupportedException("no STARTUP here");
        lock (Signals) Signals.Add($"STARTUP {vector:x2}");
    }

    public VcpuExit Run(IExitHandler handler) => VcpuExit.SliceEnd;
    public void Kick() { }
    public CpuRegisters GetRegisters() => default;
    public void SetRegisters(in CpuRegisters registers) { }
    public SystemRegisters GetSystemRegisters() => default;
    public void SetSystemRegisters(in SystemRegisters registers) { }
    public void QueueInterrupt(byte vector) { }
    public ulong InstructionsRetired => 0;
    public void Dispose() { }
}
