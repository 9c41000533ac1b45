// 16550A UART (NS16550A / TI PC16550D), as on a PC's COM1-COM4: eight byte-wide registers at offsets 0-7
// of its port range (COM1 0x3f8, COM2 0x2f8, COM3 0x3e8, COM4 0x2e8).
//   0 RBR (read) / THR (write); DLL when LCR.DLAB=1      4 MCR  DTR RTS OUT1 OUT2 LOOP
//   1 IER ERBFI ETBEI ELSI EDSSI; DLM when LCR.DLAB=1    5 LSR  DR OE PE FE BI THRE TEMT RXFIFOERR
//   2 IIR (read) / FCR (write)                           6 MSR  DCTS DDSR TERI DDCD CTS DSR RI DCD
//   3 LCR  word length, stop, parity, break, DLAB        7 SCR
// Emulated: 16-byte receiver FIFO with trigger levels 1/4/8/14 and per-character error flags (BI),
// 16450 mode when FCR.0=0 (a one-character receiver), FIFO clears, interrupt identification with the
// datasheet priorities (line status > received data / character timeout > THR empty > modem status),
// the THRE interrupt rules (raised when the THR empties or when IER.ETBEI is set while it is empty;
// cleared by reading IIR while THRE is the reported source, or by writing THR), overrun (OE), break
// (host-injected), loopback (TX looped to RX; DTR/RTS/OUT1/OUT2 looped to DSR/CTS/RI/DCD), MSR delta bits
// (cleared on read), the scratch register and the divisor latch.
// Not emulated: baud timing. A THR write goes to the output sink at once, so THR/TSR are always empty
// (LSR.THRE = LSR.TEMT = 1 after every write) and the transmitter FIFO never holds anything. Line settings
// (word length, parity, divisor) are stored and read back but do not change the bytes. Parity and framing
// errors cannot occur (no line noise). The character-timeout indication (IIR 0xC) has no clock either: it is
// reported whenever the receiver FIFO holds fewer bytes than the trigger level and no more host input is
// waiting to enter it — the moment at which real hardware would time out four character times later.
// Interrupt line: as a PC wires it, the chip's INTR reaches the PIC only through the OUT2-gated buffer, so
// the line is driven high only while an interrupt is pending AND MCR.OUT2 = 1 AND MCR.LOOP = 0 (in loopback
// the chip forces its OUT pins inactive). IIR reports pending interrupts regardless of OUT2.
// Host input goes into a bounded backlog (InputBacklogCapacity bytes) in front of the chip's 16-byte FIFO;
// bytes move into the FIFO as the guest reads. When both are full the byte is lost and LSR.OE is set, as
// hardware does when a character arrives with the receiver FIFO full.
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

/// <summary>Plain snapshot of a <see cref="Uart16550"/>; validated by <see cref="Uart16550.FromState"/>.</summary>
/// <param name="RxFifo">Receiver FIFO from oldest: low byte the character, high byte its LSR error bits (BI/FE/PE).</param>
/// <param name="InputBacklog">Host bytes not yet in the receiver FIFO, oldest first.</param>
public sealed record Uart16550State(
    byte Ier,
    byte Lcr,
    byte Mcr,
    byte Fcr,
    byte Scr,
    byte Dll,
    byte Dlm,
    byte LsrErrors,
    byte MsrDeltas,
    byte ModemInputs,
    byte LastReceived,
    bool ThrInterruptPending,
    ushort[] RxFifo,
    byte[] InputBacklog);

public sealed class Uart16550 : IBusDevice
{
    /// <summary>The PC's serial ports: I/O base and ISA IRQ of COM1-COM4.</summary>
    public static readonly IReadOnlyList<(string Name, ushort IoBase, int Irq)> PcPorts =
        [("COM1", 0x3f8, 4), ("COM2", 0x2f8, 3), ("COM3", 0x3e8, 4), ("COM4", 0x2e8, 3)];

