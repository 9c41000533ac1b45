// Debian's own kernel and a busybox initramfs (scripts/build-linux-guest.sh, from the package archive) booted on
// the software CPU in each kernel-irqchip mode (on, split, off), against the same kernel and initramfs under QEMU
// TCG: both must reach the marker, compute the same workload result, and power off through ACPI S5 (status 0 here;
// QEMU exits 0 too). The kernel's own log
// (full, with apic=verbose) must show it used each timer and device the VMM provides: the TSC (detected, and the
// clocksource it ends on is tsc, tsc-early or hpet), the local APIC timer (calibrated and in use), the HPET (registered as
// hpet0 and as a clocksource) and the PIT's IRQ0 through the IOAPIC (the check_timer line, without the "8254 timer
// not connected" complaint), the CMOS RTC (rtc0, which set the system clock) and the 8250 UART (ttyS0 a 16550A).
// In deterministic mode two boots must print the same and retire the same number of instructions. A kernel panic
// reaches the host through pvpanic, whose ACPI device the kernel's driver finds, and -action panic= ends the run as
// QEMU's does.
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
             "-append", Append, "-nographic", "-no-reboot"],
            TimeSpan.FromMinutes(15)); // about 35 s on an idle 2-core VM; minutes (up to 8 seen) when other builds load it
        Assert.False(ours.TimedOut, "ActorVmm timed out; last lines:\n" + string.Join("\n", ours.Lines.TakeLast(20)));
        Assert.Contains(ours.Lines, l => l.StartsWith("ACTORVMM-GUEST-OK kernel=6.1.", StringComparison.Ordinal));
        string workload = Assert.Single(ours.Lines, l => l.StartsWith("ACTORVMM-WORKLOAD ", StringComparison.Ordinal));
        Assert.Contains(ours.Lines, l => l.StartsWith("ACTORVMM-GUEST-POWEROFF", StringComparison.Ordinal));
        Assert.Equal(0, ours.ExitStatus);
        AssertTimersAndDevicesUsed(ours.Lines);

        if (QemuRunner.QemuPath is not string qemu) return; // the comparison needs QEMU (the boot above does not)
        var reference = GuestProcess.Run(qemu,
            ["-accel", "tcg", "-cpu", "qemu64,vendor=GenuineIntel", "-m", "256", "-kernel", kernel, "-initrd", initrd,
             "-append", Append, "-nographic", "-no-reboot"],
            TimeSpan.FromMinutes(5));
        Assert.Contains(reference.Lines, l => l == workload);
        // QEMU's kernel reports the same devices; its DSDT describes the UART and the RTC as PNP devices, so there
        // the driver names them by PNP node ("00:04: ttyS0 ...", "rtc_cmos 00:05: ...") instead of as platform devices.
        var qemuLog = reference.Lines.Select(LogText).ToList();
        Assert.Contains(qemuLog, l => l.EndsWith(Uart["serial8250".Length..], StringComparison.Ordinal));
        Assert.Contains(qemuLog, l => l.StartsWith("rtc_cmos ", StringComparison.Ordinal) && l.EndsWith(": registered as rtc0", StringComparison.Ordinal));
        Assert.Contains("Using local APIC timer interrupts.", qemuLog);
        Assert.Contains("hpet0: at MMIO 0xfed00000, IRQs 2, 8, 0", qemuLog);
    }

    [LinuxGuestTheory]
    [InlineData("shutdown", 0)]
    [InlineData("exit-failure", 1)]
    public void A_kernel_panic_reaches_the_host_through_pvpanic_as_under_qemu(string action, int status)
    {
        // initramfs-panic loads Debian's pvpanic driver, which must find the device through the DSDT (ACPI QEMU0001),
        // then panics the kernel with sysrq c; the panic notifier writes the pvpanic port and -action panic= ends
        // the run (a kernel with panic timeout 0 would otherwise spin for ever after the panic).
        string kernel = Artifact("vmlinuz")!, initrd = Artifact("initramfs-panic.cpio.gz")!;
        string[] args = ["-m", "256", "-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0", "-nographic", "-no-reboot",
            "-device", "pvpanic", "-action", $"panic={action}"];
        var ours = ActorVmmRunner.RunRaw(["-accel", "soft", .. args], TimeSpan.FromMinutes(15));
        Assert.False(ours.TimedOut, "ActorVmm timed out; last lines:\n" + string.Join("\n", ours.Lines.TakeLast(20)));
        Assert.Contains("ACTORVMM-GUEST-PVPANIC 1 device(s)", ours.Lines);
        Assert.Contains(ours.Lines, l => LogText(l) == "Kernel panic - not syncing: sysrq triggered crash");
        Assert.DoesNotContain("ACTORVMM-GUEST-SURVIVED-PANIC", ours.Lines);
        Assert.Equal(status, ours.ExitStatus);

        if (QemuRunner.QemuPath is not string qemu) return;
        var reference = GuestProcess.Run(qemu, ["-accel", "tcg", "-cpu", "qemu64,vendor=GenuineIntel", .. args], TimeSpan.FromMinutes(5));
        Assert.False(reference.TimedOut, "QEMU timed out");
        Assert.Contains("ACTORVMM-GUEST-PVPANIC 1 device(s)", reference.Lines);
        Assert.Contains(reference.Lines, l => LogText(l) == "Kernel panic - not syncing: sysrq triggered crash");
        Assert.Equal(status, reference.ExitStatus);
    }

    private const string Append = "console=ttyS0 apic=verbose";
    private const string Uart = "serial8250: ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A";

    /// <summary>A kernel log line without its "[    1.234567] " timestamp.</summary>
    private static string LogText(string line)
    {
        int close = line.StartsWith('[') ? line.IndexOf("] ", StringComparison.Ordinal) : -1;
        return close < 0 ? line.TrimEnd('\r') : line[(close + 2)..].TrimEnd('\r');
    }

    private static void AssertTimersAndDevicesUsed(IEnumerable<string> lines)
    {
        var log = lines.Select(LogText).ToList();
        // TSC: its frequency found (against the PIT, or the HPET when the PIT calibration fails: see docs/linux.md),
        // and timekeeping ends on the TSC, or on the HPET if the watchdog ever judged the TSC unstable.
        Assert.Contains(log, l => l.StartsWith("tsc: Detected ", StringComparison.Ordinal) && l.EndsWith(" MHz processor", StringComparison.Ordinal));
        string clocksource = Assert.IsType<string>(log.LastOrDefault(l => l.StartsWith("clocksource: Switched to clocksource ", StringComparison.Ordinal)));
        Assert.Contains(clocksource["clocksource: Switched to clocksource ".Length..], new[] { "tsc", "tsc-early", "hpet" });
        // Local APIC timer: calibrated and used for the tick (no "APIC timer disabled").
        Assert.Contains("Using local APIC timer interrupts.", log);
        Assert.Contains("calibrating APIC timer ...", log);
        Assert.DoesNotContain(log, l => l.Contains("APIC timer disabled", StringComparison.Ordinal) || l.StartsWith("Disabling APIC timer", StringComparison.Ordinal));
        // HPET: found through ACPI, registered with its three comparators, usable as a clocksource.
        Assert.Contains("hpet0: at MMIO 0xfed00000, IRQs 2, 8, 0", log);
        Assert.Contains(log, l => l.StartsWith("clocksource: hpet: ", StringComparison.Ordinal));
        // PIT: IRQ0 reached the CPU through IOAPIC pin 2 when the kernel checked the timer interrupt.
        Assert.Contains(log, l => l.StartsWith("..TIMER: vector=0x30 apic1=0 pin1=2", StringComparison.Ordinal));
        Assert.DoesNotContain(log, l => l.Contains("8254 timer not connected", StringComparison.Ordinal));
        // RTC: the CMOS clock registered and read to set the system time.
        Assert.Contains("rtc_cmos rtc_cmos: registered as rtc0", log);
        Assert.Contains(log, l => l.StartsWith("rtc_cmos rtc_cmos: setting system clock to ", StringComparison.Ordinal));
        // UART: the 8250 driver found COM1 and identified it as a 16550A.
        Assert.Contains(Uart, log);
        // Every MSR the kernel reads without a fault handler exists on the CPU we report (on silicon such a read
        // never faults; a missing model shows up as "unchecked MSR access error").
        Assert.DoesNotContain(log, l => l.Contains("unchecked MSR access", StringComparison.Ordinal));
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

    [LinuxGuestTheory]
    [InlineData("on")]
    [InlineData("split")]
    [InlineData("off")]
    public void Debian_kernel_brings_up_a_second_cpu_with_smp_2_and_powers_off(string irqchip)
    {
        // The BSP starts the AP with INIT-SIPI-SIPI through the real-mode trampoline (in off through the platform's
        // local APICs); the kernel log says it came up (not "quiet", so the smp lines are printed); the workload runs
        // with both CPUs online and gives QEMU's result.
        string kernel = Artifact("vmlinuz")!, initrd = Artifact("initramfs-poweroff.cpio.gz")!;
        var ours = ActorVmmRunner.RunRaw(
            ["-accel", "soft", "-machine", $"kernel-irqchip={irqchip}", "-smp", "2", "-m", "256", "-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0", "-nographic", "-no-reboot"],
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
