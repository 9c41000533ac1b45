using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Tests.Bus;

/// <summary>A device that records what reached it and answers reads with a pattern derived from the offset.</summary>
internal sealed class RecordingDevice(string name) : IBusDevice
{
    public string Name { get; } = name;

    public List<(string Op, ulong Offset, byte[] Data)> Log { get; } = [];

    public void Read(ulong offset, Span<byte> data)
    {
        for (int i = 0; i < data.Length; i++) data[i] = (byte)(offset + (ulong)i + 0x40);
        Log.Add(("r", offset, data.ToArray()));
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data) => Log.Add(("w", offset, data.ToArray()));
}

public sealed class BusTests
{
    [Fact]
    public void Ranges_are_validated_values()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new PortRange(0x10, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PortRange(0xfff0, 0x11));
        var r = new PortRange(0xfff0, 0x10);
        Assert.Equal(0xffff, r.Last);
        Assert.True(r.Contains(0xffff));
        Assert.False(r.Contains(0xffef));
        Assert.Equal("0x3f8-0x3ff", new PortRange(0x3f8, 8).ToString());
        Assert.Equal("0xe9", new PortRange(0xe9, 1).ToString());
        Assert.Throws<ArgumentOutOfRangeException>(() => new MmioRange(0x1000, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MmioRange(ulong.MaxValue, 2));
        var m = new MmioRange(0xfee00000, 0x1000);
        Assert.True(m.Contains(0xfee00fff));
        Assert.False(m.Contains(0xfee01000));
        Assert.False(m.Contains(0xfedfffff));
        Assert.True(m.Overlaps(new MmioRange(0xfee00fff, 1)));
        Assert.False(m.Overlaps(new MmioRange(0xfee01000, 1)));
    }

    [Fact]
    public void Port_accesses_reach_the_device_with_offsets()
    {
        var com1 = new RecordingDevice("COM1");
        var pit = new RecordingDevice("PIT");
        var bus = new BusBuilder()
            .AddPorts(new PortRange(0x3f8, 8), new DirectEndpoint(com1))
            .AddPorts(new PortRange(0x40, 4), new DirectEndpoint(pit))
            .Build();
        var d = new ExitDispatcher(bus);
        Span<byte> b = stackalloc byte[1];
        d.PortRead(0x3fd, b);
        Assert.Equal(0x45, b[0]);
        d.PortWrite(0x3f8, [0x41]);
        d.PortWrite(0x43, [0x34]);
        Assert.Equal([("r", 5UL), ("w", 0UL)], com1.Log.Select(l => (l.Op, l.Offset)));
        Assert.Equal(3UL, Assert.Single(pit.Log).Offset);
        Assert.Equal(2, bus.Pio.Map.Single(m => m.Endpoint.Name == "COM1").Endpoint.Accesses);
        Assert.Equal(0, d.UnclaimedPortAccesses);
        Assert.Equal(["PIT", "COM1"], bus.Pio.Map.Select(m => m.Endpoint.Name)); // in port order
    }

    [Fact]
    public void Unclaimed_accesses_read_all_ones_and_are_counted()
    {
        var bus = new BusBuilder().AddPorts(new PortRange(0x60, 1), new DirectEndpoint(new RecordingDevice("kbd"))).Build();
        var d = new ExitDispatcher(bus);
        Span<byte> w = stackalloc byte[4];
        d.PortRead(0x61, w);
        Assert.Equal(0xffffffffu, BitConverter.ToUInt32(w));
        d.PortWrite(0x80, [1]);
        Assert.Equal(2, d.UnclaimedPortAccesses);
        w.Clear();
        d.MmioRead(0xfec00000, w);
        Assert.Equal(0xffffffffu, BitConverter.ToUInt32(w));
        d.MmioWrite(0xfec00000, [1, 2]);
        Assert.Equal(2, d.UnclaimedMmioAccesses);
    }

    [Fact]
    public void Mmio_lookup_finds_each_range_with_offsets()
    {
        var devices = Enumerable.Range(0, 9).Select(i => new RecordingDevice($"dev{i}")).ToArray();
        var builder = new BusBuilder();
        // Insert out of order; ranges of different sizes with gaps.
        foreach (int i in new[] { 4, 0, 8, 2, 6, 1, 7, 3, 5 })
            builder.AddMmio(new MmioRange(0x1000_0000UL + (ulong)i * 0x10000, 0x100UL << (i % 4)), new DirectEndpoint(devices[i]));
        var bus = builder.Build();
        var table = bus.Mmio;
        for (int i = 0; i < 9; i++)
        {
            ulong start = 0x1000_0000UL + (ulong)i * 0x10000;
            ulong size = 0x100UL << (i % 4);
            int cache = -1;
            Assert.Same(devices[i].Name, table.Lookup(start, ref cache, out ulong off)?.Name);
            Assert.Equal(0UL, off);
            Assert.Same(devices[i].Name, table.Lookup(start + size - 1, ref cache, out off)?.Name);
            Assert.Equal(size - 1, off);
            Assert.Null(table.Lookup(start + size, ref cache, out _));
            Assert.Null(table.Lookup(start - 1, ref cache, out _));
        }
    }

