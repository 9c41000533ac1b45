// The Akka configuration the actor layer needs: the dedicated-thread dispatcher for vCPU actors (each
// vCPU actor gets a thread of its own, so a running guest never occupies a thread of the shared pool).
// Hosts and tests combine this with their own settings (log level, loggers).
using Akka.Configuration;

namespace ActorVmm.Actors;

public static class ActorVmmConfig
{
    /// <summary>The dispatcher id VcpuActor props use.</summary>
    public const string VcpuDispatcherId = "actorvmm.vcpu-dispatcher";

    public const string Hocon = """
        actorvmm.vcpu-dispatcher {
          type = PinnedDispatcher
          throughput = 1
        }
        """;

    public static Config Config { get; } = ConfigurationFactory.ParseString(Hocon);
}
