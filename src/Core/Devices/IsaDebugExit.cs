// QEMU's isa-debug-exit: a write-only test device at a configurable port range (QEMU's defaults are
// iobase=0x501, iosize=2; test kernels usually use iobase=0xf4, iosize=4). A write of value v, at any
// offset in the range and of width 1, 2 or 4, asks the machine to stop with exit status (v << 1) | 1, so
// a guest can never make it report 0 (QEMU passes that value to exit(); the host process status keeps only
// its low 8 bits, which is the host's business, not this model's). Reads return 0, as QEMU's
// debug_exit_read does (checked under QEMU 7.2: 8- and 32-bit INs from 0xf4 read 0). Widths other than 1, 2 and 4 are counted as bad accesses (reads answer all-ones,
// writes are ignored). Nothing else is emulated: there is no state beyond the configuration.
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

/// <summary>Plain snapshot of an <see cref="IsaDebugExit"/> (its configuration and how often it fired).</summary>
public sealed record IsaDebugExitState(ushort IoBase, int IoSize, long ExitRequests);

public sealed class IsaDebugExit : IBusDevice
{
    public const ushort QemuDefaultIoBase = 0x501;
    public const int QemuDefaultIoSize = 2;

    private readonly IMachineControl _machine;

    /// <param name="machine">Receives the stop request.</param>
    /// <param name="ioBase">First port (where the bus builder maps it; kept here for state and the bus range).</param>
    /// <param name="ioSize">Number of ports, 1 to 4 as QEMU accepts in practice (any positive size is allowed).</param>
    public IsaDebugExit(IMachineControl machine, ushort ioBase = QemuDefaultIoBase, int ioSize = QemuDefaultIoSize, string name = "isa-debug-exit")
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (ioSize <= 0 || ioBase + ioSize > 0x10000)
            throw new ArgumentOutOfRangeException(nameof(ioSize), $"isa-debug-exit iobase=0x{ioBase:x} iosize={ioSize} does not fit the port space");
        _machine = machine;
        IoBase = ioBase;
        IoSize = ioSize;
        Name = name;
    }

    public string Name { get; }
    public ushort IoBase { get; }
    public int IoSize { get; }

    /// <summary>The port range to map this device at.</summary>
    public PortRange Ports => new(IoBase, IoSize);

    /// <summary>Accesses with a width other than 1, 2 or 4, or past the range.</summary>
    public long BadAccesses;

    /// <summary>Writes that asked the machine to stop.</summary>
    public long ExitRequests { get; private set; }

    /// <summary>The exit status QEMU reports for a guest write of <paramref name="value"/>.</summary>
    public static int ExitStatusFor(uint value) => (int)((value << 1) | 1);

    public void Read(ulong offset, Span<byte> data)
    {
        if (!ValidAccess(offset, data.Length))
        {
            BadAccesses++;
            data.Fill(0xff);
            return;
        }
        data.Clear();
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (!ValidAccess(offset, data.Length))
        {
            BadAccesses++;
            return;
        }
        uint value = 0;
        for (int i = data.Length - 1; i >= 0; i--) value = value << 8 | data[i];
        ExitRequests++;
        _machine.RequestStop(new MachineStopRequest(MachineStopReason.DebugExit, ExitStatusFor(value)));
    }

    private bool ValidAccess(ulong offset, int width)
        => width is 1 or 2 or 4 && offset < (ulong)IoSize;

    public IsaDebugExitState GetState() => new(IoBase, IoSize, ExitRequests);

    public static IsaDebugExit FromState(IMachineControl machine, IsaDebugExitState state, string name = "isa-debug-exit")
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.ExitRequests < 0) throw new ArgumentException($"invalid isa-debug-exit state: ExitRequests {state.ExitRequests}", nameof(state));
        return new IsaDebugExit(machine, state.IoBase, state.IoSize, name) { ExitRequests = state.ExitRequests };
    }
}
