// The VM actor (DESIGN.md §6): one per VM, the error kernel. It owns the accelerator VM and everything
// built on it, and is the only place that decides what a guest's stop means.
// Build (StartMachine): create the accelerator VM (guest memory comes with it), load the kernel (multiboot
// kernel and modules, or Linux kernel and initrd, with MP and ACPI tables for both; or, with -bios, map the firmware
// ROM and its PAM shadow window and start at the reset vector), create the device models (PcMachineBuilder) with one
// DeviceActor each and the endpoint for its route (Direct: DirectEndpoint sharing the actor's lock; Mailbox:
// MailboxEndpoint), create the vCPUs (vCPU 0 with the loader's entry state; the others wait for INIT/SIPI inside the
// accelerator), and start one VcpuActor each on its own thread. Pause, resume and teardown address every vCPU;
// teardown waits for all of them.
// In kernel-irqchip=split/off the interrupt controllers and timers are among those device actors; their deadlines
// come from a TimerService (IrqchipActors).
// Ends and what they mean (exit statuses in ActorVmm.Core.Machine.ExitStatus):
//   guest isa-debug-exit write          → finish DebugExit, the device's status
//   guest power-off                     → finish PowerOff, 0
//   guest reset, vCPU Reset             → reboot; with no-reboot finish Reset, 0 (as QEMU)
//   vCPU Shutdown (triple fault)        → reboot; with no-reboot finish TripleFault, 4
//   vCPU Halted (IF = 0)                → finish Halted, 6
//   vCPU Error/Debug                    → finish InternalError, 8
//   guest panic (pvpanic)               → -action panic=: shutdown (default) as a power-off with reason
//                                         guest-panic, 0; pause → state GuestPanicked; exit-failure → finish
//                                         GuestPanic, 1; none → nothing (VmActor.Control.cs)
//   Quit from the host                  → finish HostQuit, 0
//   SystemReset from the host           → as a guest reset
//   a child stopped by supervision      → VM restart; the 4th within 60 s → finish InternalError, 8
// With -action shutdown=pause the ends of a guest power-off (and of a no-reboot reset or triple fault) become
// the Shutdown state instead (VmActor.Control.cs). A vCPU's end is acted on once the Mailbox-route devices
// have drained, so writes it posted first (a debug-exit write before HLT) take effect first.
// Events (STOP, RESUME, RESET, SHUTDOWN, POWERDOWN), fault commands, power button, vCPU list: VmActor.Control.cs.
// Pause/Resume from the host pause and resume every vCPU between slices.
// Reboot re-creates the whole machine from the configuration (new accelerator VM, kernel reloaded, fresh
// device models). Teardown order: kick and stop the vCPU actors, wait until they have terminated (so no
// thread is inside IVcpu.Run), stop the device actors, then dispose the VM and then the firmware ROM. Everything a machine produces
// carries its generation, so late messages from a torn-down machine are ignored. A machine that dies soon
// after it started is rebuilt with back-off (5 ms doubling to 1 s), so a guest stuck in a triple-fault
// loop costs little host CPU; Quit still ends the run at once.
// Whoever sends Run gets VmFinished when the run ends (at once if it already has).
using Akka.Actor;
using Akka.Event;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Machine;
using ActorVmm.Core.Memory;

namespace ActorVmm.Actors;

/// <summary>
/// The kernel and its modules (multiboot) or initrd (Linux), or the BIOS firmware (then Kernel is null), read and
/// parsed by the host before the VM exists.
/// </summary>
public sealed record BootImages(IKernelImage? Kernel, IReadOnlyList<(string Name, ReadOnlyMemory<byte> Data)> Modules)
{
    /// <summary>BIOS firmware the machine resets into (-bios), or null for a direct kernel boot.</summary>
    public BiosImage? Bios { get; init; }

