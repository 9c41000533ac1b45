// Test code, NOT a kernel: an in-process stand-in for FreeBSD's vmm(4) behind IKernelInterface, so the vmm
// backend's whole path runs in tests on a machine without FreeBSD. It speaks the real ABI: the same request
// numbers (anything else answers ENOTTY), argument structures parsed from the raw bytes the backend passes, the
// same exit structure, and the exit-completion semantics of reference section c (nextrip = rip + inst_length
// after INOUT/MSR/decoded INST_EMUL; VM_SET_REGISTER(RIP) and VM_RESTART_INSTRUCTION move it; DEBUG while a vCPU
// is in the debug set; SUSPENDED once the VM is suspended). The CPU is ActorVmm's software CPU (SoftVm/SoftVcpu)
// and the in-kernel devices are SoftKernelDevices: an access the "kernel" does not handle aborts the soft CPU's
// instruction before it changes anything (the trap handler throws) and becomes the exit userspace sees.
// 14.x (sysctl hw.vmm.create, 32-byte vm_memseg only) or 15.x (/dev/vmmctl, 56-byte vm_memseg, 32-byte accepted
// as COMPAT_FREEBSD14) is chosen per instance; so is whether the seed project's VM_SET/GET_FLAGS extension exists.
// The in-kernel devices are vmm's set (KernelPlatform.Vmm: LAPIC, IOAPIC, 8259, PIT, HPET, RTC and the PM timer
// alone at 0x408; PM1 event/control at 0x400-0x405 are userspace's, so their accesses are INOUT exits).
// Where it differs from vmm: SoftKernelDevices' RTC answers 0x70-0x73 (vmm 0x70-0x71) and its IOAPIC has 24 pins
// (vmm 32); one vCPU;
// VM_INJECT_EXCEPTION is honoured only as #GP on a restarted RDMSR/WRMSR (the only injection the backend makes
// for a guest that behaves); no CPUID or MSR filtering of vmm's own.
using System.Collections.Concurrent;
using System.Text;
using ActorVmm.Core.Accel;
using ActorVmm.Native.Soft;
using ActorVmm.Native.Sys;
using ActorVmm.Native.Vmm;
using Iced.Intel;

namespace ActorVmm.Native.Tests.Vmm.StandIn;

public sealed unsafe partial class VmmStandIn : IKernelInterface
{
    private readonly ConcurrentDictionary<int, object> _files = new();
    private readonly ConcurrentDictionary<string, StandInVm> _vms = new();
    private int _nextFd = 100;

    public VmmStandIn(VmmGeneration generation = VmmGeneration.FreeBsd15, bool seedExtensions = false)
    {
        Generation = generation;
        SeedExtensions = seedExtensions;
    }

    public HostOs Os => HostOs.FreeBsd;

    public VmmGeneration Generation { get; }

    public bool SeedExtensions { get; }

    /// <summary>Report INST_EMUL exits as decoded by the kernel (decoded = 1), or leave decoding to userspace.</summary>
    public bool KernelDecodes { get; init; } = true;

    /// <summary>Every ioctl request value received, in order (for tests).</summary>
    public ConcurrentQueue<string> Log { get; } = new();

    /// <summary>VMs that exist now, by name.</summary>
    public IReadOnlyCollection<string> VmNames => [.. _vms.Keys];

    public StandInVm? FindVm(string name) => _vms.TryGetValue(name, out var vm) ? vm : null;

    private sealed class ControlFile;

    public int TryOpen(string path, out KernelFd? fd)
    {
        fd = null;
        object? file = null;
        if (path == VmmProbe.ControlDevice && Generation == VmmGeneration.FreeBsd15) file = new ControlFile();
        else if (path.StartsWith(VmmProbe.VmDirectory + "/", StringComparison.Ordinal) && _vms.TryGetValue(path[(VmmProbe.VmDirectory.Length + 1)..], out var vm)) file = vm;
        if (file is null) return Errno.ENOENT;
        int n = Interlocked.Increment(ref _nextFd);
        _files[n] = file;
        fd = new KernelFd(this, n, path);
        return 0;
    }

