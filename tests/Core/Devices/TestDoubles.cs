using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

/// <summary>Records every level an interrupt line was driven to.</summary>
internal sealed class RecordingIrqLine : IIrqLine
{
    public List<bool> Levels { get; } = [];

    public bool Level => Levels.Count > 0 && Levels[^1];

    public void Set(bool level) => Levels.Add(level);
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