    /// <summary>The Linux initrd (name for errors, contents), or null.</summary>
    public (string Name, ReadOnlyMemory<byte> Data)? Initrd { get; init; }

    /// <summary>Why the kernel is booted the way it is, when that was a choice (for the log).</summary>
    public string? Note { get; init; }
}

public sealed partial class VmActor : ReceiveActor, IWithTimers
{
    public interface IVmProtocol;

    /// <summary>Start the VM if it is not running; the sender gets <see cref="VmFinished"/> when the run ends.</summary>
    public sealed record Run : IVmProtocol
    {
        public static readonly Run Instance = new();
    }

    /// <summary>The host ends the run (QMP's quit).</summary>
    public sealed record Quit : IVmProtocol
    {
        public static readonly Quit Instance = new();
    }

    /// <summary>Pause every vCPU after its current slice (QMP's stop). The sender gets the Status once they are asked.</summary>
    public sealed record Pause : IVmProtocol
    {
        public static readonly Pause Instance = new();
    }

    /// <summary>Resume paused vCPUs (QMP's cont).</summary>
    public sealed record Resume : IVmProtocol
    {
        public static readonly Resume Instance = new();
    }

    /// <summary>Reset the machine from the host (QMP's system_reset): a reboot, or the end of the run with no-reboot.</summary>
    public sealed record SystemReset : IVmProtocol
    {
        public static readonly SystemReset Instance = new();
    }

    /// <summary>Host bytes for serial port <paramref name="Port"/> (0 = COM1).</summary>
    public sealed record SerialInput(int Port, ReadOnlyMemory<byte> Data) : IVmProtocol;

    public sealed record GetStatus : IVmProtocol
    {
        public static readonly GetStatus Instance = new();
    }

    public sealed record Status(VmRunState State, int Generation, int Reboots);

    /// <summary>Exit counters: accesses per device (with its route) and accesses nothing claimed, summed over vCPUs.</summary>
    public sealed record GetStats : IVmProtocol
    {
        public static readonly GetStats Instance = new();
    }

    /// <summary>One device's exits: accesses (reads among them), mean time of the sampled accesses, supervision and faults.</summary>
    public sealed record DeviceStats(string Device, Route Route, long Accesses)
    {
        public long Reads { get; init; }
        public double? MeanLatencyNs { get; init; }
        public long LatencySamples { get; init; }
        public long TimedOutReads { get; init; }
        public int Restarts { get; init; }
        public long FaultsFired { get; init; }
    }

    public sealed record Stats(int Generation, IReadOnlyList<DeviceStats> Devices, long UnclaimedPortAccesses, long UnclaimedMmioAccesses);

    private sealed record BuildMachine
    {
        public static readonly BuildMachine Instance = new();
    }

    /// <summary>A device asked the machine to stop (via IMachineControl), in machine generation <paramref name="Generation"/>.</summary>
    public sealed record GuestStop(MachineStopRequest Request, int Generation) : IVmProtocol;

    /// <summary>The end of the run, for whoever sent <see cref="Run"/>.</summary>
    public sealed record VmFinished(VmEndReason Reason, int ExitStatus, string Detail);

    private sealed record Machine(int Generation, IVm Vm, Platform Platform, IVcpu[] Vcpus, IActorRef[] VcpuActors,
        ExitDispatcher[] Dispatchers, Dictionary<string, IActorRef> DeviceActors, DateTime Started)
    {
        /// <summary>Per vCPU: thread, state and faults (read by query-cpus-fast and the fault commands).</summary>
        public VcpuInfo[] VcpuInfos { get; init; } = [];

        /// <summary>Per device actor: its faults and supervision counters.</summary>
        public Dictionary<string, FaultState> DeviceFaults { get; init; } = [];
    }

