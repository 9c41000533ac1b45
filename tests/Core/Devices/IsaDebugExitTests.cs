using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

public sealed class IsaDebugExitTests
{
    [Theory]
    [InlineData(0x10u, 33)]
    [InlineData(0x00u, 1)]
    [InlineData(0x01u, 3)]
    [InlineData(0x7fu, 255)]
    public void Byte_write_requests_exit_with_status_v_shl_1_or_1(uint value, int status)
    {
        var machine = new RecordingMachine();
        var dev = new IsaDebugExit(machine, 0xf4, 4);
        dev.Write(0, [(byte)value]);
        Assert.Equal([new MachineStopRequest(MachineStopReason.DebugExit, status)], machine.Requests);
    }

    [Fact]
    public void Wide_writes_use_the_whole_little_endian_value()
    {
        var machine = new RecordingMachine();
        var dev = new IsaDebugExit(machine, 0xf4, 4);
        dev.Write(0, [0x34, 0x12]);
        dev.Write(0, [0x01, 0x00, 0x01, 0x00]);
        Assert.Equal(0x2469, machine.Requests[0].ExitStatus);
        Assert.Equal(0x20003, machine.Requests[1].ExitStatus);
        Assert.Equal(2, dev.ExitRequests);
    }

    [Fact]
    public void Reads_return_zero_and_bad_widths_are_counted()
    {
        var machine = new RecordingMachine();
        var dev = new IsaDebugExit(machine, 0xf4, 4);
        Span<byte> d = stackalloc byte[4];
        d.Fill(0x55);
        dev.Read(0, d);
        Assert.Equal(0u, BitConverter.ToUInt32(d));
        dev.Write(0, [1, 2, 3]);
        dev.Write(4, [1]);
        dev.Read(0, d[..3]);
        Assert.Equal(0xff, d[0]);
        Assert.Equal(3, dev.BadAccesses);
        Assert.Empty(machine.Requests);
    }

    [Fact]
    public void Reached_through_the_bus_at_its_configured_ports()
    {
        var machine = new RecordingMachine();
        var dev = new IsaDebugExit(machine, 0xf4, 4);
        var bus = new BusBuilder().AddPorts(dev.Ports, new DirectEndpoint(dev)).Build();
        var dispatch = new ExitDispatcher(bus);
        dispatch.PortWrite(0xf6, [0x10]);
        dispatch.PortWrite(0xf8, [0x10]);    // past iosize: nobody there
        Assert.Equal([new MachineStopRequest(MachineStopReason.DebugExit, 33)], machine.Requests);
        Assert.Equal(1, dispatch.UnclaimedPortAccesses);
    }

    [Fact]
    public void State_round_trips_and_configuration_is_validated()
    {
        var machine = new RecordingMachine();
        var dev = new IsaDebugExit(machine, 0x501, 2);
        dev.Write(0, [3]);
        var copy = IsaDebugExit.FromState(machine, dev.GetState());
        Assert.Equal(dev.GetState(), copy.GetState());
        Assert.Throws<ArgumentOutOfRangeException>(() => new IsaDebugExit(machine, 0xffff, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new IsaDebugExit(machine, 0xf4, 0));
    }
}
