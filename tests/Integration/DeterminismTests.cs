// Deterministic mode (--deterministic): time is the soft CPU's instruction count, and the timers of every
// placement run in lock-step with it (kernel-irqchip=on: in the accelerator; split and off: the platform's timers,
// driven by the vCPU at its batch boundaries). The same guest must then print the same serial output and retire the
// same number of instructions run after run, in every mode. The count comes from the VM actor's log line at the end
// of the run ("instructions retired, machine generation 1: vcpu0 N").
using System.Text.RegularExpressions;

namespace ActorVmm.Integration.Tests;

[Trait("Category", "Slow")]
public sealed partial class DeterminismTests
{
    [GeneratedRegex(@"instructions retired, machine generation \d+: (vcpu\d+ \d+(, )?)+")]
    private static partial Regex RetiredLine();

    /// <summary>The VM actor's "instructions retired" log line of a run (stderr at --log-level info).</summary>
    public static string InstructionsRetired(GuestRun run)
    {
        var m = RetiredLine().Match(run.Stderr);
        Assert.True(m.Success, $"no instruction count in the log:\n{run.Stderr}");
        return m.Value;
    }

    [Theory]
    [InlineData("timer.bin", "on")]
    [InlineData("timer.bin", "split")]
    [InlineData("timer.bin", "off")]
    [InlineData("apic.bin", "split")]
    [InlineData("apic.bin", "off")]
    [InlineData("hpet.bin", "split")]
    [InlineData("hpet.bin", "off")]
    [InlineData("rtcpm.bin", "split")]
    [InlineData("rtcpm.bin", "off")]
    public void Two_runs_print_the_same_and_retire_the_same_instructions(string guest, string mode)
    {
        string kernel = GuestArtifacts.Path(guest);
        string[] extra = ["-machine", $"kernel-irqchip={mode}", "--deterministic", "--log-level", "info"];
        var first = ActorVmmRunner.Run(kernel, "", 64, null, extra);
        var second = ActorVmmRunner.Run(kernel, "", 64, null, extra);
        Assert.False(first.TimedOut || second.TimedOut, "ActorVmm timed out");
        Assert.Equal(first.Lines, second.Lines);
        Assert.Equal(first.ExitStatus, second.ExitStatus);
        Assert.Equal(InstructionsRetired(first), InstructionsRetired(second));
    }
}
