// Intel 8259A programmable interrupt controller, as the PC/AT cascade pair, plus the PIIX edge/level
// control registers (ELCR).
//
// Ports (each group is a separate IBusDevice view of the one pair; map all three with ONE shared lock, and
// call SetIrq/Acknowledge under it too):
//   Master  0x20-0x21  offset 0: ICW1 / OCW2 / OCW3 write, IRR / ISR / poll read; offset 1: ICW2-4 / OCW1 (IMR)
//   Slave   0xa0-0xa1  the same, for IRQ8-15; its INT output drives master IR2
//   Elcr    0x4d0-0x4d1 offset 0: ELCR1 (IRQ0-7, bits 0-2 read as 0), offset 1: ELCR2 (IRQ8-15, bits 0 and 5 read as 0)
// Emulated: the initialisation sequence ICW1-ICW4 (single/cascade, LTIM, AEOI, SFNM), OCW1 masks, OCW2
// non-specific/specific EOI with and without rotation, rotate in AEOI mode, set priority, OCW3 IRR/ISR read
// select, poll command and special mask mode; edge or level triggering per line (ELCR, or ICW1 LTIM for the
// whole chip); spurious IRQ7/IRQ15 on an INTA with no request left; the INTA cycle as Acknowledge().
// Not emulated: 8080/8085 mode (ICW4 uPM=0 is accepted and ignored: vectors are always 8086 style), buffered
// mode (ICW4 BUF/M/S: irrelevant without a bus), slave ID checking on cascaded masters (ICW3 is stored).
// The cascade input master IR2 latches rising edges of the slave's INT output (the PC programs IR2 edge
// triggered); INT falls during each slave INTA, so a request still pending is latched again. A slave request
// that goes away after the master latched IR2 gives the spurious IRQ15 vector (master IR2 stays in service,
// as on hardware). SetIrq(2) is the cascade itself and is counted as a bad input. A poll of the master that
// selects IR2 does not touch the slave (poll the slave next, as the datasheet says).
// Byte accesses only (ELCR also takes a 16-bit access at offset 0); other widths are counted in BadAccesses,
// reads answer 0xff.
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

/// <summary>Saved state of one 8259A.</summary>
public sealed record Pic8259ChipState(
    byte Irr,
    byte Isr,
    byte Imr,
    byte InputLevels,
    byte Elcr,
    byte VectorBase,
    byte LowestPriority,
    int InitStep,
    bool Icw4Needed,
    bool SingleMode,
    bool LevelTriggeredAll,
    bool AutoEoi,
    bool RotateInAutoEoi,
    bool SpecialMaskMode,
    bool SpecialFullyNested,
    bool ReadIsr,
    bool PollPending,
    byte Icw3);

/// <summary>Saved state of the pair.</summary>
public sealed record Pic8259PairState(Pic8259ChipState Master, Pic8259ChipState Slave, bool IntrLevel);

/// <summary>The PC/AT 8259A master/slave pair with its ELCR.</summary>
public sealed class Pic8259Pair
{
    private const byte MasterElcrMask = 0xf8;
    private const byte SlaveElcrMask = 0xde;
    private const int CascadeIrq = 2;

    private readonly Chip _master = new(isMaster: true);
    private readonly Chip _slave = new(isMaster: false);
    private readonly IIrqLine _intr;
    private bool _intrLevel;

    public Pic8259Pair(IIrqLine intr)
    {
        _intr = intr;
        Master = new PortView(this, _master, "pic-master");
        Slave = new PortView(this, _slave, "pic-slave");
        Elcr = new ElcrView(this);
    }

    /// <summary>Ports 0x20-0x21.</summary>
    public IBusDevice Master { get; }

    /// <summary>Ports 0xa0-0xa1.</summary>
    public IBusDevice Slave { get; }

    /// <summary>Ports 0x4d0-0x4d1.</summary>
    public IBusDevice Elcr { get; }

    /// <summary>Bad widths, bad offsets and bad IRQ numbers.</summary>
    public long BadAccesses { get; private set; }

    /// <summary>INTA cycles answered with a spurious vector (IRQ7 or IRQ15).</summary>
    public long SpuriousInterrupts { get; private set; }

    /// <summary>The INTR output as last driven.</summary>
    public bool IntrLevel => _intrLevel;

