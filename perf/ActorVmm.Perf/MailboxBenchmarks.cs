// Mailbox-route port I/O (DESIGN.md §10 budgets: posted write ≤ 500 ns on the vCPU side, read round trip
// ≤ 5 µs): the same ExitDispatcher call as DispatchBenchmarks, but COM1's endpoint is a MailboxEndpoint to a
// DeviceActor hosting the real 16550 model. A write is a Tell of RegisterWrite (the vCPU goes on); a read
// posts RegisterRead with the thread's reply slot and waits for the actor's answer. Writes are measured in
// batches of WritesPerRead followed by one read, so the actor's mailbox cannot grow without bound during
// the run; the read's cost is then spread over the batch (about 1/1000 of a round trip per write).
using Akka.Actor;
using ActorVmm.Actors;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;
using BenchmarkDotNet.Attributes;

namespace ActorVmm.Perf;

[MemoryDiagnoser]
public class MailboxBenchmarks
{
    public const int WritesPerRead = 1000;

    private ActorSystem _system = null!;
    private ExitDispatcher _dispatcher = null!;
    private readonly byte[] _byte = new byte[1];

    [GlobalSetup]
    public void Setup()
    {
        _system = ActorSystem.Create("perf", ActorVmmConfig.Config);
        var uart = new Uart16550("COM1", NullIrqLine.Instance, new DiscardSink());
        var actor = _system.ActorOf(DeviceActor.Props(uart, new Lock(), Route.Mailbox), "COM1");
        var bus = new BusBuilder().AddPorts(Uart16550.PortsAt(0x3f8), new MailboxEndpoint("COM1", actor)).Build();
        _dispatcher = new ExitDispatcher(bus);
    }

    [GlobalCleanup]
    public void Cleanup() => _system.Terminate().Wait();

    [Benchmark(Description = "PIO write, Mailbox route, posted (COM1 SCR)", OperationsPerInvoke = WritesPerRead)]
    public byte PostedWrite()
    {
        _byte[0] = 0x5a;
        for (int i = 0; i < WritesPerRead; i++) _dispatcher.PortWrite(0x3ff, _byte);
        _dispatcher.PortRead(0x3ff, _byte);
        return _byte[0];
    }

    [Benchmark(Description = "PIO read, Mailbox route, round trip (COM1 LSR)")]
    public byte ReadRoundTrip()
    {
        _dispatcher.PortRead(0x3fd, _byte);
        return _byte[0];
    }

    private sealed class DiscardSink : IByteSink
    {
        public void Write(ReadOnlySpan<byte> data)
        {
        }
    }
}
