// Each test guest under QEMU TCG: the serial lines and exit status recorded in QemuGuestExpectations.
// These pin down the guests themselves (and the QEMU we compare with); the ActorVmm runs are checked
// against the same expectations elsewhere.
using System.Text.RegularExpressions;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Memory;
using static ActorVmm.Integration.Tests.QemuGuestExpectations;

namespace ActorVmm.Integration.Tests;

public sealed partial class QemuGuestTests
{
    [GeneratedRegex("^checksum: [0-9a-f]{8}$")]
    private static partial Regex ChecksumLine();

    private static void AssertRun(GuestRun run, int status, string[] lines)
    {
        Assert.False(run.TimedOut, $"QEMU timed out; serial so far:\n{run.Serial}\nstderr:\n{run.Stderr}");
        Assert.True(status == run.ExitStatus, $"exit status {run.ExitStatus}, expected {status}; serial:\n{run.Serial}\nstderr:\n{run.Stderr}");
        Assert.Equal(lines.Append(""), run.Lines);   // exactly these lines, each ended by a newline
    }

    [QemuFact]
    public void Hello_prints_banner_memory_checksum_and_cmdline_then_exits_33()
    {
        var kernel = GuestArtifacts.Path("hello.bin");
        var run = QemuRunner.Run(kernel, "console=ttyS0 answer=42");
        AssertRun(run, HelloExitStatus, [.. HelloHead, .. HelloQemuMemory64, .. HelloTail($"{kernel} console=ttyS0 answer=42")]);
        Assert.Single(run.Lines, l => ChecksumLine().IsMatch(l));
    }

    [QemuFact]
    public void Hello_as_elf_gives_the_same_output()
    {
        var kernel = GuestArtifacts.Path("hello.elf");
        var run = QemuRunner.Run(kernel, "");
        AssertRun(run, HelloExitStatus, [.. HelloHead, .. HelloQemuMemory64, .. HelloTail($"{kernel} ")]);
    }

    [QemuFact]
    public void Hello_reports_the_memory_size_it_was_given()
    {
        var run = QemuRunner.Run(GuestArtifacts.Path("hello.bin"), "", memoryMiB: 128);
        Assert.Equal(HelloExitStatus, run.ExitStatus);
        // 128 MiB less 1 MiB of low memory less SeaBIOS's top 128 KiB.
        Assert.Contains("mem: lower=0000027f upper=0001fb80", run.Lines);
        Assert.Contains($"checksum: {HelloChecksum}", run.Lines);
    }

    [QemuFact]
    public void Faults_prints_one_line_per_exception_then_exits_35()
        => AssertRun(QemuRunner.Run(GuestArtifacts.Path("faults.bin")), FaultsExitStatus, Faults);

    [QemuFact]
    public void Triple_faults_and_qemu_stops_without_reboot()
        => AssertRun(QemuRunner.Run(GuestArtifacts.Path("triple.bin")), TripleExitStatus, Triple);

    [Theory]
    [InlineData("hello.bin", MultibootFormat.AoutKludge)]
    [InlineData("hello.elf", MultibootFormat.Elf32)]
    [InlineData("faults.bin", MultibootFormat.AoutKludge)]
    [InlineData("triple.bin", MultibootFormat.AoutKludge)]
    public unsafe void Every_guest_parses_and_loads_with_the_multiboot_loader(string file, MultibootFormat format)
    {
        var path = GuestArtifacts.Path(file);
        var image = MultibootImage.Parse(File.ReadAllBytes(path), path);
        Assert.Equal(format, image.Format);
        Assert.Empty(image.Warnings);
        using var ram = new NativeRam(64 << 20);
        var memory = new GuestMemory([new GuestRegion("ram", 0, 64 << 20, ram.Pointer)]);
        var state = MultibootLoader.Load(memory, image, path, []);
        Assert.Equal(0x2BADB002UL, state.Registers.Rax);
        Assert.InRange(state.Registers.Rip, 0x100000UL, image.LoadEnd - 1);
        // The entry instruction is the guest's first: cli (0xfa).
        Assert.Equal(0xfa, memory.ReadObject<byte>(state.Registers.Rip));
    }
}
