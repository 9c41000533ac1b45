// PCI host tests: configuration mechanism #1 driven through 0xcf8/0xcfc as the PCI Local Bus Specification
// describes, against the i440FX/PIIX3 identities and a test function with every BAR kind.
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

public sealed class PciHostTests
{
    private readonly PciHost _host = PciHost.CreateI440fx();

    private static uint Address(int device, int fn, int register, int bus = 0)
        => 0x8000_0000u | (uint)(bus << 16) | (uint)(device << 11) | (uint)(fn << 8) | (uint)(register & 0xfc);

    private uint Read32(int device, int fn, int register)
    {
        _host.Write32(0, Address(device, fn, register));
        return _host.Read32(4);
    }

    private void Write32(int device, int fn, int register, uint value)
    {
        _host.Write32(0, Address(device, fn, register));
        _host.Write32(4, value);
    }

    private static PciFunction TestFunction() => new("test", 0x1af4, 0x1000, 0x020000, interruptPin: 1, bars:
    [
        new PciBarDefinition(0, 0x20, PciBarKind.Io),
        new PciBarDefinition(1, 0x1000, PciBarKind.Memory32, Prefetchable: true),
        new PciBarDefinition(2, 0x10_0000, PciBarKind.Memory64),
    ]);

    [Fact]
    public void Config_address_is_dword_only_and_masks_reserved_bits()
    {
        _host.Write32(0, 0xffff_ffff);
        Assert.Equal(0x80ff_fffcu, _host.Read32(0));
        Assert.Equal(0xffu, _host.Read8(0));
        _host.Write16(0, 0);
        Assert.Equal(0x80ff_fffcu, _host.Read32(0));
        Assert.Equal(2, _host.BadAccesses);
    }

    [Fact]
    public void Host_bridge_and_isa_bridge_identify_as_i440fx_and_piix3()
    {
        Assert.Equal(0x1237_8086u, Read32(0, 0, 0x00));
        Assert.Equal(0x0600_0002u, Read32(0, 0, 0x08));
        Assert.Equal(0u, Read32(0, 0, 0x0c) >> 16 & 0xff);
        Assert.Equal(0x7000_8086u, Read32(1, 0, 0x00));
        Assert.Equal(0x0601_0000u, Read32(1, 0, 0x08));
        Assert.Equal(0x80u, Read32(1, 0, 0x0c) >> 16 & 0xff);
    }

    [Fact]
    public void Absent_functions_other_buses_and_a_clear_enable_bit_read_all_ones()
    {
        Assert.Equal(0xffff_ffffu, Read32(5, 0, 0));
        Assert.Equal(0xffff_ffffu, Read32(0, 1, 0));
        _host.Write32(0, Address(0, 0, 0, bus: 1));
        Assert.Equal(0xffff_ffffu, _host.Read32(4));
        _host.Write32(0, Address(0, 0, 0) & 0x7fff_ffff);
        Assert.Equal(0xffff_ffffu, _host.Read32(4));
        Assert.Equal(0, _host.BadAccesses);
    }

    [Fact]
    public void Data_port_serves_bytes_and_words_at_their_offset()
    {
        _host.Write32(0, Address(1, 0, 0));
        Assert.Equal(0x8086u, _host.Read16(4));
        Assert.Equal(0x7000u, _host.Read16(6));
        Assert.Equal(0x70u, _host.Read8(7));
        _host.Write32(0, Address(1, 0, 0x0c));
        Assert.Equal(0x80u, _host.Read8(6)); // header type at 0x0e
        Assert.Equal(0xffffu, _host.Read16(7)); // crosses the dword
        Assert.Equal(1, _host.BadAccesses);
    }

    [Fact]
    public void Identity_is_read_only_and_command_and_status_follow_their_masks()
    {
        var f = TestFunction();
        _host.AddFunction(3, 0, f);
        Write32(3, 0, 0x00, 0);
        Assert.Equal(0x1000_1af4u, Read32(3, 0, 0x00));
        f.SetConfig16(PciFunction.STATUS, 0x8010);
        Write32(3, 0, 0x04, 0x0000_ffff);
        Assert.Equal(0x8010_0547u, Read32(3, 0, 0x04)); // status untouched by zeros
        _host.Write32(0, Address(3, 0, 0x04));
        _host.Write16(6, 0x8000); // write 1 to clear bit 15; bit 4 is read-only
        Assert.Equal(0x0010u, f.StatusBits);
        Write32(3, 0, 0x3c, 0xffff_ff0b);
        Assert.Equal(0x010bu, Read32(3, 0, 0x3c) & 0xffff); // line writable, pin 1 read-only
    }

    [Fact]
    public void Bar_sizing_reads_back_the_size_mask_and_type_bits()
    {
        _host.AddFunction(3, 0, TestFunction());
        for (int bar = 0; bar < 6; bar++) Write32(3, 0, 0x10 + 4 * bar, 0xffff_ffff);
        Write32(3, 0, 0x30, 0xffff_ffff);
        Assert.Equal(0xffff_ffe1u, Read32(3, 0, 0x10)); // 32 bytes of I/O
        Assert.Equal(0xffff_f008u, Read32(3, 0, 0x14)); // 4 KiB, prefetchable, 32-bit
        Assert.Equal(0xfff0_0004u, Read32(3, 0, 0x18)); // 1 MiB, 64-bit
        Assert.Equal(0xffff_ffffu, Read32(3, 0, 0x1c)); // its upper half
        Assert.Equal(0u, Read32(3, 0, 0x20));
        Assert.Equal(0u, Read32(3, 0, 0x24));
        Assert.Equal(0u, Read32(3, 0, 0x30)); // no expansion ROM
    }

