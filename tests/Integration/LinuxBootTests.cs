// Debian's own kernel and a busybox initramfs (scripts/build-linux-guest.sh, from the package archive) booted on
// the software CPU, against the same kernel and initramfs under QEMU TCG: both must reach the marker, compute the
// same workload result, and power off through ACPI S5 (status 0 here; QEMU exits 0 too).
namespace ActorVmm.Integration.Tests;

[Trait("Category", "Slow")]
public sealed class LinuxBootTests
{
    private static string? Artifact(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string path = Path.Combine(dir.FullName, "artifacts", "linux", name);
            if (File.Exists(path)) return path;
        }
        return null;
    }

    [LinuxGuestFact]
    public void Debian_kernel_boots_runs_the_workload_and_powers_off_like_under_qemu()
    {
        string kernel = Artifact("vmlinuz")!, initrd = Artifact("initramfs-poweroff.cpio.gz")!;
        var ours = ActorVmmRunner.RunRaw(
            ["-accel", "soft", "-m", "256", "-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 quiet", "-nographic", "-no-reboot"],
            TimeSpan.FromMinutes(5));
        Assert.False(ours.TimedOut, "ActorVmm timed out; last lines:\n" + string.Join("\n", ours.Lines.TakeLast(20)));
        Assert.Contains(ours.Lines, l => l.StartsWith("ACTORVMM-GUEST-OK kernel=6.1.", StringComparison.Ordinal));
        string workload = Assert.Single(ours.Lines, l => l.StartsWith("ACTORVMM-WORKLOAD ", StringComparison.Ordinal));
        Assert.Contains(ours.Lines, l => l.StartsWith("ACTORVMM-GUEST-POWEROFF", StringComparison.Ordinal));
        Assert.Equal(0, ours.ExitStatus);

        if (QemuRunner.QemuPath is not string qemu) return; // the comparison needs QEMU (the boot above does not)
        var reference = GuestProcess.Run(qemu,
            ["-accel", "tcg", "-cpu", "qemu64,vendor=GenuineIntel", "-m", "256", "-kernel", kernel, "-initrd", initrd,
             "-append", "console=ttyS0 quiet", "-nographic", "-no-reboot"],
            TimeSpan.FromMinutes(2));
        Assert.Contains(reference.Lines, l => l == workload);
    }

    [LinuxGuestFact]
    public void Debian_kernel_brings_up_a_second_cpu_with_smp_2_and_powers_off()
    {
        // The BSP starts the AP with INIT-SIPI-SIPI through the real-mode trampoline; the kernel log says it came up
        // (not "quiet", so the smp lines are printed); the workload runs with both CPUs online and gives QEMU's result.
        string kernel = Artifact("vmlinuz")!, initrd = Artifact("initramfs-poweroff.cpio.gz")!;
        var ours = ActorVmmRunner.RunRaw(
            ["-accel", "soft", "-smp", "2", "-m", "256", "-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0", "-nographic", "-no-reboot"],
            TimeSpan.FromMinutes(6));
        Assert.False(ours.TimedOut, "ActorVmm timed out; last lines:\n" + string.Join("\n", ours.Lines.TakeLast(20)));
        Assert.Contains(ours.Lines, l => l.EndsWith("smp: Brought up 1 node, 2 CPUs", StringComparison.Ordinal));
        Assert.Contains(ours.Lines, l => l.EndsWith("smpboot: Allowing 2 CPUs, 0 hotplug CPUs", StringComparison.Ordinal));
        Assert.DoesNotContain(ours.Lines, l => l.Contains("Marking TSC unstable", StringComparison.Ordinal) || l.Contains("TSC synchronization", StringComparison.Ordinal));
        Assert.Contains(ours.Lines, l => l.StartsWith("ACTORVMM-GUEST-OK kernel=6.1.", StringComparison.Ordinal) && l.Contains(" cpus=2 ", StringComparison.Ordinal));
        string workload = Assert.Single(ours.Lines, l => l.StartsWith("ACTORVMM-WORKLOAD ", StringComparison.Ordinal));
        Assert.Contains(ours.Lines, l => l.StartsWith("ACTORVMM-GUEST-POWEROFF", StringComparison.Ordinal));
        Assert.Equal(0, ours.ExitStatus);

        if (QemuRunner.QemuPath is not string qemu) return;
        var reference = GuestProcess.Run(qemu,
            ["-accel", "tcg", "-cpu", "qemu64,vendor=GenuineIntel", "-smp", "2", "-m", "256", "-kernel", kernel, "-initrd", initrd,
             "-append", "console=ttyS0 quiet", "-nographic", "-no-reboot"],
            TimeSpan.FromMinutes(3));
        Assert.Contains(reference.Lines, l => l == workload);
    }
}

/// <summary>Skipped, with the reason, when scripts/build-linux-guest.sh has not been run.</summary>
public sealed class LinuxGuestFactAttribute : FactAttribute
{
    public LinuxGuestFactAttribute()
    {
        bool present = false;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null && !present; dir = dir.Parent)
            present = File.Exists(Path.Combine(dir.FullName, "artifacts", "linux", "initramfs-poweroff.cpio.gz"));
        if (!present) Skip = "the Linux guest is not built: run scripts/build-linux-guest.sh (scripts/setup.sh does)";
    }
}