    // Reboot back-off: a machine that dies within FastRebootWindow of starting is rebuilt after a delay that
    // doubles with each such reboot in a row (from RebootDelayMin up to RebootDelayMax).
    private static readonly TimeSpan FastRebootWindow = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan RebootDelayMin = TimeSpan.FromMilliseconds(5);
    private static readonly TimeSpan RebootDelayMax = TimeSpan.FromSeconds(1);
    private int _fastReboots;

    private readonly MachineConfig _config;
    private readonly IAccelerator _accelerator;
    private readonly BootImages _images;
    /// <summary>The BIOS ROM and shadow map of the current machine (-bios); freed after its VM.</summary>
    private BiosFirmware? _firmware;
    private readonly ByteSinkFactory _sinks;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly List<IActorRef> _waiters = [];
    private Machine? _machine;
    private TimerService? _timers; // the current machine's (split/off on host time)
    private int _generation;
    private int _reboots;
    private VmRunState _state = VmRunState.Created;
    private VmFinished? _finished;

    public ITimerScheduler Timers { get; set; } = null!;
    // What to do once the current machine is torn down: reboot (null) or finish with this.
    private VmFinished? _afterTeardown;
    private readonly HashSet<IActorRef> _vcpusAlive = [];

    public VmActor(MachineConfig config, IAccelerator accelerator, BootImages images, ByteSinkFactory sinks, VmActions? actions = null)
    {
        _actions = actions ?? VmActions.Default;
        // kernel-irqchip=on: the machine adds userspace models for what this accelerator's kernel lacks.
        _config = config with { KernelPlatform = accelerator.Capabilities.KernelPlatform };
        _accelerator = accelerator;
        _images = images;
        _sinks = sinks;

        Receive<Run>(_ =>
        {
            if (_finished is not null)
            {
                Sender.Tell(_finished);
                return;
            }
            _waiters.Add(Sender);
            if (_state == VmRunState.Created) StartMachine();
        });
        Receive<Pause>(_ =>
        {
            if (_state == VmRunState.Running && _machine is not null)
            {
                for (int i = 0; i < _machine.Vcpus.Length; i++)
                    VcpuActor.SendControl(_machine.VcpuActors[i], _machine.Vcpus[i], VcpuActor.Pause.Instance, Self);
                _state = VmRunState.Paused;
                Emit("STOP");
            }
            Sender.Tell(new Status(_state, _generation, _reboots));
        });
        Receive<Resume>(_ =>
        {
            if (_state is VmRunState.Paused or VmRunState.GuestPanicked && _machine is not null)
            {
                foreach (var a in _machine.VcpuActors) a.Tell(VcpuActor.Resume.Instance);
                _state = VmRunState.Running;
                Emit("RESUME");
            }
            Sender.Tell(new Status(_state, _generation, _reboots));
        });
        Receive<SystemReset>(_ =>
        {
            if (_state is VmRunState.Running or VmRunState.Paused or VmRunState.Shutdown or VmRunState.GuestPanicked) Reset("host reset", guest: false);
        });
        Receive<Quit>(_ => Finish(new VmFinished(VmEndReason.HostQuit, ExitStatus.PowerOff, "quit requested by the host")));
        ReceiveControl();
        Receive<SerialInput>(m =>
        {
            if (_machine is null || m.Port < 0 || m.Port >= PcMachineBuilder.ComPorts.Count) return;
            if (_machine.DeviceActors.TryGetValue(PcMachineBuilder.ComPorts[m.Port].Name, out var dev))
                dev.Tell(new DeviceActor.HostInput(m.Data));
        });
        Receive<GetStatus>(_ => Sender.Tell(new Status(_state, _generation, _reboots)));
        Receive<GetStats>(_ =>
        {
            Sender.Tell(_machine is null ? _lastStats ?? new Stats(_generation, [], 0, 0) : StatsOf(_machine));
        });
        Receive<BuildMachine>(_ =>
        {
            if (_state == VmRunState.Rebooting) StartMachine();
        });
        Receive<GuestStop>(m =>
        {
            if (_machine is null || m.Generation != _machine.Generation || !IsLive) return;
            // At once: the request comes from a device actor that handled a write the guest posted before anything
            // the vCPU did afterwards (a vCPU's end waits for the drain, so this one takes precedence over it).
            OnGuestStop(m.Request);
        });
        Receive<VcpuActor.Ended>(m =>
        {
            if (_machine is null || !_machine.VcpuActors.Contains(Sender) || !IsLive) return;
            // Writes the vCPU posted before it ended reach their devices first (a debug-exit write, then HLT).
            AfterMailboxDevicesDrained(_machine, () => OnVcpuEnded(m));
        });
        Receive<Drained>(OnDrained);
        Receive<Terminated>(t =>
        {
            if (_vcpusAlive.Remove(t.ActorRef))
            {
                if (_state == VmRunState.TearingDown && _vcpusAlive.Count == 0) TeardownComplete();
                else if (IsLive) ChildFailedForGood(t.ActorRef, $"{t.ActorRef.Path.Name} failed repeatedly and was stopped");
                return;
            }
            if (_subscribers.Remove(t.ActorRef)) return;
            if (IsLive && _machine is not null && _machine.DeviceActors.ContainsValue(t.ActorRef))
                ChildFailedForGood(t.ActorRef, $"device {t.ActorRef.Path.Name} failed repeatedly and was stopped");
        });
    }

