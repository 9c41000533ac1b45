namespace ActorVmm.Core.Bus;

/// <summary>Two devices were mapped at overlapping ports or addresses; the message names both.</summary>
public sealed class BusOverlapException(string message) : Exception(message);
