// Runs x87 code on the host CPU, for comparison with the soft CPU's x87. The x87 behaves the same in 64-bit mode,
// and an instruction whose memory operand is [ebx + disp] encodes identically in 32-bit code and as [rbx + disp] in
// 64-bit code, so one body assembled for 32 bits runs both natively (called from C# through a small stub in an
// executable mapping) and on the soft CPU in the 32-bit harness.
//   stub: push rbx; mov rbx, rdi; <body>; pushfq; pop rax; mov [rbx + FlagsOffset], eax; pop rbx; ret
// The body must leave the host's x87 as the ABI expects (FNSAVE or FNINIT at its end) and must not run a waiting x87
// instruction while an unmasked exception is pending (that would be a SIGFPE in the test process).
using System.Runtime.InteropServices;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace ActorVmm.Native.Tests.Soft;

internal static unsafe partial class NativeX87
{
    public const int DataSize = 0x800, FlagsOffset = 0x7f0;
    private const int MapSize = 0x10000, DataOffset = 0x8000;

    private static readonly Lazy<nint> Mapping = new(Map);
    private static readonly object Gate = new();

    public static bool Available => OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64 && Mapping.Value != 0;

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    private static nint Map()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) return 0;
        // SAFETY: an anonymous private read/write/execute mapping that nothing else uses.
        nint p = mmap(0, MapSize, 7, 0x22, -1, 0);
        return p == -1 ? 0 : p;
    }

    /// <summary>Runs <paramref name="body"/> (32-bit x87 code using [ebx + disp] operands) natively over a copy of <paramref name="data"/>.</summary>
    public static void Run(byte[] body, Span<byte> data)
    {
        var head = new byte[] { 0x53, 0x48, 0x89, 0xfb };                                          // push rbx; mov rbx, rdi
        var tail = new byte[] { 0x9c, 0x58, 0x89, 0x83, FlagsOffset & 0xff, FlagsOffset >> 8, 0, 0, 0x5b, 0xc3 }; // pushfq; pop rax; mov [rbx+disp32], eax; pop rbx; ret
        if (head.Length + body.Length + tail.Length > DataOffset) throw new ArgumentException("body too long", nameof(body));
        lock (Gate)
        {
            byte* p = (byte*)Mapping.Value;
            var code = new Span<byte>(p, DataOffset);
            head.CopyTo(code);
            body.CopyTo(code[head.Length..]);
            tail.CopyTo(code[(head.Length + body.Length)..]);
            var d = new Span<byte>(p + DataOffset, DataSize);
            data.CopyTo(d);
            var run = (delegate* unmanaged<byte*, void>)p;
            // SAFETY: our own code in our own mapping; it returns through the stub's RET with RBX restored.
            run(p + DataOffset);
            d.CopyTo(data);
        }
    }

    /// <summary>Assembles 32-bit code (addresses do not matter: no relative branches).</summary>
    public static byte[] Assemble(Action<Assembler> build)
    {
        var a = new Assembler(32);
        build(a);
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), 0);
        return ms.ToArray();
    }

    /// <summary>The soft CPU's counterpart of the stub's epilogue: EFLAGS to [ebx + FlagsOffset], then HLT.</summary>
    public static void SoftEpilogue(Assembler a)
    {
        a.pushfd();
        a.pop(eax);
        a.mov(__dword_ptr[ebx + FlagsOffset], eax);
        a.hlt();
    }
}
