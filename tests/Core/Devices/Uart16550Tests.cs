// Register scripts for the 16550A, checked against the NS16550A / TI PC16550D datasheets: reset values,
// divisor latch, FIFO trigger levels, interrupt identification priorities, THRE interrupt rules,
// loopback, line status errors, overrun, modem status deltas and the OUT2-gated interrupt line.
using ActorVmm.Core.Devices;
using static ActorVmm.Core.Devices.Uart16550;

namespace ActorVmm.Core.Tests.Devices;

public sealed class Uart16550Tests
{
    private readonly RecordingIrqLine _irq = new();
    private readonly RecordingSink _sink = new();
    private Uart16550 _uart;

    public Uart16550Tests() => _uart = new Uart16550("COM1", _irq, _sink);

    private byte Rd(int reg)
    {
        Span<byte> b = stackalloc byte[1];
        _uart.Read((ulong)reg, b);
        return b[0];
    }

    private void Wr(int reg, byte value) => _uart.Write((ulong)reg, [value]);

    [Fact]
    public void Reset_values_match_the_datasheet()
    {
        Assert.Equal(0x00, Rd(IER));
        Assert.Equal(0x01, Rd(IIR));      // no interrupt pending, FIFOs off
        Assert.Equal(0x00, Rd(LCR));
        Assert.Equal(0x00, Rd(MCR));
        Assert.Equal(0x60, Rd(LSR));      // THRE | TEMT
        Assert.Equal(0xb0, Rd(MSR));      // DCD, DSR, CTS asserted by the (absent) modem, no deltas
        Assert.Equal(0x00, Rd(SCR));
        Assert.False(_uart.IrqLevel);
    }

    [Fact]
    public void Dlab_switches_offsets_0_and_1_to_the_divisor_latch()
    {
        Wr(IER, 0x05);
        Wr(LCR, 0x83);                    // DLAB, 8 data bits
        Wr(DLL, 0x01);
        Wr(DLM, 0x02);
        Assert.Equal(0x01, Rd(DLL));
        Assert.Equal(0x02, Rd(DLM));
        Assert.Empty(_sink.Bytes);        // a DLL write is not a transmit
        Wr(LCR, 0x03);
        Assert.Equal(0x05, Rd(IER));      // IER kept apart from DLM
        Wr(THR, (byte)'x');
        Assert.Equal("x"u8.ToArray(), _sink.Bytes);
        Wr(LCR, 0x83);
        Assert.Equal(0x01, Rd(DLL));
        Assert.Equal(0x02, Rd(DLM));
        Assert.Equal(0x83, Rd(LCR));
    }

    [Fact]
    public void Transmit_goes_to_the_sink_and_the_transmitter_is_empty_again()
    {
        foreach (var c in "hi\n"u8.ToArray()) Wr(THR, c);
        Assert.Equal("hi\n"u8.ToArray(), _sink.Bytes);
        Assert.Equal(LSR_THRE | LSR_TEMT, Rd(LSR));
        Assert.Equal(3, _uart.TransmittedBytes);
    }

    [Fact]
    public void Wired_on_the_bus_at_com1_it_answers_with_register_offsets()
    {
        var (_, ioBase, irq) = PcPorts[0];
        Assert.Equal((ushort)0x3f8, ioBase);
        Assert.Equal(4, irq);
        var bus = new global::ActorVmm.Core.Bus.BusBuilder().AddPorts(PortsAt(ioBase), new global::ActorVmm.Core.Bus.DirectEndpoint(_uart)).Build();
        var dispatch = new global::ActorVmm.Core.Bus.ExitDispatcher(bus);
        Span<byte> b = stackalloc byte[1];
        dispatch.PortRead(0x3fd, b);
        Assert.Equal(LSR_THRE | LSR_TEMT, b[0]);
        dispatch.PortWrite(0x3f8, "!"u8);
        Assert.Equal("!"u8.ToArray(), _sink.Bytes);
        dispatch.PortRead(0x400, b);
        Assert.Equal(1, dispatch.UnclaimedPortAccesses);
    }

    [Fact]
    public void Scratch_register_holds_a_value()
    {
        Wr(SCR, 0x5a);
        Assert.Equal(0x5a, Rd(SCR));
    }

