// Runs 64-bit x86 code natively on the host CPU, in the process's own mode: no mode switch, so it works wherever
// .NET runs on x86-64 Linux (also on hosts such as PVM-based VMs that cannot run compatibility-mode code).
// One fixed mapping below 2 GiB (so absolute disp32 addresses reach it) holds everything:
//   +0x0000  trampoline (called from C#): saves the callee-saved registers, RSP, the host's MXCSR and its x87/SSE
//            state (FXSAVE), jumps to the test code
//   +0x0100  the common exit: stores registers, XMM0-15, MXCSR, the x87 unit (FXSAVE: the MMX registers, tag word
//            and TOP among it) and flags, gives the host its x87/SSE state and MXCSR back, switches back to the saved
//            RSP and returns
//   +0x0800  reads the process's selectors once
//   +0x1000  the test code: prologue (FXRSTOR the x87 unit — MM0-7, TOP, tags — then load XMM0-15, MXCSR, all 16
//            registers and RFLAGS), the instruction, epilogues
//   +0x3000  the state block: registers, XMM registers, MXCSR, FXSAVE images and flags in and out
//   +0x4000  data buffer (memory operands), 8 KiB
//   +0x8000  stack for the instruction under test (grows down from +0xC000)
// An epilogue only records which one ran (so a rel8 branch reaches the second) and jumps to the common exit.
// The soft CPU under test sees the same bytes at the same addresses (a GuestRegion over this mapping, identity
// mapped by 4-level page tables the test builds), so memory operands and stack addresses are identical in both runs.
// The .NET runtime may deliver a signal while the native code runs on the test stack: the kernel then writes a
// signal frame below RSP, so comparisons of the stack start at the lowest RSP of the run. (Linux gives a signal
// handler a fresh FPU state and restores ours afterwards, so the test's MXCSR never reaches the runtime's handlers.)
// XMM registers are caller-saved in the System V ABI; MXCSR's control bits and the x87 control word are callee-saved
// and the x87 stack must be empty at a call boundary, so the exit puts the host's x87/SSE state back (FXRSTOR of the
// image the trampoline saved) before returning to managed code.
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
    public const uint StackLow = 0x8000, StackTop = 0xC000, ExitOffset = 0x100, SelectorsProbeOffset = 0x800, SelectorsOffset = 0x400;

    // State block layout (qwords): in RAX..R15 (0-15), in RFLAGS (16), out RAX..R15 (17-32), out RFLAGS (33),
    // saved host RSP (34), epilogue marker (35); at +0x400 the host's six selectors. Bytes: MXCSR in at +0x180, out at
    // +0x184, the host's at +0x188; XMM0-15 in at +0x200, out at +0x300 (16 bytes each, low quadword first); 512-byte
    // FXSAVE images (64-bit layout): in at +0x600 (the prologue's FXRSTOR), out at +0x800, the host's at +0xA00.
    public const int InFlags = 16, OutRegs = 17, OutFlags = 33, SavedRsp = 34, Marker = 35;
    public const uint XmmInOffset = 0x200, XmmOutOffset = 0x300, MxcsrInOffset = 0x180, MxcsrOutOffset = 0x184, HostMxcsrOffset = 0x188;
    public const uint FxInOffset = 0x600, FxOutOffset = 0x800, HostFxOffset = 0xA00;

    private static readonly Lazy<(nint Base, string? Error)> Mapping = new(Map);

    public static bool Available => Mapping.Value.Error is null;

    public static string? UnavailableReason => Mapping.Value.Error;

    public static ulong Base => (ulong)Mapping.Value.Base;

    public static byte* Pointer => (byte*)Mapping.Value.Base;

    public static ulong* State => (ulong*)(Pointer + StateOffset);

    /// <summary>XMM0-15 for the prologue to load.</summary>
    public static UInt128* XmmIn => (UInt128*)(Pointer + StateOffset + XmmInOffset);

    /// <summary>XMM0-15 as the common exit stored them.</summary>
    public static UInt128* XmmOut => (UInt128*)(Pointer + StateOffset + XmmOutOffset);

    /// <summary>MXCSR for the prologue to load (its six exception masks must be set: an unmasked exception is SIGFPE).</summary>
    public static ref uint MxcsrIn => ref *(uint*)(Pointer + StateOffset + MxcsrInOffset);

    /// <summary>MXCSR after the instruction.</summary>
    public static uint MxcsrOut => *(uint*)(Pointer + StateOffset + MxcsrOutOffset);

    /// <summary>The MXCSR the runtime had when the last run started (restored by the exit).</summary>
    public static uint HostMxcsr => *(uint*)(Pointer + StateOffset + HostMxcsrOffset);

    /// <summary>
    /// The FXSAVE image (64-bit layout) the prologue loads first: the x87 unit — FCW, FSW with TOP, the abridged tag
    /// word, ST(0)-ST(7), whose significands are the MMX registers R((TOP + i) mod 8) — and, overridden by the loads
    /// that follow, MXCSR (copied from <see cref="MxcsrIn"/> by <see cref="Run"/>) and XMM0-15. FSW.ES must be clear:
    /// a pending unmasked x87 exception would be #MF (SIGFPE) at the first MMX or waiting x87 instruction.
    /// </summary>
    public static Span<byte> FxIn => new(Pointer + StateOffset + FxInOffset, 512);

    /// <summary>The FXSAVE image (64-bit layout) the exit stored after the instruction.</summary>
    public static ReadOnlySpan<byte> FxOut => new(Pointer + StateOffset + FxOutOffset, 512);

    /// <summary>Fills <see cref="FxIn"/> with a freshly initialised x87 unit (FCW 037Fh, TOP 0, every register empty).</summary>
    public static void ResetFxIn()
    {
        var fx = FxIn;
        fx.Clear();
        fx[0] = 0x7f;
        fx[1] = 0x03;
        *(uint*)(Pointer + StateOffset + FxInOffset + 24) = 0x1f80;
    }

    private static (nint, string?) Map()
    {
        // Fixed, 2 MiB-aligned addresses below 2 GiB, apart from the ones NativeCompat32 tries.
        nint p = FixedMapping.Map([0x4800_0000, 0x5800_0000, 0x6800_0000, 0x7400_0000], Size, "below 2 GiB", out string? error);
        if (p == 0) return (0, error);
        *(uint*)((byte*)p + StateOffset + MxcsrInOffset) = 0x1f80; // the power-on MXCSR until a test sets one
        var fx = new Span<byte>((byte*)p + StateOffset + FxInOffset, 512);
        fx.Clear();
        fx[0] = 0x7f; // FCW 037Fh: an initialised x87 unit until a test loads another
        fx[1] = 0x03;
        WriteTrampoline((byte*)p);
        return (p, null);
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
        a.stmxcsr(__dword_ptr[s + HostMxcsrOffset]);
        a.fxsave64(__[s + HostFxOffset]);
        a.jmp(rdi);
        byte[] t = Assemble(a, (ulong)p);
        // SAFETY: p is the start of our own RWX mapping, which is larger than the trampoline and the exit.
        t.CopyTo(new Span<byte>(p, t.Length));

        // The common exit: the epilogue has written the marker; RFLAGS and the registers are the instruction's.
        var e = new Assembler(64);
        for (int r = 0; r < 16; r++) e.mov(__qword_ptr[s + (ulong)(OutRegs + r) * 8], Gprs[r]);
        for (int r = 0; r < 16; r++) e.movdqu(__xmmword_ptr[s + XmmOutOffset + (ulong)r * 16], Xmms[r]);
        e.stmxcsr(__dword_ptr[s + MxcsrOutOffset]);
        e.fxsave64(__[s + FxOutOffset]);
        e.fxrstor64(__[s + HostFxOffset]);
        e.ldmxcsr(__dword_ptr[s + HostMxcsrOffset]);
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
        if (x.Length > SelectorsProbeOffset - ExitOffset) throw new InvalidOperationException($"the exit ({x.Length} bytes) overlaps the selectors probe");
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

    private static readonly AssemblerRegisterXMM[] Xmms =
        [xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13, xmm14, xmm15];

    /// <summary>Assembles the prologue that loads the x87 unit (<see cref="FxIn"/>), XMM0-15, MXCSR, RFLAGS and the 16 registers from the state block.</summary>
    public static byte[] Prologue(ulong at)
    {
        ulong s = Base + StateOffset;
        var a = new Assembler(64);
        a.fxrstor64(__[s + FxInOffset]);
        for (int r = 0; r < 16; r++) a.movdqu(Xmms[r], __xmmword_ptr[s + XmmInOffset + (ulong)r * 16]);
        a.ldmxcsr(__dword_ptr[s + MxcsrInOffset]);
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
        // The state block must hold a loadable MXCSR with every exception masked (a fresh mapping holds zero).
        if ((MxcsrIn & 0x1f80) != 0x1f80 || (MxcsrIn & ~0xffffu) != 0) throw new ArgumentException($"MXCSR {MxcsrIn:x} would unmask an exception or fault");
        if ((FxIn[2] & 0x80) != 0) throw new ArgumentException("the x87 image has an unmasked exception pending (FSW.ES): #MF at the first MMX instruction");
        *(uint*)(Pointer + StateOffset + FxInOffset + 24) = MxcsrIn; // FXRSTOR loads MXCSR too: a reserved bit would be #GP
        var trampoline = (delegate* unmanaged<ulong, void>)Pointer;
        // SAFETY: the trampoline and the code it jumps to are ours; the epilogue returns to this frame.
        trampoline(entry);
    }
}
