using System.Text;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;

namespace ActorVmm.Actors.Tests;

/// <summary>A register file that records every access and reads back the last value written to an offset.</summary>
internal sealed class RecordingDevice : IBusDevice
{
    private readonly Dictionary<ulong, byte> _regs = [];
    public readonly List<string> Log = [];
    public int ThrowOnRead = -1;
    public string Name => "rec";

    public void Read(ulong offset, Span<byte> data)
    {
        if (ThrowOnRead == (int)offset) throw new InvalidOperationException("model bug");
        data.Fill(_regs.GetValueOrDefault(offset, (byte)0));
        Log.Add($"R{offset}");
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        _regs[offset] = data[0];
        Log.Add($"W{offset}={data[0]}");
    }
}

public sealed class DeviceAndMailboxTests() : TestKit(ActorVmmConfig.Config)
{
    /// <summary>
    /// The read timeout for tests of behaviour other than the timeout itself: the default 1 s hang timeout now and
    /// then expired on a 2-core machine running the other test assemblies beside this one (scripts/test.sh does).
    /// </summary>
    private static readonly TimeSpan Patient = TimeSpan.FromSeconds(30);

    [Fact]
    public void Mailbox_read_round_trip_returns_the_device_answer()
    {
        var device = new RecordingDevice();
        var actor = Sys.ActorOf(DeviceActor.Props(device, new Lock()));
        var endpoint = new MailboxEndpoint("rec", actor, Patient);
        endpoint.Write(2, [0x5a]);
        var data = new byte[4];
        endpoint.Read(2, data);
        Assert.Equal(new byte[] { 0x5a, 0x5a, 0x5a, 0x5a }, data);
        Assert.Equal(Route.Mailbox, endpoint.Route);
    }

    [Fact]
    public void A_read_never_overtakes_an_earlier_posted_write()
    {
        var device = new RecordingDevice();
        var actor = Sys.ActorOf(DeviceActor.Props(device, new Lock()));
        var endpoint = new MailboxEndpoint("rec", actor, Patient);
        var data = new byte[1];
        var mismatches = 0;
        var t = new Thread(() =>
        {
            for (int i = 0; i < 2000; i++)
            {
                endpoint.Write(0, [(byte)i]);
                endpoint.Write(1, [(byte)(i * 3)]);
                endpoint.Read(0, data);
                if (data[0] != (byte)i) mismatches++;
            }
        });
        t.Start();
        Assert.True(t.Join(TimeSpan.FromSeconds(30)));
        Assert.Equal(0, mismatches);
        Assert.Equal(0, endpoint.TimedOutReads);
        // Program order as the device saw it.
        Assert.Equal(["W0=0", "W1=0", "R0", "W0=1", "W1=3", "R0"], device.Log.Take(6));
    }

    [Fact]
    public void A_read_from_a_dead_device_actor_answers_all_ones_after_the_timeout()
    {
        var device = new RecordingDevice();
        var actor = Sys.ActorOf(DeviceActor.Props(device, new Lock()));
        Watch(actor);
        Sys.Stop(actor);
        ExpectTerminated(actor);
        var endpoint = new MailboxEndpoint("rec", actor, TimeSpan.FromMilliseconds(50));
        var data = new byte[2];
        endpoint.Read(0, data);
        Assert.Equal(new byte[] { 0xff, 0xff }, data);
        Assert.Equal(1, endpoint.TimedOutReads);
        // A later read on the same thread uses a fresh slot and works against a live actor.
        var live = new MailboxEndpoint("rec", Sys.ActorOf(DeviceActor.Props(device, new Lock())), Patient);
        live.Write(0, [7]);
        live.Read(0, data);
        Assert.Equal(new byte[] { 7, 7 }, data);
    }

    [Fact]
    public void A_model_that_throws_on_a_read_answers_all_ones_and_the_actor_restarts()
    {
        var device = new RecordingDevice { ThrowOnRead = 3 };
        var actor = Sys.ActorOf(DeviceActor.Props(device, new Lock()));
        var endpoint = new MailboxEndpoint("rec", actor, Patient);
        endpoint.Write(3, [1]);
        var data = new byte[1];
        endpoint.Read(3, data);
        Assert.Equal(0xff, data[0]);
        // Restarted (default supervision): the model kept its state and still answers.
        endpoint.Read(0, data);
        Assert.Equal(0, data[0]);
        endpoint.Write(0, [9]);
        endpoint.Read(0, data);
        Assert.Equal(9, data[0]);
    }

    [Fact]
    public void Host_input_is_pushed_into_the_UART_under_the_shared_lock_without_overrun()
    {
        var modelLock = new Lock();
        var uart = new Uart16550("COM1", NullIrqLine.Instance, new RecordingSink());
        var actor = Sys.ActorOf(DeviceActor.Props(uart, modelLock));
        var direct = new DirectEndpoint(uart, modelLock);
        direct.Write(Uart16550.FCR, [Uart16550.FCR_ENABLE]);

        var input = Encoding.ASCII.GetBytes(new string('x', 150) + "END");
        actor.Tell(new DeviceActor.HostInput(input));
        var received = new List<byte>();
        var b = new byte[1];
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (received.Count < input.Length && DateTime.UtcNow < deadline)
        {
            direct.Read(Uart16550.LSR, b);
            if ((b[0] & Uart16550.LSR_DR) == 0)
            {
                Thread.Sleep(1);
                continue;
            }
            direct.Read(Uart16550.RBR, b);
            received.Add(b[0]);
        }
        Assert.Equal(input, received);
        Assert.Equal(0, uart.Overruns);
        actor.Tell(DeviceActor.GetStats.Instance);
        var stats = ExpectMsg<DeviceActor.Stats>();
        Assert.Equal(input.Length, stats.InputBytes);
        Assert.Equal(0, stats.DroppedInput);
    }
}
