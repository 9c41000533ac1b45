// What a machine is made of, as the user configured it (DESIGN.md §9): accelerator, irqchip placement,
// RAM, vCPUs, the kernel and its modules or the BIOS firmware, where the serial ports and the debug console go
// (and the debug console's port), the firmware's reboot timeout, the test exit
// device, the reset policy and per-device route overrides. A plain immutable record; Validate() lists
// every problem in words that name the offending setting, so the host can refuse bad input before a VM
// exists. Nothing here touches files: paths are checked by whoever opens them.
using ActorVmm.Core.Accel;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Machine;

public enum CharBackendKind
{
    /// <summary>The process's stdin/stdout.</summary>
    Stdio,
    /// <summary>Output appended to a file (no input).</summary>
    File,
    /// <summary>Output discarded, no input; the device is still present.</summary>
    None,
}

/// <summary>Where a character device (serial port, debug console) is connected on the host.</summary>
public sealed record CharBackend(CharBackendKind Kind, string? Path = null)
{
    public static readonly CharBackend Stdio = new(CharBackendKind.Stdio);
    public static readonly CharBackend None = new(CharBackendKind.None);

    public static CharBackend ToFile(string path) => new(CharBackendKind.File, path);

    public override string ToString() => Kind switch
    {
        CharBackendKind.Stdio => "stdio",
        CharBackendKind.File => $"file:{Path}",
        _ => "none",
    };
}

/// <summary>QEMU's isa-debug-exit: a write to [IoBase, IoBase+IoSize) ends the run with status (v &lt;&lt; 1) | 1.</summary>
public sealed record DebugExitConfig(int IoBase, int IoSize);

/// <summary>The complete, validated description of one machine.</summary>
public sealed record MachineConfig
{
    public const ulong MiB = 1024 * 1024;
    public const ulong MinRamBytes = MiB;
    /// <summary>RAM sits below the 32-bit PCI hole for now; more needs a high-memory region.</summary>
    public const ulong MaxRamBytes = 3UL * 1024 * MiB;
    public const ulong DefaultRamBytes = 128 * MiB;
    public const int MaxSerialPorts = 4;

    /// <summary>The -accel name: "soft" (the built-in software CPU) is the only one in this build.</summary>
    public string Accelerator { get; init; } = "soft";

    public IrqchipMode Irqchip { get; init; } = IrqchipMode.On;

    /// <summary>
    /// What the accelerator's kernel provides in kernel-irqchip=on (AcceleratorCapabilities.KernelPlatform; the VM
    /// actor sets it from the accelerator it runs on): the machine builder adds userspace models for the rest.
    /// </summary>
    public KernelPlatform KernelPlatform { get; init; } = KernelPlatform.Soft;

    public ulong RamBytes { get; init; } = DefaultRamBytes;

    /// <summary>vCPUs: vCPU 0 is the bootstrap processor (APIC ID = vCPU index); the accelerator may support fewer.</summary>
    public int VcpuCount { get; init; } = 1;

    /// <summary>The most vCPUs a PC machine can describe: xAPIC IDs are 8 bits and 0xff is the broadcast ID.</summary>
    public const int MaxVcpus = 255;

    /// <summary>The kernel image (required unless a BIOS boots the machine): Multiboot v1, a Linux bzImage or an ELF with a PVH note.</summary>
    public string? KernelPath { get; init; }

    /// <summary>BIOS firmware (QEMU's -bios): the machine resets into it instead of entering a kernel directly.</summary>
    public string? BiosPath { get; init; }

    /// <summary>
    /// Milliseconds the firmware waits after finding no bootable device before it reboots (QEMU's -boot
    /// reboot-timeout, handed over as fw_cfg etc/boot-fail-wait); -1, the default, waits for ever.
    /// </summary>
    public int RebootTimeoutMs { get; init; } = -1;

    /// <summary>The kernel command line.</summary>
    public string Append { get; init; } = "";

    /// <summary>
    /// The -initrd list, each entry as QEMU spells it: for a multiboot kernel the modules, "path [arguments]" (the whole
    /// string is the module's command line); for a Linux kernel exactly one entry, the initrd's path.
    /// </summary>
    public IReadOnlyList<string> Modules { get; init; } = [];

    /// <summary>How a Linux bzImage is entered (PVH after host-side extraction, or the 64-bit entry); see KernelImages.</summary>
    public LinuxBootMode LinuxBoot { get; init; } = LinuxBootMode.Auto;

    /// <summary>COM1..COM4 in order; a null entry (QEMU's -serial none) has no device at all.</summary>
    public IReadOnlyList<CharBackend?> SerialPorts { get; init; } = [CharBackend.Stdio];

    public DebugExitConfig? DebugExit { get; init; }

    /// <summary>The debug console at <see cref="DebugConPort"/>, or null for none.</summary>
    public CharBackend? DebugCon { get; init; }

    /// <summary>The debug console's port: 0xe9 (QEMU's default) or e.g. 0x402, where SeaBIOS writes (-global isa-debugcon.iobase=).</summary>
    public ushort DebugConPort { get; init; } = 0xe9;

