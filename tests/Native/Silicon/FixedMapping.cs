// One RWX mapping at a fixed low address for a native test harness (NativeCompat32, NativeLong64): the native
// code and the soft CPU under test see the same bytes at the same addresses, so the address must be chosen,
// not given by the allocator.
using System.Runtime.InteropServices;

namespace ActorVmm.Native.Tests.Silicon;

internal static partial class FixedMapping
{
    /// <summary>Why a native harness cannot run on this host at all, or null on x86-64 Linux.</summary>
    public static string? PlatformProblem =>
        OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64 ? null : "the host is not x86-64 Linux";

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    private const int ProtRead = 1, ProtWrite = 2, ProtExec = 4, MapPrivate = 2, MapAnonymous = 0x20, MapFixedNoReplace = 0x100000;

    /// <summary>Maps <paramref name="size"/> RWX bytes at the first candidate address that is free; error names why not.</summary>
    public static nint Map(ReadOnlySpan<nint> candidates, uint size, string where, out string? error)
    {
        error = PlatformProblem;
        if (error is not null) return 0;
        foreach (nint candidate in candidates)
        {
            // SAFETY: an anonymous private mapping at an address we choose, refused if anything is there.
            nint p = mmap(candidate, size, ProtRead | ProtWrite | ProtExec, MapPrivate | MapAnonymous | MapFixedNoReplace, -1, 0);
            if (p == candidate) return p;
        }
        error = $"could not map executable memory {where} (errno {Marshal.GetLastPInvokeError()})";
        return 0;
    }
}
