// Runs a guest under ActorVmm exactly as a user would: the built actorvmm program as a child process, with the
// same QEMU-spelled command line QemuRunner uses, capturing the serial console (stdout) and the exit status.
namespace ActorVmm.Integration.Tests;

public static class ActorVmmRunner
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

    /// <summary>actorvmm.dll beside the test assembly (the Host project is referenced, so it is copied here).</summary>
    public static string ProgramPath { get; } = Path.Combine(AppContext.BaseDirectory, "actorvmm.dll");

    /// <summary>The QEMU arguments QemuRunner passes, with -accel soft in place of tcg.</summary>
    public static IReadOnlyList<string> QemuStyleArguments(string kernel, string append, int memoryMiB, params string[] extra)
        =>
        [
            "-accel", "soft", "-kernel", kernel, "-append", append,
            "-serial", "stdio", "-display", "none", "-monitor", "none", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-m", memoryMiB.ToString(System.Globalization.CultureInfo.InvariantCulture),
            .. extra,
        ];

    public static GuestRun Run(string kernel, string append = "", int memoryMiB = 64, TimeSpan? timeout = null, params string[] extra)
        => RunRaw(QemuStyleArguments(kernel, append, memoryMiB, extra), timeout);

    /// <summary>Runs actorvmm with exactly these arguments.</summary>
    public static GuestRun RunRaw(IEnumerable<string> arguments, TimeSpan? timeout = null)
        => GuestProcess.Run("dotnet", [ProgramPath, .. arguments], timeout ?? DefaultTimeout);
}
