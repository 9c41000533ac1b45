// Intel 8042 keyboard controller as in the IBM PC/AT, with an MF2 keyboard behind it.
//
// Ports: DataPort (0x60: output buffer read / data write) and CommandPort (0x64: status read / command write)
// are two one-port IBusDevice views of the one controller; map both with ONE shared lock.
// Status (0x64 read): bit 0 OBF, bit 1 IBF (always 0: every write is processed at once), bit 2 SYS, bit 3 A2
// (last write was a command), bit 4 INH (1: keyboard not inhibited), bit 5 AUXB (output buffer holds aux data),
// bit 6 TIMEOUT, bit 7 PARITY (always 0).
// Command byte (RAM byte 0): bit 0 INT (IRQ1 on keyboard OBF), bit 1 INT2 (IRQ12 on aux OBF), bit 2 SYS,
// bit 4 EN (1: keyboard interface disabled), bit 5 EN2 (1: aux interface disabled), bit 6 XLAT.
// Controller commands: 0x20-0x3f read RAM, 0x60-0x7f write RAM, 0xa7/0xa8 disable/enable aux, 0xa9 aux
// interface test (0x00), 0xaa self-test (0x55, sets SYS), 0xab keyboard interface test (0x00), 0xad/0xae
// disable/enable keyboard, 0xd0/0xd1 read/write output port (bit 0 system reset, active low: writing 0 resets;
// bit 1 A20 gate; bits 4/5 mirror OBF/AUXB on read), 0xd2/0xd3 write keyboard/aux output buffer, 0xd4 write
// to aux device, 0xe0 read test inputs (0x00), 0xf0-0xff pulse output port (bit 0 clear: reset via
// IMachineControl). Other commands are counted in UnknownCommands and ignored.
// Keyboard: 0xff reset (FA AA), 0xf2 identify (FA AB 83, or FA AB 41 when XLAT is on, as a translating 8042
// delivers it), 0xf4 enable / 0xf5 disable (both clear the keyboard's buffer), 0xf6 defaults, 0xed LEDs,
// 0xf0 scancode set (0 queries: the set number, or its translated code 0x43/0x41/0x3f under XLAT), 0xf3
// typematic, 0xee echo, 0xfe resend, 0xf7-0xfd acknowledged; anything else answers FE. Writing to port 0x60
// clears the EN bit, as QEMU does (sending to the keyboard re-enables the interface).
// Aux: no device is attached. 0xd3 loopback works (the controller itself); bytes sent with 0xd4 are answered
// with 0xfe on the aux channel and TIMEOUT set, which Linux and SeaBIOS read as "no mouse".
// Host input: EnqueueKeyboardBytes pushes bytes exactly as the guest should read them (the host applies any
// set-2 to set-1 translation it wants; Translating and ScancodeSet say what the guest asked for). The keyboard
// FIFO holds 64 bytes; what does not fit, or arrives while scanning is disabled, is dropped and counted.
// Not emulated: typematic repeat, the input port (0xc0), keyboard lock, password commands, parity errors.
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

/// <summary>Saved state of the i8042 and its keyboard.</summary>
public sealed record I8042State(
    byte[] Ram,
    byte OutputPort,
    bool SystemFlag,
    bool LastWriteWasCommand,
    bool Timeout,
    bool OutputBufferFull,
    byte OutputBuffer,
    bool OutputFromAux,
    byte PendingCommand,
    byte[] ControllerQueue,
    byte[] KeyboardQueue,
    byte[] AuxQueue,
    bool Scanning,
    byte Leds,
    byte ScancodeSet,
    byte Typematic,
    byte PendingKeyboardCommand,
    byte LastKeyboardByte,
    bool Irq1Level,
    bool Irq12Level);

/// <summary>The i8042 controller at 0x60 and 0x64.</summary>
public sealed class I8042
{
    public const byte StatusOutputBufferFull = 0x01;
    public const byte StatusSystemFlag = 0x04;
    public const byte StatusCommand = 0x08;
    public const byte StatusNotInhibited = 0x10;
    public const byte StatusAuxData = 0x20;
    public const byte StatusTimeout = 0x40;

    public const byte CmdInt = 0x01;
    public const byte CmdInt2 = 0x02;
    public const byte CmdSys = 0x04;
    public const byte CmdDisableKeyboard = 0x10;
    public const byte CmdDisableAux = 0x20;
    public const byte CmdTranslate = 0x40;

    public const byte OutputPortReset = 0x01;
    public const byte OutputPortA20 = 0x02;

    /// <summary>Bytes the keyboard buffers (host keys and command answers).</summary>
    public const int KeyboardQueueCapacity = 64;

    private const int SmallQueueCapacity = 16;
    private const byte DefaultTypematic = 0x2b;

