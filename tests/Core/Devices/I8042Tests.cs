// The i8042 driven as the IBM PC/AT technical reference and the Linux/SeaBIOS probe sequences use it.
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

public sealed class I8042Tests
{
    private readonly RecordingIrqLine _irq1 = new();
    private readonly RecordingIrqLine _irq12 = new();
    private readonly RecordingIrqLine _a20 = new();
    private readonly RecordingMachineControl _machine = new();
    private readonly I8042 _kbc;

    public I8042Tests()
    {
        _kbc = new I8042(_irq1, _irq12, _machine, _a20);
    }

    private byte Status() => _kbc.CommandPort.In8(0);

    private void Cmd(byte c) => _kbc.CommandPort.Out8(0, c);

    private void Data(byte d) => _kbc.DataPort.Out8(0, d);

    /// <summary>Reads everything in the output buffer, as a polling driver does.</summary>
    private List<byte> Drain()
    {
        var bytes = new List<byte>();
        for (int i = 0; i < 200 && (Status() & I8042.StatusOutputBufferFull) != 0; i++)
            bytes.Add(_kbc.DataPort.In8(0));
        return bytes;
    }

    private void WriteCommandByte(byte value)
    {
        Cmd(0x60);
        Data(value);
    }

    [Fact]
    public void Status_after_power_on()
    {
        Assert.Equal(I8042.StatusNotInhibited, Status());
        Cmd(0x20);
        Assert.Equal(I8042.StatusNotInhibited | I8042.StatusCommand | I8042.StatusOutputBufferFull, Status());
        Assert.Equal([0x03], Drain());
    }

    [Fact]
    public void Self_test_and_interface_tests()
    {
        WriteCommandByte(0x00);
        Cmd(0xaa);
        Assert.Equal([0x55], Drain());
        Assert.Equal(I8042.StatusSystemFlag, Status() & I8042.StatusSystemFlag);
        Cmd(0xab);
        Assert.Equal([0x00], Drain());
        Cmd(0xa9);
        Assert.Equal([0x00], Drain());
        Cmd(0xe0);
        Assert.Equal([0x00], Drain());
    }

    [Fact]
    public void Command_byte_read_write_and_ram()
    {
        WriteCommandByte(0x65);
        Assert.Equal(0, Status() & I8042.StatusCommand); // last write went to 0x60
        Cmd(0x20);
        Assert.Equal([0x65], Drain());
        Assert.Equal(I8042.StatusSystemFlag, Status() & I8042.StatusSystemFlag);
        Assert.True(_kbc.Translating);
        Cmd(0x75);
        Data(0x9c);
        Cmd(0x35);
        Assert.Equal([0x9c], Drain());
    }

    [Fact]
    public void Disable_enable_keyboard_and_aux_bits()
    {
        WriteCommandByte(0x00);
        Cmd(0xad);
        Cmd(0xa7);
        Cmd(0x20);
        Assert.Equal([0x30], Drain());
        Cmd(0xae);
        Cmd(0xa8);
        Cmd(0x20);
        Assert.Equal([0x00], Drain());
    }

    [Fact]
    public void Output_port_a20_and_reset()
    {
        Cmd(0xd0);
        Assert.Equal([0xcf], Drain());
        Assert.True(_kbc.A20Enabled);
        Cmd(0xd1);
        Data(0xcd); // A20 off, reset line high
        Assert.False(_kbc.A20Enabled);
        Assert.Equal([false], _a20.Calls);
        Assert.Empty(_machine.Requests);
        Cmd(0xd1);
        Data(0xcf);
        Assert.True(_a20.Level);
        Cmd(0xd1);
        Data(0xce); // bit 0 low: system reset
        Assert.Equal([new MachineStopRequest(MachineStopReason.Reset)], _machine.Requests);
    }

    [Fact]
    public void Output_port_read_mirrors_obf()
    {
        WriteCommandByte(0x00);
        Cmd(0xd2);
        Data(0x1c); // a byte in the output buffer
        Cmd(0xd0);
        Assert.Equal(0x1c, _kbc.DataPort.In8(0));
        Assert.Equal(0xcf | 0x10, _kbc.DataPort.In8(0)); // read while OBF (keyboard) was set: bit 4 on
    }

