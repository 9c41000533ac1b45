// Test doubles shared by the platform device tests (PIC, PIT, RTC, i8042, port 0x92, ACPI PM).
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

/// <summary>A clock the test moves by hand.</summary>
internal sealed class FakeClock(long now = 0) : IClock
{
    public long NowNanoseconds { get; set; } = now;
}

/// <summary>Records machine stop requests.</summary>
internal sealed class RecordingMachineControl : IMachineControl
{
    public List<MachineStopRequest> Requests { get; } = [];

    public void RequestStop(MachineStopRequest request) => Requests.Add(request);
}

internal static class PortIo
{
    public static byte In8(this global::ActorVmm.Core.Bus.IBusDevice dev, ulong offset)
    {
        Span<byte> b = stackalloc byte[1];
        dev.Read(offset, b);
        return b[0];
    }

    public static void Out8(this global::ActorVmm.Core.Bus.IBusDevice dev, ulong offset, byte value)
    {
        ReadOnlySpan<byte> b = [value];
        dev.Write(offset, b);
    }

    public static ushort In16(this global::ActorVmm.Core.Bus.IBusDevice dev, ulong offset)
    {
        Span<byte> b = stackalloc byte[2];
        dev.Read(offset, b);
        return (ushort)(b[0] | b[1] << 8);
    }

    public static void Out16(this global::ActorVmm.Core.Bus.IBusDevice dev, ulong offset, ushort value)
    {
        ReadOnlySpan<byte> b = [(byte)value, (byte)(value >> 8)];
        dev.Write(offset, b);
    }

    public static uint In32(this global::ActorVmm.Core.Bus.IBusDevice dev, ulong offset)
    {
        Span<byte> b = stackalloc byte[4];
        dev.Read(offset, b);
        return (uint)(b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24);
    }
}
