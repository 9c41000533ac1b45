// The real kernel behind IKernelInterface: libc system calls (Interop.Libc), with each OS's flag values.
using System.Runtime.InteropServices;

namespace ActorVmm.Native.Sys;

public sealed unsafe class HostKernel : IKernelInterface
{
    public static HostKernel Instance { get; } = new();

    private const int ORdwr = 2, LinuxCloexec = 0x80000, FreeBsdCloexec = 0x100000, MapShared = 1;
    private const int CpuLevelWhich = 3, CpuWhichTid = 1;
    private const int RwOk = 2 | 4;

    /// <summary>Userland cpuset_t on FreeBSD (CPU_SETSIZE 1024 bits) and the size glibc's cpu_set_t has.</summary>
    private const int CpuSetBytes = 128;

    public HostOs Os => HostPlatform.Current;

    public int TryOpen(string path, out KernelFd? fd)
    {
        int flags = ORdwr | (Os == HostOs.FreeBsd ? FreeBsdCloexec : LinuxCloexec);
        int r = Interop.Libc.Open(path, flags);
        if (r < 0)
        {
            fd = null;
            return Marshal.GetLastPInvokeError();
        }
        fd = new KernelFd(this, r, path);
        return 0;
    }

    public int Close(int fd) => Interop.Libc.Close(fd) == 0 ? 0 : Marshal.GetLastPInvokeError();

    public int TryIoctl(KernelFd fd, IoctlRequest request, void* arg)
    {
        bool added = false;
        fd.DangerousAddRef(ref added);
        try
        {
            // SAFETY: arg points at a buffer of at least the size encoded in the request (the callers pass the
            // struct the request was computed from), pinned for the call.
            int r = Interop.Libc.Ioctl(fd.Fd, request.Value, arg);
            return r >= 0 ? r : -Marshal.GetLastPInvokeError();
        }
        finally
        {
            if (added) fd.DangerousRelease();
        }
    }

    public void* Mmap(KernelFd fd, ulong length, MapProtection prot, long offset)
    {
        // SAFETY: a new shared mapping chosen by the kernel; nothing of ours is replaced.
        void* p = Interop.Libc.Mmap(null, (nuint)length, (int)prot, MapShared, fd.Fd, offset);
        if (p == (void*)-1) throw new KernelCallException($"mmap of {length} bytes at offset 0x{offset:x} of {fd.Path}", Marshal.GetLastPInvokeError(), Os);
        return p;
    }

    public void* MmapAnonymous(ulong length)
    {
        int anon = Os == HostOs.FreeBsd ? 0x1000 : 0x20;
        const int MapPrivate = 2;
        // SAFETY: a new private anonymous mapping chosen by the kernel.
        void* p = Interop.Libc.Mmap(null, (nuint)length, (int)(MapProtection.Read | MapProtection.Write), MapPrivate | anon, -1, 0);
        if (p == (void*)-1) throw new KernelCallException($"mmap of {length} anonymous bytes", Marshal.GetLastPInvokeError(), Os);
        return p;
    }

    /// <summary>The real-time signal used to kick vCPU threads out of KVM_RUN (SIGRTMIN+6; .NET uses SIGRTMIN itself).</summary>
    public const int KickSignal = 40;

    private static int s_kickHandlerInstalled;

