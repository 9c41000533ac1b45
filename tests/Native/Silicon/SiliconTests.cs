// Differential testing of the software CPU against the host CPU ("verified against silicon"). For every
// instruction form (Iced code) the soft CPU implements, random operands are generated, the instruction is
// encoded once and executed twice: natively in 32-bit compatibility mode (NativeCompat32) and on SoftCpu, over
// the same bytes at the same addresses. Registers, EIP (which epilogue ran for branches), the flags the SDM
// defines for that instruction, the data buffer and the stack must agree. Forms that cannot run in user mode
// or whose results depend on the host by design are listed with the reason; the test fails if any
// implemented form is neither verified nor explained, and on any mismatch.
using StringBuilder = System.Text.StringBuilder;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Memory;
using ActorVmm.Native.Soft;
using Iced.Intel;
using Xunit.Abstractions;

namespace ActorVmm.Native.Tests.Silicon;

[Collection(NativeCompat32.Collection)]
[Trait("Category", "Slow")]
public sealed unsafe class SiliconTests(ITestOutputHelper output)
{
    private const int IterationsPerForm = 96;

    /// <summary>SILICON_TRACE=1 names each form on stderr before it runs (to find a form that crashes natively).</summary>
    private static readonly bool Trace = Environment.GetEnvironmentVariable("SILICON_TRACE") == "1";
    private const uint CF = 1, PF = 4, AF = 0x10, ZF = 0x40, SF = 0x80, DF = 0x400, OF = 0x800;
    private const uint Arith = CF | PF | AF | ZF | SF | OF;

    [NativeCompatFact]
    public void Every_implemented_form_agrees_with_the_host_cpu_or_says_why_not()
    {

        var notVerified = new SortedDictionary<string, List<Code>>();
        var verified = new List<Code>();
        var failures = new List<string>();
        var rng = new Random(20261124);
        var harness = new Harness();
        foreach (var code in SoftCpu.ImplementedForms.OrderBy(c => c.ToString(), StringComparer.Ordinal))
        {
            string? reason = WhyNotVerifiable(code);
            if (reason is not null)
            {
                if (!notVerified.TryGetValue(reason, out var list)) notVerified[reason] = list = [];
                list.Add(code);
                continue;
            }
            int before = failures.Count;
            if (Trace) Console.Error.WriteLine($"silicon: {code}");
            for (int k = 0; k < IterationsPerForm && failures.Count - before < 3; k++)
            {
                // A case is reported only if it mismatches twice with the same operands: a one-off difference
                // is host interference with the native run (a signal delivered mid-run), not the CPU model.
                int seed = rng.Next();
                var mismatch = harness.RunOne(code, new Random(seed), k);
                if (mismatch is not null) mismatch = harness.RunOne(code, new Random(seed), k);
                if (mismatch is not null) failures.Add($"{code}: {mismatch}");
            }
            verified.Add(code);
        }

        var report = new StringBuilder();
        report.AppendLine($"Software CPU vs host CPU ({System.Runtime.InteropServices.RuntimeInformation.OSDescription}), {IterationsPerForm} random cases per form");
        report.AppendLine($"forms implemented: {SoftCpu.ImplementedForms.Count}");
        report.AppendLine($"forms verified natively: {verified.Count}");
        report.AppendLine($"forms not verified natively: {notVerified.Values.Sum(l => l.Count)}");
        foreach (var (why, codes) in notVerified)
        {
            report.AppendLine($"  {codes.Count} — {why}:");
            report.AppendLine("    " + string.Join(" ", codes));
        }
        report.AppendLine($"mismatches: {failures.Count}");
        foreach (var f in failures.Take(200)) report.AppendLine("  " + f);
        output.WriteLine(report.ToString());
        WriteReport("silicon-report.txt", report.ToString());

        Assert.True(failures.Count == 0, $"{failures.Count} mismatches against the host CPU:\n" + string.Join("\n", failures.Take(40)));
        Assert.Equal(SoftCpu.ImplementedForms.Count, verified.Count + notVerified.Values.Sum(l => l.Count));
    }

