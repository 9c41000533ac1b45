// The 8259A pair driven as the Intel 8259A datasheet and the PC/AT wiring describe.
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

public sealed class Pic8259Tests
{
    private readonly RecordingIrqLine _intr = new();
    private readonly Pic8259Pair _pic;

    public Pic8259Tests()
    {
        _pic = new Pic8259Pair(_intr);
    }

    /// <summary>The sequence Linux and SeaBIOS use: edge, cascade, ICW4 8086 mode, vectors 0x20/0x28 (or given).</summary>
    private void InitPc(byte masterBase = 0x20, byte slaveBase = 0x28, byte icw4 = 0x01)
    {
        _pic.Master.Out8(0, 0x11);
        _pic.Master.Out8(1, masterBase);
        _pic.Master.Out8(1, 0x04);
        _pic.Master.Out8(1, icw4);
        _pic.Slave.Out8(0, 0x11);
        _pic.Slave.Out8(1, slaveBase);
        _pic.Slave.Out8(1, 0x02);
        _pic.Slave.Out8(1, 0x01);
        _pic.Master.Out8(1, 0x00);
        _pic.Slave.Out8(1, 0x00);
    }

    private void Pulse(int irq)
    {
        _pic.SetIrq(irq, true);
        _pic.SetIrq(irq, false);
    }

    private byte ReadIrr(global::ActorVmm.Core.Bus.IBusDevice chip)
    {
        chip.Out8(0, 0x0a);
        return chip.In8(0);
    }

    private byte ReadIsr(global::ActorVmm.Core.Bus.IBusDevice chip)
    {
        chip.Out8(0, 0x0b);
        return chip.In8(0);
    }

    [Fact]
    public void Edge_request_raises_intr_and_inta_returns_vector()
    {
        InitPc();
        Pulse(1);
        Assert.True(_intr.Level);
        Assert.Equal(0x02, ReadIrr(_pic.Master));
        Assert.Equal(0x21, _pic.Acknowledge());
        Assert.False(_intr.Level);
        Assert.Equal(0x02, ReadIsr(_pic.Master));
        Assert.Equal(0x00, ReadIrr(_pic.Master));
        _pic.Master.Out8(0, 0x20); // non-specific EOI
        Assert.Equal(0x00, ReadIsr(_pic.Master));
    }

    [Fact]
    public void Edge_input_needs_a_new_rising_edge()
    {
        InitPc();
        _pic.SetIrq(4, true);
        Assert.Equal(0x24, _pic.Acknowledge());
        _pic.Master.Out8(0, 0x20);
        _pic.SetIrq(4, true); // still high: no new edge
        Assert.False(_intr.Level);
        _pic.SetIrq(4, false);
        _pic.SetIrq(4, true);
        Assert.True(_intr.Level);
    }

    [Fact]
    public void Fixed_priority_and_nesting()
    {
        InitPc();
        Pulse(5);
        Pulse(3);
        Assert.Equal(0x23, _pic.Acknowledge());
        // IRQ5 is lower than IRQ3 in service: INTR stays low.
        Assert.False(_intr.Level);
        Pulse(0);
        Assert.True(_intr.Level); // IRQ0 beats IRQ3 in service
        Assert.Equal(0x20, _pic.Acknowledge());
        Assert.Equal(0x09, ReadIsr(_pic.Master));
        _pic.Master.Out8(0, 0x20); // clears IRQ0, the highest in service
        Assert.Equal(0x08, ReadIsr(_pic.Master));
        Assert.False(_intr.Level);
        _pic.Master.Out8(0, 0x20);
        Assert.True(_intr.Level);
        Assert.Equal(0x25, _pic.Acknowledge());
    }

    [Fact]
    public void Mask_blocks_request_but_irr_keeps_it()
    {
        InitPc();
        _pic.Master.Out8(1, 0x02);
        Assert.Equal(0x02, _pic.Master.In8(1));
        Pulse(1);
        Assert.False(_intr.Level);
        Assert.Equal(0x02, ReadIrr(_pic.Master));
        _pic.Master.Out8(1, 0x00);
        Assert.True(_intr.Level);
    }

