// IOAPIC tests, driven through IOREGSEL/IOWIN as the 82093AA datasheet describes.
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

public sealed class IoApicTests
{
    private readonly RecordingInterruptSink _sink = new();
    private readonly IoApic _ioapic;

    public IoApicTests() => _ioapic = new IoApic(_sink);

    private uint ReadReg(byte index)
    {
        _ioapic.Write32(IoApic.IOREGSEL, index);
        return _ioapic.Read32(IoApic.IOWIN);
    }

    private void WriteReg(byte index, uint value)
    {
        _ioapic.Write32(IoApic.IOREGSEL, index);
        _ioapic.Write32(IoApic.IOWIN, value);
    }

    private void Program(int pin, ulong entry)
    {
        WriteReg((byte)(0x11 + 2 * pin), (uint)(entry >> 32));
        WriteReg((byte)(0x10 + 2 * pin), (uint)entry);
    }

    private ulong ReadEntry(int pin) => ReadReg((byte)(0x10 + 2 * pin)) | ((ulong)ReadReg((byte)(0x11 + 2 * pin)) << 32);

    [Fact]
    public void Version_register_reports_version_0x20_and_24_entries()
    {
        Assert.Equal(0x00170020u, ReadReg(IoApic.IOAPICVER));
        WriteReg(IoApic.IOAPICVER, 0);
        Assert.Equal(0x00170020u, ReadReg(IoApic.IOAPICVER));
    }

    [Fact]
    public void Id_is_bits_27_to_24_and_arbitration_id_follows_it()
    {
        WriteReg(IoApic.IOAPICID, 0xfa00_0000);
        Assert.Equal(0x0a00_0000u, ReadReg(IoApic.IOAPICID));
        Assert.Equal(0x0a00_0000u, ReadReg(IoApic.IOAPICARB));
        Assert.Equal((byte)0xa, _ioapic.Id);
    }

    [Fact]
    public void Ioregsel_reads_back_the_selected_index()
    {
        _ioapic.Write32(IoApic.IOREGSEL, 0x13);
        Assert.Equal(0x13u, _ioapic.Read32(IoApic.IOREGSEL));
        _ioapic.Write8(IoApic.IOREGSEL, 0x21);
        Assert.Equal(0x21u, _ioapic.Read32(IoApic.IOREGSEL));
    }

    [Fact]
    public void Reset_masks_every_entry()
    {
        for (int pin = 0; pin < IoApic.PinCount; pin++)
            Assert.Equal(IoApic.MASK, ReadEntry(pin));
    }

    [Fact]
    public void Read_only_and_reserved_bits_ignore_writes()
    {
        Program(3, 0xff00_0000_0000_0000UL | IoApic.DELIVS | IoApic.RemoteIrr | 0x00fe_0000 | 0x30);
        Assert.Equal(0xff00_0000_0000_0000UL | 0x30, ReadEntry(3));
    }

    [Fact]
    public void Edge_entry_delivers_once_per_rising_edge()
    {
        Program(4, (1UL << 56) | 0x31);
        _ioapic.SetIrq(4, true);
        _ioapic.SetIrq(4, true);
        Assert.Single(_sink.Messages);
        var m = _sink.Messages[0];
        Assert.Equal(0x31, m.Vector);
        Assert.Equal(ApicDeliveryMode.Fixed, m.DeliveryMode);
        Assert.False(m.LogicalDestination);
        Assert.Equal(1u, m.Destination);
        Assert.False(m.LevelTriggered);
        _ioapic.SetIrq(4, false);
        _ioapic.SetIrq(4, true);
        Assert.Equal(2, _sink.Messages.Count);
        Assert.Equal(0UL, ReadEntry(4) & IoApic.RemoteIrr);
    }

    [Fact]
    public void Edge_on_a_masked_pin_is_discarded_not_held()
    {
        Program(4, IoApic.MASK | 0x31);
        _ioapic.SetIrq(4, true);
        Program(4, 0x31);
        Assert.Empty(_sink.Messages);
    }

