// The one door to the kernel. Every system call the hypervisor backends make (open, close, ioctl, mmap,
// munmap, sysctlbyname, thread affinity, device probes) goes through IKernelInterface, so a stand-in can sit
// behind it in tests (tests/Native/Vmm: an in-process vmm(4) driven by the software CPU). HostKernel is the
// real one (libc). Errors are KernelCallException: the call, what it was called on, and errno.
using System.Runtime.InteropServices;

namespace ActorVmm.Native.Sys;

public enum HostOs
{
    Linux,
    FreeBsd,
    Other,
}

/// <summary>A failed system call: which call, on what, and the errno it returned.</summary>
public sealed class KernelCallException(string call, int errno, HostOs os)
    : Exception($"{call}: {Sys.Errno.Describe(errno, os)}")
{
    /// <summary>The call and its object, e.g. "ioctl VM_RUN (0x80207601) on /dev/vmm/actorvmm-1".</summary>
    public string Call { get; } = call;

    public int Errno { get; } = errno;

    public HostOs Os { get; } = os;
}

/// <summary>The errno values the backends test for; several differ between FreeBSD (4.4BSD numbering) and Linux.</summary>
public static class Errno
{
    public const int EPERM = 1, ENOENT = 2, EINTR = 4, EIO = 5, ENXIO = 6, EBADF = 9, ENOMEM = 12, EACCES = 13, EFAULT = 14,
        EBUSY = 16, EEXIST = 17, ENODEV = 19, EINVAL = 22, ENOTTY = 25, ERANGE = 34;

    public static int EAGAIN(HostOs os) => os == HostOs.FreeBsd ? 35 : 11;

    public static int EALREADY(HostOs os) => os == HostOs.FreeBsd ? 37 : 114;

    public static string Describe(int errno, HostOs os)
    {
        string? name = errno switch
        {
            EPERM => "EPERM (operation not permitted)",
            ENOENT => "ENOENT (no such file or directory)",
            EINTR => "EINTR (interrupted system call)",
            EIO => "EIO (input/output error)",
            ENXIO => "ENXIO (device not configured)",
            EBADF => "EBADF (bad file descriptor)",
            ENOMEM => "ENOMEM (cannot allocate memory)",
            EACCES => "EACCES (permission denied)",
            EFAULT => "EFAULT (bad address)",
            EBUSY => "EBUSY (device busy)",
            EEXIST => "EEXIST (file exists)",
            ENODEV => "ENODEV (operation not supported by device)",
            EINVAL => "EINVAL (invalid argument)",
            ENOTTY => "ENOTTY (inappropriate ioctl for device)",
            ERANGE => "ERANGE (result too large)",
            _ => null,
        };
        if (name is null && errno == EAGAIN(os)) name = "EAGAIN (resource temporarily unavailable)";
        if (name is null && errno == EALREADY(os)) name = "EALREADY (operation already in progress)";
        return name is null ? $"errno {errno}" : $"errno {errno} {name}";
    }
}

/// <summary>A kernel file descriptor (device node, VM, vCPU). Closed through the interface that opened it.</summary>
public sealed class KernelFd : SafeHandle
{
    private readonly IKernelInterface _kernel;

    public KernelFd(IKernelInterface kernel, int fd, string path) : base(-1, ownsHandle: true)
    {
        _kernel = kernel;
        Path = path;
        SetHandle(fd);
    }

    /// <summary>What was opened (or what this descriptor stands for), for error messages.</summary>
    public string Path { get; }

    public int Fd => (int)handle;

    public override bool IsInvalid => handle == -1;

    protected override bool ReleaseHandle() => _kernel.Close((int)handle) == 0;
}

/// <summary>A memory mapping made with mmap; unmapped when released.</summary>
public sealed unsafe class KernelMapping : SafeHandle
{
    private readonly IKernelInterface _kernel;

    public KernelMapping(IKernelInterface kernel, void* address, ulong length, string what) : base(0, ownsHandle: true)
    {
        _kernel = kernel;
        Length = length;
        What = what;
        SetHandle((nint)address);
    }

    public byte* Pointer => (byte*)handle;

    public ulong Length { get; }

    public string What { get; }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle() => _kernel.Munmap((void*)handle, (nuint)Length) == 0;
}

/// <summary>Protection and flag bits for <see cref="IKernelInterface.Mmap"/>, portable names for each OS's values.</summary>
[Flags]
public enum MapProtection
{
    None = 0,
    Read = 1,
    Write = 2,
    Exec = 4,
}

