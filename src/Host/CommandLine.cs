// The actorvmm command line. `actorvmm [run] OPTIONS` accepts QEMU's spelling for the subset it
// implements, so an existing QEMU command line works unchanged, plus long options of our own:
//   -accel soft|tcg|auto  (also accel=NAME)      -machine [type=]pc[,kernel-irqchip=on|split|off][,accel=NAME]  (-M)
//   -m N[K|M|G|T] | size=N  (plain N = MiB)      -smp N | [cpus=N][,sockets=S][,dies=D][,cores=C][,threads=T][,maxcpus=M]
//   -kernel PATH  -append CMDLINE  -initrd "MOD1 args,MOD2"  (multiboot modules; ",," is a literal comma)
//   (-initrd FILE for a Linux kernel)  --linux-boot auto|pvh|bzimage
//   -serial stdio|mon:stdio|file:PATH|null|none  (repeat for COM2-COM4)   -nographic  -display none
//   -monitor none  -no-reboot  -device isa-debug-exit[,iobase=0xf4][,iosize=4][,route=R]  -device NAME,route=direct|mailbox
//   -debugcon stdio|file:PATH|null|none
//   -global isa-debugcon.iobase=N (the debug console's port)  -bios FILE (instead of -kernel)  -boot reboot-timeout=MS
//   -chardev stdio|file|null,id=ID[,path=P] with -device isa-debugcon[,iobase=N],chardev=ID (the other spelling)
//   -device pvpanic[,ioport=N][,route=R] (QEMU's ISA pvpanic, port 0x505)
//   --deterministic  --log-level verbose|debug|info|warning|error  --log-file PATH
//   --route DEVICE=direct|mailbox  --help  --version
//   -qmp unix:PATH,server[,wait=off] | tcp:[HOST]:PORT,server[,wait=off]   (the control socket: QmpServer)
//   -action reboot=reset|shutdown,shutdown=poweroff|pause,panic=pause|shutdown|exit-failure|none
// Options may be written with one dash or two, as QEMU allows. Everything wrong is a UsageException whose
// message names the option and value and says what is wrong; the host prints it as one line and exits 2.
using ActorVmm.Actors;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Machine;
using Serilog.Events;

namespace ActorVmm.Host;

/// <summary>Bad command-line input; the message names the option (without the "actorvmm: " prefix).</summary>
public sealed class UsageException(string message) : Exception(message);

public enum CommandKind
{
    Run,
    Help,
    Version,
    /// <summary>actorvmm accel-info: which accelerators this host can use, their irqchip modes, and why not.</summary>
    AccelInfo,
}

/// <summary>Host settings that are not part of the machine.</summary>
public sealed record HostOptions
{
    public LogEventLevel LogLevel { get; init; } = LogEventLevel.Warning;

    /// <summary>True when --log-level was given (then Akka logs at that level too; otherwise Akka stays at Warning).</summary>
    public bool LogLevelExplicit { get; init; }

    public string? LogFile { get; init; }

    /// <summary>The control socket (-qmp), or null for none.</summary>
    public QmpEndpoint? Qmp { get; init; }

    /// <summary>What guest power-off and panic do (-action shutdown=, panic=; reboot= is MachineConfig.NoReboot).</summary>
    public VmActions Actions { get; init; } = VmActions.Default;
}

public sealed record ParsedCommand(CommandKind Kind, MachineConfig? Config = null, HostOptions? Host = null);

public static class CommandLine
{
    private static readonly HashSet<string> Flags = ["nographic", "no-reboot", "deterministic", "help", "h", "version"];

    private static readonly HashSet<string> WithArgument =
        ["accel", "machine", "M", "m", "smp", "kernel", "append", "initrd", "serial", "display", "monitor", "device",
         "debugcon", "bios", "boot", "global", "chardev", "log-level", "log-file", "route", "linux-boot", "qmp", "action"];

