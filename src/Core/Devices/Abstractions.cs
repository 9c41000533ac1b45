// What device models are given instead of doing I/O themselves (DESIGN.md §4): interrupt lines, byte
// sinks for output, a clock passed in, and a way to ask the machine to stop.
namespace ActorVmm.Core.Devices;

/// <summary>An interrupt line a device drives. Level devices call Set; edge devices pulse.</summary>
public interface IIrqLine
{
    void Set(bool level);
}

/// <summary>A line that goes nowhere (a device configured without an interrupt).</summary>
public sealed class NullIrqLine : IIrqLine
{
    public static readonly NullIrqLine Instance = new();

    public void Set(bool level)
    {
    }
}

/// <summary>Where a device's byte output goes (serial transmit, debug console). Must not block for long.</summary>
public interface IByteSink
{
    void Write(ReadOnlySpan<byte> data);
}

/// <summary>Monotonic time in nanoseconds since the machine started (host or deterministic clock).</summary>
public interface IClock
{
    long NowNanoseconds { get; }
}

/// <summary>Why the guest asked the machine to stop.</summary>
public enum MachineStopReason
{
    /// <summary>isa-debug-exit: the process ends with the given status.</summary>
    DebugExit,
    PowerOff,
    Reset,
}

public readonly record struct MachineStopRequest(MachineStopReason Reason, int ExitStatus = 0);

/// <summary>Lets a device (isa-debug-exit, ACPI PM, i8042 reset) ask the machine to stop. Thread-safe, non-blocking.</summary>
public interface IMachineControl
{
    void RequestStop(MachineStopRequest request);
}

/// <summary>Receives what a guest reports through pvpanic. Thread-safe, non-blocking.</summary>
public interface IGuestPanicReport
{
    /// <summary>The guest says it has panicked.</summary>
    void GuestPanicked();

    /// <summary>The guest says a crash kernel is loaded and will take over (it runs on; nothing is to be done).</summary>
    void GuestCrashLoaded();
}
