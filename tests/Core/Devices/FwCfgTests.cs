// fw_cfg tests: the traditional and DMA interfaces driven as QEMU's docs/specs/fw_cfg.rst describes, with
// real (native) guest memory for DMA.
using System.Buffers.Binary;
using System.Text;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Memory;

namespace ActorVmm.Core.Tests.Devices;

public sealed class FwCfgTests : IDisposable
{
    private const ulong RamSize = 1 << 20;
    private readonly NativeRam _ram = new(RamSize);
    private readonly GuestMemory _memory;
    private readonly FwCfg _fw;

    public FwCfgTests()
    {
        _memory = MakeMemory(_ram);
        _fw = new FwCfg(_memory);
    }

    public void Dispose() => _ram.Dispose();

    private static unsafe GuestMemory MakeMemory(NativeRam ram) => new([new GuestRegion("ram", 0, ram.Size, ram.Pointer)]);

    private byte[] ReadItem(ushort key, int length)
    {
        _fw.Write16(0, key);
        var bytes = new byte[length];
        for (int i = 0; i < length; i++) bytes[i] = _fw.Read8(1);
        return bytes;
    }

    /// <summary>Writes an FWCfgDmaAccess at <paramref name="at"/> and triggers it as SeaBIOS does (high, then low half).</summary>
    private uint Dma(ulong at, uint control, uint length, ulong address)
    {
        var access = new byte[16];
        BinaryPrimitives.WriteUInt32BigEndian(access, control);
        BinaryPrimitives.WriteUInt32BigEndian(access.AsSpan(4), length);
        BinaryPrimitives.WriteUInt64BigEndian(access.AsSpan(8), address);
        _memory.Write(at, access);
        _fw.Write32(4, BinaryPrimitives.ReverseEndianness((uint)(at >> 32)));
        _fw.Write32(8, BinaryPrimitives.ReverseEndianness((uint)at));
        var back = new byte[4];
        _memory.Read(at, back);
        return BinaryPrimitives.ReadUInt32BigEndian(back);
    }

    [Fact]
    public void Signature_reads_QEMU_then_zeros_past_the_end()
    {
        Assert.Equal("QEMU\0\0"u8.ToArray(), ReadItem(FwCfg.SIGNATURE, 6));
        _fw.Write16(0, FwCfg.SIGNATURE);
        Assert.Equal((byte)'Q', _fw.Read8(0)); // QEMU also answers data reads at the selector port
        Assert.Equal((byte)'E', _fw.Read8(1));
    }

    [Fact]
    public void Id_reports_dma_and_the_dma_register_reads_the_signature()
    {
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(ReadItem(FwCfg.ID, 4)));
        var sig = new byte[8];
        _fw.Read(4, sig);
        Assert.Equal("QEMU CFG"u8.ToArray(), sig);
        Assert.Equal(BinaryPrimitives.ReadUInt32LittleEndian("QEMU"u8), _fw.Read32(4));
        Assert.Equal(BinaryPrimitives.ReadUInt32LittleEndian(" CFG"u8), _fw.Read32(8));