    [Theory]
    [InlineData(0x01, 1)]
    [InlineData(0x41, 4)]
    [InlineData(0x81, 8)]
    [InlineData(0xc1, 14)]
    public void Received_data_interrupt_fires_at_the_fifo_trigger_level(byte fcr, int level)
    {
        Wr(FCR, fcr);
        Wr(IER, IER_ERBFI);
        for (int i = 0; i < level - 1; i++)
        {
            Assert.True(_uart.TryEnqueueInput((byte)i));
            // Below the trigger level only the character timeout is reported.
            Assert.Equal(IIR_FIFO | IIR_CTI, Rd(IIR));
        }
        Assert.True(_uart.TryEnqueueInput(0xaa));
        Assert.Equal(IIR_FIFO | IIR_RDI, Rd(IIR));
        // Reading one byte drops below the level again.
        Rd(RBR);
        Assert.Equal(level == 1 ? IIR_FIFO | IIR_NO_INT : IIR_FIFO | IIR_CTI, Rd(IIR));
    }

    [Fact]
    public void Fcr_bits_other_than_enable_are_ignored_while_fcr0_is_written_zero()
    {
        Wr(FCR, 0xc0);                    // trigger 14 without FCR0: not programmed
        Assert.Equal(IIR_NO_INT, Rd(IIR));
        Wr(IER, IER_ERBFI);
        _uart.TryEnqueueInput(1);
        Assert.Equal(IIR_RDI, Rd(IIR));   // 16450 mode: one character is enough, no FIFO bits
    }

    [Fact]
    public void Fcr_clears_the_receiver_fifo()
    {
        Wr(FCR, 0x01);
        _uart.EnqueueInput("abc"u8);
        Assert.Equal(LSR_DR, Rd(LSR) & LSR_DR);
        Wr(FCR, FCR_ENABLE | FCR_CLEAR_RX);
        Assert.Equal(0, Rd(LSR) & LSR_DR);
        _uart.EnqueueInput("d"u8);
        Assert.Equal((byte)'d', Rd(RBR));
    }

    [Fact]
    public void Disabling_the_fifo_clears_it_and_keeps_one_character()
    {
        Wr(FCR, 0x01);
        _uart.EnqueueInput("abc"u8);
        Wr(FCR, 0x00);
        Assert.Equal(0, Rd(LSR) & LSR_DR);
        _uart.EnqueueInput("xy"u8);       // x in RBR, y waits in the backlog
        Assert.Equal((byte)'x', Rd(RBR));
        Assert.Equal((byte)'y', Rd(RBR));
        Assert.Equal(0, Rd(LSR) & LSR_DR);
        Assert.Equal((byte)'y', Rd(RBR)); // an empty RBR reads the last character again
    }

    [Fact]
    public void Iir_reports_interrupts_in_datasheet_priority_order()
    {
        var uart = new Uart16550("COM1", _irq, _sink, inputBacklogCapacity: 0);
        _uart = uart;
        Wr(FCR, 0x01);                    // trigger level 1
        Wr(IER, IER_ERBFI | IER_ETBEI | IER_ELSI | IER_EDSSI);
        for (int i = 0; i < 17; i++) _uart.TryEnqueueInput((byte)i);   // the 17th overruns
        _uart.SetModemInputs(cts: false, dsr: true, ri: false, dcd: true);

        Assert.Equal(IIR_FIFO | IIR_RLSI, Rd(IIR));
        Assert.Equal(LSR_OE, Rd(LSR) & LSR_OE);            // reading LSR clears the line status source
        Assert.Equal(IIR_FIFO | IIR_RDI, Rd(IIR));
        for (int i = 0; i < 16; i++) Assert.Equal((byte)i, Rd(RBR));
        Assert.Equal(IIR_FIFO | IIR_THRI, Rd(IIR));        // this read clears THRE
        Assert.Equal(IIR_FIFO | IIR_MSI, Rd(IIR));
        Assert.Equal(MSR_DCTS | MSR_DSR | MSR_DCD, Rd(MSR));
        Assert.Equal(IIR_FIFO | IIR_NO_INT, Rd(IIR));
    }