    public static ParsedCommand Parse(IReadOnlyList<string> args)
    {
        int i = 0;
        if (args.Count > 0 && args[0] == "run") i = 1;
        if (args.Count > 0 && args[0] == "accel-info")
            return args.Count == 1 ? new ParsedCommand(CommandKind.AccelInfo) : throw new UsageException("accel-info: takes no arguments");

        var config = new MachineConfig();
        var host = new HostOptions();
        List<CharBackend?>? serials = null;
        var routes = new Dictionary<string, Route>();
        var chardevs = new Dictionary<string, CharBackend?>();
        (string What, string Value)? debugconDevice = null;

        for (; i < args.Count; i++)
        {
            string arg = args[i];
            if (arg.Length < 2 || arg[0] != '-')
                throw new UsageException($"{arg}: unexpected argument (options start with '-'; see --help)");
            string name = arg.StartsWith("--", StringComparison.Ordinal) ? arg[2..] : arg[1..];
            string? inlineValue = null;
            int eq = name.IndexOf('=', StringComparison.Ordinal);
            if (arg.StartsWith("--", StringComparison.Ordinal) && eq > 0)
            {
                inlineValue = name[(eq + 1)..];
                name = name[..eq];
            }
            string shown = arg.StartsWith("--", StringComparison.Ordinal) ? $"--{name}" : $"-{name}";

            if (Flags.Contains(name))
            {
                if (inlineValue is not null) throw new UsageException($"{shown}: takes no value");
                switch (name)
                {
                    case "help" or "h": return new ParsedCommand(CommandKind.Help);
                    case "version": return new ParsedCommand(CommandKind.Version);
                    case "nographic": break; // serial on stdio is already the default
                    case "no-reboot": config = config with { NoReboot = true }; break;
                    case "deterministic": config = config with { Deterministic = true }; break;
                }
                continue;
            }
            if (!WithArgument.Contains(name)) throw new UsageException($"{arg}: unknown option (see --help)");
            string value;
            if (inlineValue is not null) value = inlineValue;
            else if (i + 1 < args.Count) value = args[++i];
            else throw new UsageException($"{shown}: missing argument");
            string what = $"{shown} {value}";

            switch (name)
            {
                case "accel":
                    config = config with { Accelerator = ParseAccel(what, value) };
                    break;
                case "machine" or "M":
                    config = ParseMachine(what, value, config);
                    break;
                case "m":
                    config = config with { RamBytes = ParseMemory(what, value) };
                    break;
                case "smp":
                    config = config with { VcpuCount = ParseSmp(what, value) };
                    break;
                case "kernel":
                    if (value.Length == 0) throw new UsageException($"{shown}: empty path");
                    config = config with { KernelPath = value };
                    break;
                case "append":
                    if (value.Contains('\0', StringComparison.Ordinal)) throw new UsageException($"{shown}: the command line contains a NUL character");
                    config = config with { Append = value };
                    break;
                case "initrd":
                    config = config with { Modules = ParseModules(what, value) };
                    break;
                case "serial":
                    serials ??= [];
                    if (serials.Count == MachineConfig.MaxSerialPorts)
                        throw new UsageException($"{what}: too many serial ports (at most {MachineConfig.MaxSerialPorts}, COM1-COM4)");
                    serials.Add(ParseCharBackend(what, value, "serial backend"));
                    break;
                case "debugcon":
                    config = config with { DebugCon = ParseCharBackend(what, value, "debugcon backend") };
                    break;
                case "display":
                    if (value != "none") throw new UsageException($"{what}: no graphical display in this VMM (use -display none)");
                    break;
                case "monitor":
                    if (value != "none") throw new UsageException($"{what}: the QEMU monitor is not supported (use -monitor none)");
                    break;
                case "chardev":
                    var (id, backend) = ParseChardev(what, value);
                    if (!chardevs.TryAdd(id, backend)) throw new UsageException($"{what}: chardev id '{id}' is already in use");
                    break;
                case "device" when DeviceType(value) == "pvpanic":
                    if (config.PvPanicPort is not null) throw new UsageException($"{what}: pvpanic given twice");
                    config = config with { PvPanicPort = ParsePvPanic(what, value, routes) };
                    break;
                case "device" when DeviceType(value) == "isa-debugcon":
                    if (debugconDevice is not null) throw new UsageException($"{what}: isa-debugcon given twice");
                    debugconDevice = (what, value); // its chardev may come later on the command line
                    break;
                case "device":
                    if (DeviceType(value) != "isa-debug-exit")
                    {
                        var (routed, deviceRoute) = ParseDeviceRoute(what, value);
                        routes[routed] = deviceRoute;
                        break;
                    }
                    if (config.DebugExit is not null) throw new UsageException($"{what}: isa-debug-exit given twice");
                    config = config with { DebugExit = ParseDevice(what, value, routes) };
                    break;
                case "bios":
                    if (value.Length == 0) throw new UsageException($"{shown}: empty path");
                    config = config with { BiosPath = value };
                    break;
                case "boot":
                    config = ParseBoot(what, value, config);
                    break;
                case "global":
                    config = ParseGlobal(what, value, config);
                    break;
                case "log-level":
                    host = host with { LogLevel = ParseLogLevel(what, value), LogLevelExplicit = true };
                    break;
                case "log-file":
                    if (value.Length == 0) throw new UsageException($"{shown}: empty path");
                    host = host with { LogFile = value };
                    break;
                case "linux-boot":
                    config = config with
                    {
                        LinuxBoot = value switch
                        {
                            "auto" => LinuxBootMode.Auto,
                            "pvh" => LinuxBootMode.Pvh,
                            "bzimage" => LinuxBootMode.BzImage,
                            _ => throw new UsageException($"{what}: must be auto, pvh or bzimage"),
                        },
                    };
                    break;
                case "route":
                    var (dev, route) = ParseRoute(what, value);
                    routes[dev] = route;
                    break;
                case "qmp":
                    host = host with { Qmp = ParseQmp(what, value) };
                    break;
                case "action":
                    (config, host) = ParseAction(what, value, config, host);
                    break;
            }
        }

        if (serials is not null) config = config with { SerialPorts = serials };
        if (debugconDevice is { } dd) config = ParseDebugconDevice(dd.What, dd.Value, chardevs, config);
        if (routes.Count > 0) config = config with { RouteOverrides = routes };
        if (string.IsNullOrEmpty(config.KernelPath) && string.IsNullOrEmpty(config.BiosPath))
            throw new UsageException("no kernel given (use -kernel PATH, or -bios FILE to boot firmware)");
        // Which devices exist in kernel-irqchip=on depends on the accelerator's kernel (route overrides name them):
        // its own set when -accel names it; for auto, KVM's, which leaves the most devices to userspace (HostMain
        // checks again with the accelerator it picked).
        config = config with
        {
            KernelPlatform = config.Accelerator switch
            {
                "kvm" or "auto" => KernelPlatform.Kvm,
                "vmm" => KernelPlatform.Vmm,
                _ => KernelPlatform.Soft,
            },
        };
        var errors = config.Validate();
        if (errors.Count > 0) throw new UsageException(errors[0]);
        return new ParsedCommand(CommandKind.Run, config, host);
    }