    /// <summary>Drives input line <paramref name="irq"/> (0-15, not 2).</summary>
    public void SetIrq(int irq, bool level)
    {
        if (irq < 0 || irq > 15 || irq == CascadeIrq)
        {
            BadAccesses++;
            return;
        }
        (irq < 8 ? _master : _slave).SetInput(irq & 7, level);
        Update();
    }

    /// <summary>The INTA cycle: returns the vector the CPU takes, marks it in service, and updates INTR.</summary>
    public int Acknowledge()
    {
        int vector;
        int irq = _master.HighestPendingIrq();
        if (irq < 0)
        {
            SpuriousInterrupts++;
            vector = _master.VectorBase | 7;
        }
        else
        {
            _master.AcceptInterrupt(irq);
            if (irq == CascadeIrq && !_master.SingleMode)
            {
                int slaveIrq = _slave.HighestPendingIrq();
                if (slaveIrq < 0)
                {
                    SpuriousInterrupts++;
                    vector = _slave.VectorBase | 7;
                }
                else
                {
                    _slave.AcceptInterrupt(slaveIrq);
                    vector = _slave.VectorBase | slaveIrq;
                    // The slave's INT falls during its INTA; a request still pending raises it again.
                    _master.SetCascadeInput(false);
                }
            }
            else
            {
                vector = _master.VectorBase | irq;
            }
        }
        Update();
        return vector;
    }

    public Pic8259PairState GetState() => new(_master.Save(), _slave.Save(), _intrLevel);

    /// <summary>Loads a saved state; an invalid record is refused with <see cref="ArgumentException"/>.</summary>
    public void FromState(Pic8259PairState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        Chip.Validate(state.Master, nameof(state.Master));
        Chip.Validate(state.Slave, nameof(state.Slave));
        _master.Load(state.Master);
        _slave.Load(state.Slave);
        _intrLevel = state.IntrLevel;
        _intr.Set(_intrLevel);
        Update();
    }

    private void Update()
    {
        // The slave's INT output drives the master's IR2.
        bool slaveInt = _slave.HighestPendingIrq() >= 0;
        _master.SetCascadeInput(slaveInt);
        bool intr = _master.HighestPendingIrq() >= 0;
        if (intr != _intrLevel)
        {
            _intrLevel = intr;
            _intr.Set(intr);
        }
    }

    private byte ReadPort(Chip chip, ulong offset)
    {
        if (offset == 0)
        {
            if (chip.PollPending)
            {
                chip.PollPending = false;
                int irq = chip.HighestPendingIrq();
                if (irq < 0)
                    return 0;
                chip.AcceptInterrupt(irq);
                Update();
                return (byte)(0x80 | irq);
            }
            return chip.ReadIsr ? chip.Isr : chip.Irr;
        }
        return chip.Imr;
    }

    private void WritePort(Chip chip, ulong offset, byte value)
    {
        if (offset == 0)
            chip.WriteCommand(value);
        else
            chip.WriteData(value);
        Update();
    }

    private sealed class PortView(Pic8259Pair pair, Chip chip, string name) : IBusDevice
    {
        public string Name => name;

        public void Read(ulong offset, Span<byte> data)
        {
            if (data.Length != 1 || offset > 1)
            {
                pair.BadAccesses++;
                data.Fill(0xff);
                return;
            }
            data[0] = pair.ReadPort(chip, offset);
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            if (data.Length != 1 || offset > 1)
            {
                pair.BadAccesses++;
                return;
            }
            pair.WritePort(chip, offset, data[0]);
        }
    }

    private sealed class ElcrView(Pic8259Pair pair) : IBusDevice
    {
        public string Name => "elcr";

        public void Read(ulong offset, Span<byte> data)
        {
            if (!Valid(offset, data.Length))
            {
                pair.BadAccesses++;
                data.Fill(0xff);
                return;
            }
            for (int i = 0; i < data.Length; i++)
                data[i] = ((int)offset + i == 0 ? pair._master : pair._slave).Elcr;
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            if (!Valid(offset, data.Length))
            {
                pair.BadAccesses++;
                return;
            }
            for (int i = 0; i < data.Length; i++)
            {
                if ((int)offset + i == 0)
                    pair._master.SetElcr((byte)(data[i] & MasterElcrMask));
                else
                    pair._slave.SetElcr((byte)(data[i] & SlaveElcrMask));
            }
            pair.Update();
        }

