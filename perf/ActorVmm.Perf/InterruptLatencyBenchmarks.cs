// Interrupt latency: from a device raising its line to the guest's handler running, in each kernel-irqchip mode.
// The guest (perf/guests/irqlat.asm, assembled here with nasm) idles in STI/HLT on the soft CPU with IRQ4 as its
// only interrupt source; one operation raises and lowers IRQ4 through the line a device model is given (COM1's:
// VmIrqLine into the accelerator's kernel irqchip in `on`, PlatformIrqchip.Line(4) in split and off) and waits
// until the handler's write to port 0x80 reaches the exit handler on the vCPU thread. So the figure includes the
// interrupt controllers' delivery, waking the halted vCPU thread, the IDT dispatch, the handler's EOI and OUT,
// and waking the benchmark thread again. Two paths (the guest's two builds):
//   pic     8259 → ExtINT through the local APIC's LINT0. split: the platform PIC raises the vCPU's interrupt
//           request, the kernel LAPIC takes it and the vCPU runs INTA through the PIC's route; off: the PIC drives
//           the LAPIC device's LINT0, which raises the request, and INTA goes LAPIC → PIC. EOI: port 0x20 (PIC route).
//   ioapic  IOAPIC pin 4 → vector 0x34. split: the platform IOAPIC's message is IVm.SendMsi into the kernel LAPIC;
//           off: the APIC bus → the LAPIC device, which raises the request; INTA and the EOI write go through the
//           LAPIC's route.
// Split and off use the machine's own wiring (PcMachineBuilder.Build, no serial ports) with the default routes,
// (the ACPI PM block's DeviceActor on the Mailbox route, every other device Direct), or with the PIC, IOAPIC and
// LAPIC on the Mailbox route too (their DeviceActors in a local actor system). The hosted devices' timers are not
// driven by a TimerService here; the guest arms none.
// IrqLatencyRig is the set-up; InterruptLatencyBenchmarks runs it under BenchmarkDotNet (default routes), and
// `-- irqlat [N]` (Program.cs) runs the whole matrix in one process with a Stopwatch per interrupt and prints
// median, 90th and 99th percentiles, mean, bytes allocated (all threads) per interrupt, and the accesses per
// interrupt that reached the PIC, IOAPIC and LAPIC endpoints (the vCPU's INTA and the guest's EOI).
using System.Diagnostics;
using Akka.Actor;
using ActorVmm.Actors;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Machine;
using ActorVmm.Native.Soft;
using BenchmarkDotNet.Attributes;

namespace ActorVmm.Perf;

[MemoryDiagnoser]
public class InterruptLatencyBenchmarks
{
    private IrqLatencyRig _rig = null!;

    public static IEnumerable<IrqchipMode> Modes => new SoftAccelerator().Capabilities.IrqchipModes.Order();

    [ParamsSource(nameof(Modes))]
    public IrqchipMode Mode { get; set; }

    [Params("pic", "ioapic")]
    public string Path { get; set; } = "pic";

    [GlobalSetup]
    public void Setup() => _rig = new IrqLatencyRig(Mode, Path == "ioapic", mailbox: false);

    [GlobalCleanup]
    public void Cleanup() => _rig.Dispose();

    [Benchmark(Description = "IRQ4 raised by a device line -> guest handler runs")]
    public void RaiseToHandler() => _rig.RaiseAndWait();

