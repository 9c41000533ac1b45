// The actorvmm program: parse the command line, read and check the boot images, open the character
// backends, then start the actor system and the VM actor and wait for the end of the run.
// Exit status (see also ActorVmm.Core.Machine.ExitStatus and docs/exit-status.md):
//   (v << 1) | 1  the guest wrote v to isa-debug-exit (low 8 bits, as the OS keeps them)
//   0             the guest powered off, or reset with -no-reboot; --help, --version
//   2             bad command line, configuration or boot image: one line on stderr, nothing ran
//   4             triple fault with -no-reboot
//   6             the guest halted with interrupts disabled
//   8             internal error in the VMM
// Everything that can be checked before the VM starts is (kernel and modules read and parsed, output
// files opened), so bad input never gets as far as the actor system. Akka logs through Serilog and stays
// at Warning unless --log-level says otherwise, and never writes to stdout, which is the serial console.
// With -qmp the control socket (QmpServer) listens before the VM is built; with wait=on the VM starts once
// a client has connected; at the end its last events (SHUTDOWN) are written before the sockets close.
using System.Diagnostics;
using System.Reflection;
using ActorVmm.Actors;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Machine;
using Akka.Actor;
using Akka.Configuration;
using Serilog;
using Serilog.Events;

namespace ActorVmm.Host;

internal static class HostMain
{
    public static int Run(string[] args) => Run(args, Accelerators.Create);

    /// <param name="accelerators">Creates the accelerator for an -accel name, or null when there is none (tests supply their own).</param>
    internal static int Run(string[] args, Func<string, IAccelerator?> accelerators)
        => Run(args, accelerators, ActorVmm.Native.Sys.HostKernel.Instance);

    /// <param name="accelerators">Creates the accelerator for an -accel name, or null when there is none (tests supply their own).</param>
    /// <param name="hostKernel">The kernel accel-info and -accel auto probe (tests: a stand-in).</param>
    internal static int Run(string[] args, Func<string, IAccelerator?> accelerators, ActorVmm.Native.Sys.IKernelInterface hostKernel)
    {
        var started = Stopwatch.StartNew();
        ParsedCommand command;
        try
        {
            command = CommandLine.Parse(args);
        }
        catch (UsageException e)
        {
            return Fail(e.Message);
        }
        switch (command.Kind)
        {
            case CommandKind.Help:
                Console.Out.Write(CommandLine.Usage);
                return 0;
            case CommandKind.Version:
                Console.Out.WriteLine($"actorvmm {Version}");
                return 0;
            case CommandKind.AccelInfo:
                Console.Out.Write(Accelerators.Describe(hostKernel));
                return 0;
        }
        var config = command.Config!;
        var hostOptions = command.Host!;

        BootImages images;
        CharBackends backends;
        IAccelerator accelerator;
        try
        {
            images = LoadImages(config);
            accelerator = accelerators(config.Accelerator)
                ?? throw new UsageException($"-accel {config.Accelerator}: this accelerator is not part of this build");
            if (config.VcpuCount > accelerator.Capabilities.MaxVcpus)
                throw new UsageException($"-smp {config.VcpuCount}: the {accelerator.Name} accelerator supports at most {accelerator.Capabilities.MaxVcpus} vCPUs");
            // The devices of kernel-irqchip=on are those the chosen accelerator's kernel lacks: check the route
            // overrides against them (-accel auto was checked against the widest set).
            config = config with { KernelPlatform = accelerator.Capabilities.KernelPlatform };
            if (config.Validate() is [var invalid, ..]) throw new UsageException($"-accel {accelerator.Name}: {invalid}");
            backends = new CharBackends(config);
        }
        catch (UsageException e)
        {
            return Fail(e.Message);
        }

        using var logger = CreateLogger(hostOptions);
        Log.Logger = logger;
        if (images.Kernel is { } kernel) logger.Information("kernel {Kernel}: {Format}", config.KernelPath, kernel.Format);
        if (images.Bios is { } bios) logger.Information("BIOS {Bios}: {Size} KiB ROM at 0x{Base:x}", bios.Name, bios.Data.Length / 1024, bios.Base);
        if (config.Accelerator == "auto")
        {
            Accelerators.Create("auto", hostKernel, out string why);
            logger.Information("accelerator: {Why}", why);
        }
        else logger.Information("accelerator: {Name}", accelerator.Name);
        if (images.Note is { } note) logger.Information("{Note}", note);
        try
        {
            return RunVm(config, hostOptions, accelerator, images, backends, started);
        }
        catch (Exception e)
        {
            logger.Fatal(e, "internal error");
            Console.Error.WriteLine($"actorvmm: internal error: {e.GetType().Name}: {e.Message}");
            return ExitStatus.InternalError;
        }
        finally
        {
            backends.Dispose();
        }
    }

    private static int RunVm(MachineConfig config, HostOptions hostOptions, IAccelerator accelerator, BootImages images, CharBackends backends, Stopwatch started)
    {
        using var system = ActorSystem.Create("actorvmm", AkkaConfig(hostOptions));
        var vm = system.ActorOf(VmActor.Props(config, accelerator, images, backends.SinkFor, hostOptions.Actions), "vm");
        Log.Debug("actor system up after {Elapsed} ms", started.ElapsedMilliseconds);
        QmpServer? qmp = null;
        if (hostOptions.Qmp is { } endpoint)
        {
            try
            {
                qmp = QmpServer.Start(endpoint, system, vm, Version);
            }
            catch (UsageException e)
            {
                Console.Error.WriteLine($"actorvmm: {e.Message}");
                system.Terminate().Wait(TimeSpan.FromSeconds(5));
                return ExitStatus.ConfigError;
            }
            if (endpoint.Wait)
            {
                Console.Error.WriteLine($"actorvmm: waiting for a QMP client on {endpoint} (wait=off starts at once)");
                qmp.FirstClient.GetAwaiter().GetResult();
            }
        }

        int stdioPort = -1;
        for (int i = 0; i < config.SerialPorts.Count; i++)
        {
            if (config.SerialPorts[i] is { Kind: CharBackendKind.Stdio })
            {
                stdioPort = i;
                break;
            }
        }
        if (stdioPort >= 0) StdinPump.Start(vm, stdioPort);
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            vm.Tell(VmActor.Quit.Instance, ActorRefs.NoSender);
        };
        Console.CancelKeyPress += onCancel;