    internal static void WriteReport(string name, string text)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ActorVmm.sln")))
            {
                Directory.CreateDirectory(Path.Combine(dir.FullName, "artifacts"));
                File.WriteAllText(Path.Combine(dir.FullName, "artifacts", name), text);
                return;
            }
        }
    }

    /// <summary>Null when the form can be run in user mode and compared; otherwise why it cannot.</summary>
    internal static string? WhyNotVerifiable(Code code)
    {
        var info = code.ToOpCode();
        if (!info.Mode32 && !info.Mode16)
            return SiliconLong64Tests.WhyNotVerifiable64(code) is string why
                ? "64-bit mode only, and not verifiable in 64-bit mode either: " + why
                : "64-bit mode only: verified natively in 64-bit mode by SiliconLong64Tests (artifacts/silicon64-report.txt)";
        if (IsSimdForm(code))
            return "MMX/SSE-SSE4.2/FXSR/CLFSH: NativeCompat32 does not load MMX or XMM registers and MXCSR (it cannot run on the AMD host "
                + "this was written on, so it was not extended); every one of these forms is verified natively in 64-bit mode by SiliconLong64Tests "
                + "(artifacts/silicon64-report.txt)";
        if (WhyNotVerifiableInUserMode(code) is string reason) return reason;
        var m = code.Mnemonic();
        // As in the 64-bit harness: F3 0F BC is BSF on the soft CPU (no BMI1 offered) and TZCNT on a host with BMI1;
        // LZCNT needs a host that offers ABM.
        if (m == Mnemonic.Tzcnt && SiliconLong64Tests.HostHas(7, 0, ebx: 1u << 3))
            return "TZCNT's encoding: the soft CPU (no BMI1 offered) runs it as BSF, this host (BMI1) as TZCNT; checked in SseExtensionTests";
        if (m == Mnemonic.Lzcnt && !SiliconLong64Tests.HostHas(0x8000_0001, 0, ecx: 1u << 5))
            return "the host does not offer ABM/LZCNT (CPUID)";
        if (code is Code.Jmp_rm16 or Code.Call_rm16 or Code.Retnw or Code.Retnw_imm16
            || (m is Mnemonic.Loop or Mnemonic.Loope or Mnemonic.Loopne or Mnemonic.Jcxz or Mnemonic.Jecxz && code.ToString().Contains("_16_", StringComparison.Ordinal)))
            return "16-bit operand-size branches truncate EIP to 64 KiB, which Linux does not map (vm.mmap_min_addr)";
        for (int n = 0; n < info.OpCount; n++)
        {
            if (info.GetOpKind(n) is OpCodeOperandKind.br16_1 or OpCodeOperandKind.br16_2)
                return "16-bit operand-size branches truncate EIP to 64 KiB, which Linux does not map (vm.mmap_min_addr)";
        }
        return null;
    }

    /// <summary>MMX, SSE to SSE4.2, FXSR and CLFSH forms (by CPUID feature: MOVSD and CMPSD also name string instructions).</summary>
    internal static bool IsSimdForm(Code code)
        => code.CpuidFeatures().Any(f => f is CpuidFeature.MMX or CpuidFeature.SSE or CpuidFeature.SSE2 or CpuidFeature.SSE3 or CpuidFeature.SSSE3
            or CpuidFeature.SSE4_1 or CpuidFeature.SSE4_2 or CpuidFeature.FXSR or CpuidFeature.CLFSH);

    /// <summary>
    /// Why a form cannot be compared with the host CPU from a user-mode process in any mode (privileged, reads
    /// host system state, enters the kernel, or undefined); null when it can. Shared by the 32- and 64-bit harnesses.
    /// </summary>
    internal static string? WhyNotVerifiableInUserMode(Code code)
    {
        var info = code.ToOpCode();
        var m = code.Mnemonic();
        if (code.CpuidFeatures().Any(f => f is CpuidFeature.FPU or CpuidFeature.FPU287 or CpuidFeature.FPU387))
            return "x87: these harnesses compare general registers and memory, not x87 state (compared with the host FPU form by form in tests/Native/Soft/X87SiliconTests)";
        for (int n = 0; n < info.OpCount; n++)
        {
            var k = info.GetOpKind(n);
            if (k is OpCodeOperandKind.cr_reg or OpCodeOperandKind.dr_reg) return "privileged: control/debug register moves need CPL 0";
            if (k is OpCodeOperandKind.seg_reg or OpCodeOperandKind.es or OpCodeOperandKind.cs or OpCodeOperandKind.ss
                or OpCodeOperandKind.ds or OpCodeOperandKind.fs or OpCodeOperandKind.gs)
                return "segment registers: the host process's selectors and descriptors differ from the guest's by construction";
            if (k is OpCodeOperandKind.farbr2_2 or OpCodeOperandKind.farbr4_2) return "far transfers load CS from the host's descriptor tables";
        }
        switch (m)
        {
            case Mnemonic.In or Mnemonic.Out or Mnemonic.Insb or Mnemonic.Insw or Mnemonic.Insd or Mnemonic.Outsb or Mnemonic.Outsw or Mnemonic.Outsd:
                return "privileged: port I/O faults at CPL 3 with IOPL 0 (tested against QEMU by the guest programs)";
            case Mnemonic.Sysenter or Mnemonic.Sysexit or Mnemonic.Sysexitq or Mnemonic.Syscall or Mnemonic.Sysret or Mnemonic.Sysretq:
                return "system calls: enter the host kernel or need CPL 0 (tested by the longmode guest against QEMU and by unit tests)";
            case Mnemonic.Hlt or Mnemonic.Cli or Mnemonic.Sti or Mnemonic.Lgdt or Mnemonic.Lidt or Mnemonic.Lldt or Mnemonic.Ltr
                or Mnemonic.Lmsw or Mnemonic.Clts or Mnemonic.Invd or Mnemonic.Wbinvd or Mnemonic.Invlpg or Mnemonic.Rdmsr or Mnemonic.Wrmsr
                or Mnemonic.Swapgs:
                return "privileged: needs CPL 0 (tested by unit tests and guest programs)";
            case Mnemonic.Int or Mnemonic.Int3 or Mnemonic.Int1 or Mnemonic.Into or Mnemonic.Ud0 or Mnemonic.Ud1 or Mnemonic.Ud2
                or Mnemonic.Iret or Mnemonic.Iretd or Mnemonic.Iretq:
                return "raises an exception or returns from one: delivery goes to the host kernel (tested by unit tests and the faults guest)";
            case Mnemonic.Lar or Mnemonic.Lsl or Mnemonic.Verr or Mnemonic.Verw:
                return "segment queries look selectors up in the host's descriptor tables, which differ from the guest's by construction (unit tests)";
            case Mnemonic.Lds or Mnemonic.Les or Mnemonic.Lfs or Mnemonic.Lgs or Mnemonic.Lss or Mnemonic.Retf:
                return "segment loads: the host process's selectors and descriptors differ from the guest's by construction";
            case Mnemonic.Jmp or Mnemonic.Call when code is Code.Jmp_m1616 or Code.Jmp_m1632 or Code.Jmp_m1664 or Code.Call_m1616 or Code.Call_m1632 or Code.Call_m1664:
                return "far transfers load CS from the host's descriptor tables";
            case Mnemonic.Cpuid or Mnemonic.Rdtsc or Mnemonic.Rdtscp:
                return "values differ by design (CPU model, clock)";
            case Mnemonic.Sgdt or Mnemonic.Sidt or Mnemonic.Sldt or Mnemonic.Str or Mnemonic.Smsw:
                return "reads host system state (and faults under UMIP)";
        }
        if (code is Code.Bswap_r16)
            return "BSWAP of a 16-bit register is undefined in the SDM";
        return null;
    }

    private sealed class Harness
    {
        private readonly uint _base = NativeCompat32.Base;
        private readonly byte* _p = NativeCompat32.Pointer;
        private readonly SoftCpu _cpu;
        private readonly byte[] _initial = new byte[NativeCompat32.StackTop - NativeCompat32.DataOffset];
        private readonly byte[] _native = new byte[NativeCompat32.StackTop - NativeCompat32.DataOffset]; // data buffer and test stack

        public Harness()
        {
            var memory = new GuestMemory([new GuestRegion("compat32", _base, NativeCompat32.Size, _p)]);
            _cpu = new SoftCpu(memory, new NoIo());
        }

        private uint DataBase => _base + NativeCompat32.DataOffset;
        private uint StackPointer => _base + NativeCompat32.StackTop - 0x200;

        public string? RunOne(Code code, Random rng, int k)
        {
            var info = code.ToOpCode();
            var regs = new uint[8];
            for (int r = 0; r < 8; r++) regs[r] = RandomValue(rng);
            regs[4] = StackPointer;
            uint flags = (uint)rng.Next() & (Arith | DF) | 0x202;
            var data = new Span<byte>(_p + NativeCompat32.DataOffset, _initial.Length);
            rng.NextBytes(data);

            uint codeAt = _base + NativeCompat32.CodeOffset;
            byte[] prologue = NativeCompat32.Prologue(codeAt);
            uint insnAt = codeAt + (uint)prologue.Length;

            var ins = BuildInstruction(code, info, rng, k, regs, out bool useMemory);
            // Encode once to learn the length, then again with the real branch target (epilogue B).
            byte[] bytes = Encode(ins, insnAt);
            uint epilogueA = insnAt + (uint)bytes.Length;
            byte[] epiA = NativeCompat32.Epilogue(epilogueA, 0);
            uint epilogueB = epilogueA + (uint)epiA.Length;
            byte[] epiB = NativeCompat32.Epilogue(epilogueB, 1);
            if (ins.Op0Kind == OpKind.NearBranch32)
            {
                ins.NearBranch32 = epilogueB;
                bytes = Encode(ins, insnAt);
                if (insnAt + (uint)bytes.Length != epilogueA) return "branch re-encoding changed the length";
            }

            uint mask = Constrain(code, ins, rng, regs, ref flags, epilogueB, useMemory, out bool compareDest, out Register? destReg);
            if (mask == uint.MaxValue) return null; // operand set the SDM leaves wholly undefined; nothing to compare

            var codeSpan = new Span<byte>(_p + NativeCompat32.CodeOffset, 0x2000);
            codeSpan.Clear();
            prologue.CopyTo(codeSpan);
            bytes.CopyTo(codeSpan[prologue.Length..]);
            epiA.CopyTo(codeSpan[(prologue.Length + bytes.Length)..]);
            epiB.CopyTo(codeSpan[(prologue.Length + bytes.Length + epiA.Length)..]);

            // Snapshot memory, run natively.
            new Span<byte>(_p + NativeCompat32.DataOffset, _initial.Length).CopyTo(_initial);
            uint* s = NativeCompat32.State;
            for (int r = 0; r < 8; r++) s[r] = regs[r];
            s[NativeCompat32.InFlags] = flags;
            s[NativeCompat32.Marker] = 0xdead;
            NativeCompat32.Run(codeAt);
            var nRegs = new uint[8];
            for (int r = 0; r < 8; r++) nRegs[r] = s[NativeCompat32.OutRegs + r];
            uint nFlags = s[NativeCompat32.OutFlags];
            uint nEip = s[NativeCompat32.Marker] == 1 ? epilogueB : epilogueA;
            new Span<byte>(_p + NativeCompat32.DataOffset, _native.Length).CopyTo(_native);

            // Restore memory, run on the soft CPU.
            _initial.CopyTo(new Span<byte>(_p + NativeCompat32.DataOffset, _initial.Length));
            var flat32Code = SegmentRegister.Make(0x08, 0, 0xffff_ffff, type: 0xb, s: true, dpl: 0, l: false, db: true, g: true);
            var flat32Data = SegmentRegister.Make(0x10, 0, 0xffff_ffff, type: 0x3, s: true, dpl: 0, l: false, db: true, g: true);
            _cpu.SetSystemRegisters(new SystemRegisters { Cs = flat32Code, Ds = flat32Data, Es = flat32Data, Fs = flat32Data, Gs = flat32Data, Ss = flat32Data, Cr0 = 0x11 });
            var cr = new CpuRegisters { Rip = insnAt, Rflags = flags };
            for (int r = 0; r < 8; r++) cr[r] = regs[r];
            _cpu.SetRegisters(cr);
            _cpu.ClearLastException();
            var outcome = _cpu.Step();
            var sr = _cpu.GetRegisters();

            string Inputs() => $"[{Format(bytes)}] {Disassemble(bytes, insnAt)} eax={regs[0]:x8} ecx={regs[1]:x8} edx={regs[2]:x8} ebx={regs[3]:x8} ebp={regs[5]:x8} esi={regs[6]:x8} edi={regs[7]:x8} flags={flags:x}";
            if (outcome != StepOutcome.Retired)
                return $"soft CPU {outcome} ({_cpu.LastException}) where the host retired it; {Inputs()}";
            for (int r = 0; r < 8; r++)
            {
                if (!compareDest && destReg is Register d && RegisterIndex(d) == r) continue;
                if ((uint)sr[r] != nRegs[r])
                    return $"{RegName(r)} host {nRegs[r]:x8} soft {(uint)sr[r]:x8}; {Inputs()}";
            }
            if ((uint)sr.Rip != nEip) return $"EIP host {nEip:x8} soft {(uint)sr.Rip:x8}; {Inputs()}";
            uint compare = (Arith | DF) & ~mask;
            if (((uint)sr.Rflags & compare) != (nFlags & compare))
                return $"flags host {nFlags & compare:x} soft {(uint)sr.Rflags & compare:x} (compared {compare:x}); {Inputs()}";
            // Memory: the data buffer, and the stack from the lowest stack pointer of the run upward. Below that,
            // the host kernel may have written a signal frame while the native code ran (the runtime signals
            // threads for GC), which is not the instruction's doing.
            uint lowestSp = Math.Min(regs[4], Math.Min(nRegs[4], (uint)sr[4]));
            int stackFrom = (int)Math.Clamp(lowestSp - DataBase, NativeCompat32.StackLow - NativeCompat32.DataOffset, (uint)_native.Length);
            var softMem = new ReadOnlySpan<byte>(_p + NativeCompat32.DataOffset, _native.Length);
            if (compareDest)
            {
                int dataEnd = (int)(NativeCompat32.StackLow - NativeCompat32.DataOffset);
                for (int at = 0; at < _native.Length; at++)
                {
                    if (at >= dataEnd && at < stackFrom) continue;
                    if (softMem[at] != _native[at])
                        return $"memory at {DataBase + (uint)at:x8} host {_native[at]:x2} soft {softMem[at]:x2}; {Inputs()}";
                }
            }
            return null;
        }

        private static string RegName(int r) => new[] { "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi" }[r];

        private static string Format(byte[] b) => string.Join(" ", b.Select(x => x.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));

        private static string Disassemble(byte[] b, uint at)
        {
            var d = Decoder.Create(32, b, at);
            d.Decode(out var i);
            return i.ToString();
        }

        private static byte[] Encode(in Instruction ins, uint at)
        {
            var w = new MemoryStream();
            var e = Encoder.Create(32, new StreamCodeWriter(w));
            if (!e.TryEncode(ins, at, out _, out string? err)) throw new InvalidOperationException($"{ins.Code}: {err}");
            return w.ToArray();
        }

        private static uint RandomValue(Random rng) => rng.Next(8) switch
        {
            0 => 0,
            1 => 1,
            2 => 0xffff_ffff,
            3 => 0x8000_0000,
            4 => 0x7fff_ffff,
            5 => (uint)rng.Next(256),
            _ => (uint)rng.NextInt64(0, 1L << 32),
        };

        private static readonly Register[] R8 = [Register.AL, Register.CL, Register.DL, Register.BL, Register.AH, Register.CH, Register.DH, Register.BH];
        private static readonly Register[] R16 = [Register.AX, Register.CX, Register.DX, Register.BX, Register.BP, Register.SI, Register.DI];
        private static readonly Register[] R32 = [Register.EAX, Register.ECX, Register.EDX, Register.EBX, Register.EBP, Register.ESI, Register.EDI];
        private static readonly Register[] Bases = [Register.EBX, Register.ESI, Register.EDI, Register.EBP];

        private Instruction BuildInstruction(Code code, OpCodeInfo info, Random rng, int k, uint[] regs, out bool useMemory)
        {
            var ins = Instruction.Create(code);
            useMemory = false;
            bool memoryChoice = (k & 1) == 1;
            Register memBase = Bases[rng.Next(Bases.Length)];
            for (int n = 0; n < info.OpCount; n++)
            {
                var kind = info.GetOpKind(n);
                switch (kind)
                {
                    case OpCodeOperandKind.r8_reg or OpCodeOperandKind.r8_opcode:
                        SetReg(ref ins, n, R8[rng.Next(R8.Length)]);
                        break;
                    case OpCodeOperandKind.r16_reg or OpCodeOperandKind.r16_rm or OpCodeOperandKind.r16_opcode or OpCodeOperandKind.r16_reg_mem:
                        SetReg(ref ins, n, R16[rng.Next(R16.Length)]);
                        break;
                    case OpCodeOperandKind.r32_reg or OpCodeOperandKind.r32_rm or OpCodeOperandKind.r32_opcode or OpCodeOperandKind.r32_reg_mem:
                        SetReg(ref ins, n, R32[rng.Next(R32.Length)]);
                        break;
                    case OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r16_or_mem or OpCodeOperandKind.r32_or_mem:
                        if (memoryChoice)
                        {
                            SetMemory(ref ins, n, memBase, rng, regs);
                            useMemory = true;
                        }
                        else
                        {
                            var pool = kind == OpCodeOperandKind.r8_or_mem ? R8 : kind == OpCodeOperandKind.r16_or_mem ? R16 : R32;
                            SetReg(ref ins, n, pool[rng.Next(pool.Length)]);
                        }
                        break;
                    case OpCodeOperandKind.mem:
                        SetMemory(ref ins, n, memBase, rng, regs);
                        useMemory = true;
                        break;
                    case OpCodeOperandKind.mem_offs:
                        ins.SetOpKind(n, OpKind.Memory);
                        ins.MemoryBase = Register.None;
                        ins.MemoryIndex = Register.None;
                        ins.MemoryDisplSize = 4;
                        ins.MemoryDisplacement32 = DataBase + 0x400 + (uint)rng.Next(0x100);
                        useMemory = true;
                        break;
                    case OpCodeOperandKind.al: SetReg(ref ins, n, Register.AL); break;
                    case OpCodeOperandKind.cl: SetReg(ref ins, n, Register.CL); break;
                    case OpCodeOperandKind.ax: SetReg(ref ins, n, Register.AX); break;
                    case OpCodeOperandKind.dx: SetReg(ref ins, n, Register.DX); break;
                    case OpCodeOperandKind.eax: SetReg(ref ins, n, Register.EAX); break;
                    case OpCodeOperandKind.imm8:
                        if (n == 1 && info.OpCount == 2 && info.GetOpKind(0) == OpCodeOperandKind.imm16)
                        {
                            ins.SetOpKind(n, OpKind.Immediate8_2nd);
                            ins.Immediate8_2nd = (byte)rng.Next(0, 4); // ENTER nesting level, kept small
                        }
                        else
                        {
                            ins.SetOpKind(n, OpKind.Immediate8);
                            ins.Immediate8 = (byte)RandomValue(rng);
                        }
                        break;
                    case OpCodeOperandKind.imm8_const_1:
                        ins.SetOpKind(n, OpKind.Immediate8);
                        ins.Immediate8 = 1;
                        break;
                    case OpCodeOperandKind.imm8sex16:
                        ins.SetOpKind(n, OpKind.Immediate8to16);
                        ins.Immediate8to16 = (sbyte)RandomValue(rng);
                        break;
                    case OpCodeOperandKind.imm8sex32:
                        ins.SetOpKind(n, OpKind.Immediate8to32);
                        ins.Immediate8to32 = (sbyte)RandomValue(rng);
                        break;
                    case OpCodeOperandKind.imm16:
                        ins.SetOpKind(n, OpKind.Immediate16);
                        ins.Immediate16 = code.Mnemonic() == Mnemonic.Enter ? (ushort)rng.Next(0, 0x400) : (ushort)RandomValue(rng);
                        break;
                    case OpCodeOperandKind.imm32:
                        ins.SetOpKind(n, OpKind.Immediate32);
                        ins.Immediate32 = RandomValue(rng);
                        break;
                    case OpCodeOperandKind.br32_1 or OpCodeOperandKind.br32_4 or OpCodeOperandKind.brdisp_4:
                        ins.SetOpKind(n, OpKind.NearBranch32);
                        ins.NearBranch32 = _base + NativeCompat32.CodeOffset + 0x60; // placeholder; the real target is set after the first encoding
                        break;
                    case OpCodeOperandKind.seg_rSI:
                        ins.SetOpKind(n, OpKind.MemorySegESI);
                        break;
                    case OpCodeOperandKind.es_rDI:
                        ins.SetOpKind(n, OpKind.MemoryESEDI);
                        break;
                    case OpCodeOperandKind.seg_rBX_al:
                        ins.SetOpKind(n, OpKind.Memory);
                        ins.MemoryBase = Register.EBX;
                        ins.MemoryIndex = Register.AL;
                        ins.MemoryIndexScale = 1;
                        regs[3] = DataBase + 0x100;
                        useMemory = true;
                        break;
                    default:
                        throw new InvalidOperationException($"{code}: operand kind {kind} has no generator");
                }
            }
            var m = code.Mnemonic();
            if (m is Mnemonic.Movsb or Mnemonic.Movsw or Mnemonic.Movsd or Mnemonic.Cmpsb or Mnemonic.Cmpsw or Mnemonic.Cmpsd
                or Mnemonic.Scasb or Mnemonic.Scasw or Mnemonic.Scasd or Mnemonic.Lodsb or Mnemonic.Lodsw or Mnemonic.Lodsd
                or Mnemonic.Stosb or Mnemonic.Stosw or Mnemonic.Stosd)
            {
                switch (rng.Next(3))
                {
                    case 1: ins.HasRepePrefix = true; break;
                    case 2: ins.HasRepnePrefix = true; break;
                }
                regs[6] = DataBase + 0x800 + (uint)rng.Next(64);
                regs[7] = DataBase + 0x1000 + (uint)rng.Next(64);
                regs[1] = (uint)rng.Next(0, 17);
                useMemory = true;
            }
            return ins;
        }

        private static void SetReg(ref Instruction ins, int n, Register r)
        {
            ins.SetOpKind(n, OpKind.Register);
            ins.SetOpRegister(n, r);
        }

        private void SetMemory(ref Instruction ins, int n, Register memBase, Random rng, uint[] regs)
        {
            ins.SetOpKind(n, OpKind.Memory);
            ins.MemoryBase = memBase;
            ins.MemoryIndex = Register.None;
            ins.MemoryIndexScale = 1;
            int disp = rng.Next(-0x400, 0x3f0);
            ins.MemoryDisplacement32 = (uint)disp;
            ins.MemoryDisplSize = disp is >= -128 and <= 127 ? 1 : 4;
            regs[RegisterIndex(memBase)] = DataBase + 0x1000;
        }

        private static int RegisterIndex(Register r) => r.GetFullRegister32() - Register.EAX;

        /// <summary>
        /// Adjusts operands so the native run cannot fault and control stays in our code, and returns the
        /// flags the SDM leaves undefined for this case (uint.MaxValue: the whole result is undefined).
        /// </summary>
        private uint Constrain(Code code, Instruction ins, Random rng, uint[] regs, ref uint flags, uint epilogueB, bool useMemory,
            out bool compareDest, out Register? destReg)
        {
            compareDest = true;
            destReg = null;
            var m = code.Mnemonic();
            int bits = OperandBits(ins);
            // Keep registers used as memory bases pointing into the buffer even if an operand picked them.
            uint count = ins.Op1Kind == OpKind.Register && ins.Op1Register == Register.CL || ins.Op2Kind == OpKind.Register && ins.Op2Register == Register.CL
                ? regs[1] & 0xff
                : ins.OpCount > 1 && ins.GetOpKind(ins.OpCount - 1) == OpKind.Immediate8 ? ins.Immediate8 : 1u;
            switch (m)
            {
                case Mnemonic.Div or Mnemonic.Idiv:
                    // A divisor register that is also part of the dividend cannot be steered clear of #DE here.
                    if (ins.Op0Kind == OpKind.Register && ins.Op0Register.GetFullRegister32() is Register.EAX or Register.EDX) return uint.MaxValue;
                    MakeDivisionSafe(ins, regs, m == Mnemonic.Idiv, bits);
                    return Arith;
                case Mnemonic.Mul or Mnemonic.Imul:
                    return SF | ZF | AF | PF;
                case Mnemonic.And or Mnemonic.Or or Mnemonic.Xor or Mnemonic.Test:
                    return AF;
                case Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar:
                    {
                        uint c = count & 0x1f;
                        if (c == 0) return 0;
                        uint u = AF;
                        if (c != 1) u |= OF;
                        if (c >= bits && m != Mnemonic.Sar) u |= CF;
                        return u;
                    }
                case Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr:
                    return (count & 0x1f) != 1 ? OF : 0;
                case Mnemonic.Shld or Mnemonic.Shrd:
                    {
                        uint c = count & 0x1f;
                        if (c == 0) return 0;
                        if (c > bits)
                        {
                            compareDest = false;
                            destReg = ins.Op0Kind == OpKind.Register ? ins.Op0Register : null;
                            return Arith;
                        }
                        return AF | (c != 1 ? OF : 0);
                    }
                case Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc:
                    if (ins.Op0Kind == OpKind.Memory && ins.Op1Kind == OpKind.Register)
                    {
                        int idx = RegisterIndex(ins.Op1Register);
                        if (ins.Op1Register.GetFullRegister32() == ins.MemoryBase.GetFullRegister32()) return uint.MaxValue;
                        int off = rng.Next(-8 * 0x300, 8 * 0x300);
                        regs[idx] = bits == 16 ? (regs[idx] & 0xffff_0000) | (ushort)(short)off : (uint)off;
                    }
                    return OF | SF | AF | PF;
                case Mnemonic.Bsf or Mnemonic.Bsr or Mnemonic.Tzcnt:
                    return CF | OF | SF | AF | PF;
                case Mnemonic.Lzcnt:
                    return OF | SF | AF | PF; // SDM: CF and ZF defined, the others undefined
                case Mnemonic.Aaa or Mnemonic.Aas:
                    return OF | SF | ZF | PF;
                case Mnemonic.Daa or Mnemonic.Das:
                    return OF;
                case Mnemonic.Aam:
                    {
                        if (ins.Immediate8 == 0) return uint.MaxValue;
                        return OF | AF | CF;
                    }
                case Mnemonic.Aad:
                    return OF | AF | CF;
                case Mnemonic.Bound:
                    {
                        // In bounds: lower ≤ index ≤ upper, written into the memory pair.
                        uint index = regs[RegisterIndex(ins.Op0Register)];
                        long i = bits == 16 ? (short)index : (int)index;
                        long lo = i - rng.Next(0, 100), hi = i + rng.Next(0, 100);
                        if (bits == 16 && (lo < short.MinValue || hi > short.MaxValue)) return uint.MaxValue;
                        if (bits == 32 && (lo < int.MinValue || hi > int.MaxValue)) return uint.MaxValue;
                        uint addr = regs[RegisterIndex(ins.MemoryBase)] + ins.MemoryDisplacement32;
                        if (ins.Op0Register.GetFullRegister32() == ins.MemoryBase.GetFullRegister32()) return uint.MaxValue;
                        WriteData(addr, (ulong)lo, bits / 8);
                        WriteData(addr + (uint)(bits / 8), (ulong)hi, bits / 8);
                        return 0;
                    }
                case Mnemonic.Enter:
                    // Silicon probes the final stack location, so the frame must stay inside the mapped stack.
                    if (ins.Immediate16 > 0x400) return uint.MaxValue;
                    regs[5] = StackPointer + 0x40; // frame pointer inside the stack area
                    return 0;
                case Mnemonic.Leave:
                    regs[5] = StackPointer + 0x20;
                    return 0;
                case Mnemonic.Ret:
                    WriteData(StackPointer, epilogueB, 4);
                    return 0;
                case Mnemonic.Jmp or Mnemonic.Call when ins.Op0Kind is OpKind.Register or OpKind.Memory:
                    if (ins.Op0Kind == OpKind.Register) regs[RegisterIndex(ins.Op0Register)] = epilogueB;
                    else WriteData(regs[RegisterIndex(ins.MemoryBase)] + ins.MemoryDisplacement32, epilogueB, 4);
                    return 0;
                case Mnemonic.Popf or Mnemonic.Popfd:
                    WriteData(StackPointer, ((uint)rng.Next() & (Arith | DF)) | 0x202, bits / 8);
                    return 0;
                case Mnemonic.Pop when ins.Op0Kind == OpKind.Memory:
                    return 0;
                case Mnemonic.Cmpxchg8b:
                    if (rng.Next(2) == 0)
                    {
                        uint addr = regs[RegisterIndex(ins.MemoryBase)] + ins.MemoryDisplacement32;
                        WriteData(addr, regs[0], 4);
                        WriteData(addr + 4, regs[2], 4);
                    }
                    return 0;
                case Mnemonic.Loop or Mnemonic.Loope or Mnemonic.Loopne or Mnemonic.Jcxz or Mnemonic.Jecxz:
                    if (rng.Next(3) == 0) regs[1] = (uint)rng.Next(0, 3);
                    return 0;
            }
            _ = useMemory;
            return 0;
        }

        private static int OperandBits(in Instruction ins)
        {
            if (ins.OpCount == 0) return 32;
            if (ins.Op0Kind == OpKind.Register) return ins.Op0Register.GetSize() * 8;
            if (ins.Op0Kind == OpKind.Memory) return ins.MemorySize.GetSize() * 8 is var b && b > 0 ? Math.Min(b, 32) : 32;
            return 32;
        }

        private void MakeDivisionSafe(in Instruction ins, uint[] regs, bool signed, int bits)
        {
            // Read the divisor as the instruction will, then move the dividend so the quotient fits.
            uint mask = bits == 32 ? 0xffff_ffff : (1u << bits) - 1;
            uint divisor;
            if (ins.Op0Kind == OpKind.Register)
            {
                var r = ins.Op0Register;
                int idx = RegisterIndex(r);
                bool high8 = r is Register.AH or Register.CH or Register.DH or Register.BH;
                if (regs[idx] == 0 || ((high8 ? regs[idx] >> 8 : regs[idx]) & mask) == 0) regs[idx] |= high8 ? 0x300u : 3u;
                divisor = (high8 ? regs[idx] >> 8 : regs[idx]) & mask;
            }
            else
            {
                uint addr = regs[RegisterIndex(ins.MemoryBase)] + ins.MemoryDisplacement32;
                divisor = (uint)ReadData(addr, bits / 8);
                if (divisor == 0)
                {
                    divisor = 7;
                    WriteData(addr, divisor, bits / 8);
                }
            }
            // Dividend: AX, DX:AX or EDX:EAX. Making the high part smaller than the divisor keeps an unsigned
            // quotient in range; for signed division use the sign extension of the low part.
            if (!signed)
            {
                switch (bits)
                {
                    case 8: regs[0] = (regs[0] & 0xffff_00ff) | ((((regs[0] >> 8) & 0xff) % divisor) << 8); break;
                    case 16: regs[2] = (regs[2] & 0xffff_0000) | ((regs[2] & 0xffff) % divisor); break;
                    default: regs[2] %= divisor; break;
                }
                return;
            }
            switch (bits)
            {
                case 8:
                    {
                        long low = (sbyte)regs[0];
                        regs[0] = (regs[0] & 0xffff_0000) | (ushort)(short)low;
                        break;
                    }
                case 16:
                    {
                        long low = (short)regs[0];
                        regs[2] = (regs[2] & 0xffff_0000) | (ushort)(low < 0 ? 0xffff : 0);
                        break;
                    }
                default:
                    regs[2] = (int)regs[0] < 0 ? 0xffff_ffff : 0;
                    break;
            }
            // MIN / -1 overflows: change the dividend.
            if ((bits == 8 && (sbyte)divisor == -1 && (sbyte)regs[0] == sbyte.MinValue)
                || (bits == 16 && (short)divisor == -1 && (short)regs[0] == short.MinValue)
                || (bits == 32 && (int)divisor == -1 && (int)regs[0] == int.MinValue))
                regs[0] ^= 1u << (bits - 2);
        }

        private ulong ReadData(uint addr, int size)
        {
            ulong v = 0;
            for (int i = 0; i < size; i++) v |= (ulong)_p[addr - _base + (uint)i] << (8 * i);
            return v;
        }

        private void WriteData(uint addr, ulong v, int size)
        {
            for (int i = 0; i < size; i++) _p[addr - _base + (uint)i] = (byte)(v >> (8 * i));
        }
    }

    internal sealed class NoIo : IExitHandler
    {
        public void PortRead(ushort port, Span<byte> data) => data.Fill(0xff);

        public void PortWrite(ushort port, ReadOnlySpan<byte> data)
        {
        }

        public void MmioRead(ulong gpa, Span<byte> data) => throw new InvalidOperationException($"unexpected MMIO read at {gpa:x}");

        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data) => throw new InvalidOperationException($"unexpected MMIO write at {gpa:x}");

        public bool MsrRead(uint msr, out ulong value)
        {
            value = 0;
            return false;
        }

        public bool MsrWrite(uint msr, ulong value) => false;
    }
}