    [Fact]
    public void Thre_interrupt_is_raised_by_enabling_etbei_and_cleared_by_reading_iir()
    {
        Wr(IER, IER_ETBEI);
        Assert.Equal(IIR_THRI, Rd(IIR));
        Assert.Equal(IIR_NO_INT, Rd(IIR));                 // cleared by the IIR read that reported it
        Wr(IER, IER_ETBEI);                                 // no 0->1 transition: stays clear
        Assert.Equal(IIR_NO_INT, Rd(IIR));
        Wr(IER, 0);
        Wr(IER, IER_ETBEI);                                 // re-armed by a fresh enable
        Assert.Equal(IIR_THRI, Rd(IIR));
        Wr(THR, (byte)'a');                                 // THR empties again after the byte: re-armed
        Assert.Equal(IIR_THRI, Rd(IIR));
        Assert.Equal(IIR_NO_INT, Rd(IIR));
    }

    [Fact]
    public void Iir_read_does_not_clear_thre_when_a_higher_source_is_reported()
    {
        Wr(IER, IER_ERBFI | IER_ETBEI);
        _uart.TryEnqueueInput(0x41);
        Assert.Equal(IIR_RDI, Rd(IIR));
        Assert.Equal(0x41, Rd(RBR));
        Assert.Equal(IIR_THRI, Rd(IIR));
        Assert.Equal(IIR_NO_INT, Rd(IIR));
    }

    [Fact]
    public void Thre_pending_is_cleared_by_a_thr_write_until_the_byte_has_gone()
    {
        Wr(IER, IER_ETBEI);
        Wr(THR, 1);
        // Transmission is immediate, so the THRE interrupt is pending again straight after the write.
        Assert.Equal(IIR_THRI, Rd(IIR));
        Wr(IER, 0);
        Assert.Equal(IIR_NO_INT, Rd(IIR));
    }

    [Fact]
    public void Loopback_sends_tx_to_rx_and_mcr_outputs_to_msr_inputs()
    {
        Wr(MCR, MCR_LOOP);
        Assert.Equal(MSR_DCTS | MSR_DDSR | MSR_DDCD, Rd(MSR));   // the external CTS/DSR/DCD fell away
        Wr(MCR, MCR_LOOP | MCR_DTR | MCR_RTS | MCR_OUT1 | MCR_OUT2);
        Assert.Equal(MSR_CTS | MSR_DSR | MSR_RI | MSR_DCD | MSR_DCTS | MSR_DDSR | MSR_DDCD, Rd(MSR));
        Wr(MCR, MCR_LOOP | MCR_DTR | MCR_RTS | MCR_OUT2);        // RI falls: trailing edge
        Assert.Equal(MSR_CTS | MSR_DSR | MSR_DCD | MSR_TERI, Rd(MSR));
        Assert.Equal(MSR_CTS | MSR_DSR | MSR_DCD, Rd(MSR));      // deltas cleared by the read

        Wr(THR, 0x55);
        Assert.Empty(_sink.Bytes);
        Assert.Equal(LSR_DR | LSR_THRE | LSR_TEMT, Rd(LSR));
        Assert.Equal(0x55, Rd(RBR));
    }

    [Fact]
    public void Loopback_holds_host_input_back_until_it_ends()
    {
        Wr(MCR, MCR_LOOP);
        Assert.True(_uart.TryEnqueueInput(0x31));
        Assert.Equal(0, Rd(LSR) & LSR_DR);
        Wr(MCR, 0);
        Assert.Equal(0x31, Rd(RBR));
    }

    [Fact]
    public void Loopback_refuses_host_input_beyond_the_backlog_without_an_overrun()
    {
        _uart = new Uart16550("COM1", _irq, _sink, inputBacklogCapacity: 2);
        Wr(MCR, MCR_LOOP);
        Assert.Equal(2, _uart.EnqueueInput("abc"u8));
        Assert.Equal(0, Rd(LSR) & LSR_OE);
        Assert.Equal(0, _uart.Overruns);
        Wr(MCR, 0);
        Assert.Equal((byte)'a', Rd(RBR));
        Assert.Equal((byte)'b', Rd(RBR));
    }

