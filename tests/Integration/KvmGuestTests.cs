// The test guests under -accel kvm on this host's real /dev/kvm (not a stand-in), in each kernel-irqchip mode,
// against QEMU's TCG run of the same guest: same serial output, same exit status. Skipped, with the reason, where
// /dev/kvm is missing or unusable (KvmAccelerator.Probe).
// Which guests: those that run without taking an interrupt or exception (devices, reset, poweroff, pvpanic). The
// /dev/kvm these tests were first run on is PVM (kvm_pvm: a Firecracker VM without hardware virtualization, where
// KVM runs guests through its instruction emulator in places), whose emulator has no protected-mode IRET or INT n
// and no DAA: the other guests end there with KVM_EXIT_INTERNAL_ERROR (emulation failure), a limit of that host
// that docs/kvm.md records. On a host with VT-x or AMD-V they are expected to run; add them here when one is at hand.
using ActorVmm.Native.Kvm;
using ActorVmm.Native.Sys;

namespace ActorVmm.Integration.Tests;

[Trait("Category", "Slow")]
public sealed class KvmGuestTests
{
    private static readonly string[] Modes = ["on", "split", "off"];

    public static TheoryData<string, string, string> Guests()
    {
        var data = new TheoryData<string, string, string>();
        foreach (var (guest, extra) in new[] { ("devices.bin", ""), ("reset.bin", ""), ("poweroff.bin", ""), ("pvpanic.bin", "pvpanic") })
        {
            foreach (var mode in Modes) data.Add(guest, extra, mode);
        }
        return data;
    }

    [KvmAndQemuTheory]
    [MemberData(nameof(Guests))]
    public void Guest_prints_the_same_serial_output_and_status_under_kvm_as_under_qemu(string guest, string device, string mode)
    {
        string kernel = GuestArtifacts.Path(guest);
        string[] extra = device.Length > 0 ? ["-device", device] : [];
        var qemu = QemuRunner.Run(kernel, "", 64, null, extra);
        var ours = ActorVmmRunner.RunRaw(
        [
            "-accel", "kvm", "-machine", $"kernel-irqchip={mode}", "-kernel", kernel, "-append", "",
            "-serial", "stdio", "-display", "none", "-monitor", "none", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-m", "64", .. extra,
        ]);
        Assert.False(qemu.TimedOut, "QEMU timed out");
        Assert.False(ours.TimedOut, $"ActorVmm timed out; stderr:\n{ours.Stderr}");
        Assert.Equal(qemu.Lines, ours.Lines);
        Assert.Equal(qemu.ExitStatus, ours.ExitStatus);
    }
}

/// <summary>A theory that needs a usable /dev/kvm and QEMU; skipped with the reason otherwise.</summary>
public sealed class KvmAndQemuTheoryAttribute : TheoryAttribute
{
    public KvmAndQemuTheoryAttribute()
    {
        var kvm = KvmAccelerator.Probe(HostKernel.Instance);
        if (!kvm.Usable) Skip = $"KVM not usable here: {kvm.Detail}";
        else if (!QemuRunner.IsAvailable) Skip = QemuRunner.SkipReason;
    }
}
