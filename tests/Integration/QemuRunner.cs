// Runs a multiboot guest under qemu-system-x86_64 with TCG and captures its COM1 output and exit status,
// so integration tests can compare ActorVmm with QEMU on the same guest. Also finds the repository root and
// builds the guests (scripts/build-guests.sh) when artifacts/guests is missing or older than its sources.
using System.Diagnostics;
using System.Text;

namespace ActorVmm.Integration.Tests;

/// <summary>What a guest run produced: COM1 bytes as text, the process exit status, and stderr.</summary>
public sealed record GuestRun(string Serial, int ExitStatus, bool TimedOut, string Stderr)
{
    /// <summary>Serial output split into lines (without the line ends).</summary>
    public IReadOnlyList<string> Lines => Serial.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
}

public static class QemuRunner
{
    public const string QemuBinary = "qemu-system-x86_64";
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    private static readonly Lazy<string?> Path_ = new(() => FindOnPath(Environment.GetEnvironmentVariable("QEMU") ?? QemuBinary));

    /// <summary>Full path of qemu-system-x86_64 (or $QEMU), or null when it is not installed.</summary>
    public static string? QemuPath => Path_.Value;

    public static bool IsAvailable => QemuPath is not null;

    public static string SkipReason =>
        $"{QemuBinary} not found on PATH (set $QEMU or install it: sudo apt-get install qemu-system-x86); QEMU comparison skipped";

    /// <summary>
    /// Runs <paramref name="kernel"/> as QEMU would be run by hand:
    /// <c>qemu-system-x86_64 -accel tcg -cpu qemu64,vendor=GenuineIntel -kernel K -append A -serial stdio
    /// -display none -monitor none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4 -m M</c>.
    /// The guest's COM1 output is QEMU's stdout. The CPU vendor is Intel because ActorVmm's CPU reports itself
    /// as Intel: QEMU's default qemu64 model is AMD-flavoured, and for AMD models QEMU's pc machine adds the
    /// HyperTransport hole at 0xFD00000000 to the memory map, which a guest that prints its map would show.
    /// </summary>
    public static GuestRun Run(string kernel, string append = "", int memoryMiB = 64, TimeSpan? timeout = null, params string[] extra)
    {
        var qemu = QemuPath ?? throw new InvalidOperationException(SkipReason);
        if (!File.Exists(kernel)) throw new FileNotFoundException($"guest kernel {kernel} does not exist", kernel);
        return GuestProcess.Run(qemu,
        [
            "-accel", "tcg", "-cpu", "qemu64,vendor=GenuineIntel", "-kernel", kernel, "-append", append,
            "-serial", "stdio", "-display", "none", "-monitor", "none", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-m", memoryMiB.ToString(System.Globalization.CultureInfo.InvariantCulture),
            .. extra,
        ], timeout ?? DefaultTimeout);
    }

    private static string? FindOnPath(string name)
    {
        if (name.Contains('/', StringComparison.Ordinal)) return File.Exists(name) ? name : null;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
        {
            if (dir.Length == 0) continue;
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }
}

/// <summary>Runs a VMM as a child process with stdin closed, capturing its serial console (stdout), stderr and status.</summary>
public static class GuestProcess
{
    public static GuestRun Run(string program, IEnumerable<string> arguments, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var arg in arguments) psi.ArgumentList.Add(arg);
        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {program}");
        process.StandardInput.Close();
        var stdout = new MemoryStream();
        var copyOut = process.StandardOutput.BaseStream.CopyToAsync(stdout);
        var stderr = process.StandardError.ReadToEndAsync();
        bool exited = process.WaitForExit(timeout);
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

/// <summary>A test that needs QEMU; skipped, saying why, when qemu-system-x86_64 is not installed.</summary>
public sealed class QemuFactAttribute : FactAttribute
{
    public QemuFactAttribute()
    {
        if (!QemuRunner.IsAvailable) Skip = QemuRunner.SkipReason;
    }
}

/// <summary>The built test guests (tests/Guests → artifacts/guests), built on first use when missing or stale.</summary>
public static class GuestArtifacts
{
    private static readonly Lazy<string> Dir = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The repository root: the first directory above the test assembly holding ActorVmm.sln.</summary>
    public static string RepositoryRoot { get; } = FindRoot();

    /// <summary>artifacts/guests, built if needed.</summary>
    public static string Directory => Dir.Value;

    /// <summary>Path of a built guest, e.g. Path("hello.bin").</summary>
    public static string Path(string fileName) => System.IO.Path.Combine(Directory, fileName);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "ActorVmm.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException($"no ActorVmm.sln above {AppContext.BaseDirectory}");
    }

    private static string Build()
    {
        var outDir = System.IO.Path.Combine(RepositoryRoot, "artifacts", "guests");
        var sources = System.IO.Directory.GetFiles(System.IO.Path.Combine(RepositoryRoot, "tests", "Guests"), "*.asm", SearchOption.AllDirectories);
        // Shared include files count as sources of every guest.
        var includes = System.IO.Directory.GetFiles(System.IO.Path.Combine(RepositoryRoot, "tests", "Guests"), "*.inc", SearchOption.AllDirectories);
        var newestSource = sources.Concat(includes).Max(File.GetLastWriteTimeUtc);
        bool stale = !System.IO.Directory.Exists(outDir)
            || sources.Where(s => System.IO.Path.GetDirectoryName(s) == System.IO.Path.Combine(RepositoryRoot, "tests", "Guests"))
                .Any(s =>
                {
                    var bin = System.IO.Path.Combine(outDir, System.IO.Path.GetFileNameWithoutExtension(s) + ".bin");
                    return !File.Exists(bin) || File.GetLastWriteTimeUtc(bin) < newestSource;
                });
        if (!stale) return outDir;

        var psi = new ProcessStartInfo("/bin/sh")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = RepositoryRoot,
        };
        psi.ArgumentList.Add(System.IO.Path.Combine(RepositoryRoot, "scripts", "build-guests.sh"));
        psi.ArgumentList.Add(outDir);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not run scripts/build-guests.sh");
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            p.Kill(entireProcessTree: true);
            throw new InvalidOperationException("scripts/build-guests.sh did not finish in 2 minutes");
        }
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"scripts/build-guests.sh failed ({p.ExitCode}):\n{output}\n{err.Result}");
        return outDir;
    }
}
