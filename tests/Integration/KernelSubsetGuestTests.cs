// The interrupt-controller and timer guests under -accel soft, kernel-irqchip=on, with the soft accelerator's kernel
// side cut down to a real kernel's device set (KernelPlatform.Kvm: LAPIC, IOAPIC, 8259, PIT; KernelPlatform.Vmm: all
// but PM1 event/control, the PM timer at 0x408): the machine builder then adds what that kernel lacks as userspace
// devices (RTC, ACPI PM, HPET for kvm; the PM1 block at 0x400 for vmm), as it will on the real kernels. The whole VMM
// runs in-process through HostMain. The truth is QEMU's serial output and exit status for the same guest (QEMU with
// its own devices, whatever the split between kernel and userspace, must look the same to the guest).
using ActorVmm.Core.Accel;
using ActorVmm.Host;
using ActorVmm.Native.Soft;

namespace ActorVmm.Integration.Tests;

[Trait("Category", "Slow")]
public sealed class KernelSubsetGuestTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorvmm-kset").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static KernelPlatform Kernel(string name) => name switch
    {
        "kvm" => KernelPlatform.Kvm,
        "vmm" => KernelPlatform.Vmm,
        _ => throw new ArgumentException(name, nameof(name)),
    };

    private (IReadOnlyList<string> Lines, int Status) Run(string guest, string kernel, params string[] extra)
    {
        string serial = Path.Combine(_dir, $"{guest}-{kernel}-{Guid.NewGuid():N}.txt");
        string[] args =
        [
            "-accel", "soft", "-kernel", GuestArtifacts.Path(guest), "-serial", $"file:{serial}", "-display", "none",
            "-monitor", "none", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-m", "64", .. extra,
        ];
        int status = HostMain.Run(args, name => name == "soft" ? new SoftAccelerator(Kernel(kernel)) : null);
        var text = File.Exists(serial) ? File.ReadAllText(serial) : "";
        return (text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n'), status);
    }

    public static TheoryData<string, string> HostTimeRuns()
    {
        var data = new TheoryData<string, string>();
        foreach (var guest in new[] { "timer.bin", "poweroff.bin", "apic.bin", "hpet.bin" })
        {
            foreach (var kernel in new[] { "kvm", "vmm" }) data.Add(guest, kernel);
        }
        return data;
    }

    [QemuTheory]
    [MemberData(nameof(HostTimeRuns))]
    public void Guest_prints_the_same_serial_output_and_status_as_qemu(string guest, string kernel)
    {
        // Host time: the userspace devices' deadlines reach the vCPU through the timer service (Direct route: the
        // vCPU's batch boundaries and the service's own delivery; the PM block's Mailbox route: its actor).
        var qemu = QemuRunner.Run(GuestArtifacts.Path(guest), "");
        var (lines, status) = Run(guest, kernel);
        Assert.False(qemu.TimedOut, "QEMU timed out");
        Assert.Equal(qemu.Lines, lines);
        Assert.Equal(qemu.ExitStatus, status);
    }

    public static TheoryData<string, int, string> DeterministicRuns()
    {
        var data = new TheoryData<string, int, string>();
        foreach (var (guest, status) in new[] { ("timer.bin", 37), ("apic.bin", 39), ("hpet.bin", 41), ("rtcpm.bin", 43) })
        {
            foreach (var kernel in new[] { "kvm", "vmm" }) data.Add(guest, status, kernel);
        }
        return data;
    }

    [QemuTheory]
    [MemberData(nameof(DeterministicRuns))]
    public void Guest_prints_the_same_in_deterministic_mode(string guest, int status, string kernel)
    {
        // Deterministic: the vCPU runs the userspace devices' deadlines itself, in lock-step with its instruction
        // clock. As in QemuComparisonTests, rtcpm's PM-timer rate line is measured on host time under QEMU; its truth
        // is the ACPI specification's 3.579545 MHz, which the deterministic clock meets exactly.
        bool HostTimed(string line) => guest == "rtcpm.bin" && line.StartsWith("pmtimer:", StringComparison.Ordinal);
        var qemu = QemuRunner.Run(GuestArtifacts.Path(guest), "");
        var (lines, actual) = Run(guest, kernel, "--deterministic");
        Assert.Equal(qemu.Lines.Where(l => !HostTimed(l)), lines.Where(l => !HostTimed(l)));
        Assert.All(lines.Where(HostTimed), l => Assert.Equal("pmtimer: about 3.58 MHz against the rtc", l));
        Assert.Equal(qemu.Lines.Count(HostTimed), lines.Count(HostTimed));
        Assert.Equal(status, actual);
    }
}
