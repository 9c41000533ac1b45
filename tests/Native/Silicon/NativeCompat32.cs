// Runs 32-bit x86 code natively on the host CPU, in compatibility mode, from a 64-bit .NET process on Linux.
// Linux x86-64 gives user space a 32-bit code segment (selector 0x23); a far call to it runs the code as a
// 32-bit protected-mode program would, BCD and other instructions invalid in 64-bit mode included.
// Everything the 32-bit code touches must lie below 4 GiB, so one fixed low mapping holds it all:
//   +0x0000  64-bit trampoline (called from C#): switches to the low stack, far-calls the test code
//   +0x1000  the test code: prologue (load registers and flags), the instruction, epilogues
//   +0x3000  the state block: registers and flags in and out
//   +0x4000  data buffer (memory operands), 8 KiB
//   +0x8000  stack for the instruction under test (grows down from +0xC000)
//   +0xF000  the trampoline's own low stack
// The soft CPU under test sees the same bytes at the same guest-physical addresses (a GuestRegion over this
// mapping), so memory operands and stack addresses are identical in both runs.
using System.Runtime.InteropServices;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace ActorVmm.Native.Tests.Silicon;

internal static unsafe partial class NativeCompat32
{
    /// <summary>xunit collection for every test that uses the mapping (one global piece of memory: no parallel use).</summary>
    public const string Collection = "native-compat32";

    public const uint Size = 0x10000;
    public const uint CodeOffset = 0x1000, StateOffset = 0x3000, DataOffset = 0x4000, DataSize = 0x2000;
    public const uint StackLow = 0x8000, StackTop = 0xC000, TrampolineStack = 0xFF00;

    // State block layout (dwords): in EAX..EDI (0-7), in EFLAGS (8), out EAX..EDI (9-16), out EFLAGS (17),
    // saved ESP (18), epilogue marker (19).
    public const int InFlags = 8, OutRegs = 9, OutFlags = 17, SavedEsp = 18, Marker = 19;

    private static readonly Lazy<(nint Base, string? Error)> Mapping = new(Map);

    public static bool Available => Mapping.Value.Error is null;

    public static string? UnavailableReason => Mapping.Value.Error;

    public static uint Base => (uint)Mapping.Value.Base;

    public static byte* Pointer => (byte*)Mapping.Value.Base;

    public static uint* State => (uint*)(Pointer + StateOffset);

