// Is FreeBSD's vmm(4) usable on this host, which ABI generation does it speak, and if not, why not.
//   15.x: /dev/vmmctl exists (created when vmm.ko loads) and this process may open it read-write.
//   14.x: no /dev/vmmctl, but the hw.vmm sysctl tree exists (vmm.ko loaded); VMs are created with hw.vmm.create.
// Everything goes through IKernelInterface, so a stand-in kernel answers these probes the same way.
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Vmm;

/// <summary>The answer of <see cref="VmmProbe.Probe"/>: usable with a generation, or the reason it is not.</summary>
public sealed record VmmAvailability(bool Usable, VmmGeneration Generation, string Detail);

public static class VmmProbe
{
    public const string ControlDevice = "/dev/vmmctl";
    public const string VmDirectory = "/dev/vmm";

    public static VmmAvailability Probe(IKernelInterface kernel)
    {
        if (kernel.Os != HostOs.FreeBsd)
            return new(false, VmmGeneration.FreeBsd15, $"vmm(4) is FreeBSD's hypervisor; this host runs {HostPlatform.Describe(kernel.Os)}");
        int e = kernel.Access(ControlDevice);
        if (e == 0) return new(true, VmmGeneration.FreeBsd15, $"{ControlDevice} (FreeBSD 15.x interface)");
        if (e is Errno.EACCES or Errno.EPERM)
            return new(false, VmmGeneration.FreeBsd15, $"{ControlDevice}: permission denied (vmm needs root: the device nodes are root:wheel 0600)");
        int s = kernel.TrySysctlReadInt("hw.vmm.maxcpu", out _);
        if (s == 0) return new(true, VmmGeneration.FreeBsd14, "hw.vmm sysctls present, no /dev/vmmctl (FreeBSD 14.x interface)");
        return new(false, VmmGeneration.FreeBsd15, $"no {ControlDevice} and no hw.vmm sysctl: vmm.ko is not loaded (kldload vmm)");
    }
}