/// <summary>
/// Every system call the hypervisor backends make. Implementations: <see cref="HostKernel"/> (libc) and test
/// stand-ins. Calls that fail throw <see cref="KernelCallException"/> unless their name starts with Try.
/// </summary>
public unsafe interface IKernelInterface
{
    /// <summary>Which kernel's ABI this interface speaks (errno and flag numbering, ioctl encoding).</summary>
    HostOs Os { get; }

    /// <summary>open(path, O_RDWR | O_CLOEXEC). Returns errno (0 on success).</summary>
    int TryOpen(string path, out KernelFd? fd);

    /// <summary>close(fd): 0 or errno.</summary>
    int Close(int fd);

    /// <summary>ioctl(fd, request, arg): the call's non-negative result, or -errno. Never throws.</summary>
    int TryIoctl(KernelFd fd, IoctlRequest request, void* arg);

    /// <summary>mmap(addr, length, prot, MAP_SHARED, fd, offset) of a device; shared mapping of the object at offset.</summary>
    void* Mmap(KernelFd fd, ulong length, MapProtection prot, long offset);

    /// <summary>mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0): page-aligned zeroed memory.</summary>
    void* MmapAnonymous(ulong length);

    /// <summary>
    /// Makes the calling thread interruptible by <see cref="KickThread"/>: a blocking system call it makes (KVM_RUN)
    /// returns EINTR when kicked. Returns the token KickThread takes.
    /// </summary>
    nint PrepareKickableThread();

    /// <summary>Interrupts the thread a <see cref="PrepareKickableThread"/> token names: 0 or errno.</summary>
    int KickThread(nint token);

    /// <summary>munmap: 0 or errno.</summary>
    int Munmap(void* address, nuint length);

    /// <summary>sysctlbyname(name, NULL, NULL, newValue, len) (FreeBSD): 0 or errno.</summary>
    int TrySysctlWrite(string name, ReadOnlySpan<byte> newValue);

    /// <summary>sysctlbyname(name, old, &amp;len, NULL, 0) of an int (FreeBSD): errno, 0 on success.</summary>
    int TrySysctlReadInt(string name, out int value);

    /// <summary>Whether a path exists, and whether this process may open it read-write: 0, ENOENT, EACCES...</summary>
    int Access(string path);

    /// <summary>Pins the calling thread to these host CPUs (sched_setaffinity / cpuset_setaffinity): 0 or errno.</summary>
    int SetThreadAffinity(ReadOnlySpan<int> cpus);
}

/// <summary>Calls that throw on failure, built on the Try forms.</summary>
public static unsafe class KernelInterfaceExtensions
{
    public static KernelFd Open(this IKernelInterface kernel, string path)
    {
        int e = kernel.TryOpen(path, out var fd);
        if (e != 0) throw new KernelCallException($"open {path}", e, kernel.Os);
        return fd!;
    }

    /// <summary>ioctl that throws on failure, retrying EINTR.</summary>
    public static int Ioctl(this IKernelInterface kernel, KernelFd fd, IoctlRequest request, void* arg)
    {
        while (true)
        {
            int r = kernel.TryIoctl(fd, request, arg);
            if (r >= 0) return r;
            if (-r == Errno.EINTR) continue;
            throw new KernelCallException($"ioctl {request} on {fd.Path}", -r, kernel.Os);
        }
    }

    public static int Ioctl<T>(this IKernelInterface kernel, KernelFd fd, IoctlRequest request, ref T arg) where T : unmanaged
    {
        fixed (T* p = &arg) return kernel.Ioctl(fd, request, p);
    }

    public static int TryIoctl<T>(this IKernelInterface kernel, KernelFd fd, IoctlRequest request, ref T arg) where T : unmanaged
    {
        fixed (T* p = &arg) return kernel.TryIoctl(fd, request, p);
    }

    public static KernelMapping Map(this IKernelInterface kernel, KernelFd fd, ulong length, MapProtection prot, long offset, string what)
        => new(kernel, kernel.Mmap(fd, length, prot, offset), length, what);
}

/// <summary>The host's OS, as the backends classify it.</summary>
public static class HostPlatform
{
    public static HostOs Current { get; } =
        OperatingSystem.IsLinux() ? HostOs.Linux : OperatingSystem.IsFreeBSD() ? HostOs.FreeBsd : HostOs.Other;

    public static string Describe(HostOs os) => os switch
    {
        HostOs.Linux => "Linux",
        HostOs.FreeBsd => "FreeBSD",
        _ => RuntimeInformation.OSDescription,
    };

    public static bool IsX64 => RuntimeInformation.ProcessArchitecture == Architecture.X64;
}
