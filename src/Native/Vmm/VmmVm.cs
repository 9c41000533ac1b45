// One vmm(4) virtual machine: created on 14.x with sysctl hw.vmm.create and on 15.x through /dev/vmmctl,
// opened as /dev/vmm/NAME, destroyed the same way it was created (a vmm VM outlives the process that made it,
// so Dispose destroys it explicitly). Guest RAM is one system-memory segment (VM_ALLOC_MEMSEG, segid 0) mapped at
// guest-physical 0 (VM_MMAP_MEMSEG) and into this process by mmap of the VM's device node at offset = GPA.
// Irq entry points: on: SetIrqLine drives ISA lines through VM_ISA_ASSERT/DEASSERT_IRQ (8259 input n and IOAPIC
// pin n, IRQ0 on pin 2 as the MADT override says) and GSIs 16-31 through VM_IOAPIC_*; PulseIrq uses the PULSE
// forms; SendMsi is VM_LAPIC_MSI; InjectNmi is VM_INJECT_NMI. These take no vCPU lock in the kernel, so any
// thread may call them. split is refused when the VM is created (VmmAccelerator.SplitRefusal / SplitSeedRefusal,
// chosen by VM_GET_FLAGS), and the VM destroyed again.
using System.Text;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Machine;
using ActorVmm.Core.Memory;
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Vmm;

public sealed unsafe class VmmVm : IVm
{
    private static int s_counter;

    private readonly VmmAccelerator _accel;
    private readonly IKernelInterface _kernel;
    private readonly KernelFd _fd;
    private readonly KernelMapping _ram;
    private readonly Lock _lock = new();
    private readonly List<VmmVcpu> _vcpus = [];
    private int _disposed;

    internal VmmVm(VmmAccelerator accel, VmSpec spec, VmmGeneration generation)
    {
        _accel = accel;
        _kernel = accel.Kernel;
        Spec = spec;
        Generation = generation;
        if (spec.RamBytes == 0 || spec.RamBytes > MaxRamBytes)
            throw new ArgumentOutOfRangeException(nameof(spec), $"vmm accelerator: RAM must be 1 byte to {MaxRamBytes >> 20} MiB (below the PCI hole), got {spec.RamBytes}");
        if (spec.VcpuCount < 1 || spec.VcpuCount > accel.Capabilities.MaxVcpus)
            throw new ArgumentOutOfRangeException(nameof(spec), $"vmm accelerator: 1 to {accel.Capabilities.MaxVcpus} vCPUs, got {spec.VcpuCount}");
        Name = $"actorvmm-{Environment.ProcessId}-{Interlocked.Increment(ref s_counter)}";
        Create();
        bool ok = false;
        try
        {
            _fd = _kernel.Open($"{VmmProbe.VmDirectory}/{Name}");
            if (spec.Irqchip == IrqchipMode.Split) RefuseSplit();
            var topo = new VmCpuTopology { Sockets = 1, Cores = (ushort)spec.VcpuCount, Threads = 1, MaxCpus = 0 };
            _kernel.Ioctl(_fd, VmmIoctls.VM_SET_TOPOLOGY, ref topo);
            ulong len = (spec.RamBytes + 0xfff) & ~0xfffUL;
            AllocSysmem(len);
            var map = new VmMemmap { Gpa = 0, SegId = VmmConstants.SysmemSegment, SegOff = 0, Len = len, Prot = (int)(MapProtection.Read | MapProtection.Write | MapProtection.Exec) };
            _kernel.Ioctl(_fd, VmmIoctls.VM_MMAP_MEMSEG, ref map);
            _ram = _kernel.Map(_fd, len, MapProtection.Read | MapProtection.Write, 0, $"guest RAM of {Name}");
            Memory = new GuestMemory([new GuestRegion("ram", 0, spec.RamBytes, _ram.Pointer)]);
            ok = true;
        }
        finally
        {
            if (!ok)
            {
                _ram?.Dispose();
                _fd?.Dispose();
                Destroy();
            }
        }
    }

    /// <summary>RAM below the 3 GiB PCI hole, in one segment mapped at GPA 0 (libvmmapi's default lowmem limit).</summary>
    public const ulong MaxRamBytes = 3UL << 30;

    public string Name { get; }

    public VmmGeneration Generation { get; }

    public VmSpec Spec { get; }

    public GuestMemory Memory { get; }

    internal KernelFd Fd => _fd;

    internal IKernelInterface Kernel => _kernel;

    internal IReadOnlyList<int>? HostCpus => _accel.HostCpus;

    private void Create()
    {
        if (Generation == VmmGeneration.FreeBsd15)
        {
            using var ctl = _kernel.Open(VmmProbe.ControlDevice);
            var arg = new VmmctlVm();
            WriteName(arg.Name, VmmctlVm.NameBytes, Name);
            _kernel.Ioctl(ctl, VmmIoctls.VMMCTL_VM_CREATE, ref arg);
        }
        else
        {
            int e = _kernel.TrySysctlWrite("hw.vmm.create", Encoding.ASCII.GetBytes(Name));
            if (e != 0) throw new KernelCallException($"sysctl hw.vmm.create={Name}", e, _kernel.Os);
        }
    }