    private void OnGuestStop(MachineStopRequest r)
    {
        switch (r.Reason)
        {
            case MachineStopReason.DebugExit:
                Finish(new VmFinished(VmEndReason.DebugExit, r.ExitStatus, $"isa-debug-exit: status {r.ExitStatus}"));
                break;
            case MachineStopReason.PowerOff:
                PowerOff("guest powered off");
                break;
            case MachineStopReason.Reset:
                Reset("guest reset");
                break;
        }
    }

    private void OnVcpuEnded(VcpuActor.Ended m)
    {
        var exit = m.Exit;
        switch (exit.Kind)
        {
            case VcpuExitKind.Shutdown:
                if (!_config.NoReboot)
                    Reboot($"vCPU {m.Id}: triple fault{Suffix(exit)}", "guest-reset", guest: true);
                else if (!ShutdownPauses($"vCPU {m.Id}: triple fault{Suffix(exit)}", "guest-reset"))
                    Finish(new VmFinished(VmEndReason.TripleFault, ExitStatus.TripleFault, $"vCPU {m.Id}: triple fault{Suffix(exit)}"));
                break;
            case VcpuExitKind.Reset:
                Reset($"vCPU {m.Id}: reset");
                break;
            case VcpuExitKind.PowerOff:
                PowerOff($"vCPU {m.Id}: powered off");
                break;
            case VcpuExitKind.Halted:
                Finish(new VmFinished(VmEndReason.Halted, ExitStatus.Halted, $"vCPU {m.Id}: halted with interrupts disabled{Suffix(exit)}"));
                break;
            default:
                Finish(new VmFinished(VmEndReason.InternalError, ExitStatus.InternalError, $"vCPU {m.Id}: {exit}"));
                break;
        }
    }

    public static Props Props(MachineConfig config, IAccelerator accelerator, BootImages images, ByteSinkFactory sinks, VmActions? actions = null)
        => Akka.Actor.Props.Create(() => new VmActor(config, accelerator, images, sinks, actions));

    /// <summary>
    /// A device or vCPU actor that throws is restarted (a device from its last good state, the failed message retried);
    /// more than <see cref="ChildRestartLimit"/> failures within <see cref="ChildRestartWindow"/> stop it, and the VM
    /// restarts (ChildFailedForGood).
    /// </summary>
    protected override SupervisorStrategy SupervisorStrategy()
        => new OneForOneStrategy(ChildRestartLimit, ChildRestartWindow, Decider.From(Directive.Restart));

