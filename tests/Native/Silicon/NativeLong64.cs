// Runs 64-bit x86 code natively on the host CPU, in the process's own mode: no mode switch, so it works wherever
// .NET runs on x86-64 Linux (also on hosts such as PVM-based VMs that cannot run compatibility-mode code).
// One fixed mapping below 2 GiB (so absolute disp32 addresses reach it) holds everything:
//   +0x0000  trampoline (called from C#): saves the callee-saved registers and RSP, jumps to the test code
//   +0x0100  the common exit: stores registers and flags, switches back to the saved RSP and returns
//   +0x1000  the test code: prologue (load all 16 registers and RFLAGS), the instruction, epilogues
//   +0x3000  the state block: registers and flags in and out
//   +0x4000  data buffer (memory operands), 8 KiB
//   +0x8000  stack for the instruction under test (grows down from +0xC000)
// An epilogue only records which one ran (so a rel8 branch reaches the second) and jumps to the common exit.
// The soft CPU under test sees the same bytes at the same addresses (a GuestRegion over this mapping, identity
// mapped by 4-level page tables the test builds), so memory operands and stack addresses are identical in both runs.
// The .NET runtime may deliver a signal while the native code runs on the test stack: the kernel then writes a
// signal frame below RSP, so comparisons of the stack start at the lowest RSP of the run.
using System.Runtime.InteropServices;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace ActorVmm.Native.Tests.Silicon;

internal static unsafe partial class NativeLong64
{
    /// <summary>xunit collection for every test that uses the mapping (one global piece of memory: no parallel use).</summary>
    public const string Collection = "native-long64";

    public const uint Size = 0x10000;
    public const uint CodeOffset = 0x1000, CodeSize = 0x2000, StateOffset = 0x3000, DataOffset = 0x4000, DataSize = 0x2000;
    public const uint StackLow = 0x8000, StackTop = 0xC000, ExitOffset = 0x100, SelectorsProbeOffset = 0x200, SelectorsOffset = 0x400;

    // State block layout (qwords): in RAX..R15 (0-15), in RFLAGS (16), out RAX..R15 (17-32), out RFLAGS (33),
    // saved host RSP (34), epilogue marker (35); at +0x400 the host's six selectors.
    public const int InFlags = 16, OutRegs = 17, OutFlags = 33, SavedRsp = 34, Marker = 35;

    private static readonly Lazy<(nint Base, string? Error)> Mapping = new(Map);

    public static bool Available => OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64 && Mapping.Value.Error is null;

    public static string? UnavailableReason =>
        !OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64
            ? "the host is not x86-64 Linux"
            : Mapping.Value.Error;

    public static ulong Base => (ulong)Mapping.Value.Base;

    public static byte* Pointer => (byte*)Mapping.Value.Base;