    /// <summary>The pvpanic device's port (QEMU's -device pvpanic[,ioport=N], 0x505 by default), or null for none.</summary>
    public ushort? PvPanicPort { get; init; }

    /// <summary>A guest reset or triple fault ends the run instead of rebooting (QEMU's -no-reboot).</summary>
    public bool NoReboot { get; init; }

    /// <summary>Time advances with retired instructions (reproducible runs).</summary>
    public bool Deterministic { get; init; }

    /// <summary>Route per device name ("COM1", "isa-debug-exit", "debugcon"), overriding the defaults.</summary>
    public IReadOnlyDictionary<string, Route> RouteOverrides { get; init; } = new Dictionary<string, Route>();

    /// <summary>Every problem with this configuration, each naming the setting; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(Accelerator)) errors.Add("accelerator: no accelerator named");
        if (RamBytes < MinRamBytes) errors.Add("memory size must be at least 1 MiB");
        else if (RamBytes > MaxRamBytes) errors.Add($"memory size {FormatSize(RamBytes)} is more than the {FormatSize(MaxRamBytes)} this machine supports");
        else if (RamBytes % 4096 != 0) errors.Add($"memory size {RamBytes} bytes is not a multiple of 4 KiB");
        if (VcpuCount < 1 || VcpuCount > MaxVcpus) errors.Add($"{VcpuCount} vCPUs: a machine has 1 to {MaxVcpus} (the accelerator may allow fewer)");
        if (string.IsNullOrEmpty(KernelPath) && string.IsNullOrEmpty(BiosPath)) errors.Add("no kernel given (use -kernel PATH, or -bios FILE to boot firmware)");
        if (!string.IsNullOrEmpty(KernelPath) && !string.IsNullOrEmpty(BiosPath))
            errors.Add("-bios with -kernel: handing a kernel to the BIOS (QEMU's linuxboot option ROM) is not implemented; boot the kernel directly (without -bios) or the BIOS alone");
        if (RebootTimeoutMs is < -1 or > 0xffff) errors.Add($"reboot-timeout {RebootTimeoutMs}: must be -1 (never) or 0-65535 ms");
        if (Append.Contains('\0', StringComparison.Ordinal)) errors.Add("the kernel command line contains a NUL character");
        foreach (var m in Modules)
        {
            if (string.IsNullOrWhiteSpace(ModulePath(m))) errors.Add($"module \"{m}\" names no file");
        }
        if (SerialPorts.Count > MaxSerialPorts) errors.Add($"{SerialPorts.Count} serial ports: at most {MaxSerialPorts} (COM1-COM4)");
        foreach (var s in SerialPorts.Append(DebugCon))
        {
            if (s is { Kind: CharBackendKind.File } && string.IsNullOrEmpty(s.Path)) errors.Add("file: backend without a path");
        }
        if (DebugExit is { } d)
        {
            if (d.IoBase is < 0 or > 0xffff) errors.Add($"isa-debug-exit iobase 0x{d.IoBase:x} is outside the port space 0-0xffff");
            else if (d.IoSize < 1 || d.IoBase + d.IoSize > 0x10000) errors.Add($"isa-debug-exit iosize {d.IoSize} at iobase 0x{d.IoBase:x} does not fit the port space 0-0xffff");
        }
        var known = PcMachineBuilder.DeviceNames(this);
        foreach (var name in RouteOverrides.Keys)
        {
            if (!known.Contains(name)) errors.Add($"route override for \"{name}\": no such device (devices: {string.Join(", ", known)})");
        }
        return errors;
    }

    /// <summary>
    /// The command line a multiboot kernel receives: "KERNEL APPEND", the kernel path first, as QEMU builds it
    /// (so guests print and parse the same string under both).
    /// </summary>
    public string MultibootCommandLine => $"{KernelPath} {Append}";

    /// <summary>Throws <see cref="MachineConfigException"/> with the first problem, if any.</summary>
    public MachineConfig EnsureValid()
    {
        var errors = Validate();
        if (errors.Count > 0) throw new MachineConfigException(errors[0]);
        return this;
    }

    /// <summary>The route a device takes: its override, else the measured default (PcMachineBuilder.DefaultRoute).</summary>
    public Route RouteFor(string deviceName) => RouteOverrides.TryGetValue(deviceName, out var r) ? r : PcMachineBuilder.DefaultRoute(deviceName);

    /// <summary>The file part of a QEMU module string ("path args" → "path").</summary>
    public static string ModulePath(string module)
    {
        var trimmed = module.TrimStart();
        int space = trimmed.IndexOf(' ', StringComparison.Ordinal);
        return space < 0 ? trimmed : trimmed[..space];
    }

    public static string FormatSize(ulong bytes)
    {
        string[] units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        int u = 0;
        ulong v = bytes;
        while (u < units.Length - 1 && v >= 1024 && v % 1024 == 0)
        {
            v /= 1024;
            u++;
        }
        return $"{v} {units[u]}";
    }
}

/// <summary>A machine configuration that cannot be built; the message names the setting.</summary>
public sealed class MachineConfigException(string message) : Exception(message);