    /// <summary>`-- irqlat [N]`: every mode and path, default routes and (split/off) the Mailbox route, N interrupts each.</summary>
    public static void RunMatrix(int count)
    {
        Console.WriteLine($"{"mode",-6} {"path",-7} {"route",-8} {"median",9} {"p90",9} {"p99",9} {"mean",9} {"B/irq",7}");
        Console.WriteLine($"(host: {Environment.ProcessorCount} CPUs, load average {LoadAverage()})");
        foreach (var mode in Modes)
        foreach (bool ioapic in new[] { false, true })
        foreach (bool mailbox in mode == IrqchipMode.On ? new[] { false } : new[] { false, true })
        {
            using var rig = new IrqLatencyRig(mode, ioapic, mailbox);
            for (int i = 0; i < Math.Min(count, 2000); i++) rig.RaiseAndWait(); // warm-up (JIT, tiering)
            var ns = new double[count];
            var before = rig.Accesses();
            long allocated = GC.GetTotalAllocatedBytes(true);
            for (int i = 0; i < count; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                rig.RaiseAndWait();
                ns[i] = Stopwatch.GetElapsedTime(t0).TotalNanoseconds;
            }
            allocated = GC.GetTotalAllocatedBytes(true) - allocated;
            var after = rig.Accesses();
            string perIrq = string.Join(" ", after.OrderBy(a => a.Key).Select(a => $"{a.Key}={(a.Value - before[a.Key]) / (double)count:F1}"));
            Array.Sort(ns);
            if (mode == IrqchipMode.Off && !ioapic && mailbox) Console.WriteLine($"(load average {LoadAverage()})");
            string label = mode == IrqchipMode.On ? "-" : mailbox ? "mailbox" : "default";
            Console.WriteLine($"{mode.ToString().ToLowerInvariant(),-6} {(ioapic ? "ioapic" : "pic"),-7} {label,-8} {Us(ns[count / 2]),9} {Us(ns[count * 9 / 10]),9} {Us(ns[count * 99 / 100]),9} {Us(ns.Average()),9} {allocated / count,7}  mailbox: {rig.Routes}  accesses/irq: {perIrq}");
        }
    }

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "unknown";

    private static string Us(double ns) => $"{ns / 1000:F2}µs";
}

/// <summary>One soft-CPU machine running the irqlat guest in one irqchip mode, with IRQ4 to raise.</summary>
public sealed class IrqLatencyRig : IDisposable
{
    private sealed class NoStop : IMachineControl
    {
        public void RequestStop(MachineStopRequest request)
        {
        }
    }

    private readonly IVm _vm;
    private readonly IVcpu _vcpu;
    private readonly Thread _thread;
    private readonly IIrqLine _line;
    private readonly ActorSystem? _actors;
    private volatile bool _stop;
    private readonly ManualResetEventSlim _handled = new(false, spinCount: 2000);
    private readonly ManualResetEventSlim _ready = new(false);

    public IrqLatencyRig(IrqchipMode mode, bool ioapic, bool mailbox)
    {
        var image = MultibootImage.Parse(Guest(ioapic), "irqlat.bin");
        _vm = new SoftAccelerator().CreateVm(new VmSpec(16 << 20, 1, mode));
        var boot = MultibootLoader.Load(_vm.Memory, image, "irqlat", []);
        _vcpu = _vm.CreateVcpu(0);
        _vcpu.SetSystemRegisters(boot.System);
        _vcpu.SetRegisters(boot.Registers);
        IExitHandler handler;
        var probe = new Probe(this);
        if (mode == IrqchipMode.On)
        {
            _line = new VmIrqLine(_vm, 4);
            handler = probe;
        }
        else
        {
            var routes = new Dictionary<string, Route>();
            if (mailbox)
            {
                routes[PlatformIrqchip.PicName] = Route.Mailbox;
                routes[PlatformIrqchip.IoApicName] = Route.Mailbox;
                if (mode == IrqchipMode.Off) routes["lapic0"] = Route.Mailbox;
            }
            _actors = ActorSystem.Create("irqlat"); // the ACPI PM block's default route is Mailbox
            var config = new MachineConfig { Irqchip = mode, RamBytes = 16 << 20, KernelPath = "irqlat.bin", SerialPorts = [], RouteOverrides = routes };
            var platform = PcMachineBuilder.Build(config, _vm, (name, _) => throw new InvalidOperationException($"no byte sink for {name}"),
                new NoStop(), (device, route) =>
                {
                    var modelLock = new Lock();
                    if (route == Route.Direct) return new DirectEndpoint(device, modelLock);
                    var actor = _actors!.ActorOf(DeviceActor.Props(device, modelLock, route), device.Name);
                    return new MailboxEndpoint(device.Name, actor);
                });
            var chip = platform.Irqchip!;
            _chip = chip;
            Routes = string.Join(",", chip.Endpoints.Where(e => e.Value.Route == Route.Mailbox).Select(e => e.Key).Order());
            chip.AttachVcpus([_vcpu]);
            probe.Inner = new ExitDispatcher(platform.Bus);
            handler = chip.CreateExitHandler(0, probe);
            _line = chip.Line(4);
        }
        _thread = new Thread(() =>
        {
            while (!_stop) _vcpu.Run(handler);
        }) { IsBackground = true, Name = "vcpu0" };
        _thread.Start();
        if (!_ready.Wait(TimeSpan.FromSeconds(30))) throw new InvalidOperationException("irqlat guest did not get ready");
    }

