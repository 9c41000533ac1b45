// Accelerator selection and `actorvmm accel-info`: against this host's kernel (whatever it has) and against the
// vmm(4) stand-in (test code standing for a FreeBSD host with vmm.ko loaded).
using ActorVmm.Native.Kvm;
using ActorVmm.Native.Sys;
using ActorVmm.Native.Tests.Vmm.StandIn;
using ActorVmm.Native.Vmm;

namespace ActorVmm.Host.Tests;

public sealed class AcceleratorsTests
{
    [Fact]
    public void Accel_info_on_this_host_lists_every_accelerator_and_why_the_unusable_ones_are()
    {
        var text = Accelerators.Describe(HostKernel.Instance);
        var lines = text.TrimEnd('\n').Split('\n');
        Assert.Equal(4, lines.Length);
        Assert.StartsWith("soft  usable      kernel-irqchip: on", lines[0], StringComparison.Ordinal);
        Assert.StartsWith("vmm   ", lines[1], StringComparison.Ordinal);
        Assert.StartsWith("kvm   ", lines[2], StringComparison.Ordinal);
        Assert.StartsWith("auto  auto chose ", lines[3], StringComparison.Ordinal);
        if (OperatingSystem.IsLinux())
        {
            Assert.Equal("vmm   not usable  vmm(4) is FreeBSD's hypervisor; this host runs Linux", lines[1]);
            var kvm = KvmAccelerator.Probe(HostKernel.Instance);
            Assert.Equal(kvm.Usable ? "auto  auto chose kvm: " + kvm.Detail : "auto  auto chose soft: " + kvm.Detail, lines[3]);
            if (!File.Exists("/dev/kvm")) Assert.Contains("kvm   not usable  no /dev/kvm", text, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(VmmGeneration.FreeBsd15, "/dev/vmmctl (FreeBSD 15.x interface)")]
    [InlineData(VmmGeneration.FreeBsd14, "hw.vmm sysctls present, no /dev/vmmctl (FreeBSD 14.x interface)")]
    public void On_a_freebsd_host_with_vmm_auto_picks_vmm_and_accel_info_says_so(VmmGeneration generation, string detail)
    {
        var freebsd = new VmmStandIn(generation);
        var accel = Accelerators.Create("auto", freebsd, out string why);
        Assert.IsType<VmmAccelerator>(accel);
        Assert.Equal($"auto chose vmm: {detail}", why);
        var lines = Accelerators.Describe(freebsd).TrimEnd('\n').Split('\n');
        Assert.Contains("usable      kernel-irqchip: on; split and off: not possible on vmm", lines[1], StringComparison.Ordinal);
        Assert.Equal("kvm   not usable  KVM is Linux's hypervisor; this host runs FreeBSD", lines[2]);
        Assert.Equal($"auto  auto chose vmm: {detail}", lines[3]);
    }

    [Fact]
    public void A_named_accelerator_this_host_cannot_use_is_refused_with_the_reason()
    {
        if (!OperatingSystem.IsLinux()) return;
        var e = Assert.Throws<UsageException>(() => Accelerators.Create("vmm", HostKernel.Instance, out _));
        Assert.Equal("-accel vmm: not usable on this host: vmm(4) is FreeBSD's hypervisor; this host runs Linux", e.Message);
        if (!KvmAccelerator.Probe(HostKernel.Instance).Usable)
        {
            var k = Assert.Throws<UsageException>(() => Accelerators.Create("kvm", HostKernel.Instance, out _));
            Assert.StartsWith("-accel kvm: not usable on this host: ", k.Message, StringComparison.Ordinal);
        }
        Assert.Null(Accelerators.Create("hvf", HostKernel.Instance, out _));
    }
}