    private readonly IIrqLine _irq1;
    private readonly IIrqLine _irq12;
    private readonly IMachineControl _machine;
    private readonly IIrqLine _a20;
    private readonly byte[] _ram = new byte[32];
    private readonly Queue<byte> _ctrl = new();
    private readonly Queue<byte> _kbd = new();
    private readonly Queue<byte> _aux = new();
    private byte _outputPort = 0xcf;
    private bool _sys;
    private bool _a2;
    private bool _timeout;
    private bool _obf;
    private byte _ob;
    private bool _obAux;
    private byte _pending;
    private bool _scanning = true;
    private byte _leds;
    private byte _set = 2;
    private byte _typematic = DefaultTypematic;
    private byte _pendingKbd;
    private byte _lastKbd = 0xaa;
    private bool _irq1Level;
    private bool _irq12Level;

    /// <param name="a20">Driven with the output port's A20 gate bit (high: A20 enabled); null for none.</param>
    public I8042(IIrqLine irq1, IIrqLine irq12, IMachineControl machine, IIrqLine? a20 = null)
    {
        _irq1 = irq1;
        _irq12 = irq12;
        _machine = machine;
        _a20 = a20 ?? NullIrqLine.Instance;
        _ram[0] = CmdInt | CmdInt2;
        DataPort = new View(this, isCommand: false);
        CommandPort = new View(this, isCommand: true);
    }

    /// <summary>Port 0x60.</summary>
    public IBusDevice DataPort { get; }

    /// <summary>Port 0x64.</summary>
    public IBusDevice CommandPort { get; }

    /// <summary>
    /// Both ports as one register file for a bus that maps a device at several ranges: offset 0 is the data port
    /// (0x60), offset 4 the command/status port (0x64). Map 0x60 at offset 0 and 0x64 with a bias of 4, so both go
    /// to one model under one lock. Other offsets are counted as bad accesses.
    /// </summary>
    public IBusDevice Ports => _ports ??= new CombinedView(this);

    private CombinedView? _ports;

    /// <summary>The controller behind a <see cref="Ports"/> view (what a machine maps), or null for any other device.</summary>
    public static I8042? ControllerOf(IBusDevice device) => (device as CombinedView)?.Owner;

    private sealed class CombinedView(I8042 owner) : IBusDevice
    {
        public I8042 Owner => owner;

        public string Name => "i8042";

        public void Read(ulong offset, Span<byte> data)
        {
            switch (offset)
            {
                case 0: owner.DataPort.Read(0, data); break;
                case 4: owner.CommandPort.Read(0, data); break;
                default: owner.DataPort.Read(ulong.MaxValue, data); break; // counted as a bad access there
            }
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            switch (offset)
            {
                case 0: owner.DataPort.Write(0, data); break;
                case 4: owner.CommandPort.Write(0, data); break;
                default: owner.DataPort.Write(ulong.MaxValue, data); break;
            }
        }
    }

    public long BadAccesses { get; private set; }

    public long UnknownCommands { get; private set; }

    /// <summary>Host bytes dropped: FIFO full or keyboard scanning disabled.</summary>
    public long DroppedKeyboardBytes { get; private set; }

    public bool A20Enabled => (_outputPort & OutputPortA20) != 0;

    public byte CommandByte => _ram[0];

    public bool Translating => (_ram[0] & CmdTranslate) != 0;

    public int ScancodeSet => _set;

    public byte Leds => _leds;

    public bool KeyboardScanning => _scanning;

    /// <summary>Pushes host key bytes; returns false if any were dropped.</summary>
    public bool EnqueueKeyboardBytes(ReadOnlySpan<byte> bytes)
    {
        bool all = true;
        foreach (byte b in bytes)
        {
            if (!_scanning || _kbd.Count >= KeyboardQueueCapacity)
            {
                DroppedKeyboardBytes++;
                all = false;
                continue;
            }
            _kbd.Enqueue(b);
            Refill();
        }
        Refill();
        return all;
    }

    private byte ReadStatus()
    {
        int s = StatusNotInhibited;
        if (_obf)
            s |= StatusOutputBufferFull;
        if (_obf && _obAux)
            s |= StatusAuxData;
        if (_sys)
            s |= StatusSystemFlag;
        if (_a2)
            s |= StatusCommand;
        if (_timeout)
            s |= StatusTimeout;
        return (byte)s;
    }

    private byte ReadData()
    {
        if (!_obf)
            return _ob;
        byte value = _ob;
        _obf = false;
        // The lines fall with OBF before the next byte is moved in, so each byte is a new edge.
        DriveIrqs();
        Refill();
        return value;
    }