    /// <summary>
    /// The kick signal's handler: native code that returns at once (one x86-64 RET on its own read+execute page). The
    /// signal's only purpose is to make a blocked KVM_RUN return EINTR, and it may just as well arrive while the vCPU
    /// thread runs managed code (handling an exit): a managed handler (UnmanagedCallersOnly) would then be entered
    /// from a thread in cooperative mode, which the runtime ends as a fatal error ("attempted to call a
    /// UnmanagedCallersOnly method from managed code", seen on a real /dev/kvm), and managed code is not
    /// async-signal-safe anyway.
    /// </summary>
    private static nint NativeReturnStub()
    {
        if (RuntimeInformation.ProcessArchitecture != Architecture.X64)
            throw new PlatformNotSupportedException("the kick signal's handler stub is x86-64 code");
        const int ProtRead = 1, ProtWrite = 2, ProtExec = 4, MapPrivate = 2, MapAnonymous = 0x20;
        // SAFETY: a new private anonymous page chosen by the kernel; filled, then made read+execute (never writable
        // and executable at once); kept for the life of the process (the handler may run at any time).
        byte* page = (byte*)Interop.Libc.Mmap(null, 4096, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
        if (page == (byte*)-1) throw new KernelCallException("mmap of the kick handler's page", Marshal.GetLastPInvokeError(), HostPlatform.Current);
        page[0] = 0xc3; // RET
        if (Interop.Libc.Mprotect(page, 4096, ProtRead | ProtExec) != 0)
            throw new KernelCallException("mprotect of the kick handler's page", Marshal.GetLastPInvokeError(), HostPlatform.Current);
        return (nint)page;
    }

    public nint PrepareKickableThread()
    {
        if (Os != HostOs.Linux) return 0;
        if (Interlocked.Exchange(ref s_kickHandlerInstalled, 1) == 0)
        {
            // glibc struct sigaction on x86-64: handler (8), sa_mask (128), sa_flags (4, padded to 8), sa_restorer (8).
            byte* act = stackalloc byte[152];
            new Span<byte>(act, 152).Clear();
            *(nint*)act = NativeReturnStub();
            // sa_flags 0: no SA_RESTART, so KVM_RUN returns EINTR.
            if (Interop.Libc.Sigaction(KickSignal, act, null) != 0)
                throw new KernelCallException($"sigaction({KickSignal})", Marshal.GetLastPInvokeError(), Os);
        }
        return Interop.Libc.PthreadSelf();
    }

    public int KickThread(nint token) => token == 0 ? Errno.EINVAL : Interop.Libc.PthreadKill(token, KickSignal);

    public int Munmap(void* address, nuint length) => Interop.Libc.Munmap(address, length) == 0 ? 0 : Marshal.GetLastPInvokeError();

    public int TrySysctlWrite(string name, ReadOnlySpan<byte> newValue)
    {
        if (Os != HostOs.FreeBsd) return Errno.ENOENT;
        fixed (byte* p = newValue)
            return Interop.Libc.SysctlByName(name, null, null, p, (nuint)newValue.Length) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    public int TrySysctlReadInt(string name, out int value)
    {
        value = 0;
        if (Os != HostOs.FreeBsd) return Errno.ENOENT;
        int v = 0;
        nuint len = sizeof(int);
        int r = Interop.Libc.SysctlByName(name, &v, &len, null, 0);
        if (r != 0) return Marshal.GetLastPInvokeError();
        value = v;
        return 0;
    }

    public int Access(string path) => Interop.Libc.Access(path, RwOk) == 0 ? 0 : Marshal.GetLastPInvokeError();

    public int SetThreadAffinity(ReadOnlySpan<int> cpus)
    {
        byte* mask = stackalloc byte[CpuSetBytes];
        new Span<byte>(mask, CpuSetBytes).Clear();
        foreach (int cpu in cpus)
        {
            if ((uint)cpu >= CpuSetBytes * 8) return Errno.EINVAL;
            mask[cpu >> 3] |= (byte)(1 << (cpu & 7));
        }
        int r = Os switch
        {
            HostOs.Linux => Interop.Libc.SchedSetAffinity(0, CpuSetBytes, mask),
            HostOs.FreeBsd => Interop.Libc.CpusetSetAffinity(CpuLevelWhich, CpuWhichTid, -1, CpuSetBytes, mask),
            _ => -2,
        };
        return r == 0 ? 0 : r == -2 ? Errno.ENODEV : Marshal.GetLastPInvokeError();
    }
}
