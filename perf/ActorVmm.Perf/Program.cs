// ActorVmm benchmarks: `dotnet run -c Release --project perf/ActorVmm.Perf -- --filter '*'`.
// `-- timers` measures how late the TimerService and Akka's scheduler deliver deadlines (TimerLatency.cs).
// `-- quick` runs each soft CPU loop for about two seconds of this thread's CPU time and prints MIPS: a rough
// figure for development (CPU time, so other load on the machine matters less), without BenchmarkDotNet's
// warm-up and statistics. `-- boot KERNEL INITRD [--deterministic]` boots a Linux guest and prints the guest
// instructions retired and the wall time (LinuxBoot.cs). `-- irqlat [N]` measures interrupt latency in every
// kernel-irqchip mode, path and route, N interrupts each (InterruptLatencyBenchmarks.RunMatrix).
using ActorVmm.Perf;
using BenchmarkDotNet.Running;

if (args is ["timers", ..])
{
    TimerLatency.Run();
    return 0;
}

if (args is ["quick", ..])
{
    foreach (var loop in new[] { "alu", "memory", "branchy" })
    {
        var b = new SoftCpuBenchmarks { Loop = loop };
        b.Setup();
        b.Run(); // JIT warm-up
        var start = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime;
        double seconds = 0;
        int runs = 0;
        while (seconds < 2)
        {
            b.Run();
            runs++;
            seconds = (System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime - start).TotalSeconds;
        }
        double mips = runs * (double)SoftCpuBenchmarks.InstructionsPerOp / seconds / 1e6;
        Console.WriteLine($"{loop,-8} {mips,7:F1} MIPS");
        b.Cleanup();
    }
    return 0;
}

if (args is ["irqlat", ..])
{
    InterruptLatencyBenchmarks.RunMatrix(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 20000);
    return 0;
}

if (args is ["boot", var kernel, var initrd, ..])
    return LinuxBoot.Run(kernel, initrd, deterministic: args.Contains("--deterministic"));

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;
