// Test code, NOT a kernel: an in-process stand-in for Linux KVM (/dev/kvm) behind IKernelInterface, so the KVM
// backend's whole path (src/Native/Kvm) runs in tests on machines without /dev/kvm. It speaks the real ABI: the
// request numbers of linux/kvm.h (anything else answers ENOTTY), argument structures read and written as raw bytes
// at the offsets of /usr/include/linux/kvm.h (the layouts KvmAbiLayoutTests checks with gcc), the kvm_run page with
// its exits, and the completion rules of Documentation/virt/kvm/api.rst (an IN's data and an MMIO read's data are
// taken from the page on the next KVM_RUN; immediate_exit; a signal makes KVM_RUN return EINTR). The CPU is
// ActorVmm's software CPU (SoftVm/SoftVcpu); with a split irqchip its local APICs are SoftKernelDevices' (split mode).
// Where it differs from KVM (docs/kvm.md, "Stand-in"): CPUID and MSRs are the soft CPU's own (KVM_SET_CPUID2 is
// recorded, not applied; KVM_GET_SUPPORTED_CPUID reports what the soft CPU answers); one memory slot, slot 0 at
// GPA 0, backed by memory this stand-in handed out with MmapAnonymous; the number of vCPUs a VM may have is fixed
// per stand-in (MaxVcpus); kernel-irqchip=on (KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2) is SoftKernelDevices with KVM's
// device set (LAPIC, IOAPIC, 8259 pair, PIT; KernelPlatform.Kvm) whose GSI wiring is fixed (ISA IRQ n on PIC input n
// and IOAPIC pin n, IRQ0 on pin 2): KVM_SET_GSI_ROUTING is accepted only as that table; no dirty logging, no coalesced MMIO.
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Tests.Kvm.StandIn;

public sealed unsafe class KvmStandIn : IKernelInterface
{
    public const string Device = "/dev/kvm";

    /// <summary>What KVM_GET_VCPU_MMAP_SIZE reports: the kvm_run page, the PIO data page, the coalesced-MMIO page.</summary>
    public const int VcpuMmapSize = 3 * 4096;

    /// <summary>KVM_PIO_PAGE_OFFSET * PAGE_SIZE: where io.data_offset points.</summary>
    public const int PioDataOffset = 4096;

    // Request numbers as linux/kvm.h computes them (_IO/_IOR/_IOW/_IOWR of KVMIO 0xAE), independent of KvmAbi.cs.
    internal const ulong
        GET_API_VERSION = 0xAE00, CREATE_VM = 0xAE01, CHECK_EXTENSION = 0xAE03, GET_VCPU_MMAP_SIZE = 0xAE04,
        GET_SUPPORTED_CPUID = 0xC008AE05, CREATE_VCPU = 0xAE41, SET_USER_MEMORY_REGION = 0x4020AE46, SET_TSS_ADDR = 0xAE47,
        SET_IDENTITY_MAP_ADDR = 0x4008AE48, CREATE_IRQCHIP = 0xAE60, IRQ_LINE = 0x4008AE61, CREATE_PIT2 = 0x4040AE77,
        RUN = 0xAE80, GET_REGS = 0x8090AE81, SET_REGS = 0x4090AE82, GET_SREGS = 0x8138AE83, SET_SREGS = 0x4138AE84,
        INTERRUPT = 0x4004AE86, GET_MSRS = 0xC008AE88, SET_MSRS = 0x4008AE89, SET_CPUID2 = 0x4008AE90, NMI = 0xAE9A,
        ENABLE_CAP = 0x4068AEA3, SIGNAL_MSI = 0x4020AEA5, SET_GSI_ROUTING = 0x4008AE6A;

    // KVM_CAP_* numbers (linux/kvm.h).
    internal const int CapIrqchip = 0, CapHlt = 1, CapUserMemory = 3, CapSetTssAddr = 4, CapExtCpuid = 7, CapNrVcpus = 9,
        CapIrqRouting = 25, CapPit2 = 33, CapMaxVcpus = 66, CapSignalMsi = 77, CapSplitIrqchip = 121, CapImmediateExit = 136;

    private readonly ConcurrentDictionary<int, object> _files = new();
    private readonly ConcurrentDictionary<nint, ulong> _anonymous = new();
    private readonly ConcurrentDictionary<nint, KvmStandInVm> _deferredFree = new();
    private readonly ConcurrentDictionary<nint, ThreadSignal> _threads = new();
    private readonly ThreadLocal<ThreadSignal?> _currentThread = new();
    private readonly List<KvmStandInVm> _vms = [];
    private int _nextFd = 200;
    private int _nextToken;

    /// <param name="maxVcpus">vCPUs each VM may have (KVM_CAP_MAX_VCPUS): the soft VM behind it is built for this many.</param>
    public KvmStandIn(int maxVcpus = 1)
    {
        if (maxVcpus is < 1 or > ActorVmm.Native.Soft.SoftAccelerator.MaxVcpus) throw new ArgumentOutOfRangeException(nameof(maxVcpus));
        MaxVcpus = maxVcpus;
    }