    private static string ParseAccel(string what, string value)
    {
        var props = SplitProps(what, value);
        string? accel = null;
        foreach (var (k, v) in props)
        {
            if (k is null || k == "accel") accel = v;
            else throw new UsageException($"{what}: unknown property '{k}'");
        }
        return AcceleratorName(what, accel);
    }

    /// <summary>Maps QEMU's accelerator names onto ours: tcg is the software CPU, bhyve (the seed's name) is vmm; auto is chosen at start.</summary>
    private static string AcceleratorName(string what, string? accel) => accel switch
    {
        "soft" or "tcg" => "soft",
        "auto" or "kvm" or "vmm" => accel,
        "bhyve" => "vmm", // the seed project's name for the vmm(4) accelerator
        null or "" => throw new UsageException($"{what}: no accelerator named (use -accel soft)"),
        _ => throw new UsageException($"{what}: unknown accelerator '{accel}' (available: soft, vmm, kvm, auto; tcg and bhyve as aliases)"),
    };

    private static MachineConfig ParseMachine(string what, string value, MachineConfig config)
    {
        foreach (var (k, v) in SplitProps(what, value))
        {
            switch (k)
            {
                case null or "type":
                    if (v != "pc") throw new UsageException($"{what}: machine type '{v}' is not supported (supported: pc)");
                    break;
                case "kernel-irqchip":
                    config = config with
                    {
                        Irqchip = v switch
                        {
                            "on" => IrqchipMode.On,
                            "split" => IrqchipMode.Split,
                            "off" => IrqchipMode.Off,
                            _ => throw new UsageException($"{what}: kernel-irqchip must be on, split or off"),
                        },
                    };
                    break;
                case "accel":
                    config = config with { Accelerator = AcceleratorName(what, v) };
                    break;
                default:
                    throw new UsageException($"{what}: unknown machine property '{k}'");
            }
        }
        return config;
    }

    /// <summary>QEMU's -m: a size with an optional K/M/G/T/P/E (or B) suffix, plain numbers in MiB; or size=SIZE.</summary>
    public static ulong ParseMemory(string what, string value)
    {
        string? size = null;
        foreach (var (k, v) in SplitProps(what, value))
        {
            if (k is null or "size") size = v;
            else throw new UsageException($"{what}: unsupported memory property '{k}' (only size=)");
        }
        if (string.IsNullOrEmpty(size)) throw new UsageException($"{what}: no size given (use e.g. 512, 512M or 2G)");
        ulong multiplier = MachineConfig.MiB;
        string digits = size;
        char last = char.ToUpperInvariant(size[^1]);
        int shift = "BKMGTPE".IndexOf(last, StringComparison.Ordinal);
        if (shift >= 0)
        {
            multiplier = last == 'B' ? 1 : 1UL << (10 * shift);
            digits = size[..^1];
        }
        if (digits.Length == 0 || !digits.All(c => char.IsAsciiDigit(c) || c == '.') || !decimal.TryParse(digits, System.Globalization.NumberStyles.AllowDecimalPoint, System.Globalization.CultureInfo.InvariantCulture, out var number))
            throw new UsageException($"{what}: not a size (use e.g. 512, 512M or 2G)");
        decimal bytes;
        try
        {
            bytes = number * multiplier;
        }
        catch (OverflowException)
        {
            throw new UsageException($"{what}: memory size is more than the {MachineConfig.FormatSize(MachineConfig.MaxRamBytes)} this machine supports");
        }
        if (bytes < MachineConfig.MinRamBytes) throw new UsageException($"{what}: memory size must be at least 1 MiB");
        if (bytes > MachineConfig.MaxRamBytes)
            throw new UsageException($"{what}: memory size is more than the {MachineConfig.FormatSize(MachineConfig.MaxRamBytes)} this machine supports");
        if (bytes != decimal.Truncate(bytes)) throw new UsageException($"{what}: memory size is not a whole number of bytes");
        ulong result = (ulong)bytes;
        // QEMU rounds RAM up to whole pages; so do we.
        return (result + 4095) & ~4095UL;
    }