    [Fact]
    public void Pulse_output_port_fe_resets_and_ff_does_not()
    {
        Cmd(0xff);
        Assert.Empty(_machine.Requests);
        Cmd(0xfe);
        Assert.Single(_machine.Requests);
        Assert.Equal(MachineStopReason.Reset, _machine.Requests[0].Reason);
        Cmd(0xf0);
        Assert.Equal(2, _machine.Requests.Count);
    }

    [Fact]
    public void Keyboard_reset_identify_and_probe_commands()
    {
        WriteCommandByte(0x00);
        Data(0xff);
        Assert.Equal([0xfa, 0xaa], Drain());
        Data(0xf2);
        Assert.Equal([0xfa, 0xab, 0x83], Drain());
        WriteCommandByte(0x40);
        Data(0xf2);
        Assert.Equal([0xfa, 0xab, 0x41], Drain());
        WriteCommandByte(0x00);
        Data(0xf5);
        Assert.Equal([0xfa], Drain());
        Assert.False(_kbc.KeyboardScanning);
        Data(0xf4);
        Assert.Equal([0xfa], Drain());
        Assert.True(_kbc.KeyboardScanning);
        Data(0xed);
        Data(0x05);
        Assert.Equal([0xfa, 0xfa], Drain());
        Assert.Equal(0x05, _kbc.Leds);
        Data(0xf3);
        Data(0x20);
        Assert.Equal([0xfa, 0xfa], Drain());
        Data(0xee);
        Assert.Equal([0xee], Drain());
        Data(0x42);
        Assert.Equal([0xfe], Drain());
    }

    [Fact]
    public void Scancode_set_select_and_query()
    {
        WriteCommandByte(0x00);
        Data(0xf0);
        Data(0x00);
        Assert.Equal([0xfa, 0xfa, 0x02], Drain());
        Data(0xf0);
        Data(0x01);
        Assert.Equal([0xfa, 0xfa], Drain());
        Assert.Equal(1, _kbc.ScancodeSet);
        WriteCommandByte(0x40);
        Data(0xf0);
        Data(0x00);
        Assert.Equal([0xfa, 0xfa, 0x43], Drain());
        Data(0xf0);
        Data(0x07);
        Assert.Equal([0xfa, 0xfe], Drain());
        Data(0xff);
        Drain();
        Assert.Equal(2, _kbc.ScancodeSet);
    }

    [Fact]
    public void Irq1_on_output_buffer_full_when_enabled()
    {
        WriteCommandByte(0x01);
        _kbc.EnqueueKeyboardBytes([0x1e, 0x9e]);
        Assert.True(_irq1.Level);
        Assert.Equal(0x1e, _kbc.DataPort.In8(0));
        // The next byte refills the buffer: the line falls and rises (a new edge for the PIC).
        Assert.True(_irq1.Level);
        Assert.Equal(2, _irq1.RisingEdges);
        Assert.Equal(0x9e, _kbc.DataPort.In8(0));
        Assert.False(_irq1.Level);
        WriteCommandByte(0x00);
        _kbc.EnqueueKeyboardBytes([0x1e]);
        Assert.False(_irq1.Level);
        Assert.Equal(I8042.StatusOutputBufferFull, Status() & I8042.StatusOutputBufferFull);
    }

    [Fact]
    public void Disabled_keyboard_interface_holds_bytes_until_enabled()
    {
        WriteCommandByte(0x01);
        Cmd(0xad);
        _kbc.EnqueueKeyboardBytes([0x10]);
        Assert.Equal(0, Status() & I8042.StatusOutputBufferFull);
        Cmd(0xae);
        Assert.Equal([0x10], Drain());
    }

    [Fact]
    public void Key_fifo_is_bounded_and_scanning_disabled_drops()
    {
        WriteCommandByte(0x00);
        var keys = new byte[100];
        Array.Fill(keys, (byte)0x1f);
        Assert.False(_kbc.EnqueueKeyboardBytes(keys));
        // One in the output buffer, 64 queued.
        Assert.Equal(100 - 1 - I8042.KeyboardQueueCapacity, _kbc.DroppedKeyboardBytes);
        Assert.Equal(1 + I8042.KeyboardQueueCapacity, Drain().Count);
        Data(0xf5);
        Drain();
        Assert.False(_kbc.EnqueueKeyboardBytes([0x20]));
        Assert.Empty(Drain());
    }