    [Fact]
    public void Cascade_slave_irq_goes_through_master_ir2()
    {
        InitPc(0x08, 0x70);
        Pulse(8);
        Assert.True(_intr.Level);
        Assert.Equal(0x04, ReadIrr(_pic.Master));
        Assert.Equal(0x70, _pic.Acknowledge());
        Assert.Equal(0x04, ReadIsr(_pic.Master));
        Assert.Equal(0x01, ReadIsr(_pic.Slave));
        Pulse(12);
        Assert.False(_intr.Level); // master IR2 in service blocks the slave
        _pic.Slave.Out8(0, 0x20);
        _pic.Master.Out8(0, 0x20);
        Assert.True(_intr.Level);
        Assert.Equal(0x74, _pic.Acknowledge());
    }

    [Fact]
    public void Special_fully_nested_lets_higher_slave_irq_through()
    {
        InitPc(icw4: 0x11);
        Pulse(12);
        Assert.Equal(0x2c, _pic.Acknowledge());
        Pulse(9);
        Assert.True(_intr.Level);
        Assert.Equal(0x29, _pic.Acknowledge());
    }

    [Fact]
    public void Level_mode_via_elcr_follows_line()
    {
        InitPc();
        _pic.Elcr.Out8(1, 0xff);
        Assert.Equal(0xde, _pic.Elcr.In8(1)); // IRQ8 and IRQ13 cannot be level
        _pic.Elcr.Out8(0, 0xff);
        Assert.Equal(0xf8, _pic.Elcr.In8(0));
        Assert.Equal(0xdef8, _pic.Elcr.In16(0));
        _pic.SetIrq(11, true);
        Assert.True(_intr.Level);
        Assert.Equal(0x2b, _pic.Acknowledge());
        _pic.Slave.Out8(0, 0x20);
        _pic.Master.Out8(0, 0x20);
        // Still high: requested again without any new edge.
        Assert.True(_intr.Level);
        _pic.SetIrq(11, false);
        Assert.Equal(0x00, ReadIrr(_pic.Slave));
        // The master latched the slave's INT edge; with the request gone the INTA finds nothing: IRQ15.
        Assert.True(_intr.Level);
        Assert.Equal(0x2f, _pic.Acknowledge());
        Assert.False(_intr.Level);
    }

    [Fact]
    public void Level_line_dropped_before_inta_gives_spurious_irq7()
    {
        InitPc();
        _pic.Elcr.Out8(0, 0x20);
        _pic.SetIrq(5, true);
        Assert.True(_intr.Level);
        _pic.SetIrq(5, false);
        Assert.Equal(0x27, _pic.Acknowledge());
        Assert.Equal(0x00, ReadIsr(_pic.Master)); // spurious IRQ7 sets no ISR bit
        Assert.Equal(1, _pic.SpuriousInterrupts);
    }

    [Fact]
    public void Spurious_on_slave_gives_irq15_and_master_ir2_in_service()
    {
        InitPc();
        _pic.Elcr.Out8(1, 0x02);
        _pic.SetIrq(9, true);
        Assert.True(_intr.Level);
        _pic.SetIrq(9, false); // the slave's request goes away after the master latched IR2
        Assert.True(_intr.Level);
        Assert.Equal(0x2f, _pic.Acknowledge());
        Assert.Equal(1, _pic.SpuriousInterrupts);
        Assert.Equal(0x00, ReadIsr(_pic.Slave));
        Assert.Equal(0x04, ReadIsr(_pic.Master));
    }

    [Fact]
    public void Second_slave_request_pending_at_inta_is_latched_again()
    {
        InitPc();
        Pulse(14);
        Assert.Equal(0x2e, _pic.Acknowledge());
        Pulse(10); // higher than IR14 in service on the slave
        Assert.False(_intr.Level); // master IR2 in service
        _pic.Master.Out8(0, 0x20);
        Assert.True(_intr.Level);
        Assert.Equal(0x2a, _pic.Acknowledge());
    }

    [Fact]
    public void Auto_eoi_leaves_isr_clear()
    {
        InitPc(icw4: 0x03);
        Pulse(3);
        Assert.Equal(0x23, _pic.Acknowledge());
        Assert.Equal(0x00, ReadIsr(_pic.Master));
        Pulse(6);
        Assert.True(_intr.Level);
    }