    /// <summary>
    /// QEMU's -smp: a count, or cpus/sockets/dies/clusters/cores/threads/maxcpus. Missing topology values are
    /// filled in as QEMU 7.2's pc machine does (threads, dies and clusters default to 1; of sockets and cores the
    /// missing one is what makes the product maxcpus, cores first); the product of the topology must equal maxcpus
    /// and cpus must not exceed it. CPU hot-plug does not exist here, so maxcpus must equal cpus.
    /// </summary>
    private static int ParseSmp(string what, string value)
    {
        int? cpus = null, maxcpus = null, sockets = null, dies = null, clusters = null, cores = null, threads = null;
        foreach (var (k, v) in SplitProps(what, value))
        {
            if (!int.TryParse(v, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n))
                throw new UsageException($"{what}: '{v}' is not a number");
            if (n == 0) throw new UsageException($"{what}: {k ?? "cpus"}=0: CPU topology values must be greater than zero");
            switch (k)
            {
                case null or "cpus": cpus = n; break;
                case "maxcpus": maxcpus = n; break;
                case "sockets": sockets = n; break;
                case "dies": dies = n; break;
                case "clusters": clusters = n; break;
                case "cores": cores = n; break;
                case "threads": threads = n; break;
                default: throw new UsageException($"{what}: unknown -smp property '{k}' (cpus, sockets, dies, clusters, cores, threads, maxcpus)");
            }
        }
        int d = dies ?? 1, cl = clusters ?? 1, t = threads ?? 1;
        long fixedPart = (long)d * cl * t;
        if (sockets is null && cores is null && threads is null && dies is null && clusters is null)
        {
            int n = maxcpus ?? cpus ?? 1;
            sockets = 1;
            cores = n;
        }
        else
        {
            long total = maxcpus ?? cpus ?? 0;
            if (cores is null)
            {
                long s = sockets ?? 1;
                cores = total == 0 ? 1 : (int)Math.Max(1, total / (s * fixedPart));
            }
            if (sockets is null) sockets = total == 0 ? 1 : (int)Math.Max(1, total / ((long)cores.Value * fixedPart));
        }
        long product = (long)sockets.Value * fixedPart * cores.Value;
        string topology = $"sockets ({sockets}) * dies ({d}) * clusters ({cl}) * cores ({cores}) * threads ({t})";
        long max = maxcpus ?? cpus ?? product; // QEMU: maxcpus defaults to cpus, else to the product
        if (product != max) throw new UsageException($"{what}: inconsistent CPU topology: {topology} = {product}, but maxcpus is {max}");
        long count = cpus ?? max;
        if (count > max) throw new UsageException($"{what}: inconsistent CPU topology: {count} CPUs but at most maxcpus = {max} ({topology})");
        if (count != max) throw new UsageException($"{what}: maxcpus {max} is more than the {count} CPUs: CPU hot-plug is not supported, so maxcpus must equal cpus");
        if (count > MachineConfig.MaxVcpus) throw new UsageException($"{what}: {count} vCPUs is more than the {MachineConfig.MaxVcpus} this machine supports");
        return (int)count;
    }

    /// <summary>QEMU's multiboot module list: comma-separated, ",," stands for a literal comma; each entry is "path [args]".</summary>
    public static IReadOnlyList<string> ParseModules(string what, string value)
    {
        var modules = new List<string>();
        var current = new System.Text.StringBuilder();
        for (int i = 0; i < value.Length; i++)
        {
            if (value[i] == ',')
            {
                if (i + 1 < value.Length && value[i + 1] == ',')
                {
                    current.Append(',');
                    i++;
                    continue;
                }
                modules.Add(current.ToString());
                current.Clear();
                continue;
            }
            current.Append(value[i]);
        }
        modules.Add(current.ToString());
        foreach (var m in modules)
        {
            if (string.IsNullOrWhiteSpace(MachineConfig.ModulePath(m))) throw new UsageException($"{what}: empty module name in the list");
        }
        return modules;
    }