    public static ulong* State => (ulong*)(Pointer + StateOffset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    private const int ProtRead = 1, ProtWrite = 2, ProtExec = 4, MapPrivate = 2, MapAnonymous = 0x20, MapFixedNoReplace = 0x100000;

    private static (nint, string?) Map()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) return (0, "not x86-64 Linux");
        // Fixed, 2 MiB-aligned addresses below 2 GiB, apart from the ones NativeCompat32 tries.
        foreach (nint candidate in new nint[] { 0x4800_0000, 0x5800_0000, 0x6800_0000, 0x7400_0000 })
        {
            // SAFETY: an anonymous private mapping at an address we choose, refused if anything is there.
            nint p = mmap(candidate, Size, ProtRead | ProtWrite | ProtExec, MapPrivate | MapAnonymous | MapFixedNoReplace, -1, 0);
            if (p == candidate)
            {
                WriteTrampoline((byte*)p);
                return (p, null);
            }
        }
        return (0, $"could not map executable memory below 2 GiB (errno {Marshal.GetLastPInvokeError()})");
    }

    private static void WriteTrampoline(byte* p)
    {
        ulong s = (ulong)p + StateOffset;
        var a = new Assembler(64);
        a.push(rbx);
        a.push(rbp);
        a.push(r12);
        a.push(r13);
        a.push(r14);
        a.push(r15);
        a.mov(__qword_ptr[s + SavedRsp * 8], rsp);
        a.jmp(rdi);
        byte[] t = Assemble(a, (ulong)p);
        // SAFETY: p is the start of our own RWX mapping, which is larger than the trampoline and the exit.
        t.CopyTo(new Span<byte>(p, t.Length));

        // The common exit: the epilogue has written the marker; RFLAGS and the registers are the instruction's.
        var e = new Assembler(64);
        for (int r = 0; r < 16; r++) e.mov(__qword_ptr[s + (ulong)(OutRegs + r) * 8], Gprs[r]);
        e.mov(rsp, __qword_ptr[s + SavedRsp * 8]);
        e.pushfq();
        e.pop(__qword_ptr[s + OutFlags * 8]);
        e.pop(r15);
        e.pop(r14);
        e.pop(r13);
        e.pop(r12);
        e.pop(rbp);
        e.pop(rbx);
        e.cld(); // the ABI expects DF clear
        e.ret();
        byte[] x = Assemble(e, (ulong)p + ExitOffset);
        x.CopyTo(new Span<byte>(p + ExitOffset, x.Length));

        // Reads the process's selectors (ES, CS, SS, DS, FS, GS) into the state block, for the soft CPU to mirror.
        var g = new Assembler(64);
        g.mov(__word_ptr[s + SelectorsOffset + 0], es);
        g.mov(__word_ptr[s + SelectorsOffset + 2], cs);
        g.mov(__word_ptr[s + SelectorsOffset + 4], ss);
        g.mov(__word_ptr[s + SelectorsOffset + 6], ds);
        g.mov(__word_ptr[s + SelectorsOffset + 8], fs);
        g.mov(__word_ptr[s + SelectorsOffset + 10], gs);
        g.ret();
        byte[] y = Assemble(g, (ulong)p + SelectorsProbeOffset);
        y.CopyTo(new Span<byte>(p + SelectorsProbeOffset, y.Length));
        // SAFETY: our own code, which only stores into the mapping and returns.
        ((delegate* unmanaged<void>)(p + SelectorsProbeOffset))();
    }

    /// <summary>The selectors this process runs with, in encoding order ES, CS, SS, DS, FS, GS.</summary>
    public static ushort HostSelector(int segment) => ((ushort*)(Pointer + StateOffset + SelectorsOffset))[segment];

    private static readonly AssemblerRegister64[] Gprs = [rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15];

    /// <summary>Assembles the prologue that loads RFLAGS and the 16 registers from the state block.</summary>
    public static byte[] Prologue(ulong at)
    {
        ulong s = Base + StateOffset;
        var a = new Assembler(64);
        a.push(__qword_ptr[s + InFlags * 8]);
        a.popfq();
        for (int r = 0; r < 16; r++) a.mov(Gprs[r], __qword_ptr[s + (ulong)r * 8]);
        return Assemble(a, at);
    }

    /// <summary>
    /// Assembles an epilogue: records <paramref name="marker"/> (which epilogue ran) and jumps to the common exit,
    /// which stores registers and flags and returns to the caller. Neither changes a register or a flag first.
    /// </summary>
    public static byte[] Epilogue(ulong at, uint marker)
    {
        ulong s = Base + StateOffset;
        var a = new Assembler(64);
        a.mov(__qword_ptr[s + Marker * 8], (int)marker);
        a.jmp(Base + ExitOffset);
        return Assemble(a, at);
    }

    private static byte[] Assemble(Assembler a, ulong at)
    {
        var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), at);
        return ms.ToArray();
    }

    /// <summary>Runs the code at <paramref name="entry"/> (absolute): it must start with <see cref="Prologue"/> and end in an <see cref="Epilogue"/>.</summary>
    public static void Run(ulong entry)
    {
        var trampoline = (delegate* unmanaged<ulong, void>)Pointer;
        // SAFETY: the trampoline and the code it jumps to are ours; the epilogue returns to this frame.
        trampoline(entry);
    }
}
