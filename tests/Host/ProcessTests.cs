// Runs the built actorvmm program as a child process and checks what a user sees for bad input: exit
// status 2 and one line on stderr naming the problem, no stack trace, nothing on stdout.
using System.Diagnostics;

namespace ActorVmm.Host.Tests;

public sealed class ProcessTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorvmm-test").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static (int Status, string Stdout, string Stderr) RunActorVmm(params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "actorvmm.dll");
        Assert.True(File.Exists(dll), $"{dll} not built");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(60_000), "actorvmm did not exit");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private static void AssertRefused(string expectedLine, params string[] args)
    {
        var (status, stdout, stderr) = RunActorVmm(args);
        Assert.Equal(2, status);
        Assert.Equal("", stdout);
        Assert.Equal(expectedLine + "\n", stderr);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Zero_memory_is_refused() => AssertRefused("actorvmm: -m 0: memory size must be at least 1 MiB", "-m", "0", "-kernel", "k");

    [Fact]
    public void Unknown_option_is_refused() => AssertRefused("actorvmm: -hda: unknown option (see --help)", "-hda", "x.img");

    [Fact]
    public void Missing_kernel_file_is_refused_before_the_vm_starts()
    {
        var path = Path.Combine(_dir, "missing.bin");
        AssertRefused($"actorvmm: -kernel {path}: no such file", "-accel", "soft", "-kernel", path, "-nographic");
    }

    [Fact]
    public void A_directory_as_kernel_is_refused() => AssertRefused($"actorvmm: -kernel {_dir}: is a directory, not a file", "-kernel", _dir);

    [Fact]
    public void A_file_without_a_multiboot_header_is_refused()
    {
        var path = Path.Combine(_dir, "notmb.bin");
        File.WriteAllBytes(path, new byte[4096]);
        var (status, stdout, stderr) = RunActorVmm("-kernel", path);
        Assert.Equal(2, status);
        Assert.Equal("", stdout);
        Assert.StartsWith($"actorvmm: -kernel {path}: ", stderr, StringComparison.Ordinal);
        Assert.Contains("Multiboot", stderr, StringComparison.Ordinal);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void A_missing_module_is_refused()
    {
        var kernel = Path.Combine(_dir, "k.bin");
        File.WriteAllBytes(kernel, MinimalKernel());
        var module = Path.Combine(_dir, "nomod");
        AssertRefused($"actorvmm: -initrd {module}: no such file", "-kernel", kernel, "-initrd", $"{module} args");
    }

    [Fact]
    public void Help_goes_to_stdout_with_status_0()
    {
        var (status, stdout, stderr) = RunActorVmm("--help");
        Assert.Equal(0, status);
        Assert.Contains("usage: actorvmm", stdout, StringComparison.Ordinal);
        Assert.Equal("", stderr);
    }

    [Fact]
    public void Accel_info_goes_to_stdout_with_status_0()
    {
        var (status, stdout, stderr) = RunActorVmm("accel-info");
        Assert.Equal(0, status);
        Assert.StartsWith("soft  usable", stdout, StringComparison.Ordinal);
        Assert.Contains("\nauto  auto chose ", stdout, StringComparison.Ordinal);
        Assert.Equal("", stderr);
    }

    [Fact]
    public void Vmm_on_a_host_without_it_is_refused_before_anything_runs()
    {
        if (!OperatingSystem.IsLinux()) return;
        var kernel = Path.Combine(_dir, "k.bin");
        File.WriteAllBytes(kernel, MinimalKernel());
        AssertRefused("actorvmm: -accel vmm: not usable on this host: vmm(4) is FreeBSD's hypervisor; this host runs Linux", "-accel", "vmm", "-kernel", kernel);
    }

    /// <summary>A multiboot a.out-kludge image loaded at 1 MiB whose code is a single HLT.</summary>
    internal static byte[] MinimalKernel()
    {
        var image = new byte[33];
        const uint magic = 0x1BADB002, flags = 0x00010000;
        uint[] header = [magic, flags, unchecked(0u - magic - flags), 0x100000, 0x100000, 0, 0, 0x100020];
        for (int i = 0; i < header.Length; i++) BitConverter.TryWriteBytes(image.AsSpan(i * 4), header[i]);
        image[32] = 0xf4;
        return image;
    }
}
