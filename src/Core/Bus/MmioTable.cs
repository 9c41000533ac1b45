// The MMIO dispatch table: sorted non-overlapping ranges searched by binary search. Each vCPU keeps its
// own last-hit index (MmioCursor) because MMIO exits come in runs against one device.
using System.Runtime.CompilerServices;

namespace ActorVmm.Core.Bus;

public sealed class MmioTable
{
    private readonly ulong[] _starts;
    private readonly ulong[] _lasts;
    private readonly BusEndpoint[] _endpoints;

    internal MmioTable(IReadOnlyList<(MmioRange Range, BusEndpoint Endpoint)> sorted)
    {
        _starts = sorted.Select(e => e.Range.Start).ToArray();
        _lasts = sorted.Select(e => e.Range.Last).ToArray();
        _endpoints = sorted.Select(e => e.Endpoint).ToArray();
        Map = sorted;
    }

    public IReadOnlyList<(MmioRange Range, BusEndpoint Endpoint)> Map { get; }

    /// <summary>Finds the endpoint for <paramref name="gpa"/>; <paramref name="lastHit"/> is the caller's per-vCPU cache.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public BusEndpoint? Lookup(ulong gpa, ref int lastHit, out ulong offset)
    {
        int i = lastHit;
        if ((uint)i < (uint)_starts.Length && gpa - _starts[i] <= _lasts[i] - _starts[i])
        {
            offset = gpa - _starts[i];
            return _endpoints[i];
        }
        return Search(gpa, ref lastHit, out offset);
    }

    private BusEndpoint? Search(ulong gpa, ref int lastHit, out ulong offset)
    {
        int lo = 0, hi = _starts.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (gpa < _starts[mid]) hi = mid - 1;
            else if (gpa > _lasts[mid]) lo = mid + 1;
            else
            {
                lastHit = mid;
                offset = gpa - _starts[mid];
                return _endpoints[mid];
            }
        }
        offset = 0;
        return null;
    }
}
