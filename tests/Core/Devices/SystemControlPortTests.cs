// Port 0x92 as PIIX and QEMU implement it: fast A20 on bit 1, fast reset on a 0->1 edge of bit 0.
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

public sealed class SystemControlPortTests
{
    private readonly RecordingIrqLine _a20 = new();
    private readonly RecordingMachineControl _machine = new();
    private readonly SystemControlPortA _port;

    public SystemControlPortTests()
    {
        _port = new SystemControlPortA(_machine, _a20);
    }

    [Fact]
    public void Fast_a20_sets_the_line_and_reads_back()
    {
        Assert.False(_port.A20Enabled);
        _port.Out8(0, 0x02);
        Assert.True(_port.A20Enabled);
        Assert.True(_a20.Level);
        Assert.Equal(0x02, _port.In8(0));
        _port.Out8(0, 0x02); // no change: no new call
        Assert.Single(_a20.Calls);
        _port.Out8(0, 0x00);
        Assert.False(_a20.Level);
        Assert.Empty(_machine.Requests);
    }

    [Fact]
    public void Fast_reset_on_rising_bit0_only()
    {
        _port.Out8(0, 0x03);
        Assert.Equal([new MachineStopRequest(MachineStopReason.Reset)], _machine.Requests);
        _port.Out8(0, 0x03); // still set: no new edge
        Assert.Single(_machine.Requests);
        _port.Out8(0, 0x02);
        _port.Out8(0, 0x03);
        Assert.Equal(2, _machine.Requests.Count);
    }

    [Fact]
    public void Bad_widths_counted_and_state_round_trips()
    {
        Span<byte> two = stackalloc byte[2];
        _port.Read(0, two);
        _port.Write(1, [1]);
        Assert.Equal(2, _port.BadAccesses);
        Assert.Empty(_machine.Requests);
        _port.Out8(0, 0x0a);
        var other = new SystemControlPortA(_machine, new RecordingIrqLine());
        other.FromState(_port.GetState());
        Assert.Equal(_port.GetState(), other.GetState());
        Assert.True(other.A20Enabled);
    }

    [Fact]
    public void Random_writes_never_throw()
    {
        var rng = new Random(92);
        for (int i = 0; i < 10_000; i++)
        {
            if (rng.Next(2) == 0)
                _port.Out8((ulong)rng.Next(2), (byte)rng.Next(256));
            else
                _port.In8((ulong)rng.Next(2));
        }
        Assert.Equal(_port.A20Enabled, _a20.Level);
    }
}