    private static (nint, string?) Map()
    {
        // A fixed low address: the far call and its return address must fit in 32 bits.
        nint p = FixedMapping.Map([0x3000_0000, 0x3800_0000, 0x5000_0000, 0x6000_0000], Size, "below 4 GiB", out string? error);
        if (p == 0) return (0, error);
        WriteTrampoline((byte*)p);
        string? probe = ProbeCompatibilityMode((byte*)p);
        return probe is null ? (p, null) : (0, probe);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int waitpid(int pid, out int status, int options);

    private const uint ProbeOffset = 0xE000, Probe32Offset = 0xE100, ProbePointerOffset = 0xE200, ProbeStack = 0xE800;

    /// <summary>
    /// Some hosts cannot run 32-bit code in a 64-bit process (a kernel without IA-32 emulation, or a hypervisor
    /// such as PVM that does not offer compatibility mode to user space); there the far call kills the process.
    /// So a forked child makes the far call first: the raw fork system call copies only this thread, and the child
    /// runs nothing but the machine code below and exits, so no managed code runs in it.
    /// Returns null when the child came back from compatibility mode, else why not.
    /// </summary>
    private static string? ProbeCompatibilityMode(byte* p)
    {
        ReadOnlySpan<byte> probe =
        [
            0xb8, 0x39, 0x00, 0x00, 0x00, // mov eax, 57 (fork)
            0x0f, 0x05,                   // syscall
            0x85, 0xc0,                   // test eax, eax
            0x75, 0x0e,                   // jnz parent (or error)
            0x48, 0x89, 0xf4,             // child: mov rsp, rsi
            0xff, 0x1f,                   // call far [rdi] (m16:32 -> 0x23:retf)
            0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231 (exit_group)
            0x31, 0xff,                   // xor edi, edi
            0x0f, 0x05,                   // syscall
            0xc3,                         // parent: ret (rax = child pid or -errno)
        ];
        probe.CopyTo(new Span<byte>(p + ProbeOffset, probe.Length));
        p[Probe32Offset] = 0xcb; // retf (32-bit)
        *(uint*)(p + ProbePointerOffset) = (uint)(nint)p + Probe32Offset;
        *(ushort*)(p + ProbePointerOffset + 4) = 0x23;
        var run = (delegate* unmanaged<byte*, nint, long>)(p + ProbeOffset);
        // SAFETY: our own code; the parent only forks and returns, the child never returns to managed code.
        long pid = run(p + ProbePointerOffset, (nint)p + (nint)ProbeStack);
        if (pid <= 0) return $"could not fork a probe process (error {-pid})";
        int r = waitpid((int)pid, out int status, 0);
        if (r != pid) return $"could not wait for the probe process (errno {Marshal.GetLastPInvokeError()})";
        if ((status & 0x7f) == 0 && ((status >> 8) & 0xff) == 0) return null;
        return (status & 0x7f) != 0
            ? $"this host cannot run 32-bit compatibility-mode code in a 64-bit process (the probe died with signal {status & 0x7f})"
            : $"the compatibility-mode probe exited with status {(status >> 8) & 0xff}";
    }

    private static void WriteTrampoline(byte* p)
    {
        // 64-bit: save callee-saved registers, rsp = rsi (low stack), lcall [rdi], restore, ret.
        ReadOnlySpan<byte> t64 =
        [
            0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57, // push rbx, rbp, r12-r15
            0x49, 0x89, 0xe4,                                           // mov r12, rsp
            0x48, 0x89, 0xf4,                                           // mov rsp, rsi
            0xff, 0x1f,                                                 // call far [rdi] (m16:32)
            0x4c, 0x89, 0xe4,                                           // mov rsp, r12
            0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, // pop r15-r12, rbp, rbx
            0xfc,                                                       // cld (the ABI expects DF clear)
            0xc3,                                                       // ret
        ];
        // SAFETY: p is the start of our own RWX mapping, which is larger than the trampoline.
        t64.CopyTo(new Span<byte>(p, t64.Length));
    }

    /// <summary>Assembles the 32-bit prologue that loads registers and flags from the state block.</summary>
    public static byte[] Prologue(uint at)
    {
        uint s = Base + StateOffset;
        var a = new Assembler(32);
        // A 64-bit process runs with DS = ES = 0, which compatibility mode cannot use: take SS's flat selector.
        a.mov(ax, ss);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(__dword_ptr[s + SavedEsp * 4], esp);
        a.push(__dword_ptr[s + InFlags * 4]);
        a.popfd();
        a.mov(eax, __dword_ptr[s + 0]);
        a.mov(ecx, __dword_ptr[s + 4]);
        a.mov(edx, __dword_ptr[s + 8]);
        a.mov(ebx, __dword_ptr[s + 12]);
        a.mov(esp, __dword_ptr[s + 16]);
        a.mov(ebp, __dword_ptr[s + 20]);
        a.mov(esi, __dword_ptr[s + 24]);
        a.mov(edi, __dword_ptr[s + 28]);
        return Assemble(a, at);
    }

    /// <summary>Assembles an epilogue that stores registers and flags and returns to the trampoline, marking which one ran.</summary>
    public static byte[] Epilogue(uint at, uint marker)
    {
        uint s = Base + StateOffset;
        var a = new Assembler(32);
        a.mov(__dword_ptr[s + (OutRegs + 0) * 4], eax);
        a.mov(__dword_ptr[s + (OutRegs + 1) * 4], ecx);
        a.mov(__dword_ptr[s + (OutRegs + 2) * 4], edx);
        a.mov(__dword_ptr[s + (OutRegs + 3) * 4], ebx);
        a.mov(__dword_ptr[s + (OutRegs + 4) * 4], esp);
        a.mov(__dword_ptr[s + (OutRegs + 5) * 4], ebp);
        a.mov(__dword_ptr[s + (OutRegs + 6) * 4], esi);
        a.mov(__dword_ptr[s + (OutRegs + 7) * 4], edi);
        a.mov(__dword_ptr[s + Marker * 4], marker);
        a.mov(esp, __dword_ptr[s + SavedEsp * 4]);
        a.pushfd();
        a.pop(__dword_ptr[s + OutFlags * 4]);
        a.xor(eax, eax); // back to the null DS/ES the 64-bit side had
        a.mov(ds, ax);
        a.mov(es, ax);
        a.retf();
        return Assemble(a, at);
    }

    private static byte[] Assemble(Assembler a, uint at)
    {
        var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), at);
        return ms.ToArray();
    }

    /// <summary>Runs the 32-bit code at <paramref name="entry"/> (absolute) with a far call through selector 0x23.</summary>
    public static void Run(uint entry)
    {
        byte* farPointer = stackalloc byte[6];
        *(uint*)farPointer = entry;
        *(ushort*)(farPointer + 4) = 0x23; // Linux's __USER32_CS
        var trampoline = (delegate* unmanaged<byte*, nint, void>)Pointer;
        // SAFETY: the trampoline and the code it calls are ours and return through the far call's frame.
        trampoline(farPointer, (nint)(Base + TrampolineStack));
    }
}
