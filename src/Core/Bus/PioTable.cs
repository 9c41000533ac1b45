// The port-I/O dispatch table: 65,536 entries, one per port, each naming an endpoint and the first port of
// its range (so the device gets an offset). Built by BusBuilder and immutable after; a change replaces the
// whole table. An empty entry answers reads with all-ones, as an ISA bus with nothing on it does.
using System.Runtime.CompilerServices;

namespace ActorVmm.Core.Bus;

public sealed class PioTable
{
    private readonly BusEndpoint?[] _endpoints;
    private readonly ushort[] _bases;

    internal PioTable(BusEndpoint?[] endpoints, ushort[] bases, IReadOnlyList<(PortRange Range, BusEndpoint Endpoint)> map)
    {
        _endpoints = endpoints;
        _bases = bases;
        Map = map;
    }

    /// <summary>What is mapped where, in port order.</summary>
    public IReadOnlyList<(PortRange Range, BusEndpoint Endpoint)> Map { get; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public BusEndpoint? Lookup(ushort port, out ushort offset)
    {
        offset = (ushort)(port - _bases[port]);
        return _endpoints[port];
    }
}
