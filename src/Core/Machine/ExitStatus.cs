// The process exit-status contract (bhyve-like, plus QEMU's isa-debug-exit), decided by the VM and
// reported by the host:
//   (v << 1) | 1  the guest wrote v to isa-debug-exit (always odd; the host keeps the low 8 bits)
//   0             the guest powered off, or reset with -no-reboot (as QEMU), or panicked with -action panic=shutdown
//   1             the guest panicked (pvpanic) with -action panic=exit-failure (as QEMU)
//   2             bad configuration or boot image (nothing ran)
//   4             triple fault / shutdown with -no-reboot
//   6             the guest halted with interrupts disabled: nothing can ever wake it
//   8             internal error in the VMM (a bug or a host failure, never a guest action)
namespace ActorVmm.Core.Machine;

public static class ExitStatus
{
    public const int PowerOff = 0;
    public const int GuestPanic = 1;
    public const int ConfigError = 2;
    public const int TripleFault = 4;
    public const int Halted = 6;
    public const int InternalError = 8;
}

/// <summary>Why a VM run ended.</summary>
public enum VmEndReason
{
    /// <summary>The guest wrote to isa-debug-exit.</summary>
    DebugExit,
    /// <summary>The guest powered the machine off.</summary>
    PowerOff,
    /// <summary>The guest reset the machine and -no-reboot was given.</summary>
    Reset,
    /// <summary>Triple fault or shutdown cycle with -no-reboot.</summary>
    TripleFault,
    /// <summary>HLT with interrupts disabled.</summary>
    Halted,
    /// <summary>The guest reported a panic (pvpanic) and -action panic=exit-failure ends the run.</summary>
    GuestPanic,
    /// <summary>The host asked the VM to quit.</summary>
    HostQuit,
    /// <summary>The machine could not be built from its configuration or images (nothing ran).</summary>
    ConfigError,
    /// <summary>The VMM failed (accelerator error, device model crash, unexpected exception).</summary>
    InternalError,
}
