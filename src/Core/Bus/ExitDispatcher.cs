// The one exit dispatcher (DESIGN.md §2, §5): turns PIO/MMIO exits into endpoint calls through the frozen
// tables. One instance per vCPU (it holds that vCPU's MMIO last-hit cache and counters). Unclaimed
// accesses are counted and answered like an empty bus: reads return all-ones, writes are dropped.
using System.Runtime.CompilerServices;
using ActorVmm.Core.Accel;

namespace ActorVmm.Core.Bus;

public sealed class ExitDispatcher(Bus bus) : IExitHandler
{
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
        endpoint.Accesses++;
        endpoint.Read(offset, data);
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
        endpoint.Accesses++;
        endpoint.Write(offset, data);
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
        endpoint.Accesses++;
        endpoint.Read(offset, data);
    }

    public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data)
    {
        var endpoint = Bus.Mmio.Lookup(gpa, ref _mmioLastHit, out ulong offset);
        if (endpoint is null)
        {
            UnclaimedMmioAccesses++;
            return;
        }
        endpoint.Accesses++;
        endpoint.Write(offset, data);
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