    public int Close(int fd) => _files.TryRemove(fd, out _) ? 0 : Errno.EBADF;

    public int Access(string path) => path == VmmProbe.ControlDevice && Generation == VmmGeneration.FreeBsd15 ? 0 : Errno.ENOENT;

    public int TrySysctlReadInt(string name, out int value)
    {
        value = name == "hw.vmm.maxcpu" ? 16 : 0;
        return name == "hw.vmm.maxcpu" ? 0 : Errno.ENOENT;
    }

    public int TrySysctlWrite(string name, ReadOnlySpan<byte> newValue)
    {
        string vmName = Encoding.ASCII.GetString(newValue).TrimEnd('\0');
        return name switch
        {
            "hw.vmm.create" => CreateVm(vmName),
            "hw.vmm.destroy" => DestroyVm(vmName),
            _ => Errno.ENOENT,
        };
    }

    public int SetThreadAffinity(ReadOnlySpan<int> cpus)
    {
        PinnedTo = [.. cpus];
        return 0;
    }

    /// <summary>The host CPUs the last SetThreadAffinity asked for.</summary>
    public int[]? PinnedTo { get; private set; }

    private int CreateVm(string name)
    {
        if (name.Length == 0 || name.Length > VmmConstants.MaxNameLength) return Errno.EINVAL;
        return _vms.TryAdd(name, new StandInVm(this, name)) ? 0 : Errno.EEXIST;
    }

    private int DestroyVm(string name)
    {
        if (!_vms.TryRemove(name, out var vm)) return Errno.ENOENT;
        vm.Destroy();
        return 0;
    }

    public void* Mmap(KernelFd fd, ulong length, MapProtection prot, long offset)
    {
        if (!_files.TryGetValue(fd.Fd, out var f) || f is not StandInVm vm) throw new KernelCallException($"mmap of {fd.Path}", Errno.ENODEV, Os);
        if ((prot & MapProtection.Exec) != 0) throw new KernelCallException($"mmap of {fd.Path}", Errno.EINVAL, Os);
        void* p = vm.MapSysmem((ulong)offset, length);
        if (p == null) throw new KernelCallException($"mmap of {fd.Path} at 0x{offset:x}", Errno.EINVAL, Os);
        return p;
    }

    public int Munmap(void* address, nuint length) => 0;

    public void* MmapAnonymous(ulong length) => System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)length, 4096);

    public nint PrepareKickableThread() => 0; // vmm kicks with VM_SUSPEND_CPU, not signals

    public int KickThread(nint token) => Errno.EINVAL;

    public int TryIoctl(KernelFd fd, IoctlRequest request, void* arg)
    {
        Log.Enqueue(request.Name);
        if (!_files.TryGetValue(fd.Fd, out var f)) return -Errno.EBADF;
        try
        {
            return f switch
            {
                ControlFile => ControlIoctl(request.Value, arg),
                StandInVm vm => vm.Ioctl(request.Value, arg),
                _ => -Errno.ENOTTY,
            };
        }
        catch (StandInError e)
        {
            return -e.Errno;
        }
    }

    private int ControlIoctl(ulong request, void* arg)
    {
        if (request != 0xC1285600 && request != 0xC1285601) return -Errno.ENOTTY;
        var bytes = new ReadOnlySpan<byte>(arg, 296);
        for (int i = 232; i < 296; i++)
            if (bytes[i] != 0) return -Errno.EINVAL; // reserved must be zero
        int end = bytes[..230].IndexOf((byte)0);
        if (end < 0) return -63; // FreeBSD ENAMETOOLONG
        string name = Encoding.ASCII.GetString(bytes[..end]);
        int e = request == 0xC1285600 ? CreateVm(name) : DestroyVm(name);
        return -e;
    }

    internal sealed class StandInError(int errno) : Exception($"errno {errno}")
    {
        public int Errno { get; } = errno;
    }
}