    private bool IsLive => _state is VmRunState.Running or VmRunState.Paused or VmRunState.GuestPanicked;

    private static string Suffix(VcpuExit exit) => exit.Detail is null ? "" : $" ({exit.Detail})";

    private void StartMachine()
    {
        int generation = ++_generation;
        IVm? vm = null;
        try
        {
            vm = _accelerator.CreateVm(new VmSpec(_config.RamBytes, _config.VcpuCount, _config.Irqchip) { Deterministic = _config.Deterministic });
            BiosFirmware? firmware = null;
            BootState boot;
            if (_images.Bios is { } bios)
            {
                firmware = BiosFirmware.Load(vm.Memory, bios);
                _firmware = firmware;
                boot = BiosFirmware.ResetState();
            }
            else
            {
                boot = LoadKernel(vm.Memory);
            }
            var deviceActors = new Dictionary<string, IActorRef>();
            var gate = new VcpuGate();
            var control = new MachineControl(Self, generation, gate);
            var deviceFaults = new Dictionary<string, FaultState>();
            var platform = PcMachineBuilder.Build(_config, vm, _sinks, control, (device, route) =>
            {
                var modelLock = new Lock();
                var faults = deviceFaults[device.Name] = new FaultState(device.Name);
                var actor = Context.ActorOf(DeviceActor.Props(device, modelLock, route, faults), $"{device.Name}-g{generation}");
                Context.Watch(actor);
                deviceActors[device.Name] = actor;
                return route == Route.Direct ? new DirectEndpoint(device, modelLock) : new MailboxEndpoint(device.Name, actor, waitForWrites: _config.Deterministic);
            }, new PlatformOptions(BootTimerReport: (value, ns) => _log.Info("boot timer: guest wrote {0} at {1:F3} ms", value, ns / 1e6), Pam: firmware?.Pam));
            var vcpus = new IVcpu[_config.VcpuCount];
            var vcpuActors = new IActorRef[_config.VcpuCount];
            var dispatchers = new ExitDispatcher[_config.VcpuCount];
            var vcpuInfos = new VcpuInfo[_config.VcpuCount];
            for (int i = 0; i < vcpus.Length; i++)
            {
                vcpus[i] = vm.CreateVcpu(i);
                if (i == 0)
                {
                    vcpus[i].SetSystemRegisters(boot.System);
                    vcpus[i].SetRegisters(boot.Registers);
                }
            }
            control.Vcpus = vcpus;
            platform.Irqchip?.AttachVcpus(vcpus);
            _timers = IrqchipActors.StartTimers(platform, vm, deviceActors, _config.Deterministic, generation);
            for (int i = 0; i < vcpus.Length; i++)
            {
                dispatchers[i] = new ExitDispatcher(platform.Bus);
                vcpuInfos[i] = new VcpuInfo(i);
                vcpuActors[i] = Context.ActorOf(VcpuActor.Props(vcpus[i], platform.ExitHandlerFor(i, dispatchers[i]), Self, gate, vcpuInfos[i]), $"vcpu{i}-g{generation}");
                Context.Watch(vcpuActors[i]);
                _vcpusAlive.Add(vcpuActors[i]);
            }
            _machine = new Machine(generation, vm, platform, vcpus, vcpuActors, dispatchers, deviceActors, DateTime.UtcNow)
            {
                VcpuInfos = vcpuInfos,
                DeviceFaults = deviceFaults,
            };
            _state = VmRunState.Running;
            _log.Info("machine generation {0} built: {1}, {2} RAM, devices {3}", generation, _accelerator.Name,
                MachineConfig.FormatSize(_config.RamBytes), string.Join(", ", platform.Devices.Select(d => $"{d.Model.Name}@{d.Where} {d.Route}")));
            ApplyPendingFaults();
            foreach (var a in vcpuActors) a.Tell(VcpuActor.Resume.Instance);
        }
        catch (Exception e)
        {
            _timers?.Dispose();
            _timers = null;
            foreach (var child in Context.GetChildren()) Context.Stop(child);
            _vcpusAlive.Clear();
            vm?.Dispose();
            DisposeFirmware();
            _machine = null;
            var (reason, status) = e is BootImageException or MachineConfigException or GuestMemoryException
                ? (VmEndReason.ConfigError, ExitStatus.ConfigError)
                : (VmEndReason.InternalError, ExitStatus.InternalError);
            _state = VmRunState.TearingDown;
            FinishNow(new VmFinished(reason, status, $"building the machine failed: {e.Message}"));
        }
    }