        private static bool Valid(ulong offset, int width) => (width == 1 && offset <= 1) || (width == 2 && offset == 0);
    }

    /// <summary>One 8259A.</summary>
    private sealed class Chip(bool isMaster)
    {
        public byte Irr;
        public byte Isr;
        public byte Imr;
        public byte InputLevels;
        public byte Elcr;
        public byte VectorBase;
        /// <summary>The IR level with the lowest priority; the next one up has the highest (7 after ICW1).</summary>
        public byte LowestPriority = 7;
        /// <summary>0: ready (OCWs); 1: expecting ICW2; 2: ICW3; 3: ICW4.</summary>
        public int InitStep;
        public bool Icw4Needed;
        public bool SingleMode;
        public bool LevelTriggeredAll;
        public bool AutoEoi;
        public bool RotateInAutoEoi;
        public bool SpecialMaskMode;
        public bool SpecialFullyNested;
        public bool ReadIsr;
        public bool PollPending;
        public byte Icw3;

        private bool IsLevel(int bit) => LevelTriggeredAll || (Elcr & (1 << bit)) != 0;

        public void SetInput(int bit, bool level)
        {
            byte mask = (byte)(1 << bit);
            bool was = (InputLevels & mask) != 0;
            if (level)
                InputLevels |= mask;
            else
                InputLevels &= (byte)~mask;
            if (IsLevel(bit))
            {
                if (level)
                    Irr |= mask;
                else
                    Irr &= (byte)~mask;
            }
            else if (level && !was)
            {
                Irr |= mask;
            }
        }

        public void SetCascadeInput(bool level)
        {
            if (isMaster && !SingleMode)
                SetInput(CascadeIrq, level);
        }

        public void SetElcr(byte value)
        {
            Elcr = value;
            // A line switched to level mode requests exactly while it is high.
            for (int bit = 0; bit < 8; bit++)
            {
                if ((Elcr & (1 << bit)) != 0 && (isMaster ? bit != CascadeIrq : true))
                {
                    if ((InputLevels & (1 << bit)) != 0)
                        Irr |= (byte)(1 << bit);
                    else
                        Irr &= (byte)~(1 << bit);
                }
            }
        }

        /// <summary>Priority rank of IR <paramref name="bit"/>: 0 is the highest.</summary>
        private int Rank(int bit) => (bit - LowestPriority - 1) & 7;

        /// <summary>The highest-priority bit set in <paramref name="mask"/>, or -1.</summary>
        private int Highest(byte mask)
        {
            if (mask == 0)
                return -1;
            for (int rank = 0; rank < 8; rank++)
            {
                int bit = (rank + LowestPriority + 1) & 7;
                if ((mask & (1 << bit)) != 0)
                    return bit;
            }
            return -1;
        }

        /// <summary>The IR the chip would signal now (pending, unmasked, above everything in service), or -1.</summary>
        public int HighestPendingIrq()
        {
            int irq = Highest((byte)(Irr & ~Imr));
            if (irq < 0)
                return -1;
            byte inService = Isr;
            if (SpecialMaskMode)
                inService &= (byte)~Imr;
            if (isMaster && SpecialFullyNested)
                inService &= unchecked((byte)~(1 << CascadeIrq));
            int current = Highest(inService);
            if (current >= 0 && Rank(irq) >= Rank(current))
                return -1;
            return irq;
        }

        public void AcceptInterrupt(int irq)
        {
            byte mask = (byte)(1 << irq);
            if (AutoEoi)
            {
                if (RotateInAutoEoi)
                    LowestPriority = (byte)irq;
            }
            else
            {
                Isr |= mask;
            }
            // An edge request is consumed by the acknowledge; a level request stays while the line is high.
            if (!IsLevel(irq))
                Irr &= (byte)~mask;
        }