    private static CharBackend? ParseCharBackend(string what, string value, string kind)
    {
        if (value is "stdio" or "mon:stdio") return CharBackend.Stdio;
        if (value == "null") return CharBackend.None;
        if (value == "none") return null;
        if (value.StartsWith("file:", StringComparison.Ordinal))
        {
            string path = value[5..];
            if (path.Length == 0) throw new UsageException($"{what}: file: needs a path");
            return CharBackend.ToFile(path);
        }
        throw new UsageException($"{what}: unsupported {kind} (use stdio, file:PATH, null or none)");
    }

    /// <summary>QEMU's -boot: only reboot-timeout=MS (the firmware's wait after no bootable device; -1 = never) and order=/menu= as QEMU's defaults.</summary>
    private static MachineConfig ParseBoot(string what, string value, MachineConfig config)
    {
        foreach (var (k, v) in SplitProps(what, value))
        {
            switch (k)
            {
                case "reboot-timeout":
                    bool neg = v.StartsWith('-');
                    int ms = neg ? -ParseInteger(what, k, v[1..]) : ParseInteger(what, k, v);
                    if (ms is < -1 or > 0xffff) throw new UsageException($"{what}: reboot-timeout must be -1 (never) or 0-65535 ms");
                    config = config with { RebootTimeoutMs = ms };
                    break;
                case "menu" when v == "off":
                    break;
                default:
                    throw new UsageException($"{what}: unsupported -boot property '{k ?? v}' (supported: reboot-timeout=MS, menu=off)");
            }
        }
        return config;
    }

    /// <summary>QEMU's -global DRIVER.PROP=VALUE: only isa-debugcon.iobase (the debug console's port).</summary>
    private static MachineConfig ParseGlobal(string what, string value, MachineConfig config)
    {
        int eq = value.IndexOf('=', StringComparison.Ordinal);
        string key = eq < 0 ? value : value[..eq];
        if (key != "isa-debugcon.iobase" || eq < 0)
            throw new UsageException($"{what}: unsupported -global (supported: isa-debugcon.iobase=PORT)");
        int port = ParseInteger(what, "iobase", value[(eq + 1)..]);
        if (port is < 0 or > 0xffff) throw new UsageException($"{what}: iobase 0x{port:x} is outside the port space 0-0xffff");
        return config with { DebugConPort = (ushort)port };
    }

    /// <summary>QEMU's -chardev BACKEND,id=ID[,path=PATH] for the backends a debug console can use: stdio, file, null.</summary>
    private static (string Id, CharBackend? Backend) ParseChardev(string what, string value)
    {
        string? kind = null, id = null, path = null;
        foreach (var (k, v) in SplitProps(what, value))
        {
            switch (k)
            {
                case null or "backend": kind = v; break;
                case "id": id = v; break;
                case "path": path = v; break;
                default: throw new UsageException($"{what}: unsupported chardev property '{k}' (supported: id, path)");
            }
        }
        if (string.IsNullOrEmpty(id)) throw new UsageException($"{what}: a chardev needs an id=");
        CharBackend backend = kind switch
        {
            "stdio" => CharBackend.Stdio,
            "null" => CharBackend.None,
            "file" when !string.IsNullOrEmpty(path) => CharBackend.ToFile(path),
            "file" => throw new UsageException($"{what}: a file chardev needs path="),
            _ => throw new UsageException($"{what}: unsupported chardev backend '{kind}' (use stdio, file or null)"),
        };
        return (id, backend);
    }

    /// <summary>QEMU's -device isa-debugcon[,iobase=N],chardev=ID: the debug console at a port, output to a -chardev.</summary>
    private static MachineConfig ParseDebugconDevice(string what, string value, Dictionary<string, CharBackend?> chardevs, MachineConfig config)
    {
        int ioBase = DebugConDefaultPort;
        string? chardev = null;
        foreach (var (k, v) in SplitProps(what, value))
        {
            switch (k)
            {
                case null or "driver": break;
                case "iobase": ioBase = ParseInteger(what, "iobase", v); break;
                case "chardev": chardev = v; break;
                default: throw new UsageException($"{what}: isa-debugcon has no property '{k}' (it has iobase and chardev)");
            }
        }
        if (ioBase is < 0 or > 0xffff) throw new UsageException($"{what}: iobase 0x{ioBase:x} is outside the port space 0-0xffff");
        if (chardev is null) throw new UsageException($"{what}: isa-debugcon needs chardev=ID (a -chardev)");
        if (!chardevs.TryGetValue(chardev, out var backend)) throw new UsageException($"{what}: no -chardev with id '{chardev}'");
        return config with { DebugCon = backend, DebugConPort = (ushort)ioBase };
    }