    [Fact]
    public void Rotate_in_auto_eoi_makes_serviced_irq_lowest()
    {
        InitPc(icw4: 0x03);
        _pic.Master.Out8(0, 0x80); // rotate in AEOI set
        Pulse(1);
        Assert.Equal(0x21, _pic.Acknowledge());
        Pulse(0);
        Pulse(3);
        // IR1 is now lowest, so IR2 highest, then IR3 ... IR0.
        Assert.Equal(0x23, _pic.Acknowledge());
        Assert.Equal(0x20, _pic.Acknowledge());
        _pic.Master.Out8(0, 0x00); // rotate in AEOI clear
        Pulse(7);
        Pulse(6);
        Assert.Equal(0x26, _pic.Acknowledge()); // IR0 was lowest after last ack: IR1..IR7 order, 6 before 7
    }

    [Fact]
    public void Rotate_on_non_specific_eoi()
    {
        InitPc();
        Pulse(4);
        Assert.Equal(0x24, _pic.Acknowledge());
        _pic.Master.Out8(0, 0xa0); // rotate on non-specific EOI: IR4 becomes lowest
        Pulse(3);
        Pulse(5);
        Assert.Equal(0x25, _pic.Acknowledge());
    }

    [Fact]
    public void Specific_eoi_and_rotate_on_specific_eoi_and_set_priority()
    {
        InitPc();
        Pulse(6);
        Assert.Equal(0x26, _pic.Acknowledge());
        Pulse(2 + 1);
        Assert.Equal(0x23, _pic.Acknowledge());
        _pic.Master.Out8(0, 0x66); // specific EOI IR6
        Assert.Equal(0x08, ReadIsr(_pic.Master));
        _pic.Master.Out8(0, 0xe3); // rotate on specific EOI IR3: IR3 lowest
        Assert.Equal(0x00, ReadIsr(_pic.Master));
        Pulse(0);
        Pulse(4);
        Assert.Equal(0x24, _pic.Acknowledge());
        _pic.Master.Out8(0, 0x20);
        _pic.Master.Out8(0, 0xc0 | 5); // set priority: IR5 lowest, IR6 highest
        Pulse(7);
        Pulse(6);
        Assert.Equal(0x26, _pic.Acknowledge());
        _pic.Master.Out8(0, 0x20);
        Assert.Equal(0x27, _pic.Acknowledge());
        _pic.Master.Out8(0, 0x20);
        Assert.Equal(0x20, _pic.Acknowledge());
    }

    [Fact]
    public void Special_mask_mode_allows_lower_priority_when_in_service_level_masked()
    {
        InitPc();
        Pulse(3);
        Assert.Equal(0x23, _pic.Acknowledge());
        Pulse(5);
        Assert.False(_intr.Level);
        _pic.Master.Out8(1, 0x08); // mask IR3 (in service)
        _pic.Master.Out8(0, 0x68); // OCW3 ESMM SMM
        Assert.True(_intr.Level);
        Assert.Equal(0x25, _pic.Acknowledge());
        _pic.Master.Out8(0, 0x48); // reset special mask
        Pulse(6);
        Assert.False(_intr.Level);
    }

    [Fact]
    public void Poll_mode_returns_and_acknowledges_highest()
    {
        InitPc();
        _pic.Master.Out8(1, 0xff);
        Pulse(5);
        _pic.Master.Out8(0, 0x0c); // poll
        Assert.Equal(0x00, _pic.Master.In8(0)); // masked: poll sees no request
        _pic.Master.Out8(1, 0x00);
        _pic.Master.Out8(0, 0x0c);
        Assert.Equal(0x85, _pic.Master.In8(0));
        Assert.Equal(0x20, ReadIsr(_pic.Master));
        _pic.Master.Out8(0, 0x0c);
        Assert.Equal(0x00, _pic.Master.In8(0));
        // After a poll the port reads IRR/ISR again.
        Assert.Equal(0x20, _pic.Master.In8(0));
    }

