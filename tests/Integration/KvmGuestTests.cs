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

    [KvmAndQemuTheory]
    [InlineData("on")]
    [InlineData("split")]
    [InlineData("off")]
    public void Smp_guest_starts_its_application_processors_under_kvm(string mode)
    {
        // INIT-SIPI-SIPI from the BSP: KVM's local APICs start the APs in on and split, KvmVcpu.SignalInit/
        // SignalStartup (from the platform's LAPIC actors) in off. An AP that is done parks in HLT with interrupts
        // off; that must not end the run while the BSP goes on. On a KVM that runs the whole guest the output is
        // QEMU's; on one whose emulator stops the BSP at its first IRET (PVM), the output is QEMU's up to there and
        // the run ends with the emulation failure, not with a parked AP.
        string kernel = GuestArtifacts.Path("smp.bin");
        var qemu = QemuRunner.Run(kernel, "", 64, null, "-smp", "4");
        var ours = ActorVmmRunner.RunRaw(
        [
            "-accel", "kvm", "-machine", $"kernel-irqchip={mode}", "-smp", "4", "-kernel", kernel, "-append", "",
            "-serial", "stdio", "-display", "none", "-monitor", "none", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-m", "64",
        ]);
        Assert.False(ours.TimedOut, $"ActorVmm timed out; stderr:\n{ours.Stderr}");
        Assert.Contains("ap 03: started in real mode at 0800:0000, apic id 03", ours.Lines);
        if (ours.ExitStatus == qemu.ExitStatus)
        {
            Assert.Equal(qemu.Lines, ours.Lines);
            return;
        }
        Assert.Equal(8, ours.ExitStatus);
        Assert.Contains("KVM_EXIT_INTERNAL_ERROR: suberror 1 (emulation failure)", ours.Stderr);
        Assert.DoesNotContain("halted with interrupts disabled", ours.Stderr);
        var printed = ours.Lines.Where(l => l.Length > 0).ToList();
        Assert.Equal(qemu.Lines.Take(printed.Count), printed);
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
