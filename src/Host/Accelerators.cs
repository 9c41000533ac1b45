// The accelerators compiled into this program, by -accel name: soft (the software CPU), vmm (FreeBSD vmm(4)) and
// kvm (Linux KVM), and auto, which picks vmm on FreeBSD when it is usable, kvm on Linux when it is usable, and soft
// otherwise, and says why. Describe() is `actorvmm accel-info`: each accelerator, whether it is usable here, the
// irqchip modes it offers, and the reason when it is not usable. Every kernel call goes through the
// IKernelInterface given (the host's libc by default; tests pass a stand-in for vmm(4)).
using System.Text;
using ActorVmm.Core.Accel;
using ActorVmm.Native.Kvm;
using ActorVmm.Native.Soft;
using ActorVmm.Native.Sys;
using ActorVmm.Native.Vmm;

namespace ActorVmm.Host;

public static class Accelerators
{
    /// <summary>Creates the named accelerator over the host kernel, or null when this build has none of that name.</summary>
    public static IAccelerator? Create(string name) => Create(name, HostKernel.Instance, out _);

    /// <summary>
    /// Creates the named accelerator over <paramref name="kernel"/>. "auto" resolves to vmm, kvm or soft; <paramref name="why"/>
    /// says what was chosen and why. A named accelerator that is not usable here is refused with the reason.
    /// </summary>
    public static IAccelerator? Create(string name, IKernelInterface kernel, out string why)
    {
        why = name;
        switch (name)
        {
            case "soft":
                return new SoftAccelerator();
            case "vmm":
                {
                    var a = VmmProbe.Probe(kernel);
                    if (!a.Usable) throw new UsageException($"-accel vmm: not usable on this host: {a.Detail}");
                    why = $"vmm: {a.Detail}";
                    return new VmmAccelerator(kernel);
                }
            case "kvm":
                {
                    var a = KvmAccelerator.Probe(kernel);
                    if (!a.Usable) throw new UsageException($"-accel kvm: not usable on this host: {a.Detail}");
                    why = $"kvm: {a.Detail}";
                    return new KvmAccelerator(kernel);
                }
            case "auto":
                {
                    var vmm = VmmProbe.Probe(kernel);
                    if (kernel.Os == HostOs.FreeBsd && vmm.Usable)
                    {
                        why = $"auto chose vmm: {vmm.Detail}";
                        return new VmmAccelerator(kernel);
                    }
                    var kvm = KvmAccelerator.Probe(kernel);
                    if (kernel.Os == HostOs.Linux && kvm.Usable)
                    {
                        why = $"auto chose kvm: {kvm.Detail}";
                        return new KvmAccelerator(kernel);
                    }
                    why = $"auto chose soft: {(kernel.Os == HostOs.FreeBsd ? vmm.Detail : kvm.Detail)}";
                    return new SoftAccelerator();
                }
            default:
                return null;
        }
    }

    private static string Modes(IEnumerable<IrqchipMode> modes) => string.Join(", ", modes.Order().Select(m => m.ToString().ToLowerInvariant()));

    /// <summary>The text of `actorvmm accel-info`.</summary>
    public static string Describe(IKernelInterface kernel)
    {
        var sb = new StringBuilder();
        var soft = new SoftAccelerator();
        sb.AppendLine($"soft  usable      kernel-irqchip: {Modes(soft.Capabilities.IrqchipModes)}  (the built-in software x86 CPU)");
        var vmm = VmmProbe.Probe(kernel);
        sb.AppendLine(vmm.Usable
            ? $"vmm   usable      kernel-irqchip: on; split and off: not possible on vmm, stock or with the seed project's extension (docs/freebsd.md)  ({vmm.Detail})"
            : $"vmm   not usable  {vmm.Detail}");
        var kvm = KvmAccelerator.Probe(kernel);
        sb.AppendLine(kvm.Usable
            ? $"kvm   usable      kernel-irqchip: {Modes(kvm.Modes)}  ({kvm.Detail})"
            : $"kvm   not usable  {kvm.Detail}");
        Create("auto", kernel, out string why);
        sb.AppendLine($"auto  {why}");
        return sb.ToString();
    }
}