    private void Destroy()
    {
        try
        {
            if (Generation == VmmGeneration.FreeBsd15)
            {
                using var ctl = _kernel.Open(VmmProbe.ControlDevice);
                var arg = new VmmctlVm();
                WriteName(arg.Name, VmmctlVm.NameBytes, Name);
                _kernel.Ioctl(ctl, VmmIoctls.VMMCTL_VM_DESTROY, ref arg);
            }
            else
            {
                int e = _kernel.TrySysctlWrite("hw.vmm.destroy", Encoding.ASCII.GetBytes(Name));
                if (e != 0) throw new KernelCallException($"sysctl hw.vmm.destroy={Name}", e, _kernel.Os);
            }
        }
        catch (KernelCallException)
        {
            // Destroying is best effort during teardown; the VM name is unique to this process.
        }
    }

    private static void WriteName(byte* dest, int capacity, string name)
    {
        var bytes = Encoding.ASCII.GetBytes(name);
        if (bytes.Length >= capacity) throw new ArgumentException($"VM name '{name}' longer than {capacity - 1} bytes");
        var span = new Span<byte>(dest, capacity);
        span.Clear();
        bytes.CopyTo(span);
    }

    private void AllocSysmem(ulong len)
    {
        if (Generation == VmmGeneration.FreeBsd14)
        {
            var seg = new VmMemseg14 { SegId = VmmConstants.SysmemSegment, Len = len };
            _kernel.Ioctl(_fd, VmmIoctls.VM_ALLOC_MEMSEG_14, ref seg);
        }
        else
        {
            var seg = new VmMemseg15 { SegId = VmmConstants.SysmemSegment, Len = len };
            _kernel.Ioctl(_fd, VmmIoctls.VM_ALLOC_MEMSEG_15, ref seg);
        }
    }

    /// <summary>split cannot run on vmm: says why for this kernel (without the seed's extension, or with it).</summary>
    private void RefuseSplit()
    {
        int flags = 0;
        int r = _kernel.TryIoctl(_fd, VmmIoctls.VM_GET_FLAGS, ref flags);
        throw new MachineConfigException(r < 0 ? VmmAccelerator.SplitRefusal(-r, _kernel.Os) : VmmAccelerator.SplitSeedRefusal);
    }

    public IVcpu CreateVcpu(int id)
    {
        lock (_lock)
        {
            if ((uint)id >= (uint)Spec.VcpuCount) throw new ArgumentOutOfRangeException(nameof(id), $"vCPU {id} outside 0-{Spec.VcpuCount - 1}");
            if (_vcpus.Any(v => v.Id == id)) throw new InvalidOperationException($"vCPU {id} already exists");
            var v = new VmmVcpu(this, id);
            _vcpus.Add(v);
            return v;
        }
    }

    internal VmmVcpu? FindVcpu(int id)
    {
        lock (_lock) return _vcpus.FirstOrDefault(v => v.Id == id);
    }

    public void SetIrqLine(int gsi, bool level)
    {
        if (Spec.Irqchip != IrqchipMode.On) throw new InvalidOperationException($"SetIrqLine is for kernel-irqchip=on; this VM is {Spec.Irqchip}");
        if ((uint)gsi >= VmmConstants.IoApicPins) throw new ArgumentOutOfRangeException(nameof(gsi), $"GSI {gsi} does not exist (0-{VmmConstants.IoApicPins - 1})");
        if (gsi < 16)
        {
            var irq = new VmIsaIrq { AtpicIrq = gsi, IoApicIrq = gsi == 0 ? 2 : gsi };
            _kernel.Ioctl(_fd, level ? VmmIoctls.VM_ISA_ASSERT_IRQ : VmmIoctls.VM_ISA_DEASSERT_IRQ, ref irq);
        }
        else
        {
            int pin = gsi;
            _kernel.Ioctl(_fd, level ? VmmIoctls.VM_IOAPIC_ASSERT_IRQ : VmmIoctls.VM_IOAPIC_DEASSERT_IRQ, ref pin);
        }
    }

    void IVm.PulseIrq(int gsi)
    {
        if (Spec.Irqchip != IrqchipMode.On) throw new InvalidOperationException($"PulseIrq is for kernel-irqchip=on; this VM is {Spec.Irqchip}");
        if ((uint)gsi >= VmmConstants.IoApicPins) throw new ArgumentOutOfRangeException(nameof(gsi), $"GSI {gsi} does not exist (0-{VmmConstants.IoApicPins - 1})");
        if (gsi < 16)
        {
            var irq = new VmIsaIrq { AtpicIrq = gsi, IoApicIrq = gsi == 0 ? 2 : gsi };
            _kernel.Ioctl(_fd, VmmIoctls.VM_ISA_PULSE_IRQ, ref irq);
        }
        else
        {
            int pin = gsi;
            _kernel.Ioctl(_fd, VmmIoctls.VM_IOAPIC_PULSE_IRQ, ref pin);
        }
    }

    public void SendMsi(ulong address, uint data)
    {
        var msi = new VmLapicMsi { Addr = address, Msg = data };
        _kernel.Ioctl(_fd, VmmIoctls.VM_LAPIC_MSI, ref msi);
    }

    public void InjectNmi(int vcpuId)
    {
        int id = vcpuId;
        _kernel.Ioctl(_fd, VmmIoctls.VM_INJECT_NMI, ref id);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        lock (_lock)
        {
            foreach (var v in _vcpus) v.Dispose();
            _vcpus.Clear();
        }
        _ram.Dispose();
        _fd.Dispose();
        Destroy();
    }
}
