// Builds the PIO and MMIO dispatch tables from explicit mappings (no reflection, no self-registration),
// rejecting overlaps with an error that names both devices. Build() freezes the result.
namespace ActorVmm.Core.Bus;

public sealed class BusBuilder
{
    private readonly List<(PortRange Range, BusEndpoint Endpoint)> _ports = [];
    private readonly List<(MmioRange Range, BusEndpoint Endpoint)> _mmio = [];

    public BusBuilder AddPorts(PortRange range, BusEndpoint endpoint)
    {
        foreach (var (r, e) in _ports)
        {
            if (r.Overlaps(range))
                throw new BusOverlapException($"{endpoint.Name} ports {range} overlap {e.Name} ports {r}");
        }
        _ports.Add((range, endpoint));
        return this;
    }

    public BusBuilder AddMmio(MmioRange range, BusEndpoint endpoint)
    {
        foreach (var (r, e) in _mmio)
        {
            if (r.Overlaps(range))
                throw new BusOverlapException($"{endpoint.Name} MMIO {range} overlaps {e.Name} MMIO {r}");
        }
        _mmio.Add((range, endpoint));
        return this;
    }

    public Bus Build()
    {
        var endpoints = new BusEndpoint?[0x10000];
        var bases = new ushort[0x10000];
        var ports = _ports.OrderBy(p => p.Range.First).ToList();
        foreach (var (range, endpoint) in ports)
        {
            for (int p = range.First; p <= range.Last; p++)
            {
                endpoints[p] = endpoint;
                bases[p] = range.First;
            }
        }
        var mmio = _mmio.OrderBy(m => m.Range.Start).ToList();
        return new Bus(new PioTable(endpoints, bases, ports), new MmioTable(mmio));
    }
}

/// <summary>The frozen pair of dispatch tables a machine runs with.</summary>
public sealed record Bus(PioTable Pio, MmioTable Mmio)
{
    /// <summary>Every distinct endpoint on the bus.</summary>
    public IEnumerable<BusEndpoint> Endpoints
        => Pio.Map.Select(m => m.Endpoint).Concat(Mmio.Map.Select(m => m.Endpoint)).Distinct();
}