    [Fact]
    public void Icw1_resets_masks_isr_and_priority()
    {
        InitPc();
        _pic.Master.Out8(1, 0x55);
        Pulse(1);
        _pic.Master.Out8(0, 0xc0 | 3);
        _pic.Master.Out8(0, 0x11);
        Assert.Equal(0x00, _pic.Master.In8(1));
        _pic.Master.Out8(1, 0x30);
        _pic.Master.Out8(1, 0x04);
        _pic.Master.Out8(1, 0x01);
        Assert.Equal(0x00, ReadIsr(_pic.Master));
        Pulse(7);
        Pulse(0);
        Assert.Equal(0x30, _pic.Acknowledge());
    }

    [Fact]
    public void Single_mode_without_icw4_skips_icw3_and_icw4()
    {
        _pic.Master.Out8(0, 0x12); // single, no ICW4
        _pic.Master.Out8(1, 0x40);
        _pic.Master.Out8(1, 0xfe); // now OCW1
        Assert.Equal(0xfe, _pic.Master.In8(1));
        Pulse(0);
        Assert.Equal(0x40, _pic.Acknowledge());
    }

    [Fact]
    public void Ltim_makes_every_line_level()
    {
        _pic.Master.Out8(0, 0x1b); // LTIM, single, ICW4
        _pic.Master.Out8(1, 0x50);
        _pic.Master.Out8(1, 0x01);
        _pic.SetIrq(6, true);
        Assert.Equal(0x56, _pic.Acknowledge());
        _pic.Master.Out8(0, 0x20);
        Assert.True(_intr.Level);
    }

    [Fact]
    public void Bad_accesses_are_counted_not_thrown()
    {
        Span<byte> two = stackalloc byte[2];
        _pic.Master.Read(0, two);
        Assert.Equal(0xff, two[0]);
        _pic.Master.Write(2, [0]);
        _pic.SetIrq(2, true);
        _pic.SetIrq(16, true);
        _pic.Elcr.Write(1, [0, 0]);
        Assert.Equal(5, _pic.BadAccesses);
    }

    [Fact]
    public void State_round_trips()
    {
        InitPc();
        _pic.Elcr.Out8(1, 0x08);
        _pic.Master.Out8(1, 0x10);
        Pulse(3);
        _pic.Acknowledge();
        Pulse(1);
        _pic.SetIrq(11, true);
        _pic.Master.Out8(0, 0x0b);
        var state = _pic.GetState();
        var other = new Pic8259Pair(new RecordingIrqLine());
        other.FromState(state);
        Assert.Equal(state, other.GetState());
        Assert.Equal(_pic.Master.In8(0), other.Master.In8(0));
        Assert.Equal(_pic.Acknowledge(), other.Acknowledge());
        Assert.Throws<ArgumentException>(() => other.FromState(state with { Master = state.Master with { InitStep = 9 } }));
        Assert.Throws<ArgumentException>(() => other.FromState(state with { Slave = state.Slave with { VectorBase = 3 } }));
    }

    [Fact]
    public void Random_sequences_never_throw()
    {
        var rng = new Random(1234);
        for (int run = 0; run < 200; run++)
        {
            var pic = new Pic8259Pair(new RecordingIrqLine());
            for (int i = 0; i < 500; i++)
            {
                switch (rng.Next(6))
                {
                    case 0: pic.Master.Out8((ulong)rng.Next(3), (byte)rng.Next(256)); break;
                    case 1: pic.Slave.Out8((ulong)rng.Next(3), (byte)rng.Next(256)); break;
                    case 2: pic.Elcr.Out8((ulong)rng.Next(3), (byte)rng.Next(256)); break;
                    case 3: pic.SetIrq(rng.Next(-1, 17), rng.Next(2) == 0); break;
                    case 4:
                        int v = pic.Acknowledge();
                        Assert.InRange(v, 0, 255);
                        break;
                    default: pic.Slave.In8((ulong)rng.Next(3)); pic.Master.In8((ulong)rng.Next(3)); break;
                }
            }
            var s = pic.GetState();
            new Pic8259Pair(NullIrqLine.Instance).FromState(s);
        }
    }
}
