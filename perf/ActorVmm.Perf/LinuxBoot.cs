// `-- boot KERNEL INITRD [--deterministic]`: boots a Linux guest (tests/Integration/LinuxBootTests' machine: -m 256,
// console=ttyS0 quiet, COM1 on stdout, no reboot) on the soft accelerator through the VM actor, as actorvmm does, and
// prints the guest instructions the vCPU retired, the wall time from building the machine to the end of the run, and
// their ratio. The accelerator is wrapped only to keep hold of the vCPU it creates, whose counter is read at the end.
using Akka.Actor;
using Akka.Configuration;
using ActorVmm.Actors;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Machine;
using ActorVmm.Core.Memory;
using ActorVmm.Native.Soft;

namespace ActorVmm.Perf;

internal static class LinuxBoot
{
    public static int Run(string kernelPath, string initrdPath, bool deterministic)
    {
        var config = new MachineConfig
        {
            RamBytes = 256 * MachineConfig.MiB,
            KernelPath = kernelPath,
            Append = "console=ttyS0 quiet",
            Modules = [initrdPath],
            NoReboot = true,
            Deterministic = deterministic,
        };
        var kernel = KernelImages.Parse(File.ReadAllBytes(kernelPath), kernelPath, config.LinuxBoot);
        var images = new BootImages(kernel.Image, []) { Initrd = (initrdPath, File.ReadAllBytes(initrdPath)) };
        var accelerator = new Recording(new SoftAccelerator());
        var hocon = ConfigurationFactory.ParseString("akka { loglevel = WARNING, stdout-loglevel = OFF, log-dead-letters = off, coordinated-shutdown.run-by-clr-shutdown-hook = off }");
        using var system = ActorSystem.Create("perf-boot", hocon.WithFallback(ActorVmmConfig.Config));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var vm = system.ActorOf(VmActor.Props(config, accelerator, images, (_, _) => new ConsoleSink()), "vm");
        var finished = vm.Ask<VmActor.VmFinished>(VmActor.Run.Instance, TimeSpan.FromMinutes(10)).GetAwaiter().GetResult();
        double seconds = clock.Elapsed.TotalSeconds;
        ulong retired = accelerator.Vcpus.Aggregate(0UL, (sum, v) => sum + v.InstructionsRetired);
        Console.WriteLine($"boot: {finished.Reason}, status {finished.ExitStatus}; {retired:N0} guest instructions retired in {seconds:F2} s wall: {retired / seconds / 1e6:F1} MIPS");
        system.Terminate().Wait(TimeSpan.FromSeconds(5));
        return finished.ExitStatus;
    }

    private sealed class ConsoleSink : IByteSink
    {
        public void Write(ReadOnlySpan<byte> data)
        {
            using var stdout = Console.OpenStandardOutput();
            stdout.Write(data);
        }
    }

    /// <summary>The soft accelerator, keeping the vCPUs it creates.</summary>
    private sealed class Recording(IAccelerator inner) : IAccelerator
    {
        public readonly List<IVcpu> Vcpus = [];

        public string Name => inner.Name;

        public AcceleratorCapabilities Capabilities => inner.Capabilities;

        public IVm CreateVm(VmSpec spec) => new RecordingVm(inner.CreateVm(spec), Vcpus);
    }

    private sealed class RecordingVm(IVm inner, List<IVcpu> vcpus) : IVm
    {
        public VmSpec Spec => inner.Spec;

        public GuestMemory Memory => inner.Memory;

        public IVcpu CreateVcpu(int id)
        {
            var v = inner.CreateVcpu(id);
            lock (vcpus) vcpus.Add(v);
            return v;
        }

        public void SetIrqLine(int gsi, bool level) => inner.SetIrqLine(gsi, level);

        public void SendMsi(ulong address, uint data) => inner.SendMsi(address, data);

        public void PulseIrq(int gsi) => inner.PulseIrq(gsi);

        public void InjectNmi(int vcpuId) => inner.InjectNmi(vcpuId);

        public void Dispose() => inner.Dispose();
    }
}