    [Fact]
    public void Loopback_break_arrives_as_bi()
    {
        Wr(FCR, 0x01);
        Wr(MCR, MCR_LOOP);
        Wr(LCR, 0x03 | LCR_SBC);
        Wr(THR, 0x77);
        Assert.Equal(LSR_DR | LSR_BI | LSR_THRE | LSR_TEMT | LSR_FIFOE, Rd(LSR));
        Assert.Equal(0x00, Rd(RBR));
    }

    [Fact]
    public void Break_sets_bi_when_the_character_reaches_the_top_and_lsr_read_clears_it()
    {
        Wr(FCR, 0x01);
        Wr(IER, IER_ELSI);
        _uart.TryEnqueueInput(0x61);
        Assert.True(_uart.ReceiveBreak());
        // BI is not yet at the top: only the FIFO error summary bit shows.
        Assert.Equal(IIR_FIFO | IIR_NO_INT, Rd(IIR));
        Assert.Equal(LSR_DR | LSR_THRE | LSR_TEMT | LSR_FIFOE, Rd(LSR));
        Assert.Equal(0x61, Rd(RBR));
        Assert.Equal(IIR_FIFO | IIR_RLSI, Rd(IIR));
        Assert.Equal(LSR_DR | LSR_BI | LSR_THRE | LSR_TEMT | LSR_FIFOE, Rd(LSR));
        Assert.Equal(LSR_DR | LSR_THRE | LSR_TEMT | LSR_FIFOE, Rd(LSR)); // BI cleared; error char still queued
        Assert.Equal(IIR_FIFO | IIR_NO_INT, Rd(IIR));
        Assert.Equal(0x00, Rd(RBR));
        Assert.Equal(LSR_THRE | LSR_TEMT, Rd(LSR));
    }

    [Fact]
    public void Overrun_in_fifo_mode_keeps_the_fifo_and_sets_oe()
    {
        _uart = new Uart16550("COM1", _irq, _sink, inputBacklogCapacity: 0);
        Wr(FCR, 0x01);
        for (int i = 0; i < 16; i++) Assert.True(_uart.TryEnqueueInput((byte)(0x40 + i)));
        Assert.False(_uart.TryEnqueueInput(0xee));
        Assert.Equal(1, _uart.Overruns);
        Assert.Equal(LSR_DR | LSR_OE | LSR_THRE | LSR_TEMT, Rd(LSR));
        Assert.Equal(LSR_DR | LSR_THRE | LSR_TEMT, Rd(LSR));   // OE cleared by the read
        for (int i = 0; i < 16; i++) Assert.Equal(0x40 + i, Rd(RBR));
        Assert.Equal(0, Rd(LSR) & LSR_DR);
    }

    [Fact]
    public void Overrun_in_16450_mode_overwrites_rbr()
    {
        Wr(MCR, MCR_LOOP);
        Wr(THR, 0x01);
        Wr(THR, 0x02);
        Assert.Equal(LSR_DR | LSR_OE | LSR_THRE | LSR_TEMT, Rd(LSR));
        Assert.Equal(0x02, Rd(RBR));
    }

    [Fact]
    public void Host_input_backlog_is_bounded()
    {
        Wr(FCR, 0x01);
        int accepted = _uart.EnqueueInput(new byte[200]);
        Assert.Equal(FifoSize + DefaultBacklogCapacity, accepted);
        Assert.Equal(FifoSize + DefaultBacklogCapacity, _uart.PendingInput);
        Assert.Equal(LSR_OE, Rd(LSR) & LSR_OE);
        // Reading drains the backlog into the FIFO in order.
        var fresh = new Uart16550("COM1", _irq, _sink);
        _uart = fresh;
        Wr(FCR, 0x01);
        var data = Enumerable.Range(0, 80).Select(i => (byte)i).ToArray();
        Assert.Equal(80, _uart.EnqueueInput(data));
        var read = new List<byte>();
        while ((Rd(LSR) & LSR_DR) != 0) read.Add(Rd(RBR));
        Assert.Equal(data, read);
    }