    /// <summary>The eight ports a 16550 occupies at <paramref name="ioBase"/>.</summary>
    public static PortRange PortsAt(ushort ioBase) => new(ioBase, 8);

    public const int FifoSize = 16;
    public const int DefaultBacklogCapacity = 64;

    // Register offsets.
    public const int RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

    // IER bits.
    public const byte IER_ERBFI = 0x01, IER_ETBEI = 0x02, IER_ELSI = 0x04, IER_EDSSI = 0x08;
    // IIR values (low nibble) and the FIFO-enabled bits.
    public const byte IIR_NO_INT = 0x01, IIR_MSI = 0x00, IIR_THRI = 0x02, IIR_RDI = 0x04, IIR_RLSI = 0x06, IIR_CTI = 0x0c, IIR_FIFO = 0xc0;
    // FCR bits.
    public const byte FCR_ENABLE = 0x01, FCR_CLEAR_RX = 0x02, FCR_CLEAR_TX = 0x04, FCR_DMA = 0x08;
    // LCR bits.
    public const byte LCR_SBC = 0x40, LCR_DLAB = 0x80;
    // MCR bits.
    public const byte MCR_DTR = 0x01, MCR_RTS = 0x02, MCR_OUT1 = 0x04, MCR_OUT2 = 0x08, MCR_LOOP = 0x10;
    // LSR bits.
    public const byte LSR_DR = 0x01, LSR_OE = 0x02, LSR_PE = 0x04, LSR_FE = 0x08, LSR_BI = 0x10, LSR_THRE = 0x20, LSR_TEMT = 0x40, LSR_FIFOE = 0x80;
    // MSR bits.
    public const byte MSR_DCTS = 0x01, MSR_DDSR = 0x02, MSR_TERI = 0x04, MSR_DDCD = 0x08, MSR_CTS = 0x10, MSR_DSR = 0x20, MSR_RI = 0x40, MSR_DCD = 0x80;

    private const byte LsrErrorMask = LSR_OE | LSR_PE | LSR_FE | LSR_BI;
    private const byte CharErrorMask = LSR_PE | LSR_FE | LSR_BI;

    private readonly IIrqLine _irq;
    private readonly IByteSink _output;
    private readonly ushort[] _rx = new ushort[FifoSize];
    private int _rxHead, _rxCount;
    private readonly byte[] _backlog;
    private int _backlogHead, _backlogCount;

    private byte _ier, _lcr, _mcr, _fcr, _scr, _dll = 0x0c, _dlm;
    private byte _lsrErrors;          // latched OE/PE/FE/BI, cleared by an LSR read
    private byte _msrDeltas;          // DCTS/DDSR/TERI/DDCD, cleared by an MSR read
    private byte _modemInputs = MSR_CTS | MSR_DSR | MSR_DCD; // the external CTS/DSR/RI/DCD pins
    private byte _lastReceived;
    private bool _thrPending;
    private bool _irqLevel;

