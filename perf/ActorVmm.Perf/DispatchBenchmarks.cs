// Direct-route port I/O dispatch (DESIGN.md §10 budget: ≤ 50 ns, zero allocations): the cost from the exit
// handler's PortRead/PortWrite to the device model and back, through the frozen 65,536-entry table and the
// device's lock. The device is the real 16550 model (its scratch register, then its line status register,
// the register a serial driver polls before every byte).
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;
using BenchmarkDotNet.Attributes;

namespace ActorVmm.Perf;

[MemoryDiagnoser]
public class DispatchBenchmarks
{
    private ExitDispatcher _dispatcher = null!;
    private readonly byte[] _byte = new byte[1];

    [GlobalSetup]
    public void Setup()
    {
        var uart = new Uart16550("COM1", NullIrqLine.Instance, new DiscardSink());
        var bus = new BusBuilder().AddPorts(Uart16550.PortsAt(0x3f8), new DirectEndpoint(uart)).Build();
        _dispatcher = new ExitDispatcher(bus);
    }

    [Benchmark(Description = "PIO write, Direct route (COM1 SCR)")]
    public void PortWrite()
    {
        _byte[0] = 0x5a;
        _dispatcher.PortWrite(0x3ff, _byte);
    }

    [Benchmark(Description = "PIO read, Direct route (COM1 LSR)")]
    public byte PortRead()
    {
        _dispatcher.PortRead(0x3fd, _byte);
        return _byte[0];
    }

    [Benchmark(Description = "PIO read, unclaimed port")]
    public byte PortReadUnclaimed()
    {
        _dispatcher.PortRead(0x1234, _byte);
        return _byte[0];
    }

    private sealed class DiscardSink : IByteSink
    {
        public void Write(ReadOnlySpan<byte> data)
        {
        }
    }
}
