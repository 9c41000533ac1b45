// Runs a guest under ActorVmm exactly as a user would: the built actorvmm program as a child process, with the
// same QEMU-spelled command line QemuRunner uses, capturing the serial console (stdout) and the exit status.
using System.Diagnostics;
using System.Text;

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
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(ProgramPath);
        foreach (var a in arguments) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi) ?? throw new InvalidOperationException("could not start actorvmm");
        process.StandardInput.Close();
        var stdout = new MemoryStream();
        var copyOut = process.StandardOutput.BaseStream.CopyToAsync(stdout);
        var stderr = process.StandardError.ReadToEndAsync();
        bool exited = process.WaitForExit(timeout ?? DefaultTimeout);
        if (!exited)
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
        }
        copyOut.Wait(TimeSpan.FromSeconds(5));
        return new GuestRun(Encoding.UTF8.GetString(stdout.ToArray()), exited ? process.ExitCode : -1, !exited,
            stderr.Wait(TimeSpan.FromSeconds(5)) ? stderr.Result : "");
    }
}
