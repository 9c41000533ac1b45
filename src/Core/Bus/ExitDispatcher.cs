// The one exit dispatcher (DESIGN.md §2, §5): turns PIO/MMIO exits into endpoint calls through the frozen
// tables. One instance per vCPU (it holds that vCPU's MMIO last-hit cache and counters). Unclaimed
// accesses are counted and answered like an empty bus: reads return all-ones, writes are dropped.
// Counters per endpoint: accesses and reads (QMP's query-stats); one access in LatencySampleInterval (the
// 1st, 65th, ...) is timed with the Stopwatch, so latency by device and route costs the hot path one branch.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using ActorVmm.Core.Accel;

namespace ActorVmm.Core.Bus;

public sealed class ExitDispatcher(Bus bus) : IExitHandler
{
    /// <summary>One access in this many is timed (a power of two).</summary>
    public const long LatencySampleInterval = 64;

    private int _mmioLastHit = -1;

    public Bus Bus { get; } = bus;

    /// <summary>Port accesses that no device claimed.</summary>
    public long UnclaimedPortAccesses { get; private set; }

    /// <summary>MMIO accesses that no device claimed.</summary>
    public long UnclaimedMmioAccesses { get; private set; }

    /// <summary>MSR accesses no one modelled (the guest got #GP).</summary>
    public long UnhandledMsrAccesses { get; private set; }

    /// <summary>Optional MSR handler beyond what the backend models itself.</summary>
    public Func<uint, ulong?>? MsrReadHook { get; init; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void PortRead(ushort port, Span<byte> data)
    {
        var endpoint = Bus.Pio.Lookup(port, out ushort offset);
        if (endpoint is null)
        {
            UnclaimedPortAccesses++;
            data.Fill(0xff);
            return;
        }
        endpoint.Reads++;
        if ((++endpoint.Accesses & (LatencySampleInterval - 1)) != 1) endpoint.Read(offset, data);
        else TimedRead(endpoint, offset, data);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void PortWrite(ushort port, ReadOnlySpan<byte> data)
    {
        var endpoint = Bus.Pio.Lookup(port, out ushort offset);
        if (endpoint is null)
        {
            UnclaimedPortAccesses++;
            return;
        }
        if ((++endpoint.Accesses & (LatencySampleInterval - 1)) != 1) endpoint.Write(offset, data);
        else TimedWrite(endpoint, offset, data);
    }

    public void MmioRead(ulong gpa, Span<byte> data)
    {
        var endpoint = Bus.Mmio.Lookup(gpa, ref _mmioLastHit, out ulong offset);
        if (endpoint is null)
        {
            UnclaimedMmioAccesses++;
            data.Fill(0xff);
            return;
        }
        endpoint.Reads++;
        if ((++endpoint.Accesses & (LatencySampleInterval - 1)) != 1) endpoint.Read(offset, data);
        else TimedRead(endpoint, offset, data);
    }

    public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data)
    {
        var endpoint = Bus.Mmio.Lookup(gpa, ref _mmioLastHit, out ulong offset);
        if (endpoint is null)
        {
            UnclaimedMmioAccesses++;
            return;
        }
        if ((++endpoint.Accesses & (LatencySampleInterval - 1)) != 1) endpoint.Write(offset, data);
        else TimedWrite(endpoint, offset, data);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void TimedRead(BusEndpoint endpoint, ulong offset, Span<byte> data)
    {
        long start = Stopwatch.GetTimestamp();
        endpoint.Read(offset, data);
        endpoint.AddLatencySample(Stopwatch.GetTimestamp() - start);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void TimedWrite(BusEndpoint endpoint, ulong offset, ReadOnlySpan<byte> data)
    {
        long start = Stopwatch.GetTimestamp();
        endpoint.Write(offset, data);
        endpoint.AddLatencySample(Stopwatch.GetTimestamp() - start);
    }

    public bool MsrRead(uint msr, out ulong value)
    {
        if (MsrReadHook?.Invoke(msr) is ulong v)
        {
            value = v;
            return true;
        }
        UnhandledMsrAccesses++;
        value = 0;
        return false;
    }

    public bool MsrWrite(uint msr, ulong value)
    {
        UnhandledMsrAccesses++;
        return false;
    }
}