    private void WriteCommand(byte cmd)
    {
        _a2 = true;
        _timeout = false;
        _pending = 0;
        switch (cmd)
        {
            case >= 0x20 and <= 0x3f:
                Reply(_ram[cmd & 0x1f]);
                break;
            case >= 0x60 and <= 0x7f:
            case 0xd1:
            case 0xd2:
            case 0xd3:
            case 0xd4:
                _pending = cmd;
                break;
            case 0xa7:
                _ram[0] |= CmdDisableAux;
                break;
            case 0xa8:
                _ram[0] &= unchecked((byte)~CmdDisableAux);
                break;
            case 0xa9:
            case 0xab:
            case 0xe0:
                Reply(0x00);
                break;
            case 0xaa:
                _sys = true;
                Reply(0x55);
                break;
            case 0xad:
                _ram[0] |= CmdDisableKeyboard;
                break;
            case 0xae:
                _ram[0] &= unchecked((byte)~CmdDisableKeyboard);
                break;
            case 0xd0:
                {
                    int port = _outputPort & 0xcf;
                    if (_obf && !_obAux)
                        port |= 0x10;
                    if (_obf && _obAux)
                        port |= 0x20;
                    Reply((byte)port);
                    break;
                }
            case >= 0xf0:
                if ((cmd & 0x01) == 0)
                    _machine.RequestStop(new MachineStopRequest(MachineStopReason.Reset));
                break;
            default:
                UnknownCommands++;
                break;
        }
        Refill();
    }

    private void WriteData(byte value)
    {
        _a2 = false;
        byte pending = _pending;
        _pending = 0;
        switch (pending)
        {
            case >= 0x60 and <= 0x7f:
                _ram[pending & 0x1f] = value;
                if (pending == 0x60)
                    _sys = (value & CmdSys) != 0;
                break;
            case 0xd1:
                WriteOutputPort(value);
                break;
            case 0xd2:
                Reply(value);
                break;
            case 0xd3:
                if (_aux.Count < SmallQueueCapacity)
                    _aux.Enqueue(value);
                break;
            case 0xd4:
                // No aux device: the transmission times out and the controller answers FE.
                _timeout = true;
                if (_aux.Count < SmallQueueCapacity)
                    _aux.Enqueue(0xfe);
                break;
            default:
                _ram[0] &= unchecked((byte)~CmdDisableKeyboard);
                KeyboardCommand(value);
                break;
        }
        Refill();
    }

    private void WriteOutputPort(byte value)
    {
        bool oldA20 = A20Enabled;
        _outputPort = value;
        if (A20Enabled != oldA20)
            _a20.Set(A20Enabled);
        if ((value & OutputPortReset) == 0)
            _machine.RequestStop(new MachineStopRequest(MachineStopReason.Reset));
    }

    private void Reply(byte value)
    {
        if (_ctrl.Count < SmallQueueCapacity)
            _ctrl.Enqueue(value);
    }

    private void KeyboardSend(byte value)
    {
        _lastKbd = value;
        if (_kbd.Count < KeyboardQueueCapacity)
            _kbd.Enqueue(value);
        else
            DroppedKeyboardBytes++;
    }

    private void KeyboardDefaults()
    {
        _set = 2;
        _typematic = DefaultTypematic;
    }

    private void KeyboardCommand(byte value)
    {
        byte pending = _pendingKbd;
        _pendingKbd = 0;
        switch (pending)
        {
            case 0xed:
                _leds = (byte)(value & 0x07);
                KeyboardSend(0xfa);
                return;
            case 0xf3:
                _typematic = (byte)(value & 0x7f);
                KeyboardSend(0xfa);
                return;
            case 0xf0:
                if (value == 0)
                {
                    KeyboardSend(0xfa);
                    KeyboardSend(Translating ? (byte)(_set switch { 1 => 0x43, 2 => 0x41, _ => 0x3f }) : _set);
                }
                else if (value <= 3)
                {
                    _set = value;
                    KeyboardSend(0xfa);
                }
                else
                {
                    KeyboardSend(0xfe);
                }
                return;
        }
        switch (value)
        {
            case 0xed:
            case 0xf0:
            case 0xf3:
                _pendingKbd = value;
                KeyboardSend(0xfa);
                break;
            case 0xee:
                KeyboardSend(0xee);
                break;
            case 0xf2:
                KeyboardSend(0xfa);
                KeyboardSend(0xab);
                KeyboardSend(Translating ? (byte)0x41 : (byte)0x83);
                break;
            case 0xf4:
                _kbd.Clear();
                _scanning = true;
                KeyboardSend(0xfa);
                break;
            case 0xf5:
                _kbd.Clear();
                _scanning = false;
                KeyboardDefaults();
                KeyboardSend(0xfa);
                break;
            case 0xf6:
                _kbd.Clear();
                KeyboardDefaults();
                KeyboardSend(0xfa);
                break;
            case >= 0xf7 and <= 0xfd:
                KeyboardSend(0xfa);
                break;
            case 0xfe:
                KeyboardSend(_lastKbd);
                break;
            case 0xff:
                _kbd.Clear();
                _scanning = true;
                _leds = 0;
                KeyboardDefaults();
                KeyboardSend(0xfa);
                KeyboardSend(0xaa);
                break;
            default:
                KeyboardSend(0xfe);
                break;
        }
    }