        VmActor.VmFinished finished;
        try
        {
            finished = vm.Ask<VmActor.VmFinished>(VmActor.Run.Instance, Timeout.InfiniteTimeSpan).GetAwaiter().GetResult();
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        Log.Information("run ended after {Elapsed} ms: {Reason}, status {Status}: {Detail}", started.ElapsedMilliseconds, finished.Reason, finished.ExitStatus, finished.Detail);
        switch (finished.Reason)
        {
            case VmEndReason.ConfigError:
                Console.Error.WriteLine($"actorvmm: {finished.Detail}");
                break;
            case VmEndReason.InternalError:
                Console.Error.WriteLine($"actorvmm: internal error: {finished.Detail}");
                break;
        }
        qmp?.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(5));
        system.Terminate().Wait(TimeSpan.FromSeconds(5));
        return finished.ExitStatus;
    }

    /// <summary>Reads and parses the kernel and reads the modules or the initrd; every failure names the option and file.</summary>
    internal static BootImages LoadImages(MachineConfig config)
    {
        if (config.BiosPath is { } biosPath)
        {
            try
            {
                return new BootImages(null, []) { Bios = BiosImage.Parse(ReadFile("-bios", biosPath), biosPath) };
            }
            catch (BootImageException e)
            {
                throw new UsageException($"-bios {e.Message}");
            }
        }
        string kernelPath = config.KernelPath!;
        var kernelBytes = ReadFile("-kernel", kernelPath);
        KernelChoice kernel;
        try
        {
            kernel = KernelImages.Parse(kernelBytes, kernelPath, config.LinuxBoot);
        }
        catch (BootImageException e)
        {
            throw new UsageException($"-kernel {kernelPath}: {e.Message}");
        }
        if (kernel.Image is MultibootImage)
        {
            var modules = new List<(string Name, ReadOnlyMemory<byte> Data)>();
            foreach (var m in config.Modules)
                modules.Add((m, ReadFile("-initrd", MachineConfig.ModulePath(m))));
            return new BootImages(kernel.Image, modules) { Note = kernel.Note };
        }
        // A Linux kernel takes one initrd file, named by the whole -initrd value (as QEMU does).
        if (config.Modules.Count > 1)
            throw new UsageException($"-initrd: a Linux kernel takes one initrd file, not a list of {config.Modules.Count} ({kernel.Image.Format})");
        (string, ReadOnlyMemory<byte>)? initrd = null;
        if (config.Modules.Count == 1)
        {
            string path = config.Modules[0];
            initrd = (path, ReadFile("-initrd", path));
        }
        return new BootImages(kernel.Image, []) { Initrd = initrd, Note = kernel.Note };
    }

    private static byte[] ReadFile(string option, string path)
    {
        try
        {
            if (Directory.Exists(path)) throw new UsageException($"{option} {path}: is a directory, not a file");
            return File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            throw new UsageException($"{option} {path}: no such file");
        }
        catch (DirectoryNotFoundException)
        {
            throw new UsageException($"{option} {path}: no such file (a directory on the path does not exist)");
        }
        catch (UnauthorizedAccessException)
        {
            throw new UsageException($"{option} {path}: permission denied");
        }
        catch (IOException e)
        {
            throw new UsageException($"{option} {path}: cannot read: {e.Message}");
        }
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine($"actorvmm: {message}");
        return ExitStatus.ConfigError;
    }

    private static string Version
        => typeof(HostMain).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    private static Serilog.Core.Logger CreateLogger(HostOptions options)
    {
        var cfg = new LoggerConfiguration().MinimumLevel.Is(options.LogLevel);
        const string template = "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {Message:lj}{NewLine}{Exception}";
        cfg = options.LogFile is { } file
            ? cfg.WriteTo.File(file, outputTemplate: template)
            : cfg.WriteTo.Console(outputTemplate: template, standardErrorFromLevel: LogEventLevel.Verbose);
        return cfg.CreateLogger();
    }

    private static Config AkkaConfig(HostOptions options)
    {
        string level = !options.LogLevelExplicit ? "WARNING" : options.LogLevel switch
        {
            LogEventLevel.Verbose or LogEventLevel.Debug => "DEBUG",
            LogEventLevel.Information => "INFO",
            LogEventLevel.Warning => "WARNING",
            _ => "ERROR",
        };
        var hocon = $$"""
            akka {
              loglevel = {{level}}
              stdout-loglevel = OFF
              loggers = ["Akka.Logger.Serilog.SerilogLogger, Akka.Logger.Serilog"]
              logger-formatter = "Akka.Logger.Serilog.SerilogLogMessageFormatter, Akka.Logger.Serilog"
              log-dead-letters = off
              log-dead-letters-during-shutdown = off
              log-config-on-start = off
              actor.debug.unhandled = off
              coordinated-shutdown.run-by-clr-shutdown-hook = off
            }
            """;
        return ConfigurationFactory.ParseString(hocon).WithFallback(ActorVmmConfig.Config);
    }
}
