// System control port A (port 0x92, "PS/2 fast A20 and fast reset"), as on PIIX and QEMU's pc machine.
//
// Register (one byte, offset 0): bit 0 FAST_RESET (a 0->1 write resets the machine through IMachineControl),
// bit 1 A20_GATE (1: A20 enabled; driven out on the injected A20 line and exposed as A20Enabled), bit 3
// security lock (stored, no effect), other bits stored as written. Reads return the last value written.
// The A20 state seen by the CPU is the OR of this bit and the i8042 output port's A20 bit; the machine
// builder combines the two lines. Accesses other than one byte at offset 0 are counted (reads 0xff).
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

public sealed record SystemControlPortAState(byte Value);

/// <summary>Port 0x92.</summary>
public sealed class SystemControlPortA : IBusDevice
{
    public const byte FastReset = 0x01;
    public const byte A20Gate = 0x02;

    private readonly IMachineControl _machine;
    private readonly IIrqLine _a20;
    private byte _value;

    /// <param name="a20">Driven with bit 1 (high: A20 enabled); null for none.</param>
    public SystemControlPortA(IMachineControl machine, IIrqLine? a20 = null)
    {
        _machine = machine;
        _a20 = a20 ?? NullIrqLine.Instance;
    }

    public string Name => "port92";

    public long BadAccesses { get; private set; }

    public bool A20Enabled => (_value & A20Gate) != 0;

    public void Read(ulong offset, Span<byte> data)
    {
        if (data.Length != 1 || offset != 0)
        {
            BadAccesses++;
            data.Fill(0xff);
            return;
        }
        data[0] = _value;
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.Length != 1 || offset != 0)
        {
            BadAccesses++;
            return;
        }
        byte old = _value;
        _value = data[0];
        if (((old ^ _value) & A20Gate) != 0)
            _a20.Set(A20Enabled);
        if ((_value & FastReset) != 0 && (old & FastReset) == 0)
            _machine.RequestStop(new MachineStopRequest(MachineStopReason.Reset));
    }

    public SystemControlPortAState GetState() => new(_value);

    public void FromState(SystemControlPortAState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        bool before = A20Enabled;
        _value = state.Value;
        if (A20Enabled != before)
            _a20.Set(A20Enabled);
    }
}
