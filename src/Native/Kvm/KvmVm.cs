// One KVM virtual machine: KVM_CREATE_VM on /dev/kvm, the TSS and identity-map pages Intel needs below 4 GiB, the
// irqchip of the chosen mode, and guest RAM as anonymous memory registered with KVM_SET_USER_MEMORY_REGION (slot 0
// at GPA 0). Irq entry points: SetIrqLine = KVM_IRQ_LINE (on: GSI 0-23 reach the kernel PIC and IOAPIC); SendMsi =
// KVM_SIGNAL_MSI (on and split); InjectNmi queues an NMI the vCPU thread injects with KVM_NMI.
using ActorVmm.Core.Accel;
using ActorVmm.Core.Memory;
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Kvm;

public sealed unsafe class KvmVm : IVm
{
    /// <summary>Where KVM's VMX real-mode TSS (3 pages) and identity-map page go: just below the BIOS area, as QEMU puts them.</summary>
    public const ulong TssAddress = 0xfffb_d000, IdentityMapAddress = 0xfffb_c000;

    public const ulong MaxRamBytes = 3UL << 30;

    private readonly KvmAccelerator _accel;
    private readonly IKernelInterface _kernel;
    private readonly KernelFd _system;
    private readonly KernelFd _fd;
    private readonly void* _ram;
    private readonly ulong _ramLength;
    private readonly Lock _lock = new();
    private readonly List<KvmVcpu> _vcpus = [];
    private int _disposed;

    internal KvmVm(KvmAccelerator accel, VmSpec spec)
    {
        _accel = accel;
        _kernel = accel.Kernel;
        Spec = spec;
        if (spec.RamBytes == 0 || spec.RamBytes > MaxRamBytes)
            throw new ArgumentOutOfRangeException(nameof(spec), $"kvm accelerator: RAM must be 1 byte to {MaxRamBytes >> 20} MiB, got {spec.RamBytes}");
        _system = _kernel.Open(KvmAccelerator.Device);
        bool ok = false;
        try
        {
            int vmfd = _kernel.Ioctl(_system, KvmIoctls.KVM_CREATE_VM, null);
            _fd = new KernelFd(_kernel, vmfd, "kvm-vm");
            _kernel.Ioctl(_fd, KvmIoctls.KVM_SET_TSS_ADDR, (void*)TssAddress);
            ulong identity = IdentityMapAddress;
            _kernel.Ioctl(_fd, KvmIoctls.KVM_SET_IDENTITY_MAP_ADDR, &identity);
            switch (spec.Irqchip)
            {
                case IrqchipMode.On:
                    _kernel.Ioctl(_fd, KvmIoctls.KVM_CREATE_IRQCHIP, null);
                    var pit = new KvmPitConfig();
                    _kernel.Ioctl(_fd, KvmIoctls.KVM_CREATE_PIT2, ref pit);
                    SetPcGsiRouting();
                    break;
                case IrqchipMode.Split:
                    var cap = new KvmEnableCap { Cap = KvmCaps.KVM_CAP_SPLIT_IRQCHIP };
                    cap.Args[0] = 24; // IOAPIC routes reserved for the userspace IOAPIC
                    _kernel.Ioctl(_fd, KvmIoctls.KVM_ENABLE_CAP, ref cap);
                    break;
            }
            _ramLength = (spec.RamBytes + 0xfff) & ~0xfffUL;
            _ram = _kernel.MmapAnonymous(_ramLength);
            var region = new KvmUserspaceMemoryRegion { Slot = 0, GuestPhysAddr = 0, MemorySize = _ramLength, UserspaceAddr = (ulong)_ram };
            _kernel.Ioctl(_fd, KvmIoctls.KVM_SET_USER_MEMORY_REGION, ref region);
            Memory = new GuestMemory([new GuestRegion("ram", 0, spec.RamBytes, (byte*)_ram)]);
            VcpuMmapSize = _kernel.Ioctl(_system, KvmIoctls.KVM_GET_VCPU_MMAP_SIZE, null);
            SupportedCpuid = ReadSupportedCpuid();
            ok = true;
        }
        finally
        {
            if (!ok)
            {
                if (_ram != null) _kernel.Munmap(_ram, (nuint)_ramLength);
                _fd?.Dispose();
                _system.Dispose();
            }
        }
    }

    public VmSpec Spec { get; }

    public GuestMemory Memory { get; }

    internal KernelFd Fd => _fd;

    internal IKernelInterface Kernel => _kernel;

    internal int VcpuMmapSize { get; }

    internal IReadOnlyList<int>? HostCpus => _accel.HostCpus;

    /// <summary>KVM_GET_SUPPORTED_CPUID: what this host's KVM can offer a guest (set on every vCPU as is).</summary>
    internal KvmCpuidEntry2[] SupportedCpuid { get; }