    [Fact]
    public void Level_entry_sets_remote_irr_and_redelivers_after_eoi_while_asserted()
    {
        Program(9, IoApic.TRIGGER | (2UL << 56) | 0x41);
        _ioapic.SetIrq(9, true);
        Assert.Single(_sink.Messages);
        Assert.True(_sink.Messages[0].LevelTriggered);
        Assert.NotEqual(0UL, ReadEntry(9) & IoApic.RemoteIrr);

        _ioapic.SetIrq(9, true); // still asserted, Remote IRR set: nothing new
        Assert.Single(_sink.Messages);

        _ioapic.Eoi(0x40); // another vector: no effect
        Assert.Single(_sink.Messages);

        _ioapic.Eoi(0x41);
        Assert.Equal(2, _sink.Messages.Count);
        Assert.NotEqual(0UL, ReadEntry(9) & IoApic.RemoteIrr);

        _ioapic.SetIrq(9, false);
        _ioapic.Eoi(0x41);
        Assert.Equal(2, _sink.Messages.Count);
        Assert.Equal(0UL, ReadEntry(9) & IoApic.RemoteIrr);
    }

    [Fact]
    public void Unmasking_an_asserted_level_pin_delivers_it()
    {
        Program(10, IoApic.MASK | IoApic.TRIGGER | 0x52);
        _ioapic.SetIrq(10, true);
        Assert.Empty(_sink.Messages);
        Program(10, IoApic.TRIGGER | 0x52);
        Assert.Single(_sink.Messages);
        Assert.Equal(0x52, _sink.Messages[0].Vector);
    }

    [Fact]
    public void Eoi_register_at_0x40_clears_remote_irr()
    {
        Program(11, IoApic.TRIGGER | 0x61);
        _ioapic.SetIrq(11, true);
        _ioapic.SetIrq(11, false);
        Assert.NotEqual(0UL, ReadEntry(11) & IoApic.RemoteIrr);
        _ioapic.Write32(IoApic.EoiRegister, 0x61);
        Assert.Equal(0UL, ReadEntry(11) & IoApic.RemoteIrr);
        Assert.Single(_sink.Messages);
    }

    [Fact]
    public void Switching_to_edge_clears_remote_irr()
    {
        Program(12, IoApic.TRIGGER | 0x62);
        _ioapic.SetIrq(12, true);
        Program(12, 0x62);
        Assert.Equal(0UL, ReadEntry(12) & IoApic.RemoteIrr);
    }

    [Fact]
    public void Logical_lowest_priority_message_encodes_as_msi()
    {
        Program(5, IoApic.DESTMOD | (1UL << 8) | (0x0fUL << 56) | 0x35);
        _ioapic.SetIrq(5, true);
        var m = Assert.Single(_sink.Messages);
        Assert.True(m.LogicalDestination);
        Assert.Equal(ApicDeliveryMode.LowestPriority, m.DeliveryMode);
        Assert.Equal(0xfee0_f004UL, m.MsiAddress);
        Assert.Equal(0x0000_4135u, m.MsiData);
        Assert.True(ApicMessage.TryFromMsi(m.MsiAddress, m.MsiData, out var back));
        Assert.Equal(m, back);
    }

    [Fact]
    public void Level_msi_data_carries_trigger_and_level_bits()
    {
        var m = new ApicMessage(0x45, ApicDeliveryMode.Fixed, false, 3, LevelTriggered: true);
        Assert.Equal(0xfee0_3000UL, m.MsiAddress);
        Assert.Equal(0x0000_c045u, m.MsiData);
        Assert.False(ApicMessage.TryFromMsi(0xfed0_0000, 0x45, out _));
    }

    [Fact]
    public void ExtInt_entry_passes_through()
    {
        Program(0, 7UL << 8);
        _ioapic.SetIrq(0, true);
        var m = Assert.Single(_sink.Messages);
        Assert.Equal(ApicDeliveryMode.ExtInt, m.DeliveryMode);
    }