    public HostOs Os => HostOs.Linux;

    public int MaxVcpus { get; }

    /// <summary>Every ioctl request received, by its linux/kvm.h name (or its number when unknown), in order.</summary>
    public ConcurrentQueue<string> Log { get; } = new();

    /// <summary>Open file descriptors (the device, VMs, vCPUs).</summary>
    public int OpenFiles => _files.Count;

    /// <summary>Anonymous mappings not yet unmapped.</summary>
    public int LiveAnonymousMappings => _anonymous.Count;

    /// <summary>VMs that exist (a VM lives while its fd or any of its vCPU fds is open).</summary>
    public IReadOnlyList<KvmStandInVm> Vms
    {
        get
        {
            lock (_vms) return [.. _vms];
        }
    }

    /// <summary>Every VM this stand-in created, destroyed or not.</summary>
    public List<KvmStandInVm> AllVms { get; } = [];

    private sealed class DeviceFile;

    public int TryOpen(string path, out KernelFd? fd)
    {
        fd = null;
        if (path != Device) return Errno.ENOENT;
        fd = new KernelFd(this, AddFile(new DeviceFile()), path);
        return 0;
    }

    internal int AddFile(object file)
    {
        int n = Interlocked.Increment(ref _nextFd);
        _files[n] = file;
        return n;
    }

    public int Close(int fd)
    {
        if (!_files.TryRemove(fd, out var f)) return Errno.EBADF;
        switch (f)
        {
            case KvmStandInVm vm:
                vm.ReleaseReference();
                break;
            case KvmStandInVcpu vcpu:
                vcpu.FdClosed();
                break;
        }
        return 0;
    }

    internal void Forget(KvmStandInVm vm)
    {
        lock (_vms) _vms.Remove(vm);
        foreach (var (p, owner) in _deferredFree)
        {
            if (owner != vm || !_deferredFree.TryRemove(p, out _)) continue;
            NativeMemory.AlignedFree((void*)p);
        }
    }

    public int Access(string path) => path == Device ? 0 : Errno.ENOENT;

    public int TrySysctlReadInt(string name, out int value)
    {
        value = 0;
        return Errno.ENOENT; // Linux has no sysctlbyname
    }

    public int TrySysctlWrite(string name, ReadOnlySpan<byte> newValue) => Errno.ENOENT;

    public int SetThreadAffinity(ReadOnlySpan<int> cpus)
    {
        PinnedTo = [.. cpus];
        return 0;
    }

    /// <summary>The host CPUs the last SetThreadAffinity asked for.</summary>
    public int[]? PinnedTo { get; private set; }

    public void* MmapAnonymous(ulong length)
    {
        if (length == 0) throw new KernelCallException("mmap (anonymous)", Errno.EINVAL, Os);
        ulong rounded = (length + 0xfff) & ~0xfffUL;
        void* p = NativeMemory.AlignedAlloc((nuint)rounded, 4096);
        NativeMemory.Clear(p, (nuint)rounded);
        _anonymous[(nint)p] = rounded;
        return p;
    }

    /// <summary>Whether [address, address + length) lies in one anonymous mapping this stand-in handed out.</summary>
    internal bool IsAnonymous(ulong address, ulong length)
    {
        foreach (var (p, len) in _anonymous)
            if (address >= (ulong)p && address + length <= (ulong)p + len) return true;
        return false;
    }

    public int Munmap(void* address, nuint length)
    {
        if (_anonymous.TryRemove((nint)address, out _))
        {
            // Memory still registered as a live VM's memory slot is freed with the VM (the soft CPU still points at it).
            var owner = Vms.FirstOrDefault(v => v.UsesMemory((nint)address));
            if (owner is not null) _deferredFree[(nint)address] = owner;
            else NativeMemory.AlignedFree(address);
            return 0;
        }
        foreach (var vm in Vms)
            if (vm.UnmapRunPage(address)) return 0;
        return Errno.EINVAL;
    }

    public void* Mmap(KernelFd fd, ulong length, MapProtection prot, long offset)
    {
        if (!_files.TryGetValue(fd.Fd, out var f) || f is not KvmStandInVcpu vcpu) throw new KernelCallException($"mmap of {fd.Path}", Errno.ENODEV, Os);
        if (offset != 0 || length == 0 || length > VcpuMmapSize) throw new KernelCallException($"mmap of {fd.Path}", Errno.EINVAL, Os);
        return vcpu.MapRunPage();
    }

    /// <summary>The signal state of a thread a KVM_RUN may be interrupted on (PrepareKickableThread/KickThread).</summary>
    internal sealed class ThreadSignal
    {
        private int _pending;
        public volatile KvmStandInVcpu? Running;

        public void Raise()
        {
            Volatile.Write(ref _pending, 1);
            Running?.Interrupt();
        }

        public bool Take() => Interlocked.Exchange(ref _pending, 0) != 0;