    [Fact]
    public void Aux_has_no_device_but_loopback_works()
    {
        WriteCommandByte(0x02);
        Cmd(0xd3);
        Data(0x5a);
        Assert.Equal(I8042.StatusOutputBufferFull | I8042.StatusAuxData,
            Status() & (I8042.StatusOutputBufferFull | I8042.StatusAuxData));
        Assert.True(_irq12.Level);
        Assert.False(_irq1.Level);
        Assert.Equal(0x5a, _kbc.DataPort.In8(0));
        Assert.False(_irq12.Level);
        Cmd(0xd4);
        Data(0xf2);
        Assert.Equal(I8042.StatusTimeout, Status() & I8042.StatusTimeout);
        Assert.Equal([0xfe], Drain());
    }

    [Fact]
    public void Unknown_commands_and_bad_widths_are_counted()
    {
        Cmd(0xc8);
        Assert.Equal(1, _kbc.UnknownCommands);
        Span<byte> two = stackalloc byte[2];
        _kbc.DataPort.Read(0, two);
        _kbc.CommandPort.Write(1, [0]);
        Assert.Equal(2, _kbc.BadAccesses);
        // Reading an empty buffer returns the last byte again.
        Cmd(0xab);
        Assert.Equal(0x00, _kbc.DataPort.In8(0));
        Assert.Equal(0x00, _kbc.DataPort.In8(0));
    }

    [Fact]
    public void State_round_trips()
    {
        WriteCommandByte(0x47);
        _kbc.EnqueueKeyboardBytes([1, 2, 3]);
        Data(0xed);
        Cmd(0xd1);
        var state = _kbc.GetState();
        var a20 = new RecordingIrqLine();
        var other = new I8042(new RecordingIrqLine(), new RecordingIrqLine(), _machine, a20);
        other.FromState(state);
        var again = other.GetState();
        Assert.Equal(state.KeyboardQueue, again.KeyboardQueue);
        Assert.Equal(state.Ram, again.Ram);
        Data(0xcd);
        other.DataPort.Out8(0, 0xcd);
        Assert.Equal(_kbc.A20Enabled, other.A20Enabled);
        Assert.Equal(Drain(), DrainOf(other));
        Assert.Throws<ArgumentException>(() => other.FromState(state with { ScancodeSet = 0 }));
        Assert.Throws<ArgumentException>(() => other.FromState(state with { KeyboardQueue = new byte[65] }));
    }

    private static List<byte> DrainOf(I8042 kbc)
    {
        var bytes = new List<byte>();
        for (int i = 0; i < 200 && (kbc.CommandPort.In8(0) & 1) != 0; i++)
            bytes.Add(kbc.DataPort.In8(0));
        return bytes;
    }

    [Fact]
    public void Random_sequences_never_throw_and_stay_bounded()
    {
        var rng = new Random(8042);
        for (int run = 0; run < 100; run++)
        {
            var kbc = new I8042(new RecordingIrqLine(), new RecordingIrqLine(), new RecordingMachineControl());
            for (int i = 0; i < 1000; i++)
            {
                switch (rng.Next(5))
                {
                    case 0: kbc.CommandPort.Out8(0, (byte)rng.Next(256)); break;
                    case 1: kbc.DataPort.Out8(0, (byte)rng.Next(256)); break;
                    case 2: kbc.EnqueueKeyboardBytes([(byte)rng.Next(256), (byte)rng.Next(256)]); break;
                    case 3: kbc.CommandPort.In8(0); break;
                    default: kbc.DataPort.In8(0); break;
                }
            }
            var s = kbc.GetState();
            Assert.True(s.KeyboardQueue.Length <= I8042.KeyboardQueueCapacity);
            new I8042(NullIrqLine.Instance, NullIrqLine.Instance, new RecordingMachineControl()).FromState(s);
        }
    }
}
