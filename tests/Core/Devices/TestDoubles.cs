using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

/// <summary>Records every level an interrupt line was driven to.</summary>
internal sealed class RecordingIrqLine : IIrqLine
{
    /// <summary>Every call, in order.</summary>
    public List<bool> Levels { get; } = [];

    public List<bool> Calls => Levels;

    public bool Level { get; private set; }

    /// <summary>Low-to-high transitions seen so far (what an edge-triggered input would latch).</summary>
    public int RisingEdges { get; private set; }

    public void Set(bool level)
    {
        if (level && !Level)
            RisingEdges++;
        Level = level;
        Levels.Add(level);
    }
}

/// <summary>Collects bytes written to it.</summary>
internal sealed class RecordingSink : IByteSink
{
    public List<byte> Bytes { get; } = [];

    public void Write(ReadOnlySpan<byte> data) => Bytes.AddRange(data.ToArray());
}

internal sealed class RecordingMachine : IMachineControl
{
    public List<MachineStopRequest> Requests { get; } = [];

    public void RequestStop(MachineStopRequest request) => Requests.Add(request);
}
