// libc entry points for the hypervisor backends (LibraryImport, errno through SetLastError). The library is
// resolved by name per OS: libc.so.6 (glibc) on Linux, libc.so.7 on FreeBSD ("libc.so" on both is a linker
// script that dlopen cannot load). ioctl is declared with a fixed third argument: on x86-64 System V a
// variadic call passes its arguments in the same registers (rdi, rsi, rdx), and both libcs implement ioctl
// as a system-call stub.
using System.Reflection;
using System.Runtime.InteropServices;

namespace ActorVmm.Native.Sys;

internal static unsafe partial class Interop
{
    internal static partial class Libc
    {
        private const string Name = "actorvmm-libc";

        static Libc()
        {
            NativeLibrary.SetDllImportResolver(typeof(Libc).Assembly, Resolve);
        }

        private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path)
        {
            if (name != Name) return 0;
            string file = OperatingSystem.IsFreeBSD() ? "libc.so.7" : "libc.so.6";
            return NativeLibrary.TryLoad(file, out nint h) ? h : NativeLibrary.Load("libc");
        }

        [LibraryImport(Name, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        internal static partial int Open(string path, int flags);

        [LibraryImport(Name, EntryPoint = "close", SetLastError = true)]
        internal static partial int Close(int fd);

        [LibraryImport(Name, EntryPoint = "ioctl", SetLastError = true)]
        internal static partial int Ioctl(int fd, ulong request, void* arg);

        [LibraryImport(Name, EntryPoint = "mmap", SetLastError = true)]
        internal static partial void* Mmap(void* addr, nuint length, int prot, int flags, int fd, long offset);

        [LibraryImport(Name, EntryPoint = "munmap", SetLastError = true)]
        internal static partial int Munmap(void* addr, nuint length);

        [LibraryImport(Name, EntryPoint = "mprotect", SetLastError = true)]
        internal static partial int Mprotect(void* addr, nuint length, int prot);

        [LibraryImport(Name, EntryPoint = "access", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        internal static partial int Access(string path, int mode);

        /// <summary>FreeBSD sysctlbyname(3).</summary>
        [LibraryImport(Name, EntryPoint = "sysctlbyname", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        internal static partial int SysctlByName(string name, void* oldp, nuint* oldlenp, void* newp, nuint newlen);

        /// <summary>FreeBSD cpuset_setaffinity(2).</summary>
        [LibraryImport(Name, EntryPoint = "cpuset_setaffinity", SetLastError = true)]
        internal static partial int CpusetSetAffinity(int level, int which, long id, nuint setsize, void* mask);

        [LibraryImport(Name, EntryPoint = "sigaction", SetLastError = true)]
        internal static partial int Sigaction(int signal, void* act, void* oldact);

        [LibraryImport(Name, EntryPoint = "pthread_self")]
        internal static partial nint PthreadSelf();

        /// <summary>pthread_kill(3): returns the error number (not through errno).</summary>
        [LibraryImport(Name, EntryPoint = "pthread_kill")]
        internal static partial int PthreadKill(nint thread, int signal);

        /// <summary>Linux sched_setaffinity(2).</summary>
        [LibraryImport(Name, EntryPoint = "sched_setaffinity", SetLastError = true)]
        internal static partial int SchedSetAffinity(int pid, nuint setsize, void* mask);
    }
}