    private readonly PlatformIrqchip? _chip;

    /// <summary>Accesses (reads and writes) that reached the PIC, IOAPIC and LAPIC endpoints so far (split and off).</summary>
    public Dictionary<string, long> Accesses() => _chip is null ? [] : _chip.Endpoints
        .Where(e => e.Key is PlatformIrqchip.PicName or PlatformIrqchip.IoApicName || e.Key.StartsWith("lapic", StringComparison.Ordinal))
        .ToDictionary(e => e.Key, e => Interlocked.Read(ref e.Value.Accesses));

    /// <summary>The hosted devices on the Mailbox route, as built (split and off).</summary>
    public string Routes { get; } = "";

    public void RaiseAndWait()
    {
        _handled.Reset();
        _line.Set(true);
        _line.Set(false);
        if (!_handled.Wait(TimeSpan.FromSeconds(10))) throw new InvalidOperationException("the guest's IRQ4 handler did not run");
    }

    public void Dispose()
    {
        _stop = true;
        _vcpu.Kick();
        _thread.Join();
        _vcpu.Dispose();
        _vm.Dispose();
        _actors?.Terminate().Wait();
    }

    private static byte[] Guest(bool ioapic)
    {
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "ActorVmm.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("no ActorVmm.sln above the benchmarks");
        string bin = Path.Combine(Path.GetTempPath(), $"actorvmm-irqlat-{Environment.ProcessId}.bin");
        var args = new List<string> { "-f", "bin", "-I" + Path.Combine(root, "tests", "Guests") + "/", "-o", bin };
        if (ioapic) args.Add("-DIRQLAT_IOAPIC");
        args.Add(Path.Combine(root, "perf", "guests", "irqlat.asm"));
        using var p = Process.Start(new ProcessStartInfo("nasm", args))!;
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException("nasm failed on perf/guests/irqlat.asm");
        var bytes = File.ReadAllBytes(bin);
        File.Delete(bin);
        return bytes;
    }

    /// <summary>Ports 0x80 (the handler ran) and 0x81 (ready); everything else to the platform's bus, if any.</summary>
    private sealed class Probe(IrqLatencyRig owner) : IExitHandler
    {
        public IExitHandler? Inner;

        public void PortRead(ushort port, Span<byte> data)
        {
            if (Inner is { } i) i.PortRead(port, data);
            else data.Fill(0xff);
        }

        public void PortWrite(ushort port, ReadOnlySpan<byte> data)
        {
            if (port == 0x80) owner._handled.Set();
            else if (port == 0x81) owner._ready.Set();
            else Inner?.PortWrite(port, data);
        }

        public void MmioRead(ulong gpa, Span<byte> data)
        {
            if (Inner is { } i) i.MmioRead(gpa, data);
            else data.Fill(0xff);
        }

        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data) => Inner?.MmioWrite(gpa, data);

        public bool MsrRead(uint msr, out ulong value)
        {
            if (Inner is { } i) return i.MsrRead(msr, out value);
            value = 0;
            return false;
        }

        public bool MsrWrite(uint msr, ulong value) => Inner?.MsrWrite(msr, value) ?? false;
    }
}