        public void WriteCommand(byte value)
        {
            if ((value & 0x10) != 0)
            {
                // ICW1.
                Icw4Needed = (value & 0x01) != 0;
                SingleMode = (value & 0x02) != 0;
                LevelTriggeredAll = (value & 0x08) != 0;
                Imr = 0;
                Isr = 0;
                Irr = 0;
                for (int bit = 0; bit < 8; bit++)
                {
                    if (IsLevel(bit) && (InputLevels & (1 << bit)) != 0)
                        Irr |= (byte)(1 << bit);
                }
                LowestPriority = 7;
                SpecialMaskMode = false;
                ReadIsr = false;
                PollPending = false;
                if (!Icw4Needed)
                {
                    AutoEoi = false;
                    SpecialFullyNested = false;
                }
                RotateInAutoEoi = false;
                InitStep = 1;
                return;
            }
            if ((value & 0x08) != 0)
            {
                // OCW3.
                if ((value & 0x02) != 0)
                    ReadIsr = (value & 0x01) != 0;
                PollPending = (value & 0x04) != 0;
                if ((value & 0x40) != 0)
                    SpecialMaskMode = (value & 0x20) != 0;
                return;
            }
            // OCW2: R SL EOI in bits 7-5, level in 2-0.
            int level = value & 7;
            switch (value >> 5)
            {
                case 0b000:
                    RotateInAutoEoi = false;
                    break;
                case 0b100:
                    RotateInAutoEoi = true;
                    break;
                case 0b001:
                case 0b101:
                    {
                        int irq = Highest(Isr);
                        if (irq >= 0)
                        {
                            Isr &= (byte)~(1 << irq);
                            if ((value & 0x80) != 0)
                                LowestPriority = (byte)irq;
                        }
                        break;
                    }
                case 0b011:
                    Isr &= (byte)~(1 << level);
                    break;
                case 0b111:
                    Isr &= (byte)~(1 << level);
                    LowestPriority = (byte)level;
                    break;
                case 0b110:
                    LowestPriority = (byte)level;
                    break;
                default:
                    // 0b010: no operation.
                    break;
            }
        }

        public void WriteData(byte value)
        {
            switch (InitStep)
            {
                case 1:
                    VectorBase = (byte)(value & 0xf8);
                    InitStep = !SingleMode ? 2 : Icw4Needed ? 3 : 0;
                    break;
                case 2:
                    Icw3 = value;
                    InitStep = Icw4Needed ? 3 : 0;
                    break;
                case 3:
                    AutoEoi = (value & 0x02) != 0;
                    SpecialFullyNested = (value & 0x10) != 0;
                    InitStep = 0;
                    break;
                default:
                    Imr = value;
                    break;
            }
        }

        public Pic8259ChipState Save() => new(Irr, Isr, Imr, InputLevels, Elcr, VectorBase, LowestPriority, InitStep,
            Icw4Needed, SingleMode, LevelTriggeredAll, AutoEoi, RotateInAutoEoi, SpecialMaskMode, SpecialFullyNested,
            ReadIsr, PollPending, Icw3);

        public static void Validate(Pic8259ChipState s, string what)
        {
            ArgumentNullException.ThrowIfNull(s, what);
            if (s.InitStep is < 0 or > 3)
                throw new ArgumentException($"8259 {what}: init step {s.InitStep} is not 0-3", what);
            if (s.LowestPriority > 7)
                throw new ArgumentException($"8259 {what}: lowest priority {s.LowestPriority} is not 0-7", what);
            if ((s.VectorBase & 7) != 0)
                throw new ArgumentException($"8259 {what}: vector base 0x{s.VectorBase:x2} is not a multiple of 8", what);
        }

        public void Load(Pic8259ChipState s)
        {
            Irr = s.Irr;
            Isr = s.Isr;
            Imr = s.Imr;
            InputLevels = s.InputLevels;
            Elcr = (byte)(s.Elcr & (isMaster ? MasterElcrMask : SlaveElcrMask));
            VectorBase = s.VectorBase;
            LowestPriority = s.LowestPriority;
            InitStep = s.InitStep;
            Icw4Needed = s.Icw4Needed;
            SingleMode = s.SingleMode;
            LevelTriggeredAll = s.LevelTriggeredAll;
            AutoEoi = s.AutoEoi;
            RotateInAutoEoi = s.RotateInAutoEoi;
            SpecialMaskMode = s.SpecialMaskMode;
            SpecialFullyNested = s.SpecialFullyNested;
            ReadIsr = s.ReadIsr;
            PollPending = s.PollPending;
            Icw3 = s.Icw3;
        }
    }
}