    [Fact]
    public void Modem_input_changes_set_deltas_and_the_modem_status_interrupt()
    {
        Wr(IER, IER_EDSSI);
        Assert.Equal(IIR_NO_INT, Rd(IIR));
        _uart.SetModemInputs(cts: true, dsr: true, ri: true, dcd: true);
        Assert.Equal(IIR_NO_INT, Rd(IIR));                    // RI's leading edge is not a delta (only TERI)
        Assert.Equal(MSR_CTS | MSR_DSR | MSR_RI | MSR_DCD, Rd(MSR));
        _uart.SetModemInputs(cts: false, dsr: true, ri: false, dcd: true);
        Assert.Equal(IIR_MSI, Rd(IIR));
        Assert.Equal(MSR_DSR | MSR_DCD | MSR_DCTS | MSR_TERI, Rd(MSR));
        Assert.Equal(MSR_DSR | MSR_DCD, Rd(MSR));
        Assert.Equal(IIR_NO_INT, Rd(IIR));
    }

    [Fact]
    public void Irq_line_is_gated_by_out2_and_off_in_loopback()
    {
        Wr(IER, IER_ERBFI);
        _uart.TryEnqueueInput(0x10);
        Assert.Empty(_irq.Levels);                            // pending, but OUT2 is low
        Assert.Equal(IIR_RDI, Rd(IIR));
        Wr(MCR, MCR_OUT2);
        Assert.Equal([true], _irq.Levels);
        Rd(RBR);
        Assert.Equal([true, false], _irq.Levels);
        Wr(MCR, MCR_OUT2 | MCR_LOOP);
        Wr(THR, 0x20);                                        // looped back, data pending
        Assert.Equal(IIR_RDI, Rd(IIR));
        Assert.Equal([true, false], _irq.Levels);             // but the line stays low in loopback
        Wr(MCR, MCR_OUT2);
        Assert.Equal([true, false, true], _irq.Levels);
        Wr(IER, 0);
        Assert.Equal([true, false, true, false], _irq.Levels);
    }

    [Fact]
    public void Bad_widths_and_offsets_are_counted_and_answered_with_all_ones()
    {
        Span<byte> two = stackalloc byte[2];
        _uart.Read(0, two);
        Assert.Equal(0xff, two[0]);
        Assert.Equal(0xff, two[1]);
        _uart.Write(0, [1, 2]);
        Span<byte> one = stackalloc byte[1];
        _uart.Read(8, one);
        Assert.Equal(0xff, one[0]);
        Assert.Equal(3, _uart.BadAccesses);
        Assert.Empty(_sink.Bytes);
    }

    [Fact]
    public void State_round_trips_through_the_record()
    {
        Wr(LCR, 0x80);
        Wr(DLL, 0x03);
        Wr(DLM, 0x00);
        Wr(LCR, 0x1b);
        Wr(FCR, 0x81);
        Wr(IER, IER_ERBFI | IER_ETBEI | IER_ELSI);
        Wr(MCR, MCR_OUT2 | MCR_DTR);
        Wr(SCR, 0x99);
        _uart.EnqueueInput(Enumerable.Range(0, 30).Select(i => (byte)i).ToArray());
        _uart.ReceiveBreak();
        var state = _uart.GetState();

        var irq2 = new RecordingIrqLine();
        var copy = FromState("COM1", irq2, _sink, state);
        Assert.Equal([true], irq2.Levels);
        var again = copy.GetState();
        Assert.Equal(state with { RxFifo = [], InputBacklog = [] }, again with { RxFifo = [], InputBacklog = [] });
        Assert.Equal(state.RxFifo, again.RxFifo);
        Assert.Equal(state.InputBacklog, again.InputBacklog);

        // Both answer the same register script from here on.
        var original = _uart;
        for (int step = 0; step < 40; step++)
        {
            _uart = original;
            var a = new[] { Rd(IIR), Rd(LSR), Rd(RBR) };
            _uart = copy;
            var b = new[] { Rd(IIR), Rd(LSR), Rd(RBR) };
            Assert.Equal(a, b);
        }
    }

