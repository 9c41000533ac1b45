using ActorVmm.Core.Boot;
using ActorVmm.Core.Memory;

namespace ActorVmm.Core.Tests.Boot;

public sealed unsafe class BiosFirmwareTests : IDisposable
{
    private const ulong RamBytes = 2 << 20;
    private readonly NativeRam _ram = new(RamBytes);

    public void Dispose() => _ram.Dispose();

    private GuestMemory Memory() => new([new GuestRegion("ram", 0, RamBytes, _ram.Pointer)]);

    /// <summary>An image whose every 64 KiB block is filled with its block number, and a recognisable last 16 bytes.</summary>
    private static byte[] Image(int size)
    {
        var data = new byte[size];
        for (int i = 0; i < size; i++) data[i] = (byte)(i / BiosImage.BlockSize);
        data[^16] = 0xea; // JMP FAR at the reset vector
        return data;
    }

    [Theory]
    [InlineData(0, "empty")]
    [InlineData(64 * 1024, "at least 128 KiB")]
    [InlineData(128 * 1024 + 1, "multiple of 64 KiB")]
    [InlineData(200 * 1024, "multiple of 64 KiB")]
    [InlineData(16 * 1024 * 1024 + 64 * 1024, "larger than the 16 MiB")]
    public void Bad_bios_images_are_refused_naming_the_file_and_the_rule(int size, string why)
    {
        var e = Assert.Throws<BootImageException>(() => BiosImage.Parse(new byte[size], "bad.bin"));
        Assert.StartsWith("bad.bin: ", e.Message, StringComparison.Ordinal);
        Assert.Contains(why, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(128 * 1024)]
    [InlineData(256 * 1024)]
    [InlineData(16 * 1024 * 1024)]
    public void Good_sizes_are_accepted_and_end_at_4_GiB(int size)
    {
        var image = BiosImage.Parse(Image(size), "bios.bin");
        Assert.Equal((1UL << 32) - (ulong)size, image.Base);
    }

    [Fact]
    public void The_rom_sits_below_4_GiB_and_its_last_128_KiB_answer_at_0xe0000_until_shadowed()
    {
        var memory = Memory();
        var image = BiosImage.Parse(Image(256 * 1024), "bios-256k.bin");
        using var fw = BiosFirmware.Load(memory, image);
        Span<byte> b = stackalloc byte[1];
        // The reset vector (0xfffffff0) is the image's byte at size - 16.
        memory.Read(0xfffffff0, b);
        Assert.Equal(0xea, b[0]);
        memory.Read(0xfffc0000, b);
        Assert.Equal(0, b[0]);                  // block 0 of the image
        memory.Read(0xe0000, b);
        Assert.Equal(2, b[0]);                  // 0xe0000 = image offset 0x20000 (block 2)
        memory.Read(0xffff0, b);
        Assert.Equal(0xea, b[0]);               // the same reset vector through the low alias
        // ROM: the guest cannot write it, through either address.
        Assert.True(memory.TryWrite(0xfffffff0, [0x90]));
        Assert.True(memory.TryWrite(0xffff0, [0x90]));
        memory.Read(0xfffffff0, b);
        Assert.Equal(0xea, b[0]);
        memory.Read(0xffff0, b);
        Assert.Equal(0xea, b[0]);
        // RAM below and above the window is unchanged.
        Assert.True(memory.TryWrite(0x9ffff, [0x55]));
        Assert.True(memory.TryWrite(0x100000, [0x66]));
        Assert.Equal(0x55, _ram.Pointer[0x9ffff]);
        Assert.Equal(0x66, _ram.Pointer[0x100000]);
    }

    [Fact]
    public void The_reset_state_fetches_at_0xfffffff0_in_real_mode()
    {
        var s = BiosFirmware.ResetState();
        Assert.Equal(0xf000, s.System.Cs.Selector);
        Assert.Equal(0xfffffff0UL, s.System.Cs.Base + s.Registers.Rip);
        Assert.Equal(0UL, s.System.Cr0 & 1);
    }

    [Fact]
    public void A_rom_that_would_overlap_memory_is_refused()
    {
        using var high = new NativeRam(0x1000);
        var memory = new GuestMemory([new GuestRegion("ram", 0, RamBytes, _ram.Pointer), new GuestRegion("x", 0xffff0000, 0x1000, high.Pointer)]);
        Assert.Throws<BootImageException>(() => BiosFirmware.Load(memory, BiosImage.Parse(Image(128 * 1024), "b")));
    }
}
