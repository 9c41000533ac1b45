// ActorVmm benchmarks: `dotnet run -c Release --project perf/ActorVmm.Perf -- --filter '*'`.
using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
