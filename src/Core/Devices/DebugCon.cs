// QEMU's debugcon (isa-debugcon): a one-port debug console, at 0xe9 (Bochs' port, QEMU's default) or 0x402
// (what OVMF/SeaBIOS builds use), chosen by configuration. A byte written to the port goes to the output
// sink; a byte read returns the "readback" value, 0xe9 by default as in QEMU, which is how a guest detects
// the port. Only 1-byte accesses are valid: probed under QEMU 7.2 (TCG), 16- and 32-bit OUTs to the port are
// dropped and 16- and 32-bit INs read 0, so this model counts them as bad accesses and answers the same way
// (reads 0, writes ignored), as it does accesses at a nonzero offset. No input: QEMU's debugcon has none.
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

/// <summary>Plain snapshot of a <see cref="DebugCon"/>.</summary>
public sealed record DebugConState(byte Readback, long BytesWritten);

public sealed class DebugCon : IBusDevice
{
    /// <summary>Bochs' and QEMU's default port.</summary>
    public const ushort BochsPort = 0xe9;
    /// <summary>The port OVMF and SeaBIOS debug builds write to.</summary>
    public const ushort FirmwarePort = 0x402;
    public const byte DefaultReadback = 0xe9;

    private readonly IByteSink _output;

    public DebugCon(IByteSink output, ushort port = BochsPort, byte readback = DefaultReadback, string name = "debugcon")
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        _output = output;
        Port = port;
        Readback = readback;
        Name = name;
    }

    public string Name { get; }
    public ushort Port { get; }
    public byte Readback { get; }

    /// <summary>The one-port range to map this device at.</summary>
    public PortRange Ports => new(Port, 1);

    /// <summary>Accesses at a nonzero offset or wider than one byte (QEMU rejects them too).</summary>
    public long BadAccesses;

    public long BytesWritten { get; private set; }

    public void Read(ulong offset, Span<byte> data)
    {
        if (offset != 0 || data.Length != 1)
        {
            BadAccesses++;
            data.Clear();
            return;
        }
        data[0] = Readback;
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset != 0 || data.Length != 1)
        {
            BadAccesses++;
            return;
        }
        _output.Write(data);
        BytesWritten++;
    }

    public DebugConState GetState() => new(Readback, BytesWritten);

    public static DebugCon FromState(IByteSink output, DebugConState state, ushort port = BochsPort, string name = "debugcon")
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.BytesWritten < 0) throw new ArgumentException($"invalid debugcon state: BytesWritten {state.BytesWritten}", nameof(state));
        return new DebugCon(output, port, state.Readback, name) { BytesWritten = state.BytesWritten };
    }
}