    [Fact]
    public void LoadState_puts_a_saved_state_back_in_place_and_refuses_a_bad_one_unchanged()
    {
        Wr(LCR, 0x03);
        Wr(FCR, 0x81);
        Wr(IER, IER_ERBFI);
        Wr(SCR, 0x42);
        _uart.EnqueueInput([1, 2, 3]);
        var saved = _uart.GetState();
        Wr(SCR, 0x17);
        Wr(IER, 0);
        Rd(RBR);
        _uart.LoadState(saved);
        bool level = _irq.Level;
        var fresh = new RecordingIrqLine();
        FromState("COM1", fresh, _sink, saved);
        Assert.Equal(fresh.Level, level); // the line is driven as a UART restored from the same state drives it
        var now = _uart.GetState();
        Assert.Equal(saved with { RxFifo = [], InputBacklog = [] }, now with { RxFifo = [], InputBacklog = [] });
        Assert.Equal(saved.RxFifo, now.RxFifo);
        Assert.Equal(saved.InputBacklog, now.InputBacklog);
        Assert.Equal(1, Rd(RBR));

        var before = _uart.GetState();
        Assert.Throws<ArgumentException>(() => _uart.LoadState(saved with { Ier = 0xf0 }));
        var after = _uart.GetState();
        Assert.Equal(before with { RxFifo = [], InputBacklog = [] }, after with { RxFifo = [], InputBacklog = [] });
    }

    [Fact]
    public void FromState_rejects_inconsistent_state()
    {
        var good = _uart.GetState();
        Assert.Throws<ArgumentException>(() => FromState("COM1", _irq, _sink, good with { RxFifo = new ushort[2] }));   // FIFO off holds one
        Assert.Throws<ArgumentException>(() => FromState("COM1", _irq, _sink, good with { Fcr = 0x01, RxFifo = new ushort[17] }));
        Assert.Throws<ArgumentException>(() => FromState("COM1", _irq, _sink, good with { Ier = 0xf0 }));
        Assert.Throws<ArgumentException>(() => FromState("COM1", _irq, _sink, good with { InputBacklog = new byte[65] }));
        Assert.Throws<ArgumentException>(() => FromState("COM1", _irq, _sink, good with { Fcr = 0x01, RxFifo = [0x8000] }));
    }

    [Fact]
    public void Random_register_traffic_never_throws_and_stays_bounded()
    {
        var rng = new Random(16550);
        for (int round = 0; round < 20; round++)
        {
            var irq = new RecordingIrqLine();
            var uart = new Uart16550("COM1", irq, NullSink.Instance);
            var buf = new byte[8];
            for (int i = 0; i < 20_000; i++)
            {
                ulong offset = (ulong)rng.Next(0, 10);
                int width = rng.Next(0, 10) == 0 ? rng.Next(0, 5) : 1;
                switch (rng.Next(0, 4))
                {
                    case 0:
                        uart.Read(offset, buf.AsSpan(0, width));
                        if (width == 1 && offset == LSR) Assert.Equal(LSR_THRE | LSR_TEMT, buf[0] & (LSR_THRE | LSR_TEMT));
                        if (width == 1 && offset == IIR && uart.GetState().Lcr < 0x80)
                            Assert.Contains(buf[0] & 0x0f, new[] { 0x0, 0x1, 0x2, 0x4, 0x6, 0xc });
                        break;
                    case 1:
                        rng.NextBytes(buf);
                        uart.Write(offset, buf.AsSpan(0, width));
                        break;
                    case 2:
                        uart.TryEnqueueInput((byte)rng.Next());
                        break;
                    default:
                        if (rng.Next(0, 50) == 0) uart.ReceiveBreak();
                        else if (rng.Next(0, 50) == 0) uart.SetModemInputs(rng.Next(2) == 0, rng.Next(2) == 0, rng.Next(2) == 0, rng.Next(2) == 0);
                        break;
                }
                Assert.InRange(uart.PendingInput, 0, FifoSize + DefaultBacklogCapacity);
                Assert.Equal(uart.IrqLevel, irq.Level);
            }
            // The state it ends in is always one FromState accepts.
            FromState("COM1", NullIrqLine.Instance, NullSink.Instance, uart.GetState());
        }
    }

    private sealed class NullSink : IByteSink
    {
        public static readonly NullSink Instance = new();

        public void Write(ReadOnlySpan<byte> data)
        {
        }
    }
}
