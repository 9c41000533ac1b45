// Debian's SeaBIOS (package seabios, /usr/share/seabios/bios.bin) booted with no disk under ActorVmm: it must print
// its version banner and report that there is no bootable device, on the debug console (port 0x402) and on COM1
// (SeaBIOS mirrors its console to serial when fw_cfg says "nographic"), and reset when its reboot timeout is 0
// (-no-reboot then ends the run with status 0). The same bios.bin under QEMU TCG is the reference: QEMU's pc
// machine configured as close to ours as its options allow (no ACPI, hence no PIIX4 PM function; no kvmvapic
// option ROM; an Intel CPU, hence no AMD HyperTransport hole in the e820 map; -nodefaults) must print the same
// lines, except:
//   * the lines about the PIIX3 IDE function 00:01.1, which QEMU's pc machine always has and ours does not
//     ("PCI: map device bdf=00:01.1", "PCI: init bdf=00:01.1", "ATA controller 1/2 ...");
//   * values that follow from that: the PCI device count, the I/O window ("PCI: IO: c000 - ..."), and where the MP
//     table and SMBIOS land and how much room is left for UMBs (the MP table lists the IDE interrupts);
//   * "CPU Mhz=N", timing-dependent: SeaBIOS measures the TSC against the PIT (there is no PM timer);
//   * the last serial line ("Rebooting."), cut short by the reset at a timing-dependent point.
namespace ActorVmm.Integration.Tests;

public sealed class SeaBiosTests
{
    public const string BiosPath = "/usr/share/seabios/bios.bin";
    private const string NoBootableDevice = "No bootable device.  Retrying in 0 seconds.";

    private static readonly string[] IdeOnly = ["PCI: map device bdf=00:01.1 ", "PCI: init bdf=00:01.1 ", "ATA controller "];
    private static readonly string[] ValueMasked = ["Found ", "PCI: IO: ", "Copying MPTABLE from ", "Copying SMBIOS from ", "Space available for UMB: ", "CPU Mhz="];

    private static string[] Lines(string text)
        => text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n').Where(l => l.Length > 0).ToArray();

    /// <summary>The debug-console lines with the named exceptions dropped or reduced to their fixed prefix.</summary>
    private static List<string> Comparable(IEnumerable<string> lines)
        => lines.Where(l => !IdeOnly.Any(p => l.StartsWith(p, StringComparison.Ordinal)))
            .Select(l => ValueMasked.FirstOrDefault(p => l.StartsWith(p, StringComparison.Ordinal) && (p != "Found " || l.Contains(" PCI devices", StringComparison.Ordinal))) is { } p ? p + "..." : l)
            .ToList();

    private static (string Serial, string Debug, GuestRun Run) Boot(bool qemu)
    {
        string dir = Directory.CreateTempSubdirectory("seabios-").FullName;
        try
        {
            string serial = Path.Combine(dir, "serial.txt"), debug = Path.Combine(dir, "debug.txt");
            string[] common = ["-m", "128", "-bios", BiosPath, "-nographic", "-serial", $"file:{serial}", "-debugcon", $"file:{debug}",
                "-global", "isa-debugcon.iobase=0x402", "-no-reboot", "-boot", "reboot-timeout=0"];
            var run = qemu
                ? GuestProcess.Run(QemuRunner.QemuPath!, ["-accel", "tcg", "-M", "pc,acpi=off", "-cpu", "qemu64,vendor=GenuineIntel",
                    "-global", "apic-common.vapic=off", "-nodefaults", .. common], TimeSpan.FromSeconds(60))
                : ActorVmmRunner.RunRaw(["-accel", "soft", .. common], TimeSpan.FromSeconds(120));
            return (File.Exists(serial) ? File.ReadAllText(serial) : "", File.Exists(debug) ? File.ReadAllText(debug) : "", run);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [SeaBiosFact]
    public void SeaBios_reaches_no_bootable_device_on_the_debug_console_and_serial_as_under_qemu()
    {
        var (serial, debug, run) = Boot(qemu: false);
        Assert.False(run.TimedOut, "ActorVmm timed out; debug console:\n" + debug + "\nstderr:\n" + run.Stderr);
        Assert.Equal(0, run.ExitStatus); // SeaBIOS reset the machine; -no-reboot ends the run with 0, as QEMU's
        var debugLines = Lines(debug);
        var serialLines = Lines(serial);
        // Independent of QEMU: the banner of the installed package and the boot failure, on both outputs.
        Assert.StartsWith("SeaBIOS (version 1.", debugLines[0], StringComparison.Ordinal);
        Assert.Contains(debugLines[0], serialLines[0], StringComparison.Ordinal); // after the console's reset escapes
        Assert.Contains(NoBootableDevice, debugLines);
        Assert.Contains(NoBootableDevice, serialLines);
        Assert.Contains("Running on QEMU (i440fx)", debugLines);
        Assert.Contains("qemu/e820: addr 0x0000000000000000 len 0x0000000008000000 [RAM]", debugLines);
        Assert.Contains("Found 1 cpu(s) max supported 1 cpu(s)", debugLines);

        if (QemuRunner.QemuPath is null) return; // the comparison needs QEMU (the checks above do not)
        var (qSerial, qDebug, qRun) = Boot(qemu: true);
        Assert.Equal(0, qRun.ExitStatus);
        Assert.Equal(Comparable(Lines(qDebug)), Comparable(debugLines));
        var qSerialLines = Lines(qSerial);
        Assert.Equal(qSerialLines[..^1], serialLines[..^1]);
        Assert.StartsWith("Rebooting", serialLines[^1], StringComparison.Ordinal);
        Assert.StartsWith("Rebooting", qSerialLines[^1], StringComparison.Ordinal);
    }
}

/// <summary>Skipped, with the reason, when Debian's seabios package is not installed.</summary>
public sealed class SeaBiosFactAttribute : FactAttribute
{
    public SeaBiosFactAttribute()
    {
        if (!File.Exists(SeaBiosTests.BiosPath)) Skip = $"{SeaBiosTests.BiosPath} is missing: install Debian's seabios package (scripts/setup.sh does)";
    }
}