        public bool Pending => Volatile.Read(ref _pending) != 0;
    }

    public nint PrepareKickableThread()
    {
        var s = _currentThread.Value;
        if (s is null)
        {
            s = new ThreadSignal();
            _currentThread.Value = s;
        }
        nint token = Interlocked.Increment(ref _nextToken);
        _threads[token] = s;
        return token;
    }

    public int KickThread(nint token)
    {
        if (!_threads.TryGetValue(token, out var s)) return 3; // ESRCH
        s.Raise();
        return 0;
    }

    internal ThreadSignal? CurrentThreadSignal => _currentThread.Value;

    private static string NameOf(ulong request) => request switch
    {
        GET_API_VERSION => "KVM_GET_API_VERSION", CREATE_VM => "KVM_CREATE_VM", CHECK_EXTENSION => "KVM_CHECK_EXTENSION",
        GET_VCPU_MMAP_SIZE => "KVM_GET_VCPU_MMAP_SIZE", GET_SUPPORTED_CPUID => "KVM_GET_SUPPORTED_CPUID", CREATE_VCPU => "KVM_CREATE_VCPU",
        SET_USER_MEMORY_REGION => "KVM_SET_USER_MEMORY_REGION", SET_TSS_ADDR => "KVM_SET_TSS_ADDR", SET_IDENTITY_MAP_ADDR => "KVM_SET_IDENTITY_MAP_ADDR",
        CREATE_IRQCHIP => "KVM_CREATE_IRQCHIP", IRQ_LINE => "KVM_IRQ_LINE", CREATE_PIT2 => "KVM_CREATE_PIT2", RUN => "KVM_RUN",
        GET_REGS => "KVM_GET_REGS", SET_REGS => "KVM_SET_REGS", GET_SREGS => "KVM_GET_SREGS", SET_SREGS => "KVM_SET_SREGS",
        INTERRUPT => "KVM_INTERRUPT", GET_MSRS => "KVM_GET_MSRS", SET_MSRS => "KVM_SET_MSRS", SET_CPUID2 => "KVM_SET_CPUID2",
        NMI => "KVM_NMI", ENABLE_CAP => "KVM_ENABLE_CAP", SIGNAL_MSI => "KVM_SIGNAL_MSI", SET_GSI_ROUTING => "KVM_SET_GSI_ROUTING",
        _ => $"0x{request:x8}",
    };

    public int TryIoctl(KernelFd fd, IoctlRequest request, void* arg)
    {
        Log.Enqueue(NameOf(request.Value));
        if (!_files.TryGetValue(fd.Fd, out var f)) return -Errno.EBADF;
        try
        {
            return f switch
            {
                DeviceFile => DeviceIoctl(request.Value, arg),
                KvmStandInVm vm => vm.Ioctl(request.Value, arg),
                KvmStandInVcpu vcpu => vcpu.Ioctl(request.Value, arg),
                _ => -Errno.ENOTTY,
            };
        }
        catch (StandInError e)
        {
            return -e.Errno;
        }
    }

    internal int CheckExtension(int cap) => cap switch
    {
        CapHlt or CapUserMemory or CapSetTssAddr or CapExtCpuid or CapSignalMsi or CapSplitIrqchip or CapImmediateExit
            or CapIrqchip or CapPit2 or CapIrqRouting => 1,
        CapNrVcpus or CapMaxVcpus => MaxVcpus,
        _ => 0,
    };

    private int DeviceIoctl(ulong request, void* arg)
    {
        switch (request)
        {
            case GET_API_VERSION:
                return 12;
            case CHECK_EXTENSION:
                return CheckExtension((int)(nint)arg);
            case GET_VCPU_MMAP_SIZE:
                return VcpuMmapSize;
            case CREATE_VM:
                {
                    if ((nint)arg != 0) return -Errno.EINVAL; // machine type 0 only
                    var vm = new KvmStandInVm(this);
                    lock (_vms) _vms.Add(vm);
                    AllVms.Add(vm);
                    return AddFile(vm);
                }
            case GET_SUPPORTED_CPUID:
                {
                    var leaves = SupportedCpuid.Leaves;
                    uint nent = *(uint*)arg;
                    if (nent < leaves.Length) return -7; // E2BIG
                    *(uint*)arg = (uint)leaves.Length;
                    byte* e = (byte*)arg + 8;
                    foreach (var l in leaves)
                    {
                        new Span<byte>(e, 40).Clear();
                        *(uint*)e = l.Function;
                        *(uint*)(e + 12) = l.Eax;
                        *(uint*)(e + 16) = l.Ebx;
                        *(uint*)(e + 20) = l.Ecx;
                        *(uint*)(e + 24) = l.Edx;
                        e += 40;
                    }
                    return 0;
                }
            default:
                return -Errno.ENOTTY;
        }
    }

    internal sealed class StandInError(int errno) : Exception($"errno {errno}")
    {
        public int Errno { get; } = errno;
    }
}