    /// <param name="name">Bus name, e.g. "COM1".</param>
    /// <param name="irq">The interrupt line (IRQ 4 for COM1/COM3, 3 for COM2/COM4 on a PC).</param>
    /// <param name="output">Where transmitted bytes go (not used in loopback mode).</param>
    /// <param name="inputBacklogCapacity">Host input held in front of the chip's FIFO.</param>
    public Uart16550(string name, IIrqLine irq, IByteSink output, int inputBacklogCapacity = DefaultBacklogCapacity)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentOutOfRangeException.ThrowIfNegative(inputBacklogCapacity);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(inputBacklogCapacity, 1 << 20);
        Name = name;
        _irq = irq;
        _output = output;
        _backlog = new byte[inputBacklogCapacity];
    }

    public string Name { get; }

    /// <summary>Accesses with a width other than one byte or past offset 7 (reads answered 0xff, writes ignored).</summary>
    public long BadAccesses;

    /// <summary>Bytes sent to the output sink.</summary>
    public long TransmittedBytes;

    /// <summary>Received characters lost to overrun (including host input rejected when everything was full).</summary>
    public long Overruns;

    /// <summary>The level the interrupt line is being driven at.</summary>
    public bool IrqLevel => _irqLevel;

    public int InputBacklogCapacity => _backlog.Length;

    /// <summary>Host bytes waiting in the backlog plus characters in the receiver FIFO.</summary>
    public int PendingInput => _backlogCount + _rxCount;

    private bool FifoEnabled => (_fcr & FCR_ENABLE) != 0;
    private bool Loopback => (_mcr & MCR_LOOP) != 0;
    private int RxCapacity => FifoEnabled ? FifoSize : 1;

    private int TriggerLevel => (_fcr >> 6) switch { 0 => 1, 1 => 4, 2 => 8, _ => 14 };

    // ---- host side -------------------------------------------------------------------------------------

    /// <summary>
    /// Pushes one received byte. False when the receiver FIFO and the backlog are both full: the byte is lost
    /// and LSR.OE is set, as when a character arrives at a full receiver. While the chip is in loopback its
    /// serial input is disconnected, so bytes wait in the backlog (and are refused without OE when it is full).
    /// </summary>
    public bool TryEnqueueInput(byte value)
    {
        if (_backlogCount == 0 && !Loopback && _rxCount < RxCapacity)
        {
            PushRx(value, 0);
            Update();
            return true;
        }
        if (_backlogCount < _backlog.Length)
        {
            _backlog[(_backlogHead + _backlogCount) % _backlog.Length] = value;
            _backlogCount++;
            Update();
            return true;
        }
        if (!Loopback)
        {
            // In loopback the serial input is disconnected: the byte is refused, but no character was lost.
            Overruns++;
            _lsrErrors |= LSR_OE;
            Update();
        }
        return false;
    }

    /// <summary>Pushes bytes until one is rejected; returns how many were accepted.</summary>
    public int EnqueueInput(ReadOnlySpan<byte> data)
    {
        for (int i = 0; i < data.Length; i++)
        {
            if (!TryEnqueueInput(data[i])) return i;
        }
        return data.Length;
    }

    /// <summary>A break condition on the serial input: a zero character flagged BI. False if it was lost to overrun.</summary>
    public bool ReceiveBreak()
    {
        if (Loopback) return false;
        return ReceiveCharacter(0, LSR_BI);
    }

    /// <summary>Sets the external modem-status inputs (used when not in loopback); changes set the MSR delta bits.</summary>
    public void SetModemInputs(bool cts, bool dsr, bool ri, bool dcd)
    {
        byte inputs = (byte)((cts ? MSR_CTS : 0) | (dsr ? MSR_DSR : 0) | (ri ? MSR_RI : 0) | (dcd ? MSR_DCD : 0));
        byte before = ModemStatusLines();
        _modemInputs = inputs;
        NoteModemChange(before, ModemStatusLines());
        Update();
    }

    // ---- bus side --------------------------------------------------------------------------------------

    public void Read(ulong offset, Span<byte> data)
    {
        if (data.Length != 1 || offset > 7)
        {
            BadAccesses++;
            data.Fill(0xff);
            return;
        }
        data[0] = ReadRegister((int)offset);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.Length != 1 || offset > 7)
        {
            BadAccesses++;
            return;
        }
        WriteRegister((int)offset, data[0]);
    }

    private byte ReadRegister(int reg)
    {
        bool dlab = (_lcr & LCR_DLAB) != 0;
        switch (reg)
        {
            case RBR:
                if (dlab) return _dll;
                return ReadRbr();
            case IER:
                return dlab ? _dlm : _ier;
            case IIR:
            {
                byte iir = Identify();
                if ((iir & 0x0f) == IIR_THRI)
                {
                    _thrPending = false;
                    Update();
                }
                return (byte)(iir | (FifoEnabled ? IIR_FIFO : 0));
            }
            case LCR:
                return _lcr;
            case MCR:
                return _mcr;
            case LSR:
            {
                byte lsr = Lsr();
                _lsrErrors = 0;
                Update();
                return lsr;
            }
            case MSR:
            {
                byte msr = (byte)(ModemStatusLines() | _msrDeltas);
                _msrDeltas = 0;
                Update();
                return msr;
            }
            default:
                return _scr;
        }
    }

    private void WriteRegister(int reg, byte value)
    {
        bool dlab = (_lcr & LCR_DLAB) != 0;
        switch (reg)
        {
            case THR:
                if (dlab)
                {
                    _dll = value;
                    return;
                }
                Transmit(value);
                break;
            case IER:
                if (dlab)
                {
                    _dlm = value;
                    return;
                }
                {
                    bool enablingThre = (value & IER_ETBEI) != 0 && (_ier & IER_ETBEI) == 0;
                    _ier = (byte)(value & 0x0f);
                    // THR and TSR are always empty here, so enabling ETBEI raises the THRE interrupt.
                    if (enablingThre) _thrPending = true;
                }
                break;
            case FCR:
                WriteFcr(value);
                break;
            case LCR:
                _lcr = value;
                return;
            case MCR:
            {
                byte before = ModemStatusLines();
                bool wasLoop = Loopback;
                _mcr = (byte)(value & 0x1f);
                if (Loopback || wasLoop) NoteModemChange(before, ModemStatusLines());
                if (wasLoop && !Loopback) DrainBacklog();
                break;
            }
            case LSR:
            case MSR:
                // Read-only on the 16550 (writes are for factory test); ignored.
                return;
            default:
                _scr = value;
                return;
        }
        Update();
    }

    private void WriteFcr(byte value)
    {
        bool enable = (value & FCR_ENABLE) != 0;
        if (enable != FifoEnabled)
        {
            // Changing FCR0 clears both FIFOs.
            ClearRx();
        }
        if (!enable)
        {
            _fcr = 0;
            DrainBacklog();
            return;
        }
        if ((value & FCR_CLEAR_RX) != 0) ClearRx();
        // FCR_CLEAR_TX: the transmitter FIFO is always empty here.
        _fcr = (byte)(value & (FCR_ENABLE | FCR_DMA | 0xc0));
        DrainBacklog();
    }

    private byte ReadRbr()
    {
        if (_rxCount == 0) return _lastReceived;
        ushort entry = _rx[_rxHead];
        _rxHead = (_rxHead + 1) % FifoSize;
        _rxCount--;
        _lastReceived = (byte)entry;
        if (_rxCount > 0) _lsrErrors |= (byte)(_rx[_rxHead] >> 8);
        DrainBacklog();
        Update();
        return (byte)entry;
    }

    private void Transmit(byte value)
    {
        _thrPending = false;
        if (Loopback)
        {
            // The transmitter output is looped to the receiver input; a set break (LCR.SBC) arrives as BI.
            ReceiveCharacter((_lcr & LCR_SBC) != 0 ? (byte)0 : value, (_lcr & LCR_SBC) != 0 ? LSR_BI : (byte)0);
        }
        else
        {
            _output.Write([value]);
        }
        TransmittedBytes++;
        // The character left at once: THR and TSR are empty again, so THRE interrupts anew.
        _thrPending = true;
    }

    /// <summary>A character completed in the receiver shift register.</summary>
    private bool ReceiveCharacter(byte value, byte errors)
    {
        if (_rxCount < RxCapacity)
        {
            PushRx(value, errors);
            Update();
            return true;
        }
        Overruns++;
        _lsrErrors |= LSR_OE;
        if (!FifoEnabled)
        {
            // 16450 mode: the new character overwrites the one in RBR.
            _rx[_rxHead] = (ushort)(value | (errors << 8));
            _lsrErrors |= errors;
        }
        Update();
        return false;
    }

    private void PushRx(byte value, byte errors)
    {
        _rx[(_rxHead + _rxCount) % FifoSize] = (ushort)(value | (errors << 8));
        _rxCount++;
        if (_rxCount == 1) _lsrErrors |= errors; // errors show in LSR when the character reaches the top
    }

    private void DrainBacklog()
    {
        if (Loopback) return;
        while (_backlogCount > 0 && _rxCount < RxCapacity)
        {
            PushRx(_backlog[_backlogHead], 0);
            _backlogHead = (_backlogHead + 1) % _backlog.Length;
            _backlogCount--;
        }
        if (_backlogCount == 0) _backlogHead = 0;
    }

    private void ClearRx()
    {
        _rxHead = 0;
        _rxCount = 0;
    }

    private byte Lsr()
    {
        byte lsr = (byte)(LSR_THRE | LSR_TEMT | _lsrErrors);
        if (_rxCount > 0) lsr |= LSR_DR;
        if (FifoEnabled)
        {
            for (int i = 0; i < _rxCount; i++)
            {
                if ((_rx[(_rxHead + i) % FifoSize] >> 8 & CharErrorMask) != 0)
                {
                    lsr |= LSR_FIFOE;
                    break;
                }
            }
        }
        return lsr;
    }

    private byte ModemStatusLines()
    {
        if (!Loopback) return _modemInputs;
        int m = _mcr;
        return (byte)(((m & MCR_RTS) != 0 ? MSR_CTS : 0) | ((m & MCR_DTR) != 0 ? MSR_DSR : 0)
            | ((m & MCR_OUT1) != 0 ? MSR_RI : 0) | ((m & MCR_OUT2) != 0 ? MSR_DCD : 0));
    }

    private void NoteModemChange(byte before, byte after)
    {
        byte changed = (byte)(before ^ after);
        if ((changed & MSR_CTS) != 0) _msrDeltas |= MSR_DCTS;
        if ((changed & MSR_DSR) != 0) _msrDeltas |= MSR_DDSR;
        if ((changed & MSR_DCD) != 0) _msrDeltas |= MSR_DDCD;
        if ((before & MSR_RI) != 0 && (after & MSR_RI) == 0) _msrDeltas |= MSR_TERI;
    }

    /// <summary>The highest-priority pending, enabled interrupt as the IIR low nibble.</summary>
    private byte Identify()
    {
        if ((_ier & IER_ELSI) != 0 && (_lsrErrors & LsrErrorMask) != 0) return IIR_RLSI;
        if ((_ier & IER_ERBFI) != 0 && _rxCount > 0)
        {
            if (!FifoEnabled || _rxCount >= TriggerLevel) return IIR_RDI;
            if (_backlogCount == 0 || Loopback) return IIR_CTI;
        }
        if ((_ier & IER_ETBEI) != 0 && _thrPending) return IIR_THRI;
        if ((_ier & IER_EDSSI) != 0 && _msrDeltas != 0) return IIR_MSI;
        return IIR_NO_INT;
    }

    private void Update()
    {
        bool level = Identify() != IIR_NO_INT && (_mcr & (MCR_OUT2 | MCR_LOOP)) == MCR_OUT2;
        if (level != _irqLevel)
        {
            _irqLevel = level;
            _irq.Set(level);
        }
    }

    // ---- state -----------------------------------------------------------------------------------------

    public Uart16550State GetState()
    {
        var rx = new ushort[_rxCount];
        for (int i = 0; i < rx.Length; i++) rx[i] = _rx[(_rxHead + i) % FifoSize];
        var backlog = new byte[_backlogCount];
        for (int i = 0; i < backlog.Length; i++) backlog[i] = _backlog[(_backlogHead + i) % _backlog.Length];
        return new Uart16550State(_ier, _lcr, _mcr, _fcr, _scr, _dll, _dlm, _lsrErrors, _msrDeltas, _modemInputs,
            _lastReceived, _thrPending, rx, backlog);
    }

    /// <summary>A UART restored from <paramref name="state"/>; drives the IRQ line to the restored level.</summary>
    /// <exception cref="ArgumentException">The state is inconsistent (names the field).</exception>
    public static Uart16550 FromState(string name, IIrqLine irq, IByteSink output, Uart16550State state,
        int inputBacklogCapacity = DefaultBacklogCapacity)
    {
        ArgumentNullException.ThrowIfNull(state);
        static void Check(bool ok, string what)
        {
            if (!ok) throw new ArgumentException($"invalid 16550 state: {what}", nameof(state));
        }
        if (state.RxFifo is null || state.InputBacklog is null)
            throw new ArgumentException("invalid 16550 state: FIFO arrays are null", nameof(state));
        Check((state.Ier & 0xf0) == 0, $"IER 0x{state.Ier:x2} has reserved bits");
        Check((state.Mcr & 0xe0) == 0, $"MCR 0x{state.Mcr:x2} has reserved bits");
        Check((state.Fcr & 0x36) == 0 && (state.Fcr == 0 || (state.Fcr & FCR_ENABLE) != 0), $"FCR 0x{state.Fcr:x2} is not a stored FCR value");
        Check((state.LsrErrors & ~LsrErrorMask) == 0, $"LSR error bits 0x{state.LsrErrors:x2}");
        Check((state.MsrDeltas & 0xf0) == 0, $"MSR deltas 0x{state.MsrDeltas:x2}");
        Check((state.ModemInputs & 0x0f) == 0, $"modem inputs 0x{state.ModemInputs:x2}");
        int cap = (state.Fcr & FCR_ENABLE) != 0 ? FifoSize : 1;
        Check(state.RxFifo.Length <= cap, $"receiver FIFO holds {state.RxFifo.Length} characters (at most {cap})");
        foreach (var e in state.RxFifo) Check((e >> 8 & ~CharErrorMask) == 0, $"receiver FIFO entry 0x{e:x4}");
        Check(state.InputBacklog.Length <= inputBacklogCapacity, $"input backlog holds {state.InputBacklog.Length} bytes (capacity {inputBacklogCapacity})");

        var u = new Uart16550(name, irq, output, inputBacklogCapacity)
        {
            _ier = state.Ier, _lcr = state.Lcr, _mcr = state.Mcr, _fcr = state.Fcr, _scr = state.Scr,
            _dll = state.Dll, _dlm = state.Dlm, _lsrErrors = state.LsrErrors, _msrDeltas = state.MsrDeltas,
            _modemInputs = state.ModemInputs, _lastReceived = state.LastReceived, _thrPending = state.ThrInterruptPending,
        };
        state.RxFifo.CopyTo(u._rx, 0);
        u._rxCount = state.RxFifo.Length;
        state.InputBacklog.CopyTo(u._backlog, 0);
        u._backlogCount = state.InputBacklog.Length;
        // Drive the line to the restored level (the new instance starts from low).
        u.Update();
        return u;
    }

    /// <summary>
    /// Loads <paramref name="state"/> into this UART in place (a supervised restart keeps the model object the bus
    /// and the device actor share), validated as <see cref="FromState"/> validates it, and drives the IRQ line.
    /// </summary>
    /// <exception cref="ArgumentException">The state is inconsistent; this UART is left unchanged.</exception>
    public void LoadState(Uart16550State state)
    {
        var u = FromState(Name, NullIrqLine.Instance, _output, state, InputBacklogCapacity);
        (_ier, _lcr, _mcr, _fcr, _scr, _dll, _dlm) = (u._ier, u._lcr, u._mcr, u._fcr, u._scr, u._dll, u._dlm);
        (_lsrErrors, _msrDeltas, _modemInputs, _lastReceived, _thrPending) = (u._lsrErrors, u._msrDeltas, u._modemInputs, u._lastReceived, u._thrPending);
        u._rx.CopyTo(_rx, 0);
        (_rxHead, _rxCount) = (0, u._rxCount);
        u._backlog.CopyTo(_backlog, 0);
        (_backlogHead, _backlogCount) = (0, u._backlogCount);
        Update();
    }
}
