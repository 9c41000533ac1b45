// The nasm-built test guests of tests/Guests, for actor tests that boot a real guest on the soft CPU:
// artifacts/guests/NAME.bin, assembled here with nasm when it is missing or older than its source.
using System.Diagnostics;
using ActorVmm.Actors;
using ActorVmm.Core.Boot;

namespace ActorVmm.Actors.Tests.Supervision;

public static class TestGuests
{
    private static readonly Lock BuildLock = new();

    public static string RepositoryRoot { get; } = FindRoot();

    /// <summary>The guest's bytes, built from tests/Guests/NAME.asm if needed.</summary>
    public static byte[] Bytes(string name)
    {
        var bin = Path.Combine(RepositoryRoot, "artifacts", "guests", name + ".bin");
        var asm = Path.Combine(RepositoryRoot, "tests", "Guests", name + ".asm");
        lock (BuildLock)
        {
            if (!File.Exists(bin) || File.GetLastWriteTimeUtc(bin) < File.GetLastWriteTimeUtc(asm))
            {
                Directory.CreateDirectory(Path.GetDirectoryName(bin)!);
                var psi = new ProcessStartInfo("nasm", ["-f", "bin", "-I" + Path.Combine(RepositoryRoot, "tests", "Guests") + "/", "-o", bin, asm])
                {
                    RedirectStandardError = true,
                };
                using var p = Process.Start(psi) ?? throw new InvalidOperationException("nasm did not start");
                string err = p.StandardError.ReadToEnd();
                p.WaitForExit();
                if (p.ExitCode != 0) throw new InvalidOperationException($"nasm {asm}: {err}");
            }
        }
        return File.ReadAllBytes(bin);
    }

    public static BootImages Images(string name) => new(MultibootImage.Parse(Bytes(name), name + ".bin"), []);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ActorVmm.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException($"no ActorVmm.sln above {AppContext.BaseDirectory}");
    }
}