        var plain = new FwCfg(null);
        plain.Write16(0, FwCfg.ID);
        Assert.Equal(1, plain.Read8(1));
        Assert.Equal(0xffff_ffffu, plain.Read32(4));
        Assert.Equal(1, plain.BadAccesses);
    }

    [Fact]
    public void Machine_items_are_little_endian()
    {
        _fw.SetRamSize(512UL << 20);
        _fw.SetCpuCount(2, 4);
        _fw.SetBootMenu(true);
        Assert.Equal(512UL << 20, BinaryPrimitives.ReadUInt64LittleEndian(ReadItem(FwCfg.RAM_SIZE, 8)));
        Assert.Equal((ushort)2, BinaryPrimitives.ReadUInt16LittleEndian(ReadItem(FwCfg.NB_CPUS, 2)));
        Assert.Equal((ushort)4, BinaryPrimitives.ReadUInt16LittleEndian(ReadItem(FwCfg.MAX_CPUS, 2)));
        Assert.Equal((ushort)1, BinaryPrimitives.ReadUInt16LittleEndian(ReadItem(FwCfg.BOOT_MENU, 2)));
        Assert.Throws<ArgumentOutOfRangeException>(() => _fw.SetCpuCount(3, 2));
    }

    [Fact]
    public void File_directory_lists_files_big_endian_with_their_keys()
    {
        Assert.Equal(0x20, _fw.AddFile("etc/boot-fail-wait", [0x10, 0x27, 0, 0]));
        Assert.Equal(0x21, _fw.AddFile("bootorder", "/rom@genroms/linuxboot_dma.bin\0"u8.ToArray()));
        var dir = ReadItem(FwCfg.FILE_DIR, 4 + 2 * 64);
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32BigEndian(dir));
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32BigEndian(dir.AsSpan(4)));
        Assert.Equal((ushort)0x20, BinaryPrimitives.ReadUInt16BigEndian(dir.AsSpan(8)));
        Assert.Equal("etc/boot-fail-wait", Encoding.ASCII.GetString(dir, 12, 56).TrimEnd('\0'));
        Assert.Equal(31u, BinaryPrimitives.ReadUInt32BigEndian(dir.AsSpan(68)));
        Assert.Equal((ushort)0x21, BinaryPrimitives.ReadUInt16BigEndian(dir.AsSpan(72)));
        Assert.Equal("bootorder", Encoding.ASCII.GetString(dir, 76, 56).TrimEnd('\0'));
        Assert.Equal(new byte[] { 0x10, 0x27, 0, 0 }, ReadItem(0x20, 4));
        Assert.Equal((ushort)0x21, _fw.FindFile("bootorder"));
        Assert.Null(_fw.FindFile("nothing"));
    }

    [Fact]
    public void File_names_are_validated()
    {
        Assert.Throws<ArgumentException>(() => _fw.AddFile(new string('a', 56), []));
        _fw.AddFile("etc/e820", []);
        Assert.Throws<ArgumentException>(() => _fw.AddFile("etc/e820", []));
        Assert.Throws<ArgumentException>(() => _fw.SetItem(0x20, []));
        Assert.Throws<ArgumentException>(() => _fw.SetItem(FwCfg.FILE_DIR, []));
        _fw.SetItem(FwCfg.E820_TABLE, [1, 2]); // architecture-specific keys are fine
    }

    [Fact]
    public void Write_channel_bit_selects_the_same_item_and_data_writes_are_ignored()
    {
        Assert.Equal("QEMU"u8.ToArray(), ReadItem(FwCfg.WRITE_CHANNEL | FwCfg.SIGNATURE, 4));
        _fw.Write16(0, FwCfg.SIGNATURE);
        _fw.Write8(1, 0x41);
        Assert.Equal((byte)'Q', _fw.Read8(1));
        Assert.Equal(1, _fw.BadAccesses);
    }

    [Fact]
    public void Linux_boot_items_carry_address_size_and_data()
    {
        _fw.SetKernel(0x100000, [1, 2, 3]);
        _fw.SetInitrd(0x7000000, [4, 5]);
        _fw.SetCommandLine(0x20000, "console=ttyS0");
        _fw.SetSetup(0x10000, [6]);
        Assert.Equal(0x100000u, BinaryPrimitives.ReadUInt32LittleEndian(ReadItem(FwCfg.KERNEL_ADDR, 4)));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(ReadItem(FwCfg.KERNEL_SIZE, 4)));
        Assert.Equal(new byte[] { 1, 2, 3 }, ReadItem(FwCfg.KERNEL_DATA, 3));
        Assert.Equal(0x7000000u, BinaryPrimitives.ReadUInt32LittleEndian(ReadItem(FwCfg.INITRD_ADDR, 4)));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(ReadItem(FwCfg.INITRD_SIZE, 4)));
        Assert.Equal(14u, BinaryPrimitives.ReadUInt32LittleEndian(ReadItem(FwCfg.CMDLINE_SIZE, 4)));
        Assert.Equal("console=ttyS0\0"u8.ToArray(), ReadItem(FwCfg.CMDLINE_DATA, 14));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(ReadItem(FwCfg.SETUP_SIZE, 4)));
    }

    [Fact]
    public void Dma_read_selects_copies_and_zero_fills_past_the_end()
    {
        _memory.Write(0x2000, Enumerable.Repeat((byte)0xaa, 8).ToArray());
        uint control = Dma(0x1000, (FwCfg.SIGNATURE << 16) | FwCfg.DmaSelect | FwCfg.DmaRead, 8, 0x2000);
        Assert.Equal(0u, control);
        var got = new byte[8];
        _memory.Read(0x2000, got);
        Assert.Equal("QEMU\0\0\0\0"u8.ToArray(), got);
    }

    [Fact]
    public void Dma_by_one_64_bit_write_and_skip_then_read()
    {
        ushort key = _fw.AddFile("opt/test", [10, 11, 12, 13, 14]);
        var access = new byte[16];
        BinaryPrimitives.WriteUInt32BigEndian(access, ((uint)key << 16) | FwCfg.DmaSelect | FwCfg.DmaSkip);
        BinaryPrimitives.WriteUInt32BigEndian(access.AsSpan(4), 2);
        _memory.Write(0x3000, access);
        _fw.Write64(4, BinaryPrimitives.ReverseEndianness(0x3000UL));
        Assert.Equal(0u, Dma(0x1000, FwCfg.DmaRead, 2, 0x2000));
        var got = new byte[2];
        _memory.Read(0x2000, got);
        Assert.Equal(new byte[] { 12, 13 }, got);
        Assert.Equal(14, _fw.Read8(1)); // the data port continues at the same offset
    }

    [Fact]
    public void Dma_write_reaches_only_writable_files_and_never_past_their_end()
    {
        ushort ro = _fw.AddFile("etc/ro", [0, 0, 0, 0]);
        ushort rw = _fw.AddFile("etc/rw", [0, 0, 0, 0], writable: true);
        _memory.Write(0x2000, [1, 2, 3, 4, 5]);

        Assert.Equal(FwCfg.DmaError, Dma(0x1000, ((uint)ro << 16) | FwCfg.DmaSelect | FwCfg.DmaWrite, 4, 0x2000));
        Assert.Equal(new byte[4], _fw.GetItem(ro));
        Assert.Equal(FwCfg.DmaError, Dma(0x1000, ((uint)rw << 16) | FwCfg.DmaSelect | FwCfg.DmaWrite, 5, 0x2000));
        Assert.Equal(new byte[4], _fw.GetItem(rw)); // truncated writes are dropped entirely
        Assert.Equal(0u, Dma(0x1000, ((uint)rw << 16) | FwCfg.DmaSelect | FwCfg.DmaWrite, 4, 0x2000));
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, _fw.GetItem(rw));
        Assert.Equal(2, _fw.DmaErrors);
    }

    [Fact]
    public void Dma_to_unbacked_memory_sets_the_error_bit_and_never_throws()
    {
        Assert.Equal(FwCfg.DmaError, Dma(0x1000, (FwCfg.SIGNATURE << 16) | FwCfg.DmaSelect | FwCfg.DmaRead, 16, RamSize - 8));
        Assert.Equal(FwCfg.DmaError, Dma(0x1000, FwCfg.DmaRead, 4, 0xffff_ffff_ffff_fff0));
        // A control structure outside RAM cannot even be read: counted, nothing written.
        _fw.Write32(4, BinaryPrimitives.ReverseEndianness(0x10u));
        _fw.Write32(8, 0);
        Assert.Equal(3, _fw.DmaErrors);
    }

    [Fact]
    public void State_round_trips_selection_offset_and_writable_files()
    {
        ushort rw = _fw.AddFile("etc/rw", [0, 0, 0, 0], writable: true);
        _memory.Write(0x2000, [9, 8, 7, 6]);
        Dma(0x1000, ((uint)rw << 16) | FwCfg.DmaSelect | FwCfg.DmaWrite, 4, 0x2000);
        _fw.Write16(0, FwCfg.SIGNATURE);
        _fw.Read8(1);
        _fw.Write32(4, BinaryPrimitives.ReverseEndianness(0x12u));
        var state = _fw.GetState();

        var copy = new FwCfg(_memory);
        copy.AddFile("etc/rw", [0, 0, 0, 0], writable: true);
        copy.FromState(state);
        Assert.Equal((byte)'E', copy.Read8(1));
        Assert.Equal(new byte[] { 9, 8, 7, 6 }, copy.GetItem(rw));
        Assert.Equal(state.DmaAddressHigh, copy.GetState().DmaAddressHigh);

        Assert.Throws<ArgumentException>(() => new FwCfg(_memory).FromState(state)); // no such writable file
        Assert.Throws<ArgumentException>(() => copy.FromState(state with { Offset = 5 }));
    }

    [Fact]
    public void Random_guest_never_throws()
    {
        _fw.AddFile("etc/rw", new byte[64], writable: true);
        _fw.AddFile("etc/ro", new byte[64]);
        var rng = new Random(5);
        for (int i = 0; i < 50_000; i++)
        {
            if (rng.Next(4) == 0)
            {
                var access = new byte[16];
                rng.NextBytes(access);
                if (rng.Next(2) == 0) BinaryPrimitives.WriteUInt64BigEndian(access.AsSpan(8), (ulong)rng.Next(0, (int)RamSize));
                if (rng.Next(2) == 0) BinaryPrimitives.WriteUInt32BigEndian(access.AsSpan(4), (uint)rng.Next(0, 0x10000));
                ulong at = (ulong)rng.Next(0, (int)RamSize - 16);
                _memory.Write(at, access);
                _fw.Write32(4, 0);
                _fw.Write32(8, BinaryPrimitives.ReverseEndianness((uint)at));
            }
            else
            {
                _fw.RandomAccess(rng, 12);
            }
        }
        Assert.Equal("QEMU"u8.ToArray(), _fw.GetItem(FwCfg.SIGNATURE));
        Assert.Equal(64, _fw.GetItem(0x20)!.Length);
    }
}
