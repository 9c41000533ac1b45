using System.Diagnostics;
using Akka.TestKit.Xunit2;
using Xunit.Abstractions;

namespace ActorVmm.Actors.Tests;

/// <summary>Reports what a Mailbox-route access costs here (DESIGN.md §10 budgets are measured, not asserted).</summary>
public sealed class MailboxCostTests : TestKit
{
    private readonly ITestOutputHelper _output;

    public MailboxCostTests(ITestOutputHelper output) : base(ActorVmmConfig.Config, output: output) => _output = output;

    [Fact]
    public void Mailbox_read_round_trip_and_posted_write_cost_are_reported()
    {
        var device = new RecordingDevice();
        // A long read timeout: this measures cost, and a loaded 2-core machine must not turn a slow answer into all-ones.
        var endpoint = new MailboxEndpoint("rec", Sys.ActorOf(DeviceActor.Props(device, new Lock())), TimeSpan.FromSeconds(30));
        var data = new byte[1];
        double readUs = 0, writeNs = 0;
        var t = new Thread(() =>
        {
            for (int i = 0; i < 2000; i++) endpoint.Read(0, data); // warm-up
            const int reads = 20000;
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < reads; i++) endpoint.Read(0, data);
            readUs = sw.Elapsed.TotalMicroseconds / reads;
            const int writes = 20000;
            sw.Restart();
            for (int i = 0; i < writes; i++) endpoint.Write(1, [(byte)i]);
            writeNs = sw.Elapsed.TotalNanoseconds / writes;
            endpoint.Read(1, data); // drain: ordered after every write
        });
        t.Start();
        Assert.True(t.Join(TimeSpan.FromSeconds(60)));
        Assert.Equal(unchecked((byte)19999), data[0]);
        _output.WriteLine($"mailbox read round trip: {readUs:F2} us; posted write (vCPU side): {writeNs:F0} ns");
    }
}
