// Capture and in-place restore of a device model's state, for the supervised restart of its actor (DESIGN.md
// §4, §6): each model has a plain state record (GetState) and a validated load (FromState/LoadState); this
// maps a model, by its type, onto the pair. Restore is in place because the model object is shared with the
// bus (DirectEndpoint) and the actor. A model with no entry here has no snapshot: its actor restarts with
// the model as it is (said in the log).
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;

namespace ActorVmm.Actors;

/// <summary>A model outside the PC set (a test double, a device of a later stage) that offers its state itself.</summary>
public interface IStatefulDevice
{
    object CaptureState();

    /// <exception cref="ArgumentException">The state is not one this model can load.</exception>
    void RestoreState(object state);
}

/// <summary>Takes and puts back one model's state; null from <see cref="For"/> when the model has none.</summary>
public sealed class DeviceStateKeeper(Func<object> capture, Action<object> restore)
{
    public object Capture() => capture();

    public void Restore(object state) => restore(state);

    public static DeviceStateKeeper? For(IBusDevice model) => model switch
    {
        IStatefulDevice d => new(d.CaptureState, d.RestoreState),
        Uart16550 u => new(u.GetState, s => u.LoadState((Uart16550State)s)),
        SystemControlPortA p => new(p.GetState, s => p.FromState((SystemControlPortAState)s)),
        ResetControlRegister r => new(() => r.GetState(), s => r.FromState((byte)s)),
        PciHost p => new(p.GetState, s => p.FromState((PciHostState)s)),
        FwCfg f => new(f.GetState, s => f.FromState((FwCfgState)s)),
        BootTimer b => new(b.GetState, s => b.FromState((BootTimerState)s)),
        AcpiPm pm => new(pm.GetState, s => pm.FromState((AcpiPmState)s)),
        Hpet h => new(h.GetState, s => h.FromState((HpetState)s)),
        IoApic io => new(io.GetState, s => io.FromState((IoApicState)s)),
        Pit8254 pit => new(pit.GetState, s => pit.FromState((Pit8254State)s)),
        Rtc146818 rtc => new(rtc.GetState, s => rtc.FromState((Rtc146818State)s)),
        LocalApic apic => new(apic.GetState, s => apic.FromState((LocalApicState)s)),
        // isa-debug-exit and debugcon hold configuration and counters only: nothing a failure can corrupt.
        IsaDebugExit or DebugCon => new(() => 0, _ => { }),
        _ when I8042.ControllerOf(model) is { } kbc => new(kbc.GetState, s => kbc.FromState((I8042State)s)),
        _ => null,
    };
}
