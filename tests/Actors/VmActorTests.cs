using System.Text;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Machine;

namespace ActorVmm.Actors.Tests;

public sealed class VmActorTests() : TestKit(ActorVmmConfig.Config)
{
    private const ushort DebugExitPort = 0xf4;
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    private static MachineConfig Config(bool noReboot = false) => new()
    {
        KernelPath = "test.bin",
        RamBytes = 4 * MachineConfig.MiB,
        DebugExit = new DebugExitConfig(DebugExitPort, 4),
        NoReboot = noReboot,
    };

    private IActorRef StartVm(MachineConfig config, FakeAccelerator accel, RecordingSink sink, byte[]? kernel = null)
    {
        var images = new BootImages(MultibootImage.Parse(kernel ?? TestKernel.Build(), "test.bin"), []);
        var vm = Sys.ActorOf(VmActor.Props(config, accel, images, (_, _) => sink));
        vm.Tell(VmActor.Run.Instance);
        return vm;
    }

    private static VcpuExit DebugExit(IExitHandler h, byte value)
    {
        h.PortWrite(DebugExitPort, [value]);
        return VcpuExit.SliceEnd;
    }

    [Fact]
    public void Debug_exit_ends_the_run_with_the_device_status_and_the_guest_runs_no_further()
    {
        var accel = new FakeAccelerator((v, call, h) => call == 2 ? DebugExit(h, 0x10) : VcpuExit.SliceEnd);
        StartVm(Config(), accel, new RecordingSink());

        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.DebugExit, finished.Reason);
        Assert.Equal((0x10 << 1) | 1, finished.ExitStatus);
        var vm = Assert.Single(accel.Vms);
        AwaitCondition(() => vm.Disposed);
        Assert.Equal(3, vm.Vcpus[0].Runs);
        Assert.True(vm.Vcpus[0].Disposed);
    }

    [Fact]
    public void The_vcpu_starts_at_the_kernel_entry_loaded_in_guest_memory()
    {
        ulong rip = 0;
        var accel = new FakeAccelerator((v, call, h) =>
        {
            rip = v.GetRegisters().Rip;
            return DebugExit(h, 0);
        });
        StartVm(Config(), accel, new RecordingSink(), TestKernel.Build([0x90, 0xf4]));
        ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(TestKernel.Entry, rip);
        var vm = Assert.Single(accel.Vms);
        var code = new byte[2];
        vm.Memory.Read(TestKernel.Entry, code);
        Assert.Equal(new byte[] { 0x90, 0xf4 }, code);
    }

    [Fact]
    public void Triple_fault_with_no_reboot_ends_with_status_4()
    {
        var accel = new FakeAccelerator((v, call, h) => new VcpuExit(VcpuExitKind.Shutdown, "#DF during #GP"));
        StartVm(Config(noReboot: true), accel, new RecordingSink());
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.TripleFault, finished.Reason);
        Assert.Equal(ExitStatus.TripleFault, finished.ExitStatus);
        Assert.Contains("#DF during #GP", finished.Detail, StringComparison.Ordinal);
        Assert.Single(accel.Vms);
    }

    [Fact]
    public void Triple_fault_reboots_by_recreating_the_machine_and_reloading_the_kernel()
    {
        var accel = new FakeAccelerator(vmIndex => vmIndex == 0
            ? (v, call, h) =>
            {
                // Scribble over the kernel, then triple fault: the reboot must load it afresh.
                h.PortWrite(0x3f8, "1"u8);
                return new VcpuExit(VcpuExitKind.Shutdown);
            }
            : (v, call, h) =>
            {
                h.PortWrite(0x3f8, "2"u8);
                return DebugExit(h, 3);
            });
        var sink = new RecordingSink();
        var vm = StartVm(Config(), accel, sink);

        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.DebugExit, finished.Reason);
        Assert.Equal(7, finished.ExitStatus);
        var vms = accel.Vms.ToArray();
        Assert.Equal(2, vms.Length);
        Assert.True(vms[0].Disposed);
        Assert.True(vms[0].Vcpus[0].Disposed);
        var code = new byte[1];
        vms[1].Memory.Read(TestKernel.Entry, code);
        Assert.Equal(0xf4, code[0]);
        Assert.Equal("12", sink.Text);
        vm.Tell(VmActor.GetStatus.Instance);
        var status = ExpectMsg<VmActor.Status>();
        Assert.Equal(1, status.Reboots);
        Assert.Equal(2, status.Generation);
        Assert.Equal(VmRunState.Finished, status.State);
    }

    [Fact]
    public void Reset_with_no_reboot_ends_with_status_0_and_without_reboots()
    {
        var once = new FakeAccelerator((v, call, h) => new VcpuExit(VcpuExitKind.Reset));
        StartVm(Config(noReboot: true), once, new RecordingSink());
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.Reset, finished.Reason);
        Assert.Equal(ExitStatus.PowerOff, finished.ExitStatus);

        var twice = new FakeAccelerator(i => i == 0 ? (v, c, h) => new VcpuExit(VcpuExitKind.Reset) : (v, c, h) => new VcpuExit(VcpuExitKind.PowerOff));
        StartVm(Config(), twice, new RecordingSink());
        finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.PowerOff, finished.Reason);
        Assert.Equal(0, finished.ExitStatus);
        Assert.Equal(2, twice.Vms.Count);
    }

    [Fact]
    public void Halt_with_interrupts_disabled_ends_with_status_6()
    {
        var accel = new FakeAccelerator((v, call, h) => new VcpuExit(VcpuExitKind.Halted));
        StartVm(Config(), accel, new RecordingSink());
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.Halted, finished.Reason);
        Assert.Equal(ExitStatus.Halted, finished.ExitStatus);
    }

    [Fact]
    public void A_backend_error_ends_with_status_8()
    {
        var accel = new FakeAccelerator((v, call, h) => new VcpuExit(VcpuExitKind.Error, "entry failed"));
        StartVm(Config(), accel, new RecordingSink());
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.InternalError, finished.Reason);
        Assert.Equal(ExitStatus.InternalError, finished.ExitStatus);
        Assert.Contains("entry failed", finished.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void A_kernel_that_does_not_fit_in_RAM_is_a_configuration_error()
    {
        var accel = new FakeAccelerator((v, call, h) => DebugExit(h, 0));
        StartVm(Config() with { RamBytes = MachineConfig.MiB }, accel, new RecordingSink());
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.ConfigError, finished.Reason);
        Assert.Equal(ExitStatus.ConfigError, finished.ExitStatus);
    }

    [Fact]
    public void A_late_Run_gets_the_same_result()
    {
        var accel = new FakeAccelerator((v, call, h) => DebugExit(h, 1));
        var vm = StartVm(Config(), accel, new RecordingSink());
        var first = ExpectMsg<VmActor.VmFinished>(Wait);
        vm.Tell(VmActor.Run.Instance);
        Assert.Equal(first, ExpectMsg<VmActor.VmFinished>());
    }

    [Fact]
    public void Host_quit_ends_a_running_guest()
    {
        var accel = new FakeAccelerator((v, call, h) =>
        {
            Thread.Sleep(1);
            return VcpuExit.SliceEnd;
        });
        var vm = StartVm(Config(), accel, new RecordingSink());
        AwaitCondition(() => accel.Vms.TryPeek(out var v) && v.Vcpus.Count == 1 && v.Vcpus[0].Runs > 2);
        vm.Tell(VmActor.Quit.Instance);
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.HostQuit, finished.Reason);
        Assert.Equal(0, finished.ExitStatus);
    }

    [Theory]
    [InlineData(Route.Direct)]
    [InlineData(Route.Mailbox)]
    public void Host_serial_input_reaches_the_guest_through_COM1(Route route)
    {
        // The guest polls LSR.DR and echoes what it receives; on '\n' it exits.
        var accel = new FakeAccelerator((v, call, h) =>
        {
            Span<byte> b = stackalloc byte[1];
            h.PortRead(0x3f8 + 5, b);
            if ((b[0] & 0x01) == 0)
            {
                Thread.Sleep(1);
                return VcpuExit.SliceEnd;
            }
            h.PortRead(0x3f8, b);
            h.PortWrite(0x3f8, b);
            return b[0] == (byte)'\n' ? DebugExit(h, 0) : VcpuExit.SliceEnd;
        });
        var sink = new RecordingSink();
        var config = Config() with { RouteOverrides = new Dictionary<string, Route> { ["COM1"] = route } };
        var vm = StartVm(config, accel, sink);
        var text = "hello from the host, longer than the UART's sixty-four byte backlog and sixteen byte FIFO\n";
        vm.Tell(new VmActor.SerialInput(0, Encoding.ASCII.GetBytes(text)));
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(VmEndReason.DebugExit, finished.Reason);
        Assert.Equal(text, sink.Text);
    }

    [Fact]
    public void A_triple_fault_loop_reboots_with_back_off_and_can_be_quit()
    {
        var accel = new FakeAccelerator(i => i < 5 ? (v, c, h) => new VcpuExit(VcpuExitKind.Shutdown) : (v, c, h) => DebugExit(h, 2));
        var vm = StartVm(Config(), accel, new RecordingSink());
        var finished = ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(5, finished.ExitStatus);
        Assert.Equal(6, accel.Vms.Count);
        vm.Tell(VmActor.GetStatus.Instance);
        Assert.Equal(5, ExpectMsg<VmActor.Status>().Reboots);

        var forever = new FakeAccelerator((v, c, h) => new VcpuExit(VcpuExitKind.Shutdown));
        var looping = StartVm(Config(), forever, new RecordingSink());
        AwaitCondition(() => forever.Vms.Count >= 4, Wait);
        looping.Tell(VmActor.Quit.Instance);
        Assert.Equal(VmEndReason.HostQuit, ExpectMsg<VmActor.VmFinished>(Wait).Reason);
        int count = forever.Vms.Count;
        Thread.Sleep(100);
        Assert.Equal(count, forever.Vms.Count);
    }

    [Fact]
    public void Stats_count_accesses_per_device_and_unclaimed_ports()
    {
        var accel = new FakeAccelerator((v, call, h) =>
        {
            if (call < 10)
            {
                h.PortWrite(0x3f8, "x"u8);
                h.PortWrite(0x80, [0]);
            }
            Thread.Sleep(1);
            return VcpuExit.SliceEnd;
        });
        var vm = StartVm(Config(), accel, new RecordingSink());
        AwaitCondition(() => accel.Vms.TryPeek(out var m) && m.Vcpus.Count == 1 && m.Vcpus[0].Runs > 12, Wait);
        vm.Tell(VmActor.GetStats.Instance);
        var stats = ExpectMsg<VmActor.Stats>();
        var com1 = stats.Devices.Single(d => d.Device == "COM1");
        Assert.Equal(("COM1", Route.Direct, 10L, 0L), (com1.Device, com1.Route, com1.Accesses, com1.Reads));
        // One access in 64, the first among them, is timed.
        Assert.Equal(1, com1.LatencySamples);
        Assert.NotNull(com1.MeanLatencyNs);
        Assert.Equal(0, stats.Devices.Single(d => d.Device == "isa-debug-exit").Accesses);
        Assert.Equal(10, stats.UnclaimedPortAccesses);
        vm.Tell(VmActor.Quit.Instance);
        ExpectMsg<VmActor.VmFinished>(Wait);
    }

    [Fact]
    public void The_kernel_gets_QEMUs_command_line_path_then_append_and_the_multiboot_magic()
    {
        CpuRegisters regs = default;
        var accel = new FakeAccelerator((v, call, h) =>
        {
            regs = v.GetRegisters();
            return DebugExit(h, 0);
        });
        StartVm(Config() with { KernelPath = "guests/k.bin", Append = "console=ttyS0 x=1" }, accel, new RecordingSink());
        ExpectMsg<VmActor.VmFinished>(Wait);
        Assert.Equal(0x2BADB002UL, regs.Rax);
        var memory = Assert.Single(accel.Vms).Memory;
        uint flags = memory.ReadObject<uint>(regs.Rbx);
        Assert.NotEqual(0u, flags & (1u << 2));
        uint cmdline = memory.ReadObject<uint>(regs.Rbx + 16);
        var bytes = new byte["guests/k.bin console=ttyS0 x=1".Length + 1];
        memory.Read(cmdline, bytes);
        Assert.Equal("guests/k.bin console=ttyS0 x=1\0", Encoding.ASCII.GetString(bytes));
    }

    [Fact]
    public void Host_pause_stops_the_guest_and_resume_continues_it_and_reset_reboots()
    {
        var accel = new FakeAccelerator((v, call, h) =>
        {
            Thread.Sleep(1);
            return VcpuExit.SliceEnd;
        });
        var vm = StartVm(Config(), accel, new RecordingSink());
        FakeVcpu Vcpu() => accel.Vms.Last().Vcpus[0];
        AwaitCondition(() => accel.Vms.TryPeek(out var m) && m.Vcpus.Count == 1 && m.Vcpus[0].Runs > 2, Wait);

        vm.Tell(VmActor.Pause.Instance);
        Assert.Equal(VmRunState.Paused, ExpectMsg<VmActor.Status>().State);
        // The vCPU actor takes the Pause between two slices: wait until the count settles, then hold still.
        int paused;
        var deadline = DateTime.UtcNow + Wait;
        do
        {
            paused = Vcpu().Runs;
            Thread.Sleep(30);
        }
        while (Vcpu().Runs != paused && DateTime.UtcNow < deadline);
        Thread.Sleep(50);
        Assert.Equal(paused, Vcpu().Runs);

        vm.Tell(VmActor.Resume.Instance);
        Assert.Equal(VmRunState.Running, ExpectMsg<VmActor.Status>().State);
        AwaitCondition(() => Vcpu().Runs > paused + 2, Wait);

        vm.Tell(VmActor.SystemReset.Instance);
        AwaitCondition(() => accel.Vms.Count == 2 && accel.Vms.Last().Vcpus.Count == 1 && Vcpu().Runs > 0, Wait);
        vm.Tell(VmActor.Quit.Instance);
        Assert.Equal(VmEndReason.HostQuit, ExpectMsg<VmActor.VmFinished>(Wait).Reason);
    }
}