    /// <summary>Writes the kernel into guest memory with the loader its format needs; Linux also gets the MP and ACPI tables.</summary>
    private BootState LoadKernel(GuestMemory memory)
    {
        var platform = PcMachineBuilder.Describe(_config);
        var initrd = _images.Initrd;
        return _images.Kernel switch
        {
            MultibootImage mb => MultibootLoader.Load(memory, mb, _config.MultibootCommandLine, _images.Modules, platform),
            LinuxBzImage bz => LinuxLoader.LoadBzImage(memory, bz, _config.Append, initrd?.Data, initrd?.Name ?? "", platform),
            PvhImage pvh => LinuxLoader.LoadPvh(memory, pvh, _config.Append, initrd?.Data, initrd?.Name ?? "", platform),
            null => throw new BootImageException("no kernel to load"),
            var other => throw new BootImageException($"{other.Name}: no loader for {other.Format}"),
        };
    }

    private void Reset(string detail, bool guest = true)
    {
        string reason = guest ? "guest-reset" : "host-qmp-system-reset";
        if (!_config.NoReboot) Reboot(detail, reason, guest);
        else if (!ShutdownPauses($"{detail} (no-reboot)", reason, guest))
            Finish(new VmFinished(VmEndReason.Reset, ExitStatus.PowerOff, $"{detail} (no-reboot)"));
    }

    /// <summary>Rebuilds the machine; <paramref name="reason"/> and <paramref name="guest"/> go into the RESET event (QMP's ShutdownCause).</summary>
    private void Reboot(string detail, string reason = "guest-reset", bool guest = true)
    {
        _reboots++;
        _log.Info("{0}: rebooting (reboot {1})", detail, _reboots);
        Emit("RESET", new Dictionary<string, object?> { ["guest"] = guest, ["reason"] = reason });
        if (_machine is not null && DateTime.UtcNow - _machine.Started < FastRebootWindow) _fastReboots++;
        else _fastReboots = 0;
        _afterTeardown = null;
        Teardown();
    }

    private void Finish(VmFinished finished)
    {
        if (_state is VmRunState.Finished) return;
        if (_state is VmRunState.Rebooting)
        {
            Timers.CancelAll();
            FinishNow(finished);
            return;
        }
        if (_state is VmRunState.TearingDown)
        {
            _afterTeardown ??= finished;
            return;
        }
        _afterTeardown = finished;
        Teardown();
    }

    private void Teardown()
    {
        _state = VmRunState.TearingDown;
        if (_machine is null || _vcpusAlive.Count == 0)
        {
            TeardownComplete();
            return;
        }
        for (int i = 0; i < _machine.Vcpus.Length; i++)
            VcpuActor.SendControl(_machine.VcpuActors[i], _machine.Vcpus[i], VcpuActor.Stop.Instance, Self);
    }

    private void DisposeFirmware()
    {
        _firmware?.Dispose();
        _firmware = null;
    }

