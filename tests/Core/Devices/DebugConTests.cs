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
        con.Write(0, "o"u8);
        con.Write(0, "k"u8);
        Span<byte> b = stackalloc byte[1];
        con.Read(0, b);
        Assert.Equal(0xe9, b[0]);
        Assert.Equal("ok"u8.ToArray(), sink.Bytes);
        Assert.Equal(2, con.BytesWritten);
        Assert.Equal(0, con.BadAccesses);
    }

    [Fact]
    public void Only_byte_accesses_are_valid_as_in_qemu()
    {
        // QEMU 7.2 drops 16/32-bit OUTs to debugcon and answers 16/32-bit INs with 0.
        var sink = new RecordingSink();
        var con = new DebugCon(sink, DebugCon.FirmwarePort);
        Assert.Equal((ushort)0x402, con.Ports.First);
        con.Write(0, [0x41, 0x42]);
        con.Write(0, [0x41, 0x42, 0x43, 0x44]);
        Span<byte> w = stackalloc byte[4];
        w.Fill(0x55);
        con.Read(0, w);
        Assert.Empty(sink.Bytes);
        Assert.Equal(0u, BitConverter.ToUInt32(w));
        con.Write(1, [1]);
        Span<byte> b = stackalloc byte[1];
        b[0] = 0x55;
        con.Read(1, b);
        Assert.Equal(0, b[0]);
        Assert.Equal(5, con.BadAccesses);
        con.Write(0, "Z"u8);
        Assert.Equal("Z"u8.ToArray(), sink.Bytes);
    }

    [Fact]
    public void State_round_trips()
    {
        var sink = new RecordingSink();
        var con = new DebugCon(sink, readback: 0x42);
        con.Write(0, [1]);
        con.Write(0, [2]);
        var copy = DebugCon.FromState(sink, con.GetState());
        Assert.Equal(con.GetState(), copy.GetState());
        Assert.Equal(2, copy.BytesWritten);
        Span<byte> b = stackalloc byte[1];
        copy.Read(0, b);
        Assert.Equal(0x42, b[0]);
    }
}
