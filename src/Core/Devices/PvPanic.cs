// QEMU's pvpanic ISA device (-device pvpanic, port 0x505 unless ioport= says otherwise): one byte through which a
// guest tells the host it has panicked. Reading it gives the events the device supports (bit 0 PANICKED, bit 1
// CRASH_LOADED: 0x03, as QEMU 7.2 answers). Writing it reports an event: bit 0 set is a panic (and nothing else is
// reported for that write, even with bit 1 set); otherwise bit 1 set says a crash kernel is loaded and will take
// over; other bits are unknown events, counted and otherwise ignored, and a write of 0 reports nothing. Accesses of
// another width than one byte are counted as bad (reads answer all-ones). What a panic then does to the machine is the
// host's choice (-action panic=), made by whoever receives the report.
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

/// <summary>Plain snapshot of a <see cref="PvPanic"/>: its port and what it has reported.</summary>
public sealed record PvPanicState(ushort Port, long Panics, long CrashLoads, long UnknownEvents);

public sealed class PvPanic : IBusDevice
{
    public const ushort DefaultPort = 0x505;
    public const byte Panicked = 0x01, CrashLoaded = 0x02;

    private readonly IGuestPanicReport _report;

    public PvPanic(IGuestPanicReport report, ushort port = DefaultPort, string name = "pvpanic")
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        _report = report;
        Port = port;
        Name = name;
    }

    public string Name { get; }
    public ushort Port { get; }

    public PortRange Ports => new(Port, 1);

    public long Panics { get; private set; }
    public long CrashLoads { get; private set; }
    public long UnknownEvents { get; private set; }
    public long BadAccesses { get; private set; }

    public void Read(ulong offset, Span<byte> data)
    {
        if (offset != 0 || data.Length != 1)
        {
            BadAccesses++;
            data.Fill(0xff);
            return;
        }
        data[0] = Panicked | CrashLoaded;
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset != 0 || data.Length != 1)
        {
            BadAccesses++;
            return;
        }
        byte events = data[0];
        if ((events & ~(Panicked | CrashLoaded)) != 0) UnknownEvents++;
        if ((events & Panicked) != 0)
        {
            Panics++;
            _report.GuestPanicked();
        }
        else if ((events & CrashLoaded) != 0)
        {
            CrashLoads++;
            _report.GuestCrashLoaded();
        }
    }

    public PvPanicState GetState() => new(Port, Panics, CrashLoads, UnknownEvents);
}
