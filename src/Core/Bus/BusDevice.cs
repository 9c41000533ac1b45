// The one bus contract every device model implements (DESIGN.md §4): offsets only, the device checks widths.
namespace ActorVmm.Core.Bus;

/// <summary>
/// A device's register file. <paramref name="offset"/> is relative to the start of the range the device was
/// mapped at; the span length is the access width. A device answers bad widths or unknown offsets as its
/// hardware would (usually reads of all-ones, writes ignored) and counts them; it never throws for them.
/// </summary>
public interface IBusDevice
{
    /// <summary>A short name used in errors, logs and statistics ("COM1", "isa-debug-exit").</summary>
    string Name { get; }

    void Read(ulong offset, Span<byte> data);

    void Write(ulong offset, ReadOnlySpan<byte> data);
}

/// <summary>How a vCPU's access reaches a device (DESIGN.md §5).</summary>
public enum Route
{
    /// <summary>The model is called on the vCPU thread under the device's own lock.</summary>
    Direct,
    /// <summary>Writes are posted to the device actor; reads wait for its reply.</summary>
    Mailbox,
}

/// <summary>What a dispatch-table entry points at: a device reachable through one route.</summary>
public abstract class BusEndpoint(string name, Route route)
{
    public string Name { get; } = name;
    public Route Route { get; } = route;

    /// <summary>Accesses that reached this endpoint (all widths, reads and writes).</summary>
    public long Accesses;

    /// <summary>Of <see cref="Accesses"/>, the reads.</summary>
    public long Reads;

    /// <summary>Accesses whose duration the dispatcher measured (one in <see cref="ExitDispatcher.LatencySampleInterval"/>), and their total in Stopwatch ticks.</summary>
    public long LatencySamples;

    public long LatencyTicks;

    /// <summary>Adds one measured access (Stopwatch ticks, from the dispatcher's call to the endpoint's return).</summary>
    public virtual void AddLatencySample(long ticks)
    {
        LatencySamples++;
        LatencyTicks += ticks;
    }

    /// <summary>Mean measured access time in nanoseconds, or null before the first sample.</summary>
    public double? MeanLatencyNanoseconds
    {
        get
        {
            long n = Interlocked.Read(ref LatencySamples);
            return n == 0 ? null : Interlocked.Read(ref LatencyTicks) * (1e9 / System.Diagnostics.Stopwatch.Frequency) / n;
        }
    }

    public abstract void Read(ulong offset, Span<byte> data);

    public abstract void Write(ulong offset, ReadOnlySpan<byte> data);

    public override string ToString() => $"{Name} ({Route})";
}

/// <summary>
/// The Direct route: the model runs on the caller's thread under <see cref="Lock"/>. The device actor that
/// owns the same model takes the same lock for its timers and host I/O, so the model sees one access at a time.
/// </summary>
public sealed class DirectEndpoint(IBusDevice device, Lock? deviceLock = null) : BusEndpoint(device.Name, Route.Direct)
{
    public IBusDevice Device { get; } = device;
    public Lock Lock { get; } = deviceLock ?? new Lock();

    public override void Read(ulong offset, Span<byte> data)
    {
        lock (Lock) Device.Read(offset, data);
    }

    public override void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (Lock) Device.Write(offset, data);
    }
}

/// <summary>
/// A second range of an endpoint already on the bus, its offsets shifted by <paramref name="bias"/>: for chips
/// whose registers sit at separate places (the i8042's 0x60 and 0x64) but must stay one model under one lock.
/// Accesses are counted on the inner endpoint.
/// </summary>
public sealed class OffsetEndpoint(BusEndpoint inner, ulong bias) : BusEndpoint(inner.Name, inner.Route)
{
    public BusEndpoint Inner { get; } = inner;

    public ulong Bias { get; } = bias;

    public override void Read(ulong offset, Span<byte> data)
    {
        Inner.Accesses++;
        Inner.Reads++;
        Inner.Read(offset + Bias, data);
    }

    public override void AddLatencySample(long ticks) => Inner.AddLatencySample(ticks);

    public override void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        Inner.Accesses++;
        Inner.Write(offset + Bias, data);
    }
}
