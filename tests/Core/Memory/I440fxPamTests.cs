using ActorVmm.Core.Memory;

namespace ActorVmm.Core.Tests.Memory;

/// <summary>The i440FX PAM decoding, per the 82441FX datasheet's PAM register table (RE bit 0/4, WE bit 1/5).</summary>
public sealed unsafe class I440fxPamTests : IDisposable
{
    private const ulong RamBytes = 2 << 20;
    private readonly NativeRam _ram = new(RamBytes);
    private readonly NativeRam _rom = new(128 * 1024);
    private readonly GuestMemory _memory;
    private readonly I440fxPam _pam;

    public I440fxPamTests()
    {
        new Span<byte>(_rom.Pointer, 128 * 1024).Fill(0xb1);  // "ROM"
        new Span<byte>(_ram.Pointer, (int)RamBytes).Fill(0x3a); // "RAM"
        _memory = new GuestMemory([new GuestRegion("ram", 0, RamBytes, _ram.Pointer)]);
        _pam = new I440fxPam(_memory, _rom.Pointer);
    }

    public void Dispose()
    {
        _pam.Dispose();
        _ram.Dispose();
        _rom.Dispose();
    }

    private byte Read(ulong gpa)
    {
        Span<byte> b = stackalloc byte[1];
        Assert.True(_memory.TryRead(gpa, b));
        return b[0];
    }

    private void Write(ulong gpa, byte v) => Assert.True(_memory.TryWrite(gpa, [v]));

    private static byte[] Pam(byte pam0 = 0, byte pam1 = 0, byte pam2 = 0, byte pam3 = 0, byte pam4 = 0, byte pam5 = 0, byte pam6 = 0)
        => [pam0, pam1, pam2, pam3, pam4, pam5, pam6];

    [Fact]
    public void At_reset_the_e_and_f_segments_read_the_rom_and_the_c_and_d_segments_read_nothing()
    {
        Assert.Equal(0xb1, Read(0xf0000));
        Assert.Equal(0xb1, Read(0xe4000));
        Assert.Equal(0xff, Read(0xc0000)); // master abort: all-ones
        Assert.Equal(0xff, Read(0xdffff));
        Write(0xf0000, 0x11);
        Write(0xc0000, 0x11);
        Assert.Equal(0x3a, _ram.Pointer[0xf0000]); // writes went to PCI: dropped, RAM untouched
        Assert.Equal(0x3a, _ram.Pointer[0xc0000]);
        Assert.Equal(0xb1, Read(0xf0000));
    }

    [Fact]
    public void Write_only_then_read_write_then_read_only_is_how_a_bios_shadows_itself()
    {
        int before = _memory.Version;
        _pam.Apply(Pam(pam0: 0x20)); // F segment: WE only
        Assert.NotEqual(before, _memory.Version);
        Assert.Equal(0xb1, Read(0xf1234));  // reads still from ROM
        Write(0xf1234, 0x77);               // writes land in RAM
        Assert.Equal(0x77, _ram.Pointer[0xf1234]);
        Assert.Equal(0xb1, Read(0xf1234));
        _pam.Apply(Pam(pam0: 0x30));        // read/write DRAM
        Assert.Equal(0x77, Read(0xf1234));
        _pam.Apply(Pam(pam0: 0x10));        // read-only DRAM: writes go to PCI (dropped)
        Write(0xf1234, 0x88);
        Assert.Equal(0x77, Read(0xf1234));
        Assert.Equal(0x77, _ram.Pointer[0xf1234]);
        Assert.Equal(0xb1, Read(0xe0000));  // the E segments were not touched
    }

    [Theory]
    [InlineData(1, 0, 0xc0000)]
    [InlineData(1, 4, 0xc4000)]
    [InlineData(2, 0, 0xc8000)]
    [InlineData(3, 4, 0xd4000)]
    [InlineData(5, 0, 0xe0000)]
    [InlineData(6, 4, 0xec000)]
    public void Each_pam_nibble_controls_its_own_16_KiB_segment(int register, int shift, ulong start)
    {
        var pam = new byte[7];
        pam[register] = (byte)(3 << shift);
        _pam.Apply(pam);
        Write(start, 0x42);
        Write(start + 0x3fff, 0x43);
        Assert.Equal(0x42, Read(start));
        Assert.Equal(0x43, Read(start + 0x3fff));
        // The neighbours stayed as at reset: the ROM alias (E and F segments) or nothing (all-ones) answers there.
        static byte AtReset(ulong gpa) => gpa >= I440fxPam.BiosAliasStart ? (byte)0xb1 : (byte)0xff;
        Assert.Equal(AtReset(start + 0x4000), Read(start + 0x4000));
        if (start > I440fxPam.WindowStart) Assert.Equal(AtReset(start - 1), Read(start - 1));
        Assert.Equal(1, _pam.Modes.Count(m => m == 3));
    }

    [Fact]
    public void Write_only_below_the_rom_alias_reads_all_ones_and_fills_ram()
    {
        _pam.Apply(Pam(pam3: 0x02)); // 0xd0000: WE only
        Write(0xd0010, 0x99);
        Assert.Equal(0x99, _ram.Pointer[0xd0010]);
        Assert.Equal(0xff, Read(0xd0010));
    }

    [Fact]
    public void Reserved_bits_change_nothing()
    {
        int before = _memory.Version;
        _pam.Apply(Pam(pam0: 0x0f, pam1: 0xcc));
        Assert.Equal(before, _memory.Version);
        Assert.Equal(0xb1, Read(0xf0000));
    }

    [Fact]
    public void Less_than_one_mib_of_ram_cannot_hold_the_window()
    {
        using var small = new NativeRam(0xc0000);
        var memory = new GuestMemory([new GuestRegion("ram", 0, 0xc0000, small.Pointer)]);
        Assert.Throws<GuestMemoryException>(() => new I440fxPam(memory, _rom.Pointer));
    }
}