    private const int DebugConDefaultPort = 0xe9;

    private static string DeviceType(string value)
    {
        int comma = value.IndexOf(',', StringComparison.Ordinal);
        string first = comma < 0 ? value : value[..comma];
        return first.StartsWith("driver=", StringComparison.Ordinal) ? first[7..] : first;
    }

    /// <summary>
    /// -device NAME,route=direct|mailbox: the route of a device the machine already has (by its name: COM1, pit,
    /// hpet, lapic0, ...); the name is checked against the machine once the configuration is complete.
    /// </summary>
    private static (string Device, Route Route) ParseDeviceRoute(string what, string value)
    {
        string? device = null;
        Route? route = null;
        foreach (var (k, v) in SplitProps(what, value))
        {
            switch (k)
            {
                case null or "driver": device = v; break;
                case "route": route = ParseRouteValue(what, v); break;
                default: throw new UsageException($"{what}: device '{device}' has no property '{k}' (only route= can be set on it)");
            }
        }
        if (string.IsNullOrEmpty(device)) throw new UsageException($"{what}: no device named");
        if (route is null) throw new UsageException($"{what}: device '{device}' cannot be added; only its route= can be set (supported devices to add: isa-debug-exit, isa-debugcon, pvpanic)");
        return (device, route.Value);
    }

    private static Route ParseRouteValue(string what, string v) => v switch
    {
        "direct" => Route.Direct,
        "mailbox" => Route.Mailbox,
        _ => throw new UsageException($"{what}: route must be direct or mailbox"),
    };

    private static DebugExitConfig ParseDevice(string what, string value, Dictionary<string, Route> routes)
    {
        var props = SplitProps(what, value);
        string? driver = null;
        int ioBase = 0x501, ioSize = 2;
        foreach (var (k, v) in props)
        {
            switch (k)
            {
                case null or "driver": driver = v; break;
                case "iobase": ioBase = ParseInteger(what, "iobase", v); break;
                case "iosize": ioSize = ParseInteger(what, "iosize", v); break;
                case "route" when driver == "isa-debug-exit": routes[PcMachineBuilder.DebugExitName] = ParseRouteValue(what, v); break;
                default:
                    if (driver == "isa-debug-exit") throw new UsageException($"{what}: isa-debug-exit has no property '{k}' (it has iobase, iosize and route)");
                    break;
            }
        }
        if (driver != "isa-debug-exit") throw new UsageException($"{what}: device '{driver}' is not supported (supported: isa-debug-exit)");
        if (ioBase is < 0 or > 0xffff) throw new UsageException($"{what}: iobase 0x{ioBase:x} is outside the port space 0-0xffff");
        if (ioSize < 1 || ioBase + ioSize > 0x10000) throw new UsageException($"{what}: iosize {ioSize} at iobase 0x{ioBase:x} does not fit the port space 0-0xffff");
        return new DebugExitConfig(ioBase, ioSize);
    }

    /// <summary>-device pvpanic[,ioport=N][,route=R]: QEMU's ISA pvpanic device, at port 0x505 unless ioport= moves it.</summary>
    private static ushort ParsePvPanic(string what, string value, Dictionary<string, Route> routes)
    {
        int port = PvPanic.DefaultPort;
        foreach (var (k, v) in SplitProps(what, value))
        {
            switch (k)
            {
                case null or "driver": break;
                case "ioport": port = ParseInteger(what, "ioport", v); break;
                case "route": routes[PcMachineBuilder.PvPanicName] = ParseRouteValue(what, v); break;
                default: throw new UsageException($"{what}: pvpanic has no property '{k}' (it has ioport and route)");
            }
        }
        if (port is < 0 or > 0xffff) throw new UsageException($"{what}: ioport 0x{port:x} is outside the port space 0-0xffff");
        return (ushort)port;
    }

    /// <summary>A non-negative integer in decimal or 0x-hex, as QEMU's property parser takes it.</summary>
    private static int ParseInteger(string what, string prop, string v)
    {
        bool hex = v.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
        string digits = hex ? v[2..] : v;
        bool ok = hex
            ? long.TryParse(digits, System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out long n)
            : long.TryParse(digits, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out n);
        if (!ok || digits.Length == 0) throw new UsageException($"{what}: {prop} '{v}' is not a number (decimal or 0x-hex)");
        return n > int.MaxValue ? int.MaxValue : (int)n;
    }