    private void TeardownComplete()
    {
        if (_timers is not null) _log.Info("timer service: {0}", _timers.Summary());
        _timers?.Dispose();
        _timers = null;
        if (_machine is not null)
        {
            _lastStats = StatsOf(_machine);
            // Exit counts per device: what the default routes are chosen from (docs/actors.md).
            _log.Info("exit counts, machine generation {0}: {1}", _machine.Generation, string.Join(", ", _machine.Platform.Devices
                .Select(d => (d.Model.Name, d.Route, Count: Interlocked.Read(ref d.Endpoint.Accesses)))
                .Where(d => d.Count > 0).OrderByDescending(d => d.Count).Select(d => $"{d.Name} {d.Count} ({d.Route})")));
            // No vCPU thread is left (the vCPU actors have stopped): the counts are final.
            _log.Info("instructions retired, machine generation {0}: {1}", _machine.Generation,
                string.Join(", ", _machine.Vcpus.Select(v => $"vcpu{v.Id} {v.InstructionsRetired}")));
            foreach (var dev in _machine.DeviceActors.Values)
            {
                Context.Unwatch(dev);
                Context.Stop(dev);
            }
            _machine.Vm.Dispose();
            _machine = null;
        }
        DisposeFirmware();
        if (_afterTeardown is { } f)
        {
            FinishNow(f);
        }
        else if (_fastReboots == 0)
        {
            StartMachine();
        }
        else
        {
            var delay = TimeSpan.FromTicks(Math.Min(RebootDelayMax.Ticks, RebootDelayMin.Ticks << Math.Min(_fastReboots - 1, 20)));
            _state = VmRunState.Rebooting;
            _log.Info("reboot loop: rebuilding the machine in {0} ms", delay.TotalMilliseconds);
            Timers.StartSingleTimer(nameof(BuildMachine), BuildMachine.Instance, delay);
        }
    }

    private void FinishNow(VmFinished finished)
    {
        _state = VmRunState.Finished;
        _finished = finished;
        _log.Info("run finished: {0}, status {1}: {2}", finished.Reason, finished.ExitStatus, finished.Detail);
        EmitShutdown(finished);
        foreach (var w in _waiters) w.Tell(finished);
        _waiters.Clear();
    }

    protected override void PostStop()
    {
        // The ActorSystem is going away with a machine still built: make the vCPUs leave Run; their actors
        // dispose them. The VM's memory is freed only once no vCPU can touch it, i.e. not here.
        _timers?.Dispose();
        if (_machine is not null)
        {
            foreach (var v in _machine.Vcpus) v.Kick();
        }
        base.PostStop();
    }

    /// <summary>
    /// IMachineControl for the devices of one machine generation: holds and kicks the vCPUs so the guest runs no further,
    /// and tells the VM actor. Panic reports (pvpanic) only tell the VM actor: -action panic= decides what they stop.
    /// </summary>
    private sealed class MachineControl(IActorRef vm, int generation, VcpuGate gate) : IMachineControl, IGuestPanicReport
    {
        public void GuestPanicked() => vm.Tell(new GuestPanic(generation, CrashLoaded: false), ActorRefs.NoSender);

        public void GuestCrashLoaded() => vm.Tell(new GuestPanic(generation, CrashLoaded: true), ActorRefs.NoSender);

        public volatile IVcpu[]? Vcpus;

        public void RequestStop(MachineStopRequest request)
        {
            gate.Close();
            vm.Tell(new GuestStop(request, generation), ActorRefs.NoSender);
            if (Vcpus is { } vcpus)
            {
                foreach (var v in vcpus) v.Kick();
            }
        }
    }
}

public enum VmRunState
{
    Created,
    Running,
    /// <summary>The host paused the vCPUs; the machine is intact.</summary>
    Paused,
    TearingDown,
    /// <summary>Between two machines of a reboot loop, waiting out the back-off.</summary>
    Rebooting,
    /// <summary>The guest shut down and -action shutdown=pause keeps the VM (vCPUs ended, machine intact) until reset or quit.</summary>
    Shutdown,
    /// <summary>The guest reported a panic and -action panic=pause stopped its vCPUs (machine intact) until cont, reset or quit.</summary>
    GuestPanicked,
    Finished,
}
