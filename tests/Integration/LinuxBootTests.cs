// Debian's own kernel and a busybox initramfs (scripts/build-linux-guest.sh, from the package archive) booted on
// the software CPU in each kernel-irqchip mode, against the same kernel and initramfs under QEMU TCG: both must
// reach the marker, compute the same workload result, and power off through ACPI S5 (status 0 here; QEMU exits 0
// too). In deterministic mode two boots must print the same and retire the same number of instructions.
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

    [LinuxGuestTheory]
    [InlineData("on")]
    [InlineData("split")]
    [InlineData("off")]
    public void Debian_kernel_boots_runs_the_workload_and_powers_off_like_under_qemu(string irqchip)
    {
        string kernel = Artifact("vmlinuz")!, initrd = Artifact("initramfs-poweroff.cpio.gz")!;
        var ours = ActorVmmRunner.RunRaw(
            ["-accel", "soft", "-machine", $"kernel-irqchip={irqchip}", "-m", "256", "-kernel", kernel, "-initrd", initrd,
             "-append", "console=ttyS0 quiet", "-nographic", "-no-reboot"],
            TimeSpan.FromMinutes(15));
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

    [LinuxGuestTheory]
    [InlineData("split")]
    [InlineData("off")]
    public void Deterministic_boots_print_the_same_and_retire_the_same_instructions(string irqchip)
    {
        string kernel = Artifact("vmlinuz")!, initrd = Artifact("initramfs-poweroff.cpio.gz")!;
        GuestRun Boot() => ActorVmmRunner.RunRaw(
            ["-accel", "soft", "-machine", $"kernel-irqchip={irqchip}", "-m", "256", "-kernel", kernel, "-initrd", initrd,
             "-append", "console=ttyS0", "-nographic", "-no-reboot", "--deterministic", "--log-level", "info"],
            TimeSpan.FromMinutes(15));
        var first = Boot();
        var second = Boot();
        Assert.False(first.TimedOut || second.TimedOut, "ActorVmm timed out");
        Assert.Equal(0, first.ExitStatus);
        Assert.Contains(first.Lines, l => l.StartsWith("ACTORVMM-GUEST-POWEROFF", StringComparison.Ordinal));
        Assert.Equal(first.Lines, second.Lines);
        string count = DeterminismTests.InstructionsRetired(first);
        Assert.Equal(count, DeterminismTests.InstructionsRetired(second));
    }
}

/// <summary>Skipped, with the reason, when scripts/build-linux-guest.sh has not been run.</summary>
public sealed class LinuxGuestTheoryAttribute : TheoryAttribute
{
    public LinuxGuestTheoryAttribute()
    {
        bool present = false;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null && !present; dir = dir.Parent)
            present = File.Exists(Path.Combine(dir.FullName, "artifacts", "linux", "initramfs-poweroff.cpio.gz"));
        if (!present) Skip = "the Linux guest is not built: run scripts/build-linux-guest.sh (scripts/setup.sh does)";
    }
}
