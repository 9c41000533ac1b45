// Interrupt latency: from a device raising its line to the guest's handler running. The guest
// (perf/guests/irqlat.asm, assembled here with nasm) idles in STI/HLT on the soft CPU with only IRQ4
// unmasked; one operation raises and lowers IRQ4 through a VmIrqLine (what COM1's model is given in
// kernel-irqchip=on: IVm.SetIrqLine into the in-kernel 8259/IOAPIC), and waits until the handler's write to
// port 0x80 reaches the exit handler on the vCPU thread. So the figure includes waking the halted vCPU
// thread, delivery through PIC and LAPIC (ExtINT), the IDT dispatch, the handler's EOI and OUT, and waking
// the benchmark thread again. Modes: those the soft accelerator offers; in split and off the line would go
// through the IOAPIC/PIC device actors, not measured here yet.
using System.Diagnostics;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Machine;
using ActorVmm.Native.Soft;
using BenchmarkDotNet.Attributes;

namespace ActorVmm.Perf;

[MemoryDiagnoser]
public class InterruptLatencyBenchmarks
{
    private IVm _vm = null!;
    private IVcpu _vcpu = null!;
    private Thread _thread = null!;
    private VmIrqLine _line = null!;
    private volatile bool _stop;
    private readonly ManualResetEventSlim _handled = new(false, spinCount: 2000);
    private readonly ManualResetEventSlim _ready = new(false);

    public static IEnumerable<IrqchipMode> Modes => new SoftAccelerator().Capabilities.IrqchipModes.Order();

    [ParamsSource(nameof(Modes))]
    public IrqchipMode Mode { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var image = MultibootImage.Parse(Guest(), "irqlat.bin");
        _vm = new SoftAccelerator().CreateVm(new VmSpec(16 << 20, 1, Mode));
        var boot = MultibootLoader.Load(_vm.Memory, image, "irqlat", []);
        _vcpu = _vm.CreateVcpu(0);
        _vcpu.SetSystemRegisters(boot.System);
        _vcpu.SetRegisters(boot.Registers);
        _line = new VmIrqLine(_vm, 4);
        var handler = new Handler(this);
        _thread = new Thread(() =>
        {
            while (!_stop) _vcpu.Run(handler);
        }) { IsBackground = true, Name = "vcpu0" };
        _thread.Start();
        if (!_ready.Wait(TimeSpan.FromSeconds(30))) throw new InvalidOperationException("irqlat guest did not get ready");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop = true;
        _vcpu.Kick();
        _thread.Join();
        _vcpu.Dispose();
        _vm.Dispose();
    }

    [Benchmark(Description = "IRQ4 raised by a device line -> guest handler runs")]
    public void RaiseToHandler()
    {
        _handled.Reset();
        _line.Set(true);
        _line.Set(false);
        _handled.Wait();
    }

    private static byte[] Guest()
    {
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "ActorVmm.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("no ActorVmm.sln above the benchmarks");
        string bin = Path.Combine(Path.GetTempPath(), $"actorvmm-irqlat-{Environment.ProcessId}.bin");
        using var p = Process.Start(new ProcessStartInfo("nasm", ["-f", "bin", "-I" + Path.Combine(root, "tests", "Guests") + "/", "-o", bin, Path.Combine(root, "perf", "guests", "irqlat.asm")]))!;
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException("nasm failed on perf/guests/irqlat.asm");
        var bytes = File.ReadAllBytes(bin);
        File.Delete(bin);
        return bytes;
    }

    private sealed class Handler(InterruptLatencyBenchmarks owner) : IExitHandler
    {
        public void PortRead(ushort port, Span<byte> data) => data.Fill(0xff);

        public void PortWrite(ushort port, ReadOnlySpan<byte> data)
        {
            if (port == 0x80) owner._handled.Set();
            else if (port == 0x81) owner._ready.Set();
        }

        public void MmioRead(ulong gpa, Span<byte> data) => data.Fill(0xff);

        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data)
        {
        }

        public bool MsrRead(uint msr, out ulong value)
        {
            value = 0;
            return false;
        }

        public bool MsrWrite(uint msr, ulong value) => false;
    }
}
