// The multiboot test guests under -accel vmm, kernel-irqchip=on, with the vmm backend running over the vmm(4)
// stand-in (tests/Native/Vmm/StandIn: test code, not FreeBSD's kernel) — the whole VMM in-process through
// HostMain with the accelerator factory pointed at the stand-in. The truth is QEMU's serial output and exit
// status for the same guest (QemuGuestExpectations, recorded from QEMU; and a live QEMU run for the rest, as
// QemuComparisonTests does for -accel soft).
using ActorVmm.Core.Accel;
using ActorVmm.Host;
using ActorVmm.Native.Tests.Vmm.StandIn;
using ActorVmm.Native.Vmm;
using static ActorVmm.Integration.Tests.QemuGuestExpectations;

namespace ActorVmm.Integration.Tests;

public sealed class VmmStandInGuestTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorvmm-vmm").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Runs a guest with -accel vmm over a fresh stand-in; returns its serial lines, exit status and the stand-in.</summary>
    private (IReadOnlyList<string> Lines, int Status, VmmStandIn Kernel) RunUnderVmm(string guest, string append = "", VmmGeneration generation = VmmGeneration.FreeBsd15, params string[] extra)
    {
        var kernel = new VmmStandIn(generation);
        string serial = Path.Combine(_dir, $"{guest}-{Guid.NewGuid():N}.txt");
        string[] args =
        [
            "-accel", "vmm", "-kernel", GuestArtifacts.Path(guest), "-append", append,
            "-serial", $"file:{serial}", "-display", "none", "-monitor", "none", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-m", "64", .. extra,
        ];
        int status = HostMain.Run(args, name => name == "vmm" ? new VmmAccelerator(kernel) : null, kernel);
        var text = File.Exists(serial) ? File.ReadAllText(serial) : "";
        return (text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n'), status, kernel);
    }

    [Theory]
    [InlineData(VmmGeneration.FreeBsd15)]
    [InlineData(VmmGeneration.FreeBsd14)]
    public void Hello_prints_what_it_prints_under_qemu_and_exits_33(VmmGeneration generation)
    {
        string kernelPath = GuestArtifacts.Path("hello.bin");
        var (lines, status, kernel) = RunUnderVmm("hello.bin", "console=ttyS0 answer=42", generation);
        Assert.Equal(HelloExitStatus, status);
        Assert.Equal([.. HelloHead, .. HelloQemuMemory64, .. HelloTail($"{kernelPath} console=ttyS0 answer=42"), ""], lines);
        Assert.Contains("VM_RUN", kernel.Log);          // the guest ran through the vmm backend's VM_RUN loop
        Assert.Contains("VM_MMAP_MEMSEG", kernel.Log);
        Assert.Empty(kernel.VmNames); // the VM was destroyed at the end of the run
    }

    [Fact]
    public void Faults_delivers_each_exception_as_under_qemu()
    {
        var (lines, status, _) = RunUnderVmm("faults.bin");
        Assert.Equal(FaultsExitStatus, status);
        Assert.Equal([.. Faults, ""], lines);
    }

    [Fact]
    public void Triple_fault_ends_the_run_with_the_documented_status()
    {
        var (lines, status, _) = RunUnderVmm("triple.bin");
        Assert.Equal(4, status); // triple fault with -no-reboot (docs/exit-status.md); QEMU exits 0 here
        Assert.Equal([.. Triple, ""], lines);
    }

    [Fact]
    public void Deterministic_time_is_refused_before_the_guest_runs()
    {
        var (_, status, _) = RunUnderVmm("hello.bin", "", VmmGeneration.FreeBsd15, "--deterministic");
        Assert.Equal(2, status); // a configuration error: vmm's timers run on host time
    }

    [Trait("Category", "Slow")]
    [QemuTheory]
    [InlineData("timer.bin")]
    [InlineData("reset.bin")]
    [InlineData("poweroff.bin")]
    [InlineData("paging.bin")]
    [InlineData("longmode.bin")]
    [InlineData("singlestep.bin")]
    [InlineData("apic.bin")]
    [InlineData("hpet.bin")]
    [InlineData("msr.bin")]
    public void Guest_prints_the_same_serial_output_and_status_as_qemu(string guest)
    {
        var qemu = QemuRunner.Run(GuestArtifacts.Path(guest), "");
        var (lines, status, _) = RunUnderVmm(guest);
        Assert.False(qemu.TimedOut, "QEMU timed out");
        if (guest == "msr.bin")
        {
            // As in QemuComparisonTests: QEMU's TCG ignores MSRs it does not know where silicon faults; the first
            // seven lines (the MSR values) are QEMU's to judge.
            Assert.Equal(qemu.Lines.Take(7), lines.Take(7));
            Assert.Contains("msr that does not exist: #GP error=00000000", lines);
        }
        else
        {
            Assert.Equal(qemu.Lines, lines);
            Assert.Equal(qemu.ExitStatus, status);
        }
    }

    [Theory]
    [InlineData("split", false)]
    [InlineData("split", true)]
    [InlineData("off", false)]
    [InlineData("off", true)]
    public void Split_and_off_end_with_a_configuration_error_before_the_guest_runs(string mode, bool seedKernel)
    {
        // docs/freebsd.md: neither a stock kernel nor the seed's VM_OP_F_QEMU gives a userspace IOAPIC/PIC (split) or
        // LAPIC (off) what it needs; the run is refused (status 2), not an internal error, and no VM is left behind.
        var kernel = new VmmStandIn(VmmGeneration.FreeBsd15, seedExtensions: seedKernel);
        string serial = Path.Combine(_dir, $"refused-{mode}-{seedKernel}.txt");
        int status = HostMain.Run(
            ["-accel", "vmm", "-machine", $"kernel-irqchip={mode}", "-kernel", GuestArtifacts.Path("hello.bin"), "-serial", $"file:{serial}",
             "-display", "none", "-monitor", "none", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-m", "64"],
            name => name == "vmm" ? new VmmAccelerator(kernel) : null, kernel);
        Assert.Equal(2, status);
        Assert.True(!File.Exists(serial) || File.ReadAllText(serial).Length == 0);
        Assert.Empty(kernel.VmNames);
    }
}
