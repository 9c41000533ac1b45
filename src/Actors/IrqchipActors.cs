// The actor side of kernel-irqchip=split and off (DESIGN.md §3, §6): the platform's interrupt controllers and
// timers (ActorVmm.Core.Machine.PlatformIrqchip) are device models like any other, each hosted by a DeviceActor
// that VmActor creates through the machine builder's endpoint factory. What is added here is their timers: on host
// time one TimerService per machine delivers their deadlines by each device's route (Direct: it kicks the vCPUs,
// which run the due deadline at their next batch boundary; Mailbox: TimerExpired to its actor); in deterministic
// mode there is none,
// as the vCPU runs due deadlines itself in lock-step with its instruction clock.
using Akka.Actor;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Machine;

namespace ActorVmm.Actors;

public static class IrqchipActors
{
    /// <summary>
    /// The timer service for the hosted devices of <paramref name="platform"/>, or null when there is none to run
    /// (kernel-irqchip=on, or deterministic mode).
    /// </summary>
    public static TimerService? StartTimers(Platform platform, IVm vm, IReadOnlyDictionary<string, IActorRef> deviceActors, bool deterministic, int generation)
    {
        if (platform.Irqchip is not { } chip || deterministic) return null;
        var entries = new List<(TimerSlot, Action<long, Core.Devices.IClock>)>();
        foreach (var d in chip.HostedDevices)
        {
            if (chip.Endpoints.TryGetValue(d.Device.Name, out var endpoint) && endpoint is Core.Bus.DirectEndpoint)
                entries.Add((d.Device.Timer, (_, _) => chip.KickVcpus()));
            else if (deviceActors.TryGetValue(d.Device.Name, out var actor))
                entries.Add((d.Device.Timer, TimerService.ToActor(actor)));
        }
        return new TimerService(vm.Clock ?? chip.Clock, entries, $"timers-g{generation}");
    }
}
