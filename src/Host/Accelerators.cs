// The accelerators compiled into this program, by -accel name. Only the software CPU exists so far.
using ActorVmm.Core.Accel;

namespace ActorVmm.Host;

public static class Accelerators
{
    /// <summary>Creates the named accelerator, or null when this build has none of that name.</summary>
    public static IAccelerator? Create(string name) => name switch
    {
        "soft" => new ActorVmm.Native.Soft.SoftAccelerator(),
        _ => null,
    };
}
