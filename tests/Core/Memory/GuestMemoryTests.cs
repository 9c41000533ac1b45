using System.Runtime.InteropServices;
using ActorVmm.Core.Memory;

namespace ActorVmm.Core.Tests.Memory;

public sealed unsafe class GuestMemoryTests : IDisposable
{
    private readonly NativeRam _a = new(0x1000);
    private readonly NativeRam _b = new(0x1000);
    private readonly NativeRam _rom = new(0x1000);

    public void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
        _rom.Dispose();
    }

    /// <summary>RAM 0x0-0xfff and 0x1000-0x1fff (adjacent), a hole, ROM at 0x3000-0x3fff.</summary>
    private GuestMemory Layout() => new([
        new GuestRegion("rom", 0x3000, 0x1000, _rom.Pointer, readOnly: true),
        new GuestRegion("a", 0, 0x1000, _a.Pointer),
        new GuestRegion("b", 0x1000, 0x1000, _b.Pointer),
    ]);

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    private struct Sample
    {
        public uint A;
        public ushort B;
        public ulong C;
    }

    [Fact]
    public void Regions_are_validated()
    {
        Assert.Throws<ArgumentException>(() => new GuestRegion("", 0, 1, _a.Pointer));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GuestRegion("x", 0, 0, _a.Pointer));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GuestRegion("x", ulong.MaxValue, 2, _a.Pointer));
        Assert.Throws<ArgumentNullException>(() => new GuestRegion("x", 0, 1, null));
        var e = Assert.Throws<ArgumentException>(() => new GuestMemory([
            new GuestRegion("one", 0, 0x1000, _a.Pointer), new GuestRegion("two", 0xfff, 0x1000, _b.Pointer)]));
        Assert.Contains("one", e.Message, StringComparison.Ordinal);
        Assert.Contains("two", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Regions_are_sorted_and_found()
    {
        var m = Layout();
        Assert.Equal(["a", "b", "rom"], m.Regions.Select(r => r.Name));
        Assert.Equal(0x3000UL, m.TotalSize);
        Assert.Equal("b", m.FindRegion(0x1fff)?.Name);
        Assert.Null(m.FindRegion(0x2000));
        Assert.Equal("rom", m.FindRegion(0x3000)?.Name);
        Assert.Null(m.FindRegion(0x4000));
    }

    [Fact]
    public void Bounds_are_exact()
    {
        var m = Layout();
        Span<byte> four = stackalloc byte[4];
        Assert.True(m.TryRead(0x1ffc, four));
        Assert.False(m.TryRead(0x1ffd, four));           // last byte in the hole
        Assert.True(m.TryWrite(0x1ffc, four));
        Assert.False(m.TryWrite(0x1ffd, four));
        Assert.False(m.TryRead(ulong.MaxValue, four));
        Assert.True(m.IsBacked(0, 0x2000));
        Assert.False(m.IsBacked(0, 0x2001));
        Assert.True(m.TryGetHostPointer(0xff0, 0x10, out var p));
        Assert.True(p == _a.Pointer + 0xff0);
        Assert.False(m.TryGetHostPointer(0xff0, 0x11, out _)); // crosses into the next region
    }

    [Fact]
    public void Reads_and_writes_cross_adjacent_regions()
    {
        var m = Layout();
        var data = Enumerable.Range(1, 16).Select(i => (byte)i).ToArray();
        Assert.True(m.TryWrite(0xff8, data));
        Assert.Equal(data[..8], new ReadOnlySpan<byte>(_a.Pointer + 0xff8, 8).ToArray());
        Assert.Equal(data[8..], new ReadOnlySpan<byte>(_b.Pointer, 8).ToArray());
        var back = new byte[16];
        Assert.True(m.TryRead(0xff8, back));
        Assert.Equal(data, back);
    }

    [Fact]
    public void A_write_into_a_hole_writes_nothing()
    {
        var m = Layout();
        Assert.False(m.TryWrite(0x1ff0, new byte[0x20].Select(_ => (byte)0xaa).ToArray()));
        Assert.All(new ReadOnlySpan<byte>(_b.Pointer + 0xff0, 0x10).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public void Guest_writes_to_rom_are_dropped_and_host_writes_land()
    {
        var m = Layout();
        Assert.True(m.TryWrite(0x3010, [1, 2, 3]));
        Assert.Equal(0, _rom.Pointer[0x10]);
        m.Write(0x3010, [1, 2, 3]);
        Assert.Equal(2, _rom.Pointer[0x11]);
        var r = new byte[3];
        Assert.True(m.TryRead(0x3010, r));
        Assert.Equal([1, 2, 3], r);
    }

    [Fact]
    public void Throwing_accessors_name_the_address()
    {
        var m = Layout();
        var e = Assert.Throws<GuestMemoryException>(() => m.Read(0x2000, new byte[4]));
        Assert.Contains("0x2000", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<GuestMemoryException>(() => m.Write(0x1ffe, new byte[4]));
        Assert.Contains("0x1ffe", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<GuestMemoryException>(() => m.ReadObject<ulong>(0x5000));
        Assert.Contains("0x5000", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Typed_objects_round_trip_in_little_endian_layout()
    {
        var m = Layout();
        var s = new Sample { A = 0x11223344, B = 0x5566, C = 0x8877665544332211 };
        m.WriteObject(0xffa, s);                           // crosses a <-> b
        Assert.Equal(s, m.ReadObject<Sample>(0xffa));
        var raw = new byte[14];
        m.Read(0xffa, raw);
        Assert.Equal(new byte[] { 0x44, 0x33, 0x22, 0x11, 0x66, 0x55, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88 }, raw);
        Assert.Equal(0x2211556611223344UL, m.ReadObject<ulong>(0xffa));
    }

    [Fact]
    public void Native_ram_is_zeroed_and_disposes()
    {
        var ram = new NativeRam(0x10000);
        Assert.All(new ReadOnlySpan<byte>(ram.Pointer, 0x10000).ToArray(), b => Assert.Equal(0, b));
        ram.Dispose();
        Assert.Throws<ObjectDisposedException>(() => (IntPtr)ram.Pointer);
        ram.Dispose();
        Assert.Throws<ArgumentOutOfRangeException>(() => new NativeRam(0));
    }

    [Fact]
    public void Remap_swaps_regions_in_one_step_and_refuses_what_is_not_mapped_or_overlaps()
    {
        var m = Layout();
        var b = m.FindRegion(0x1000)!;
        int v = m.Version;
        var split = new GuestRegion("b-rom", 0x1000, 0x1000, _b.Pointer, readOnly: true);
        m.Remap([b], [split]);
        Assert.NotEqual(v, m.Version);
        Assert.Same(split, m.FindRegion(0x1800));
        Assert.True(m.TryWrite(0x1800, [1]));   // now ROM: dropped
        Assert.Equal(0, _b.Pointer[0x800]);
        Assert.Throws<ArgumentException>(() => m.Remap([b], []));  // no longer mapped
        Assert.Throws<ArgumentException>(() => m.Remap([], [new GuestRegion("x", 0x1fff, 2, _a.Pointer)]));
        Assert.Same(split, m.FindRegion(0x1800)); // a refused remap changes nothing
    }

    [Fact]
    public void A_write_only_region_reads_from_one_block_and_writes_to_another()
    {
        var m = new GuestMemory([new GuestRegion("wo", 0, 0x1000, _rom.Pointer, writeHost: _a.Pointer)]);
        _rom.Pointer[5] = 0xee;
        Assert.True(m.TryWrite(5, [0x11]));
        Assert.Equal(0x11, _a.Pointer[5]);
        Span<byte> x = stackalloc byte[1];
        Assert.True(m.TryRead(5, x));
        Assert.Equal(0xee, x[0]);
        Assert.False(m.FindRegion(0)!.WritesInPlace);
    }
}