    [Fact]
    public void Mmio_last_hit_cache_is_per_caller_and_never_returns_the_wrong_device()
    {
        var a = new RecordingDevice("a");
        var b = new RecordingDevice("b");
        var bus = new BusBuilder()
            .AddMmio(new MmioRange(0x1000, 0x100), new DirectEndpoint(a))
            .AddMmio(new MmioRange(0x2000, 0x100), new DirectEndpoint(b))
            .Build();
        int cache = -1;
        Assert.Equal("b", bus.Mmio.Lookup(0x2010, ref cache, out _)?.Name);
        Assert.Equal(1, cache);                                  // index of the hit, in address order
        Assert.Equal("b", bus.Mmio.Lookup(0x20ff, ref cache, out ulong off)?.Name);
        Assert.Equal(0xffUL, off);
        Assert.Equal("a", bus.Mmio.Lookup(0x1004, ref cache, out off)?.Name);
        Assert.Equal(0, cache);
        Assert.Equal(4UL, off);
        Assert.Null(bus.Mmio.Lookup(0x1100, ref cache, out _));
        Assert.Equal(0, cache);                                  // a miss keeps the last hit
        int stale = 57;                                          // out of range: ignored, not trusted
        Assert.Equal("a", bus.Mmio.Lookup(0x1000, ref stale, out _)?.Name);

        // Two dispatchers (two vCPUs) keep their own caches.
        var d1 = new ExitDispatcher(bus);
        var d2 = new ExitDispatcher(bus);
        d1.MmioWrite(0x1000, [1]);
        d2.MmioWrite(0x2000, [2]);
        d1.MmioWrite(0x1001, [3]);
        Assert.Equal([(0UL, (byte)1), (1UL, (byte)3)], a.Log.Select(l => (l.Offset, l.Data[0])));
        Assert.Equal([(0UL, (byte)2)], b.Log.Select(l => (l.Offset, l.Data[0])));
    }

    [Fact]
    public void Overlaps_are_rejected_naming_both_devices()
    {
        var e = Assert.Throws<BusOverlapException>(() => new BusBuilder()
            .AddPorts(new PortRange(0x3f8, 8), new DirectEndpoint(new RecordingDevice("COM1")))
            .AddPorts(new PortRange(0x3ff, 2), new DirectEndpoint(new RecordingDevice("weird"))));
        Assert.Contains("COM1", e.Message, StringComparison.Ordinal);
        Assert.Contains("weird", e.Message, StringComparison.Ordinal);
        Assert.Contains("0x3f8-0x3ff", e.Message, StringComparison.Ordinal);
        var m = Assert.Throws<BusOverlapException>(() => new BusBuilder()
            .AddMmio(new MmioRange(0xfee00000, 0x1000), new DirectEndpoint(new RecordingDevice("LAPIC")))
            .AddMmio(new MmioRange(0xfed00000, 0x100001), new DirectEndpoint(new RecordingDevice("HPET"))));
        Assert.Contains("LAPIC", m.Message, StringComparison.Ordinal);
        Assert.Contains("HPET", m.Message, StringComparison.Ordinal);
        // Touching but not overlapping is fine.
        new BusBuilder()
            .AddPorts(new PortRange(0x3f8, 8), new DirectEndpoint(new RecordingDevice("COM1")))
            .AddPorts(new PortRange(0x400, 1), new DirectEndpoint(new RecordingDevice("next")))
            .Build();
    }

    [Fact]
    public void Dispatcher_counts_accesses_and_msr_misses()
    {
        var dev = new RecordingDevice("dev");
        var endpoint = new DirectEndpoint(dev);
        var bus = new BusBuilder()
            .AddPorts(new PortRange(0x100, 4), endpoint)
            .AddMmio(new MmioRange(0xd0000000, 0x1000), endpoint)
            .Build();
        var d = new ExitDispatcher(bus) { MsrReadHook = msr => msr == 0x10 ? 1234UL : null };
        Span<byte> b = stackalloc byte[2];
        d.PortRead(0x102, b);
        d.MmioRead(0xd0000ffe, b);
        d.MmioWrite(0xd0000000, b);
        Assert.Equal(3, endpoint.Accesses);
        Assert.Single(bus.Endpoints);
        Assert.True(d.MsrRead(0x10, out ulong v));
        Assert.Equal(1234UL, v);
        Assert.False(d.MsrRead(0x11, out v));
        Assert.Equal(0UL, v);
        Assert.False(d.MsrWrite(0x10, 5));
        Assert.Equal(2, d.UnhandledMsrAccesses);
        Assert.Equal(Route.Direct, endpoint.Route);
        Assert.Equal("dev (Direct)", endpoint.ToString());
    }

    [Fact]
    public void Dispatcher_counts_reads_and_times_one_access_in_64_including_through_an_offset_range()
    {
        var dev = new RecordingDevice("dev");
        var endpoint = new DirectEndpoint(dev);
        var bus = new BusBuilder()
            .AddPorts(new PortRange(0x60, 1), endpoint)
            .AddPorts(new PortRange(0x64, 1), new OffsetEndpoint(endpoint, 4))
            .Build();
        var d = new ExitDispatcher(bus);
        Span<byte> b = stackalloc byte[1];
        for (int i = 0; i < 100; i++) d.PortRead(0x60, b);
        for (int i = 0; i < 30; i++) d.PortWrite(0x60, b);
        Assert.Equal(130, endpoint.Accesses);
        Assert.Equal(100, endpoint.Reads);
        // Accesses 1, 65 and 129 are timed.
        Assert.Equal(3, endpoint.LatencySamples);
        Assert.True(endpoint.LatencyTicks > 0);
        Assert.NotNull(endpoint.MeanLatencyNanoseconds);

        // Through the second range: the inner endpoint counts the access and the read, and gets the sample.
        var second = new DirectEndpoint(new RecordingDevice("kbc"));
        var bus2 = new BusBuilder().AddPorts(new PortRange(0x64, 1), new OffsetEndpoint(second, 4)).Build();
        new ExitDispatcher(bus2).PortRead(0x64, b);
        Assert.Equal((1L, 1L, 1L), (second.Accesses, second.Reads, second.LatencySamples));
        Assert.Null(new DirectEndpoint(dev).MeanLatencyNanoseconds);
    }
}