    [Fact]
    public void Level_triggered_nmi_entry_delivers_on_edges_without_remote_irr()
    {
        Program(6, IoApic.TRIGGER | (4UL << 8));
        _ioapic.SetIrq(6, true);
        _ioapic.SetIrq(6, true);
        var m = Assert.Single(_sink.Messages);
        Assert.Equal(ApicDeliveryMode.Nmi, m.DeliveryMode);
        Assert.False(m.LevelTriggered);
        Assert.Equal(0UL, ReadEntry(6) & IoApic.RemoteIrr);
    }

    [Fact]
    public void Bad_accesses_are_counted_and_read_as_ones()
    {
        Assert.Equal(0xffffu, _ioapic.Read16(IoApic.IOWIN));
        _ioapic.Write16(IoApic.IOWIN, 1);
        Assert.Equal(0xffff_ffffu, _ioapic.Read32(0x20));
        Assert.Equal(0u, ReadReg(0x50)); // no register 0x50
        _ioapic.SetIrq(24, true);
        _ioapic.SetIrq(-1, true);
        Assert.Equal(6, _ioapic.BadAccesses);
        Assert.Empty(_sink.Messages);
    }

    [Fact]
    public void State_round_trips_and_the_copy_behaves_the_same()
    {
        WriteReg(IoApic.IOAPICID, 0x0300_0000);
        Program(9, IoApic.TRIGGER | 0x41);
        _ioapic.SetIrq(9, true);
        _ioapic.Write32(IoApic.IOREGSEL, 0x12);
        var state = _ioapic.GetState();

        var sink2 = new RecordingInterruptSink();
        var copy = new IoApic(sink2);
        copy.FromState(state);
        var again = copy.GetState();
        Assert.Equal(state.Id, again.Id);
        Assert.Equal(state.RegisterSelect, again.RegisterSelect);
        Assert.Equal(state.PinLevels, again.PinLevels);
        Assert.Equal(state.Redirection, again.Redirection);

        copy.Eoi(0x41); // still asserted in the saved state: delivered again
        Assert.Single(sink2.Messages);
        Assert.Equal(0x41, sink2.Messages[0].Vector);
    }

    [Fact]
    public void FromState_rejects_bad_records()
    {
        var good = _ioapic.GetState();
        Assert.Throws<ArgumentException>(() => _ioapic.FromState(good with { Redirection = new ulong[3] }));
        Assert.Throws<ArgumentException>(() => _ioapic.FromState(good with { Id = 0x10 }));
        Assert.Throws<ArgumentException>(() => _ioapic.FromState(good with { PinLevels = 1u << 24 }));
        var reserved = (ulong[])good.Redirection.Clone();
        reserved[0] = 1UL << 40;
        Assert.Throws<ArgumentException>(() => _ioapic.FromState(good with { Redirection = reserved }));
    }

    [Fact]
    public void Random_guest_never_throws_and_deliveries_stay_bounded()
    {
        var rng = new Random(4242);
        long inputs = 0;
        for (int i = 0; i < 100_000; i++)
        {
            switch (rng.Next(4))
            {
                case 0:
                    _ioapic.RandomAccess(rng, 0x100);
                    inputs++;
                    break;
                case 1:
                    _ioapic.Write32(IoApic.IOREGSEL, (uint)rng.Next(0x40));
                    _ioapic.Write32(IoApic.IOWIN, (uint)rng.NextInt64());
                    inputs++;
                    break;
                case 2:
                    _ioapic.SetIrq(rng.Next(-2, 27), rng.Next(2) == 0);
                    inputs++;
                    break;
                default:
                    _ioapic.Eoi((byte)rng.Next(256));
                    inputs += IoApic.PinCount;
                    break;
            }
        }
        Assert.True(_ioapic.Deliveries <= inputs);
        Assert.Equal(_ioapic.Deliveries, _sink.Messages.Count);
        var state = _ioapic.GetState();
        new IoApic(new RecordingInterruptSink()).FromState(state);
    }
}
