// Test code, NOT a kernel: one VM of the KVM stand-in (KvmStandIn.cs has the overview). VM ioctls: the TSS and
// identity-map addresses (recorded; the soft CPU needs neither), KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) before any
// vCPU, KVM_SET_USER_MEMORY_REGION (slot 0 at GPA 0 only: its userspace memory becomes the soft VM's RAM),
// KVM_CREATE_VCPU (the soft VM is built at the first one, with the stand-in's MaxVcpus and the irqchip mode chosen
// by then), KVM_SIGNAL_MSI (to the soft kernel LAPICs), KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2 (kernel-irqchip=on:
// the soft kernel with KVM's device set), KVM_SET_GSI_ROUTING (the PC table only) and KVM_IRQ_LINE (GSIs into the soft
// kernel's PIC and IOAPIC). The VM lives while its fd or a vCPU fd is open, as in KVM.
using System.Runtime.CompilerServices;
using ActorVmm.Core.Accel;
using ActorVmm.Native.Soft;
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Tests.Kvm.StandIn;

public sealed unsafe class KvmStandInVm
{
    private readonly KvmStandIn _host;
    private readonly Lock _lock = new();
    private readonly Dictionary<int, KvmStandInVcpu> _vcpus = [];
    private int _references = 1; // the VM fd
    private ulong _memoryAddress, _memorySize;

    internal KvmStandInVm(KvmStandIn host) => _host = host;

    /// <summary>Off until KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) makes it Split or KVM_CREATE_IRQCHIP makes it On.</summary>
    public IrqchipMode Mode { get; private set; } = IrqchipMode.Off;

    public ulong TssAddress { get; private set; }

    /// <summary>KVM_CREATE_PIT2 was called (kernel-irqchip=on).</summary>
    public bool Pit { get; private set; }

    /// <summary>The table KVM_SET_GSI_ROUTING gave: (gsi, irqchip, pin).</summary>
    public List<(uint Gsi, uint Chip, uint Pin)> GsiRoutes { get; private set; } = [];

    public ulong IdentityMapAddress { get; private set; }

    /// <summary>The routes KVM_CAP_SPLIT_IRQCHIP reserved for the userspace IOAPIC.</summary>
    public int SplitIrqchipRoutes { get; private set; }

    /// <summary>The soft VM standing in for the kernel's (built at the first KVM_CREATE_VCPU).</summary>
    public SoftVm? Soft { get; private set; }

    /// <summary>Interrupt ioctls received: "msi fee01000 0041".</summary>
    public List<string> IrqLog { get; } = [];

    public bool Destroyed { get; private set; }

    public IReadOnlyList<KvmStandInVcpu> Vcpus
    {
        get
        {
            lock (_lock) return [.. _vcpus.Values.OrderBy(v => v.Id)];
        }
    }

    internal KvmStandIn Host => _host;

    private static T R<T>(void* arg, int offset) where T : unmanaged => Unsafe.ReadUnaligned<T>((byte*)arg + offset);

    internal bool UsesMemory(nint address) => !Destroyed && _memorySize != 0 && (ulong)address == _memoryAddress;

    internal bool UnmapRunPage(void* address)
    {
        foreach (var v in Vcpus)
            if (v.UnmapRunPage(address)) return true;
        return false;
    }

    internal void AddReference()
    {
        lock (_lock) _references++;
    }

    internal void ReleaseReference()
    {
        bool last;
        lock (_lock) last = --_references == 0;
        if (last) Destroy();
    }

    private void Destroy()
    {
        Destroyed = true;
        foreach (var v in Vcpus) v.Release();
        Soft?.Dispose();
        _host.Forget(this);
    }