    [Fact]
    public void Bar_addresses_decode_only_when_their_space_is_enabled()
    {
        var f = TestFunction();
        _host.AddFunction(3, 0, f);
        Write32(3, 0, 0x10, 0xc040);
        Write32(3, 0, 0x14, 0xfebf_1000);
        Write32(3, 0, 0x18, 0xfe00_0000);
        Write32(3, 0, 0x1c, 0x0000_0001);
        Assert.Null(f.BarAddress(0));
        Assert.Null(f.BarAddress(1));
        Write32(3, 0, 0x04, PciFunction.CommandIoSpace);
        Assert.Equal(0xc040UL, f.BarAddress(0));
        Assert.Null(f.BarAddress(1));
        Write32(3, 0, 0x04, PciFunction.CommandIoSpace | PciFunction.CommandMemorySpace);
        Assert.Equal(0xfebf_1000UL, f.BarAddress(1));
        Assert.Equal(0x1_fe00_0000UL, f.BarAddress(2));
        Assert.Null(f.BarAddress(3));
    }

    [Fact]
    public void Piix3_pirq_routing_and_i440fx_pam_are_writable_and_reported()
    {
        var piix = _host.GetFunction(1, 0)!;
        var seen = new List<(int, int)>();
        piix.ConfigWritten = (_, offset, length) => seen.Add((offset, length));
        Assert.Equal(0x8080_8080u, Read32(1, 0, 0x60));
        _host.Write32(0, Address(1, 0, 0x60));
        _host.Write8(5, 0x0b); // PIRQB -> IRQ 11
        Assert.Equal(0x8080_0b80u, Read32(1, 0, 0x60));
        Assert.Equal([(0x61, 1)], seen);

        Write32(0, 0, 0x58, 0x3333_3300);
        Assert.Equal(0x3333_3300u, Read32(0, 0, 0x58)); // PAM0 at 0x59..; 0x58 itself is read-only
        Write32(0, 0, 0x40, 0xffff_ffff);
        Assert.Equal(0u, Read32(0, 0, 0x40));
    }

    [Fact]
    public void Function_definitions_are_validated()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new PciFunction("x", 1, 1, 0, bars: [new PciBarDefinition(0, 0x30, PciBarKind.Io)]));
        Assert.Throws<ArgumentException>(() => new PciFunction("x", 1, 1, 0, bars:
            [new PciBarDefinition(0, 0x1000, PciBarKind.Memory64), new PciBarDefinition(1, 0x1000, PciBarKind.Memory32)]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PciFunction("x", 1, 1, 0, bars: [new PciBarDefinition(5, 0x1000, PciBarKind.Memory64)]));
        Assert.Throws<ArgumentException>(() => new PciFunction("x", 0xffff, 1, 0));
        Assert.Throws<ArgumentException>(() => _host.AddFunction(0, 0, TestFunction()));
        Assert.Throws<ArgumentOutOfRangeException>(() => _host.AddFunction(32, 0, TestFunction()));
    }

    [Fact]
    public void State_round_trips_onto_the_same_topology()
    {
        _host.AddFunction(3, 0, TestFunction());
        Write32(3, 0, 0x10, 0xc040);
        Write32(1, 0, 0x60, 0x0a0b_0c0d);
        _host.Write32(0, Address(3, 0, 0x10));
        var state = _host.GetState();

        var copy = PciHost.CreateI440fx();
        copy.AddFunction(3, 0, TestFunction());
        copy.FromState(state);
        Assert.Equal(state.ConfigAddress, copy.ConfigAddress);
        Assert.Equal(0xc041u, copy.Read32(4));
        copy.Write32(0, Address(1, 0, 0x60));
        Assert.Equal(0x0a0b_0c0du & 0x8f8f_8f8f, copy.Read32(4));

        Assert.Throws<ArgumentException>(() => PciHost.CreateI440fx().FromState(state)); // no function at 03.0
        var wrong = state with { Functions = state.Functions.Select(f => f with { Config = new byte[256] }).ToArray() };
        Assert.Throws<ArgumentException>(() => copy.FromState(wrong));
    }

    [Fact]
    public void Random_guest_never_throws_and_identity_survives()
    {
        _host.AddFunction(3, 0, TestFunction());
        var rng = new Random(31);
        for (int i = 0; i < 100_000; i++)
        {
            if (rng.Next(3) == 0) _host.Write32(0, 0x8000_0000u | (uint)rng.Next(0x1_0000) << 2 & 0x00ff_fffc | (uint)rng.Next(2) << 31);
            _host.RandomAccess(rng, 8);
        }
        Assert.Equal(0x1237_8086u, Read32(0, 0, 0));
        Assert.Equal(0x7000_8086u, Read32(1, 0, 0));
        Assert.Equal(0x1000_1af4u, Read32(3, 0, 0));
        Assert.Equal(0x0200_0000u, Read32(3, 0, 8));
        var copy = PciHost.CreateI440fx();
        copy.AddFunction(3, 0, TestFunction());
        copy.FromState(_host.GetState());
    }
}
