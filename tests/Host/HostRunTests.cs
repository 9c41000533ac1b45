// The whole host pipeline in-process (command line → images → actor system → VmActor → exit status) with
// a scripted accelerator standing in for a CPU: the script issues the port accesses a guest would.
using ActorVmm.Core.Accel;
using ActorVmm.Core.Memory;

namespace ActorVmm.Host.Tests;

// HostMain.Run sets Serilog's global logger, which Akka's logger writes to: runs in one process must not overlap.
[Collection(HostMainCollection.Name)]
public sealed class HostRunTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorvmm-run").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private sealed class ScriptedAccelerator(Func<IExitHandler, int, VcpuExit> script) : IAccelerator
    {
        public int VmsCreated;
        public string Name => "scripted";
        public AcceleratorCapabilities Capabilities { get; } = new(new HashSet<IrqchipMode> { IrqchipMode.On }, 1, KernelPlatform.Soft);

        public IVm CreateVm(VmSpec spec)
        {
            Interlocked.Increment(ref VmsCreated);
            return new Vm(spec, script);
        }

        private sealed unsafe class Vm : IVm
        {
            private readonly NativeRam _ram;
            private readonly Func<IExitHandler, int, VcpuExit> _script;

            public Vm(VmSpec spec, Func<IExitHandler, int, VcpuExit> script)
            {
                Spec = spec;
                _script = script;
                _ram = new NativeRam(spec.RamBytes);
                Memory = new GuestMemory([new GuestRegion("ram", 0, spec.RamBytes, _ram.Pointer)]);
            }

            public VmSpec Spec { get; }
            public GuestMemory Memory { get; }
            public IVcpu CreateVcpu(int id) => new Vcpu(_script);
            public void SetIrqLine(int gsi, bool level) { }
            public void SendMsi(ulong address, uint data) { }
            public void InjectNmi(int vcpuId) { }
            public void Dispose() => _ram.Dispose();
        }

        private sealed class Vcpu(Func<IExitHandler, int, VcpuExit> script) : IVcpu
        {
            private int _calls;
            public int Id => 0;
            public VcpuExit Run(IExitHandler handler) => script(handler, _calls++);
            public void Kick() { }
            public CpuRegisters GetRegisters() => default;
            public void SetRegisters(in CpuRegisters registers) { }
            public SystemRegisters GetSystemRegisters() => default;
            public void SetSystemRegisters(in SystemRegisters registers) { }
            public void QueueInterrupt(byte vector) { }
            public ulong InstructionsRetired => 0;
            public void Dispose() { }
        }
    }

    private string Kernel()
    {
        var path = Path.Combine(_dir, "k.bin");
        File.WriteAllBytes(path, ProcessTests.MinimalKernel());
        return path;
    }

    [Fact]
    public void Debug_exit_status_and_serial_output_reach_the_caller()
    {
        var accel = new ScriptedAccelerator((h, call) =>
        {
            foreach (byte b in "hi\n"u8) h.PortWrite(0x3f8, [b]);
            h.PortWrite(0xf4, [0x10]);
            return VcpuExit.SliceEnd;
        });
        var serial = Path.Combine(_dir, "com1.txt");
        int status = HostMain.Run(["-accel", "tcg", "-kernel", Kernel(), "-serial", $"file:{serial}", "-device", "isa-debug-exit,iobase=0xf4,iosize=4"], _ => accel);
        Assert.Equal(33, status);
        Assert.Equal("hi\n", File.ReadAllText(serial));
    }

    [Fact]
    public void Triple_fault_with_no_reboot_is_status_4_and_without_it_the_machine_reboots()
    {
        var accel = new ScriptedAccelerator((h, call) => new VcpuExit(VcpuExitKind.Shutdown));
        Assert.Equal(4, HostMain.Run(["-kernel", Kernel(), "-serial", "null", "-no-reboot"], _ => accel));
        Assert.Equal(1, accel.VmsCreated);

        int vms = 0;
        var rebooting = new ScriptedAccelerator((h, call) => Volatile.Read(ref vms) < 3 ? new VcpuExit(VcpuExitKind.Shutdown) : new VcpuExit(VcpuExitKind.PowerOff));
        var counting = new CountingAccelerator(rebooting, () => Interlocked.Increment(ref vms));
        Assert.Equal(0, HostMain.Run(["-kernel", Kernel(), "-serial", "null"], _ => counting));
        Assert.Equal(3, rebooting.VmsCreated);
    }

    [Fact]
    public void Akka_logging_goes_through_Serilog_to_the_log_file()
    {
        var accel = new ScriptedAccelerator((h, call) => new VcpuExit(VcpuExitKind.PowerOff));
        var log = Path.Combine(_dir, "vmm.log");
        Assert.Equal(0, HostMain.Run(["-kernel", Kernel(), "-serial", "none", "--log-level", "info", "--log-file", log], _ => accel));
        var text = File.ReadAllText(log);
        Assert.Contains("machine generation 1 built: scripted, 128 MiB RAM", text, StringComparison.Ordinal);
        Assert.Contains("run ended after", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Halt_with_interrupts_disabled_is_status_6()
    {
        var accel = new ScriptedAccelerator((h, call) => new VcpuExit(VcpuExitKind.Halted));
        Assert.Equal(6, HostMain.Run(["-kernel", Kernel(), "-serial", "none"], _ => accel));
    }

    [Fact]
    public void More_vcpus_than_the_accelerator_supports_is_status_2_before_the_vm_starts()
    {
        bool created = false;
        var soft = new ActorVmm.Native.Soft.SoftAccelerator();
        Assert.Equal(2, HostMain.Run(["-smp", (soft.Capabilities.MaxVcpus + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), "-kernel", Kernel(), "-serial", "none"],
            _ => { created = true; return soft; }));
        Assert.True(created);
    }

    [Fact]
    public void A_route_override_for_a_device_the_chosen_accelerators_kernel_owns_is_status_2_before_the_vm_starts()
    {
        // -accel auto accepts "rtc" at parse time (KVM would leave it to userspace); auto picks the soft accelerator,
        // whose kernel has the RTC in kernel-irqchip=on, so the override names no device: refused before a VM exists.
        var soft = new CountingAccelerator(new ActorVmm.Native.Soft.SoftAccelerator(), () => Assert.Fail("a VM was created"));
        Assert.Equal(2, HostMain.Run(["-accel", "auto", "-kernel", Kernel(), "-serial", "none", "-device", "rtc,route=mailbox"], _ => soft));
    }

    [Fact]
    public void A_kernel_too_big_for_RAM_is_status_2()
    {
        var accel = new ScriptedAccelerator((h, call) => new VcpuExit(VcpuExitKind.PowerOff));
        Assert.Equal(2, HostMain.Run(["-kernel", Kernel(), "-m", "1", "-serial", "none"], _ => accel));
    }

    [Fact]
    public void An_unavailable_accelerator_is_status_2() => Assert.Equal(2, HostMain.Run(["-kernel", Kernel()], _ => null));

    private sealed class CountingAccelerator(IAccelerator inner, Action onCreate) : IAccelerator
    {
        public string Name => inner.Name;
        public AcceleratorCapabilities Capabilities => inner.Capabilities;

        public IVm CreateVm(VmSpec spec)
        {
            onCreate();
            return inner.CreateVm(spec);
        }
    }
}
