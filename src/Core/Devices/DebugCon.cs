// QEMU's debugcon (isa-debugcon): a one-port debug console, at 0xe9 (Bochs' port, QEMU's default) or 0x402
// (what OVMF/SeaBIOS builds use), chosen by configuration. A byte written to the port goes to the output
// sink; a read returns the "readback" value, 0xe9 by default as in QEMU, which is how a guest detects the
// port. QEMU implements the port with 1-byte accesses and splits wider ones, so a 16- or 32-bit write emits
// its bytes in little-endian order and a wider read returns the readback value in every byte; this model
// does the same. Accesses wider than 4 bytes or at a nonzero offset are counted as bad (reads answer
// all-ones, writes are ignored). No input: QEMU's debugcon has none either.
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

    /// <summary>Accesses at a nonzero offset or wider than 4 bytes.</summary>
    public long BadAccesses;

    public long BytesWritten { get; private set; }

    public void Read(ulong offset, Span<byte> data)
    {
        if (offset != 0 || data.Length is 0 or > 4)
        {
            BadAccesses++;
            data.Fill(0xff);
            return;
        }
        data.Fill(Readback);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset != 0 || data.Length is 0 or > 4)
        {
            BadAccesses++;
            return;
        }
        _output.Write(data);
        BytesWritten += data.Length;
    }

    public DebugConState GetState() => new(Readback, BytesWritten);

    public static DebugCon FromState(IByteSink output, DebugConState state, ushort port = BochsPort, string name = "debugcon")
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.BytesWritten < 0) throw new ArgumentException($"invalid debugcon state: BytesWritten {state.BytesWritten}", nameof(state));
        return new DebugCon(output, port, state.Readback, name) { BytesWritten = state.BytesWritten };
    }
}