    private static LogEventLevel ParseLogLevel(string what, string value) => value.ToLowerInvariant() switch
    {
        "verbose" or "trace" => LogEventLevel.Verbose,
        "debug" => LogEventLevel.Debug,
        "info" or "information" => LogEventLevel.Information,
        "warn" or "warning" => LogEventLevel.Warning,
        "error" => LogEventLevel.Error,
        "fatal" => LogEventLevel.Fatal,
        _ => throw new UsageException($"{what}: unknown log level (use verbose, debug, info, warning, error or fatal)"),
    };

    private static (string Device, Route Route) ParseRoute(string what, string value)
    {
        int eq = value.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0) throw new UsageException($"{what}: expected DEVICE=direct|mailbox");
        string device = value[..eq];
        var route = value[(eq + 1)..] switch
        {
            "direct" => Route.Direct,
            "mailbox" => Route.Mailbox,
            _ => throw new UsageException($"{what}: route must be direct or mailbox"),
        };
        return (device, route);
    }

    /// <summary>QEMU's -qmp for a server socket: unix:PATH or tcp:[HOST]:PORT, then server (required) and wait=on|off (or nowait).</summary>
    public static QmpEndpoint ParseQmp(string what, string value)
    {
        var props = SplitProps(what, value);
        if (props.Count == 0 || props[0].Key is not null) throw new UsageException($"{what}: expected unix:PATH,server or tcp:HOST:PORT,server");
        string address = props[0].Value;
        if (!address.StartsWith("unix:", StringComparison.Ordinal) && !address.StartsWith("tcp:", StringComparison.Ordinal))
            throw new UsageException($"{what}: unsupported address (use unix:PATH or tcp:HOST:PORT)");
        bool server = false, wait = true;
        foreach (var (k, v) in props.Skip(1))
        {
            switch (k, v)
            {
                case (null, "server"): server = true; break;
                case (null, "nowait"): wait = false; break;
                case ("server", "on" or "yes" or "true"): server = true; break;
                case ("server", "off" or "no" or "false"): server = false; break;
                case ("wait", "on" or "yes" or "true"): wait = true; break;
                case ("wait", "off" or "no" or "false"): wait = false; break;
                case ("server" or "wait", _): throw new UsageException($"{what}: {k} must be on or off");
                default: throw new UsageException($"{what}: unknown property '{k ?? v}' (server, wait)");
            }
        }
        if (!server) throw new UsageException($"{what}: only a listening socket is supported (add ,server)");
        if (address.StartsWith("unix:", StringComparison.Ordinal))
        {
            string path = address[5..];
            if (path.Length == 0) throw new UsageException($"{what}: unix: needs a path");
            if (System.Text.Encoding.UTF8.GetByteCount(path) > 107) throw new UsageException($"{what}: the socket path is longer than the 107 bytes a unix socket address holds");
            return new QmpEndpoint(path, null, 0, wait);
        }
        if (address.StartsWith("tcp:", StringComparison.Ordinal))
        {
            string hostPort = address[4..];
            int colon = hostPort.LastIndexOf(':');
            if (colon < 0) throw new UsageException($"{what}: tcp: needs HOST:PORT (HOST may be empty)");
            string h = hostPort[..colon];
            if (!int.TryParse(hostPort[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int port) || port > 65535)
                throw new UsageException($"{what}: '{hostPort[(colon + 1)..]}' is not a port number (0-65535)");
            return new QmpEndpoint(null, h, port, wait);
        }
        throw new UsageException($"{what}: unsupported address (use unix:PATH or tcp:HOST:PORT)");
    }

    /// <summary>QEMU's -action: reboot=reset|shutdown (shutdown is -no-reboot), shutdown=poweroff|pause, panic=pause|shutdown|exit-failure|none.</summary>
    private static (MachineConfig, HostOptions) ParseAction(string what, string value, MachineConfig config, HostOptions host)
    {
        foreach (var (k, v) in SplitProps(what, value))
        {
            switch (k)
            {
                case "reboot":
                    config = config with
                    {
                        NoReboot = v switch
                        {
                            "reset" => false,
                            "shutdown" => true,
                            _ => throw new UsageException($"{what}: reboot must be reset or shutdown"),
                        },
                    };
                    break;
                case "shutdown":
                    host = host with
                    {
                        Actions = host.Actions with
                        {
                            PauseOnShutdown = v switch
                            {
                                "poweroff" => false,
                                "pause" => true,
                                _ => throw new UsageException($"{what}: shutdown must be poweroff or pause"),
                            },
                        },
                    };
                    break;
                case "panic":
                    host = host with
                    {
                        Actions = host.Actions with
                        {
                            Panic = v switch
                            {
                                "pause" => PanicAction.Pause,
                                "shutdown" => PanicAction.Shutdown,
                                "exit-failure" => PanicAction.ExitFailure,
                                "none" => PanicAction.None,
                                _ => throw new UsageException($"{what}: panic must be pause, shutdown, exit-failure or none"),
                            },
                        },
                    };
                    break;
                case "watchdog":
                    throw new UsageException($"{what}: this machine has no watchdog device");
                default:
                    throw new UsageException($"{what}: unknown action '{k ?? v}' (reboot, shutdown, panic)");
            }
        }
        return (config, host);
    }

    /// <summary>QEMU's "a,b=c,d=e" option syntax: bare values have a null key; ",," is a literal comma.</summary>
    private static List<(string? Key, string Value)> SplitProps(string what, string value)
    {
        var parts = ParseModules(what, value).ToList();
        var result = new List<(string?, string)>();
        foreach (var p in parts)
        {
            int eq = p.IndexOf('=', StringComparison.Ordinal);
            if (eq == 0) throw new UsageException($"{what}: property without a name");
            result.Add(eq < 0 ? (null, p) : (p[..eq], p[(eq + 1)..]));
        }
        return result;
    }

    public const string Usage = """
        usage: actorvmm [run] [options]
               actorvmm accel-info      which accelerators this host can use, and why not
        Runs an x86 guest. QEMU's spelling of these options is accepted:
          -accel soft|vmm|kvm|auto      CPU accelerator: soft is the built-in software x86 CPU (tcg is an alias),
                                        vmm is FreeBSD's vmm(4) (bhyve is an alias), kvm is Linux KVM; auto
                                        picks vmm on FreeBSD or kvm on Linux when usable, else soft
          -machine pc[,kernel-irqchip=on|split|off]   machine type and where the irqchip lives: on (default)
                                        in the accelerator; split: LAPIC there, PIC/IOAPIC/timers in device
                                        actors; off: the LAPICs in device actors too
          -m SIZE                       guest RAM: MiB, or with a K/M/G suffix (default 128M, at most 3G)
          -smp N | cpus=N[,sockets=S,cores=C,threads=T,maxcpus=N]
                                        vCPUs (default 1; the soft accelerator takes up to 32). QEMU's
                                        topology rules apply; vCPU 0 boots, the others wait for INIT/SIPI
          -kernel PATH                  kernel: Multiboot v1, Linux bzImage, or ELF with a PVH note
          -bios FILE                    boot BIOS firmware instead (e.g. /usr/share/seabios/bios.bin; not with -kernel)
          -boot reboot-timeout=MS       firmware's wait before rebooting when nothing boots (-1: never, default)
          -append CMDLINE               kernel command line
          -initrd "MOD [ARGS],MOD2"     multiboot modules; for a Linux kernel: the initrd file
          -serial stdio|file:PATH|null|none   COM1 (repeat for COM2-COM4); default stdio
          -nographic, -display none, -monitor none   accepted (no display, no monitor)
          -no-reboot                    a guest reset or triple fault ends the run (= -action reboot=shutdown)
          -action reboot=reset|shutdown,shutdown=poweroff|pause,panic=pause|shutdown|exit-failure|none
                                        what a guest reset, power-off and panic do (shutdown=pause keeps
                                        the VM for a QMP system_reset; a panic is reported by pvpanic)
          -qmp unix:PATH,server[,wait=off] | tcp:[HOST]:PORT,server[,wait=off]
                                        JSON control socket in QMP's style (docs/host.md); with wait=on
                                        (the default) the guest starts once a client has connected
          -device isa-debug-exit[,iobase=0xf4][,iosize=4]   test exit device
          -device pvpanic[,ioport=0x505]   the guest reports panics to the host (-action panic=)
          -device NAME,route=direct|mailbox   how vCPUs reach a device (COM1, pit, hpet, ioapic, lapic0, ...)
          -debugcon stdio|file:PATH|null|none   debug console at port 0xe9
          -global isa-debugcon.iobase=PORT      move the debug console (SeaBIOS writes to 0x402)
          -chardev stdio|file|null,id=ID[,path=P] -device isa-debugcon[,iobase=PORT],chardev=ID   the same
        Options of our own:
          --deterministic               time advances with retired instructions
          --log-level LEVEL             verbose, debug, info, warning (default), error
          --log-file PATH               log to a file instead of stderr
          --route DEVICE=direct|mailbox the same as -device DEVICE,route=...
          --linux-boot auto|pvh|bzimage how a bzImage is entered: pvh extracts the vmlinux on the host and
                                        enters it through PVH; bzimage uses the 64-bit entry (the kernel
                                        decompresses itself); auto (default) is pvh when extraction works
          --help, --version
        Exit status: the isa-debug-exit status ((v << 1) | 1) when the guest uses it; 0 power-off, or reset
        with -no-reboot; 2 bad configuration or boot image; 4 triple fault with -no-reboot; 6 guest halted
        with interrupts disabled; 8 internal error.
        """;
}