    /// <summary>Moves the next byte into the output buffer if it is empty, and drives IRQ1/IRQ12.</summary>
    private void Refill()
    {
        if (!_obf)
        {
            if (_ctrl.Count > 0)
            {
                _ob = _ctrl.Dequeue();
                _obAux = false;
                _obf = true;
            }
            else if (_kbd.Count > 0 && (_ram[0] & CmdDisableKeyboard) == 0)
            {
                _ob = _kbd.Dequeue();
                _obAux = false;
                _obf = true;
            }
            else if (_aux.Count > 0 && (_ram[0] & CmdDisableAux) == 0)
            {
                _ob = _aux.Dequeue();
                _obAux = true;
                _obf = true;
            }
        }
        DriveIrqs();
    }

    private void DriveIrqs()
    {
        bool irq1 = _obf && !_obAux && (_ram[0] & CmdInt) != 0;
        bool irq12 = _obf && _obAux && (_ram[0] & CmdInt2) != 0;
        if (irq1 != _irq1Level)
        {
            _irq1Level = irq1;
            _irq1.Set(irq1);
        }
        if (irq12 != _irq12Level)
        {
            _irq12Level = irq12;
            _irq12.Set(irq12);
        }
    }

    public I8042State GetState() => new((byte[])_ram.Clone(), _outputPort, _sys, _a2, _timeout, _obf, _ob, _obAux,
        _pending, [.. _ctrl], [.. _kbd], [.. _aux], _scanning, _leds, _set, _typematic, _pendingKbd, _lastKbd,
        _irq1Level, _irq12Level);

    /// <summary>Loads a saved state; an invalid record is refused with <see cref="ArgumentException"/>.</summary>
    public void FromState(I8042State state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Ram is null || state.Ram.Length != 32)
            throw new ArgumentException("i8042: RAM image must be 32 bytes", nameof(state));
        if (state.ControllerQueue is null || state.ControllerQueue.Length > SmallQueueCapacity ||
            state.AuxQueue is null || state.AuxQueue.Length > SmallQueueCapacity ||
            state.KeyboardQueue is null || state.KeyboardQueue.Length > KeyboardQueueCapacity)
            throw new ArgumentException("i8042: a queue is missing or longer than its capacity", nameof(state));
        if (state.ScancodeSet is < 1 or > 3)
            throw new ArgumentException($"i8042: scancode set {state.ScancodeSet} is not 1-3", nameof(state));
        if (state.PendingKeyboardCommand is not (0 or 0xed or 0xf0 or 0xf3))
            throw new ArgumentException("i8042: bad pending keyboard command", nameof(state));
        bool a20Before = A20Enabled;
        state.Ram.CopyTo(_ram, 0);
        _outputPort = state.OutputPort;
        _sys = state.SystemFlag;
        _a2 = state.LastWriteWasCommand;
        _timeout = state.Timeout;
        _obf = state.OutputBufferFull;
        _ob = state.OutputBuffer;
        _obAux = state.OutputFromAux;
        _pending = state.PendingCommand;
        Load(_ctrl, state.ControllerQueue);
        Load(_kbd, state.KeyboardQueue);
        Load(_aux, state.AuxQueue);
        _scanning = state.Scanning;
        _leds = (byte)(state.Leds & 7);
        _set = state.ScancodeSet;
        _typematic = state.Typematic;
        _pendingKbd = state.PendingKeyboardCommand;
        _lastKbd = state.LastKeyboardByte;
        _irq1Level = state.Irq1Level;
        _irq12Level = state.Irq12Level;
        _irq1.Set(_irq1Level);
        _irq12.Set(_irq12Level);
        if (A20Enabled != a20Before)
            _a20.Set(A20Enabled);

        static void Load(Queue<byte> q, byte[] bytes)
        {
            q.Clear();
            foreach (byte b in bytes)
                q.Enqueue(b);
        }
    }

    private sealed class View(I8042 kbc, bool isCommand) : IBusDevice
    {
        public string Name => isCommand ? "i8042-cmd" : "i8042-data";

        public void Read(ulong offset, Span<byte> data)
        {
            if (data.Length != 1 || offset != 0)
            {
                kbc.BadAccesses++;
                data.Fill(0xff);
                return;
            }
            data[0] = isCommand ? kbc.ReadStatus() : kbc.ReadData();
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            if (data.Length != 1 || offset != 0)
            {
                kbc.BadAccesses++;
                return;
            }
            if (isCommand)
                kbc.WriteCommand(data[0]);
            else
                kbc.WriteData(data[0]);
        }
    }
}