    private KvmCpuidEntry2[] ReadSupportedCpuid()
    {
        for (int n = 64; n <= 1024; n *= 2)
        {
            int bytes = KvmCpuid2.HeaderSize + n * KvmCpuidEntry2.Size;
            var buf = new byte[bytes];
            fixed (byte* p = buf)
            {
                ((KvmCpuid2*)p)->Nent = (uint)n;
                int r = _kernel.TryIoctl(_system, KvmIoctls.KVM_GET_SUPPORTED_CPUID, p);
                if (r == -7) continue; // E2BIG: more entries than room
                if (r < 0) throw new KernelCallException($"ioctl {KvmIoctls.KVM_GET_SUPPORTED_CPUID} on {KvmAccelerator.Device}", -r, _kernel.Os);
                int count = (int)((KvmCpuid2*)p)->Nent;
                return new ReadOnlySpan<KvmCpuidEntry2>(p + KvmCpuid2.HeaderSize, count).ToArray();
            }
        }
        throw new KernelCallException($"ioctl {KvmIoctls.KVM_GET_SUPPORTED_CPUID}: more than 1024 entries", 7, _kernel.Os);
    }

    private int _parked;

    /// <summary>A vCPU halted with interrupts off. True when every vCPU of the VM now is (nothing can ever wake one).</summary>
    internal bool Park() => Interlocked.Increment(ref _parked) >= Spec.VcpuCount;

    internal void Unpark() => Interlocked.Decrement(ref _parked);

    public IVcpu CreateVcpu(int id)
    {
        lock (_lock)
        {
            if ((uint)id >= (uint)Spec.VcpuCount) throw new ArgumentOutOfRangeException(nameof(id), $"vCPU {id} outside 0-{Spec.VcpuCount - 1}");
            if (_vcpus.Any(v => v.Id == id)) throw new InvalidOperationException($"vCPU {id} already exists");
            var v = new KvmVcpu(this, id);
            _vcpus.Add(v);
            return v;
        }
    }

    /// <summary>
    /// The GSI routes of the PC the MADT describes (PlatformTables: ISA IRQ0 on IOAPIC pin 2, IRQ n on pin n), as QEMU
    /// sets them beside KVM's irqchip: GSI 0-7 (not 2, the cascade) to the master 8259, 8-15 to the slave, and GSI 0 to
    /// IOAPIC pin 2 and GSI 1-23 (not 2) to pin n. KVM's default table sends GSI 0 to pin 0, where neither the MADT's
    /// override nor a guest looks, so the kernel PIT's IRQ0 (raised on GSI 0) never reached pin 2 without this.
    /// </summary>
    public static KvmIrqRoutingEntry[] PcGsiRoutes()
    {
        var routes = new List<KvmIrqRoutingEntry>();
        static KvmIrqRoutingEntry Route(uint gsi, uint chip, uint pin)
        {
            var e = new KvmIrqRoutingEntry { Gsi = gsi, Type = KvmIrqRoutingEntry.TypeIrqchip };
            e.U[0] = chip;
            e.U[1] = pin;
            return e;
        }
        for (uint i = 0; i < 16; i++)
        {
            if (i != 2) routes.Add(Route(i, i < 8 ? KvmIrqRoutingEntry.IrqchipPicMaster : KvmIrqRoutingEntry.IrqchipPicSlave, i & 7));
        }
        for (uint i = 0; i < 24; i++)
        {
            if (i != 2) routes.Add(Route(i, KvmIrqRoutingEntry.IrqchipIoapic, i == 0 ? 2u : i));
        }
        return [.. routes];
    }

    private void SetPcGsiRouting()
    {
        var routes = PcGsiRoutes();
        var buffer = new byte[KvmIrqRouting.HeaderSize + routes.Length * KvmIrqRoutingEntry.Size];
        fixed (byte* p = buffer)
        {
            *(KvmIrqRouting*)p = new KvmIrqRouting { Nr = (uint)routes.Length };
            for (int i = 0; i < routes.Length; i++) ((KvmIrqRoutingEntry*)(p + KvmIrqRouting.HeaderSize))[i] = routes[i];
            _kernel.Ioctl(_fd, KvmIoctls.KVM_SET_GSI_ROUTING, p);
        }
    }

    public void SetIrqLine(int gsi, bool level)
    {
        if (Spec.Irqchip != IrqchipMode.On) throw new InvalidOperationException($"SetIrqLine is for kernel-irqchip=on; this VM is {Spec.Irqchip}");
        if ((uint)gsi >= 24) throw new ArgumentOutOfRangeException(nameof(gsi), $"GSI {gsi} does not exist (0-23)");
        var l = new KvmIrqLevel { Irq = (uint)gsi, Level = level ? 1u : 0u };
        _kernel.Ioctl(_fd, KvmIoctls.KVM_IRQ_LINE, ref l);
    }

    public void SendMsi(ulong address, uint data)
    {
        if (Spec.Irqchip == IrqchipMode.Off) throw new InvalidOperationException("SendMsi needs a kernel LAPIC (kernel-irqchip=on or split)");
        var m = new KvmMsi { AddressLo = (uint)address, AddressHi = (uint)(address >> 32), Data = data };
        _kernel.Ioctl(_fd, KvmIoctls.KVM_SIGNAL_MSI, ref m);
    }

    public void InjectNmi(int vcpuId)
    {
        KvmVcpu? v;
        lock (_lock) v = _vcpus.FirstOrDefault(x => x.Id == vcpuId);
        v?.QueueNmi();
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        lock (_lock)
        {
            foreach (var v in _vcpus) v.Dispose();
            _vcpus.Clear();
        }
        _fd.Dispose();
        _kernel.Munmap(_ram, (nuint)_ramLength);
        _system.Dispose();
    }
}
