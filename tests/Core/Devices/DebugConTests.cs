using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

public sealed class DebugConTests
{
    [Fact]
    public void Writes_go_to_the_sink_and_reads_return_0xe9()
    {
        var sink = new RecordingSink();
        var con = new DebugCon(sink);
        Assert.Equal((ushort)0xe9, con.Ports.First);
        con.Write(0, "ok"u8[..1]);
        con.Write(0, "k"u8);
        Span<byte> b = stackalloc byte[1];
        con.Read(0, b);
        Assert.Equal(0xe9, b[0]);
        Assert.Equal("ok"u8.ToArray(), sink.Bytes);
        Assert.Equal(2, con.BytesWritten);
    }

    [Fact]
    public void Wide_accesses_are_split_into_bytes_as_qemu_does()
    {
        var sink = new RecordingSink();
        var con = new DebugCon(sink, DebugCon.FirmwarePort);
        Assert.Equal((ushort)0x402, con.Ports.First);
        con.Write(0, [0x41, 0x42]);
        Span<byte> w = stackalloc byte[4];
        con.Read(0, w);
        Assert.Equal("AB"u8.ToArray(), sink.Bytes);
        Assert.Equal(0xe9e9e9e9u, BitConverter.ToUInt32(w));
    }

    [Fact]
    public void Bad_accesses_are_counted()
    {
        var sink = new RecordingSink();
        var con = new DebugCon(sink);
        Span<byte> b = stackalloc byte[8];
        con.Read(0, b);
        con.Write(1, [1]);
        Assert.Equal(2, con.BadAccesses);
        Assert.Empty(sink.Bytes);
        Assert.Equal(0xff, b[0]);
    }

    [Fact]
    public void State_round_trips()
    {
        var sink = new RecordingSink();
        var con = new DebugCon(sink, readback: 0x42);
        con.Write(0, [1, 2, 3]);
        var copy = DebugCon.FromState(sink, con.GetState());
        Assert.Equal(con.GetState(), copy.GetState());
        Span<byte> b = stackalloc byte[1];
        copy.Read(0, b);
        Assert.Equal(0x42, b[0]);
    }
}