    internal int Ioctl(ulong request, void* a)
    {
        switch (request)
        {
            case KvmStandIn.CHECK_EXTENSION:
                return _host.CheckExtension((int)(nint)a);
            case KvmStandIn.SET_TSS_ADDR:
                TssAddress = (ulong)(nint)a;
                return 0;
            case KvmStandIn.SET_IDENTITY_MAP_ADDR:
                lock (_lock)
                {
                    if (_vcpus.Count > 0) return -Errno.EINVAL; // only before vCPUs exist
                    IdentityMapAddress = R<ulong>(a, 0);
                }
                return 0;
            case KvmStandIn.ENABLE_CAP:
                {
                    uint cap = R<uint>(a, 0), flags = R<uint>(a, 4);
                    if (cap != KvmStandIn.CapSplitIrqchip || flags != 0) return -Errno.EINVAL;
                    ulong routes = R<ulong>(a, 8);
                    lock (_lock)
                    {
                        if (routes > 4096) return -Errno.EINVAL; // KVM_MAX_IRQ_ROUTES
                        if (_vcpus.Count > 0 || Soft is not null) return -Errno.EINVAL; // only before vCPUs exist
                        if (Mode != IrqchipMode.Off) return -Errno.EINVAL; // an irqchip exists already
                        Mode = IrqchipMode.Split;
                        SplitIrqchipRoutes = (int)routes;
                    }
                    return 0;
                }
            case KvmStandIn.CREATE_IRQCHIP:
                lock (_lock)
                {
                    if (_vcpus.Count > 0 || Soft is not null) return -Errno.EINVAL; // only before vCPUs exist
                    if (Mode != IrqchipMode.Off) return -Errno.EEXIST;
                    Mode = IrqchipMode.On;
                }
                return 0;
            case KvmStandIn.CREATE_PIT2:
                {
                    if (Mode != IrqchipMode.On) return -Errno.ENOENT; // the PIT needs the in-kernel irqchip
                    if (Pit) return -Errno.EEXIST;
                    if ((R<uint>(a, 0) & ~1u) != 0) return -Errno.EINVAL; // KVM_PIT_SPEAKER_DUMMY only
                    Pit = true;
                    return 0;
                }
            case KvmStandIn.SET_GSI_ROUTING:
                {
                    if (Mode != IrqchipMode.On) return -Errno.EINVAL;
                    uint nr = R<uint>(a, 0);
                    if (nr > 4096 || R<uint>(a, 4) != 0) return -Errno.EINVAL;
                    var routes = new List<(uint Gsi, uint Chip, uint Pin)>();
                    for (int i = 0; i < nr; i++)
                    {
                        byte* e = (byte*)a + 8 + i * 48;
                        if (R<uint>(e, 4) != 1 || R<uint>(e, 8) != 0) return -Errno.EINVAL; // KVM_IRQ_ROUTING_IRQCHIP, no flags
                        routes.Add((R<uint>(e, 0), R<uint>(e, 16), R<uint>(e, 20)));
                    }
                    // The soft kernel's wiring is fixed: the PC table (ISA IRQ n on 8259 input n%8 of master/slave,
                    // IOAPIC pin n, IRQ0 on pin 2). Any other table is beyond this stand-in.
                    foreach (var (gsi, chip, pin) in routes)
                    {
                        bool pc = chip switch
                        {
                            0 => gsi < 8 && pin == gsi,
                            1 => gsi is >= 8 and < 16 && pin == gsi - 8,
                            2 => gsi < 24 && pin == (gsi == 0 ? 2 : gsi),
                            _ => false,
                        };
                        if (!pc) return -Errno.EINVAL;
                    }
                    GsiRoutes = routes;
                    return 0;
                }
            case KvmStandIn.IRQ_LINE:
                {
                    if (Mode != IrqchipMode.On) return -Errno.ENXIO; // no in-kernel PIC or IOAPIC
                    uint irq = R<uint>(a, 0), level = R<uint>(a, 4);
                    if (irq >= 24) return -Errno.EINVAL;
                    if (Soft is null) return 0;
                    lock (IrqLog) IrqLog.Add($"irq {irq} {level}");
                    Soft.SetIrqLine((int)irq, level != 0);
                    return 0;
                }
            case KvmStandIn.SET_USER_MEMORY_REGION:
                return SetMemoryRegion(R<uint>(a, 0), R<uint>(a, 4), R<ulong>(a, 8), R<ulong>(a, 16), R<ulong>(a, 24));
            case KvmStandIn.CREATE_VCPU:
                return CreateVcpu((int)(nint)a);
            case KvmStandIn.SIGNAL_MSI:
                {
                    uint lo = R<uint>(a, 0), hi = R<uint>(a, 4), data = R<uint>(a, 8), flags = R<uint>(a, 12);
                    if (flags != 0) return -Errno.EINVAL;
                    if (Mode == IrqchipMode.Off) return -Errno.ENXIO; // no in-kernel LAPIC
                    if (Soft is null) return 0;
                    ulong address = ((ulong)hi << 32) | lo;
                    lock (IrqLog) IrqLog.Add($"msi {address:x} {data:x4}");
                    Soft.SendMsi(address, data);
                    return 1;
                }
            default:
                return -Errno.ENOTTY;
        }
    }

    private int SetMemoryRegion(uint slot, uint flags, ulong gpa, ulong size, ulong uaddr)
    {
        if ((flags & ~3u) != 0) return -Errno.EINVAL; // KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY
        if (((gpa | size | uaddr) & 0xfff) != 0) return -Errno.EINVAL;
        if (slot >= 32768) return -Errno.EINVAL;
        lock (_lock)
        {
            if (Soft is not null) return -Errno.EBUSY; // this stand-in: memory only before the first vCPU
            if (slot != 0 || gpa != 0 || flags != 0) return -Errno.EINVAL; // this stand-in: slot 0 at GPA 0, writable
            if (size == 0)
            {
                _memorySize = 0;
                return 0;
            }
            if (!_host.IsAnonymous(uaddr, size)) return -Errno.EFAULT;
            _memoryAddress = uaddr;
            _memorySize = size;
        }
        return 0;
    }

    private int CreateVcpu(int id)
    {
        if (id < 0 || id >= _host.MaxVcpus) return -Errno.EINVAL;
        KvmStandInVcpu v;
        lock (_lock)
        {
            if (_vcpus.ContainsKey(id)) return -Errno.EEXIST;
            if (Soft is null)
            {
                if (_memorySize == 0) return -Errno.EINVAL; // this stand-in builds its CPU over the memory slot
                Soft = new SoftVm(new VmSpec(_memorySize, _host.MaxVcpus, Mode), KernelPlatform.Kvm, (byte*)_memoryAddress);
            }
            v = new KvmStandInVcpu(this, id, Soft);
            _vcpus[id] = v;
            _references++;
        }
        return _host.AddFile(v);
    }
}
