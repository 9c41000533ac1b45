// Differential testing of the software CPU in 64-bit mode against the host CPU. For every implemented instruction
// form that is valid in 64-bit mode, random operands are generated (R8-R15, REX byte registers SPL/BPL/SIL/DIL,
// 64-bit values, base+displacement, SIB, RIP-relative, absolute and 32-bit address-size memory operands), the
// instruction is encoded once and executed twice: natively in the process's own 64-bit mode (NativeLong64) and on a
// SoftCpu in IA-32e mode whose page tables identity-map the same bytes. Registers, RIP (which epilogue ran), the
// flags the SDM defines for the case, the data buffer and the stack must agree. Every case also loads XMM0-15 (random
// bits and special single and double values: zeros, infinities, NaNs with payloads, denormals, extremes, ties) and a
// random MXCSR (rounding control, DAZ, FTZ and sticky flags; the exception masks stay set, an unmasked exception would
// be SIGFPE), and XMM0-15 and MXCSR must agree afterwards. It also loads a random x87 unit through FXRSTOR: TOP, the
// tag word, the control word's rounding and precision, condition codes and masked sticky flags, and eight random
// 80-bit registers, whose significands are MM0-MM7 (physical R0-R7, whatever TOP says); afterwards the x87 control,
// status (TOP) and tag words and all eight registers, sign and exponent included, must agree — which is how every MMX
// form, and the x87 side effects of every other form (none), are checked. Forms that cannot run in user mode
// or that the host decodes differently by design are listed with the reason; the test fails if any implemented
// 64-bit-mode form is neither verified nor explained, and on any mismatch.
using System.Runtime.InteropServices;
using StringBuilder = System.Text.StringBuilder;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Memory;
using ActorVmm.Native.Soft;
using Iced.Intel;
using Xunit.Abstractions;

namespace ActorVmm.Native.Tests.Silicon;

[Collection(NativeLong64.Collection)]
[Trait("Category", "Slow")]
public sealed unsafe class SiliconLong64Tests(ITestOutputHelper output)
{
    /// <summary>SILICON_ITERATIONS=n runs n random cases per form instead of 96 (for a deeper search).</summary>
    private static readonly int IterationsPerForm = int.TryParse(Environment.GetEnvironmentVariable("SILICON_ITERATIONS"), out int n) && n > 0 ? n : 96;

    /// <summary>SILICON_SEED=n draws other random cases (the report is then not written).</summary>
    private static readonly int? Seed = int.TryParse(Environment.GetEnvironmentVariable("SILICON_SEED"), out int seed) ? seed : null;

    /// <summary>SILICON_TRACE=1 names each form on stderr before it runs (to find a form that crashes natively).</summary>
    private static readonly bool Trace = Environment.GetEnvironmentVariable("SILICON_TRACE") == "1";

    /// <summary>SILICON_FORMS=Add_,Shl_ limits the run to forms whose name starts with one of the prefixes (for debugging).</summary>
    private static readonly string[]? Only = Environment.GetEnvironmentVariable("SILICON_FORMS")?.Split(',', StringSplitOptions.RemoveEmptyEntries);

    private const ulong CF = 1, PF = 4, AF = 0x10, ZF = 0x40, SF = 0x80, DF = 0x400, OF = 0x800;
    private const ulong Arith = CF | PF | AF | ZF | SF | OF;

    private const string OtherForm =
        "in 64-bit mode its encoding decodes as another form: the soft CPU decodes as Intel parts do (66h ignored on near branches, "
        + "which stay 64-bit) while this AMD host would truncate RIP to 16 bits, where nothing is mapped";

    [NativeLong64Fact]
    public void Every_implemented_64_bit_mode_form_agrees_with_the_host_cpu_or_says_why_not()
    {
        var forms = SoftCpu.ImplementedForms.Where(c => c.ToOpCode().Mode64)
            .Where(c => Only is null || Only.Any(o => c.ToString().StartsWith(o, StringComparison.Ordinal)))
            .OrderBy(c => c.ToString(), StringComparer.Ordinal).ToList();
        var notVerified = new SortedDictionary<string, List<Code>>(StringComparer.Ordinal);
        var verified = new List<Code>();
        var failures = new List<string>();
        var rng = new Random(Seed ?? 20261125);
        long cases = 0;
        using var harness = new Harness();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        foreach (var code in forms)
        {
            string? reason = WhyNotVerifiable64(code);
            if (reason is null)
            {
                int before = failures.Count, compared = 0, otherForm = 0;
                if (Trace) Console.Error.WriteLine($"silicon64: {code}");
                for (int k = 0; k < IterationsPerForm && failures.Count - before < 3; k++)
                {
                    // A case is reported only if it mismatches twice with the same operands: a one-off difference
                    // is host interference with the native run (a signal delivered mid-run), not the CPU model.
                    int seed = rng.Next();
                    var r = harness.RunOne(code, new Random(seed), k);
                    if (r.Mismatch is not null) r = harness.RunOne(code, new Random(seed), k);
                    if (r.Mismatch is not null) failures.Add($"{code}: {r.Mismatch}");
                    if (r.Compared) compared++;
                    if (r.OtherForm) otherForm++;
                }
                cases += compared;
                if (compared > 0 || failures.Count > before)
                {
                    verified.Add(code);
                    continue;
                }
                reason = otherForm > 0 ? OtherForm : "every random case was one the SDM leaves undefined";
            }
            if (!notVerified.TryGetValue(reason, out var list)) notVerified[reason] = list = [];
            list.Add(code);
        }

        var report = new StringBuilder();
        report.AppendLine($"Software CPU vs host CPU in 64-bit mode ({RuntimeInformation.OSDescription}), {IterationsPerForm} random cases per form");
        report.AppendLine($"forms implemented: {SoftCpu.ImplementedForms.Count}");
        report.AppendLine($"forms implemented and valid in 64-bit mode: {forms.Count}");
        report.AppendLine($"forms verified natively in 64-bit mode: {verified.Count} ({cases} cases compared, {clock.Elapsed.TotalSeconds:F0} s)");
        report.AppendLine($"forms not verified natively: {notVerified.Values.Sum(l => l.Count)}");
        foreach (var (why, codes) in notVerified)
        {
            report.AppendLine($"  {codes.Count} — {why}:");
            report.AppendLine("    " + string.Join(" ", codes));
        }
        report.AppendLine($"mismatches: {failures.Count}");
        foreach (var f in failures.Take(200)) report.AppendLine("  " + f);
        output.WriteLine(report.ToString());
        if (Only is null && Seed is null && IterationsPerForm == 96) SiliconTests.WriteReport("silicon64-report.txt", report.ToString());

        Assert.True(failures.Count == 0, $"{failures.Count} mismatches against the host CPU:\n" + string.Join("\n", failures.Take(40)));
        Assert.Equal(forms.Count, verified.Count + notVerified.Values.Sum(l => l.Count));
    }

    /// <summary>Null when the 64-bit harness can run the form and compare it; otherwise why it cannot.</summary>
    internal static string? WhyNotVerifiable64(Code code)
    {
        var info = code.ToOpCode();
        if (!info.Mode64) return "not valid in 64-bit mode";
        // Reading a segment register is comparable here: the soft CPU runs at CPL 3 with the host's selectors.
        if (code is Code.Mov_rm16_Sreg or Code.Mov_r32m16_Sreg or Code.Mov_r64m16_Sreg or Code.Pushw_FS or Code.Pushq_FS
            or Code.Pushw_GS or Code.Pushq_GS)
            return null;
        if (SiliconTests.WhyNotVerifiableInUserMode(code) is string reason) return reason;
        // The soft CPU does not offer BMI1, so F3 0F BC is BSF there (REP ignored); a host that offers BMI1 runs
        // TZCNT instead, which is another instruction.
        if (code.Mnemonic() == Mnemonic.Tzcnt && HostHas(7, 0, ebx: 1u << 3))
            return "TZCNT's encoding: the soft CPU (no BMI1 offered) runs it as BSF, this host (BMI1) as TZCNT; checked in SseExtensionTests";
        if (code.Mnemonic() == Mnemonic.Lzcnt && !HostHas(0x8000_0001, 0, ecx: 1u << 5))
            return "the host does not offer ABM/LZCNT (CPUID)";
        foreach (var f in code.CpuidFeatures())
        {
            (uint leaf, uint ecx, uint edx) = f switch
            {
                CpuidFeature.MMX => (1u, 0u, 1u << 23),
                CpuidFeature.SSE3 => (1u, 1u << 0, 0u),
                CpuidFeature.SSSE3 => (1u, 1u << 9, 0u),
                CpuidFeature.SSE4_1 => (1u, 1u << 19, 0u),
                CpuidFeature.SSE4_2 => (1u, 1u << 20, 0u),
                CpuidFeature.MOVBE => (1u, 1u << 22, 0u),
                CpuidFeature.POPCNT => (1u, 1u << 23, 0u),
                _ => (0u, 0u, 0u),
            };
            if (leaf != 0 && !HostHas(leaf, 0, ecx: ecx, edx: edx)) return $"the host does not offer {f} (CPUID)";
        }
        // 16-bit near branches: Iced's codes for them exist in 64-bit mode only as AMD decodes 66h there.
        var m = code.Mnemonic();
        if (code is Code.Jmp_rm16 or Code.Call_rm16 or Code.Retnw or Code.Retnw_imm16
            || (m is Mnemonic.Loop or Mnemonic.Loope or Mnemonic.Loopne or Mnemonic.Jcxz or Mnemonic.Jecxz or Mnemonic.Jrcxz
                && code.ToString().Contains("_16_", StringComparison.Ordinal)))
            return OtherForm;
        for (int n = 0; n < info.OpCount; n++)
        {
            if (info.GetOpKind(n) is OpCodeOperandKind.br16_1 or OpCodeOperandKind.br16_2) return OtherForm;
        }
        return null;
    }

    /// <summary>Whether the host's CPUID leaf/subleaf has every bit given in the named registers.</summary>
    internal static bool HostHas(uint leaf, uint subleaf, uint ebx = 0, uint ecx = 0, uint edx = 0)
    {
        if (!System.Runtime.Intrinsics.X86.X86Base.IsSupported) return false;
        var (eax0, _, _, _) = System.Runtime.Intrinsics.X86.X86Base.CpuId((int)(leaf & 0x8000_0000), 0);
        if ((uint)eax0 < leaf) return false;
        var (_, b, c, d) = System.Runtime.Intrinsics.X86.X86Base.CpuId((int)leaf, (int)subleaf);
        return ((uint)b & ebx) == ebx && ((uint)c & ecx) == ecx && ((uint)d & edx) == edx;
    }

    /// <summary>The outcome of one random case.</summary>
    private readonly record struct CaseResult(string? Mismatch, bool Compared, bool OtherForm);

    private sealed class Harness : IDisposable
    {
        // The page tables live in a second guest region of their own at this guest-physical address.
        private const ulong TablesGpa = 0x10_0000, TablesSize = 0x4000;

        private readonly ulong _base = NativeLong64.Base;
        private readonly byte* _p = NativeLong64.Pointer;
        private readonly byte* _tables;
        private readonly SoftCpu _cpu;
        private readonly byte[] _initial = new byte[NativeLong64.StackTop - NativeLong64.DataOffset];
        private readonly byte[] _native = new byte[NativeLong64.StackTop - NativeLong64.DataOffset]; // data buffer and test stack

        public Harness()
        {
            _tables = (byte*)NativeMemory.AlignedAlloc((nuint)TablesSize, 0x1000);
            new Span<byte>(_tables, (int)TablesSize).Clear();
            BuildPageTables();
            var memory = new GuestMemory([
                new GuestRegion("tables", TablesGpa, TablesSize, _tables),
                new GuestRegion("long64", _base, NativeLong64.Size, _p),
            ]);
            _cpu = new SoftCpu(memory, new SiliconTests.NoIo());
        }

        public void Dispose() => NativeMemory.AlignedFree(_tables);

        /// <summary>PML4, PDPT, PD and one page table identity-mapping the native mapping with 4 KiB pages (read/write, user).</summary>
        private void BuildPageTables()
        {
            ulong* pml4 = (ulong*)_tables, pdpt = (ulong*)(_tables + 0x1000), pd = (ulong*)(_tables + 0x2000), pt = (ulong*)(_tables + 0x3000);
            const ulong PresentWritable = 7; // present, writable, user (the soft CPU runs at CPL 3 like the host process)
            pml4[(_base >> 39) & 511] = (TablesGpa + 0x1000) | PresentWritable;
            pdpt[(_base >> 30) & 511] = (TablesGpa + 0x2000) | PresentWritable;
            pd[(_base >> 21) & 511] = (TablesGpa + 0x3000) | PresentWritable;
            for (ulong page = 0; page < NativeLong64.Size / 0x1000; page++)
                pt[((_base >> 12) & 511) + page] = (_base + page * 0x1000) | PresentWritable;
        }

        private ulong DataBase => _base + NativeLong64.DataOffset;
        private ulong StackPointer => _base + NativeLong64.StackTop - 0x200;

        public CaseResult RunOne(Code code, Random rng, int k)
        {
            var info = code.ToOpCode();
            var regs = new ulong[16];
            for (int r = 0; r < 16; r++) regs[r] = RandomValue(rng);
            regs[4] = StackPointer;
            ulong flags = ((ulong)rng.Next() & (Arith | DF)) | 0x202;
            var data = new Span<byte>(_p + NativeLong64.DataOffset, _initial.Length);
            rng.NextBytes(data);
            var xmm = new UInt128[16];
            for (int r = 0; r < 16; r++) xmm[r] = RandomXmm(rng);
            uint mxcsr = RandomMxcsr(rng);
            // Memory operands of SSE forms hold SSE-like data too (floats of every class), not only random bytes.
            for (int at = 0; at < (int)(NativeLong64.StackLow - NativeLong64.DataOffset); at += 16)
            {
                if (rng.Next(2) == 0) MemoryMarshal.Write(data[at..], RandomXmm(rng));
            }
            // String compares, element compares and byte shuffles see equal elements and zero terminators only when
            // the elements come from a small alphabet: half their cases draw every XMM register and the data so.
            bool smallAlphabet = SmallAlphabetForms.Contains(code.Mnemonic()) && rng.Next(2) == 0;
            if (smallAlphabet)
            {
                for (int r = 0; r < 16; r++) xmm[r] = SmallAlphabetXmm(rng);
                for (int at = 0; at < (int)(NativeLong64.StackLow - NativeLong64.DataOffset); at += 16) MemoryMarshal.Write(data[at..], SmallAlphabetXmm(rng));
            }
            // The x87 unit, MM0-MM7 with it, as an FXSAVE image both runs load.
            byte[] fxIn = new byte[512];
            RandomX87(fxIn, rng, smallAlphabet);

            ulong codeAt = _base + NativeLong64.CodeOffset;
            byte[] prologue = NativeLong64.Prologue(codeAt);
            ulong insnAt = codeAt + (ulong)prologue.Length;

            // Half the cases may use AH-BH (no REX prefix at all); the others may use R8-R15 and SPL-DIL.
            bool legacy = rng.Next(2) == 0;
            var ins = BuildInstruction(code, info, rng, k, regs, legacy);
            if (!TryEncode(ins, insnAt, out byte[] bytes, out string? error))
            {
                if (!legacy) throw new InvalidOperationException($"{code}: {error}");
                ins = BuildInstruction(code, info, rng, k, regs, legacy: false);
                if (!TryEncode(ins, insnAt, out bytes, out error)) throw new InvalidOperationException($"{code}: {error}");
            }
            // The soft CPU decodes as Intel does; a form that decodes as another is not what would be compared.
            var decoder = Decoder.Create(64, bytes);
            decoder.IP = insnAt;
            decoder.Decode(out var decoded);
            if (decoded.Code != code) return new CaseResult(null, false, true);

            ulong epilogueA = insnAt + (ulong)bytes.Length;
            byte[] epiA = NativeLong64.Epilogue(epilogueA, 0);
            ulong epilogueB = epilogueA + (ulong)epiA.Length;
            byte[] epiB = NativeLong64.Epilogue(epilogueB, 1);
            if (ins.Op0Kind == OpKind.NearBranch64)
            {
                ins.NearBranch64 = epilogueB;
                bytes = Encode(ins, insnAt);
                if (insnAt + (ulong)bytes.Length != epilogueA) throw new InvalidOperationException($"{code}: branch re-encoding changed the length");
            }

            ulong undefined = Constrain(code, ins, rng, regs, epilogueB, out int? uncomparedReg);
            if (undefined == ulong.MaxValue) return default; // operand set the SDM leaves wholly undefined; nothing to compare

            var codeSpan = new Span<byte>(_p + NativeLong64.CodeOffset, (int)NativeLong64.CodeSize);
            codeSpan.Clear();
            prologue.CopyTo(codeSpan);
            bytes.CopyTo(codeSpan[prologue.Length..]);
            epiA.CopyTo(codeSpan[(prologue.Length + bytes.Length)..]);
            epiB.CopyTo(codeSpan[(prologue.Length + bytes.Length + epiA.Length)..]);

            // Snapshot memory, run natively.
            new Span<byte>(_p + NativeLong64.DataOffset, _initial.Length).CopyTo(_initial);
            ulong* s = NativeLong64.State;
            for (int r = 0; r < 16; r++) s[r] = regs[r];
            s[NativeLong64.InFlags] = flags;
            s[NativeLong64.Marker] = 0xdead;
            for (int r = 0; r < 16; r++) NativeLong64.XmmIn[r] = xmm[r];
            NativeLong64.MxcsrIn = mxcsr;
            fxIn.CopyTo(NativeLong64.FxIn);
            NativeLong64.Run(codeAt);
            byte[] nFx = NativeLong64.FxOut.ToArray();
            var nRegs = new ulong[16];
            for (int r = 0; r < 16; r++) nRegs[r] = s[NativeLong64.OutRegs + r];
            var nXmm = new UInt128[16];
            for (int r = 0; r < 16; r++) nXmm[r] = NativeLong64.XmmOut[r];
            uint nMxcsr = NativeLong64.MxcsrOut;
            ulong nFlags = s[NativeLong64.OutFlags];
            ulong nRip = s[NativeLong64.Marker] == 1 ? epilogueB : epilogueA;
            new Span<byte>(_p + NativeLong64.DataOffset, _native.Length).CopyTo(_native);

            // Restore memory, run on the soft CPU in 64-bit mode.
            _initial.CopyTo(new Span<byte>(_p + NativeLong64.DataOffset, _initial.Length));
            // CPL 3 with the process's own selectors (so reads of segment registers compare), flat segments.
            static SegmentRegister Data(int segment) =>
                SegmentRegister.Make(NativeLong64.HostSelector(segment), 0, 0xffff_ffff, type: 0x3, s: true, dpl: 3, l: false, db: true, g: true);
            _cpu.SetSystemRegisters(new SystemRegisters
            {
                Cs = SegmentRegister.Make(NativeLong64.HostSelector(1), 0, 0xffff_ffff, type: 0xb, s: true, dpl: 3, l: true, db: false, g: true),
                Es = Data(0), Ss = Data(2), Ds = Data(3), Fs = Data(4), Gs = Data(5),
                Cr0 = 0x8000_0011, Cr3 = TablesGpa, Cr4 = 0x620, Efer = 0x500, // CR4: PAE, OSFXSR, OSXMMEXCPT
            });
            var cr = new CpuRegisters { Rip = insnAt, Rflags = flags };
            for (int r = 0; r < 16; r++) cr[r] = regs[r];
            _cpu.SetRegisters(cr);
            xmm.CopyTo(_cpu.Xmm, 0);
            _cpu.Mxcsr = mxcsr;
            _cpu.LoadX87FromFxsave(fxIn, rexW: true);
            _cpu.ClearLastException();
            var outcome = _cpu.Step();
            var sr = _cpu.GetRegisters();
            byte[] sFx = new byte[512];
            _cpu.SaveX87ToFxsave(sFx, rexW: true);

            string Inputs()
            {
                var t = new StringBuilder($"[{Format(bytes)}] {decoded}");
                for (int r = 0; r < 16; r++)
                    if (r != 4) t.Append($" {RegName(r)}={regs[r]:x}");
                t.Append($" flags={flags:x} mxcsr={mxcsr:x}");
                int top = (fxIn[3] >> 3) & 7;
                if (Enumerable.Range(0, ins.OpCount).Any(n => ins.GetOpKind(n) == OpKind.Register && ins.GetOpRegister(n).IsMM()) || code.Mnemonic() == Mnemonic.Emms)
                    t.Append($" top={top} ftw={fxIn[4]:x2}");
                for (int n = 0; n < ins.OpCount; n++)
                {
                    if (ins.GetOpKind(n) == OpKind.Register && ins.GetOpRegister(n).IsMM())
                    {
                        int mm = ins.GetOpRegister(n) - Register.MM0, slot = 32 + 16 * ((mm - top) & 7);
                        t.Append($" mm{mm}={BitConverter.ToUInt16(fxIn, slot + 8):x4}:{BitConverter.ToUInt64(fxIn, slot):x16}");
                    }
                    if (ins.GetOpKind(n) == OpKind.Register && ins.GetOpRegister(n).IsXMM())
                        t.Append($" {ins.GetOpRegister(n).ToString().ToLowerInvariant()}={xmm[ins.GetOpRegister(n) - Register.XMM0]:x32}");
                    if (ins.GetOpKind(n) == OpKind.Memory && ins.MemorySize.GetSize() is > 0 and <= 16 and var size)
                    {
                        t.Append(" m=");
                        for (int b = size - 1; b >= 0; b--) t.Append(_initial[(int)(EffectiveAddress(ins, regs) - DataBase) + b].ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
                    }
                }
                return t.ToString();
            }
            UInt128 Source() => ins.Op1Kind == OpKind.Register
                ? xmm[ins.Op1Register - Register.XMM0]
                : MemoryMarshal.Read<UInt128>(_initial.AsSpan((int)(EffectiveAddress(ins, regs) - DataBase)));
            CaseResult Fail(string what) => new($"{what}; {Inputs()}", true, false);
            if (outcome != StepOutcome.Retired)
                return Fail($"soft CPU {outcome} ({_cpu.LastException}) where the host retired it");
            for (int r = 0; r < 16; r++)
            {
                if (uncomparedReg == r) continue;
                if (sr[r] != nRegs[r]) return Fail($"{RegName(r)} host {nRegs[r]:x16} soft {sr[r]:x16}");
            }
            if (sr.Rip != nRip) return Fail($"RIP host {nRip:x} soft {sr.Rip:x}");
            if (_cpu.Mxcsr != nMxcsr) return Fail($"MXCSR host {nMxcsr:x} soft {_cpu.Mxcsr:x}");
            bool estimate = code.Mnemonic() is Mnemonic.Rcpps or Mnemonic.Rcpss or Mnemonic.Rsqrtps or Mnemonic.Rsqrtss;
            for (int r = 0; r < 16; r++)
            {
                UInt128 soft = _cpu.Xmm[r];
                if (soft == nXmm[r]) continue;
                // RCP/RSQRT: silicon's approximations differ by design; the soft CPU's must be as close as the SDM
                // allows silicon to be (1.5 × 2^-12 relative error), lane by lane, and every other bit must agree.
                if (estimate && r == ins.Op0Register - Register.XMM0
                    && EstimatesAgree(nXmm[r], soft, Source(), code.Mnemonic() is Mnemonic.Rcpps or Mnemonic.Rsqrtps ? 4 : 1))
                    continue;
                return Fail($"XMM{r} host {nXmm[r]:x32} soft {soft:x32}");
            }
            if (X87Mismatch(nFx, sFx) is string x87) return Fail(x87);
            ulong compare = (Arith | DF) & ~undefined;
            if ((sr.Rflags & compare) != (nFlags & compare))
                return Fail($"flags host {nFlags & compare:x} soft {sr.Rflags & compare:x} (compared {compare:x})");
            // Memory: the data buffer, and the stack from the lowest stack pointer of the run upward. Below that,
            // the host kernel may have written a signal frame while the native code ran (the runtime signals
            // threads for GC), which is not the instruction's doing.
            ulong lowestSp = Math.Min(regs[4], Math.Min(nRegs[4], sr[4]));
            int dataEnd = (int)(NativeLong64.StackLow - NativeLong64.DataOffset);
            int stackFrom = (int)Math.Clamp((long)lowestSp - (long)DataBase, dataEnd, _native.Length);
            var softMem = new ReadOnlySpan<byte>(_p + NativeLong64.DataOffset, _native.Length);
            // FXSAVE's image: the x87 control, status and tag words (0-5) and registers (32-159) are the loaded random
            // state on both sides and are compared, as are MXCSR (24-27), MXCSR_MASK's low 16 bits (28-29) and XMM0-15
            // (160-415). Not FOP, FIP and FDP (6-23): no x87 instruction ran, and this AMD host stores them only while
            // an exception is pending. MXCSR_MASK's bit 17 is AMD's MM (misaligned SSE mode, CPUID misalignsse), which
            // this AMD host reports (0002FFFFh) and the soft CPU, modelled on Intel parts without it, does not (0000FFFFh).
            int imageAt = code.Mnemonic() is Mnemonic.Fxsave or Mnemonic.Fxsave64 ? (int)(EffectiveAddress(ins, regs) - DataBase) : int.MinValue;
            for (int at = 0; at < _native.Length; at++)
            {
                if (at >= dataEnd && at < stackFrom) continue;
                if (at - imageAt is >= 6 and < 24 or >= 30 and < 32) continue;
                if (softMem[at] != _native[at])
                    return Fail($"memory at {DataBase + (ulong)at:x} host {_native[at]:x2} soft {softMem[at]:x2}");
            }
            return new CaseResult(null, true, false);
        }

        private static readonly string[] Names = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

        private static string RegName(int r) => Names[r];

        private static string Format(byte[] b) => string.Join(" ", b.Select(x => x.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));

        private static bool TryEncode(in Instruction ins, ulong at, out byte[] bytes, out string? error)
        {
            var w = new MemoryStream();
            var e = Encoder.Create(64, new StreamCodeWriter(w));
            bool ok = e.TryEncode(ins, at, out _, out error);
            bytes = w.ToArray();
            return ok;
        }

        private static byte[] Encode(in Instruction ins, ulong at)
            => TryEncode(ins, at, out byte[] bytes, out string? error) ? bytes : throw new InvalidOperationException($"{ins.Code}: {error}");

        /// <summary>
        /// A random x87 unit as a 64-bit FXSAVE image's first 160 bytes: FCW with every exception masked and random
        /// precision and rounding control; FSW with a random TOP, condition codes and (masked) sticky flags but no
        /// pending exception (ES clear: it would be #MF natively); a random abridged tag word; and eight registers
        /// whose significands (MM0-MM7) are random bits, small numbers (shift counts) or SSE-like values, and whose
        /// sign and exponent are random, all ones (as MMX writes leave them) or zero.
        /// </summary>
        private static void RandomX87(Span<byte> fx, Random rng, bool smallAlphabet)
        {
            fx[..160].Clear();
            int top = rng.Next(8);
            ushort fcw = (ushort)(0x007f | (rng.Next(16) << 8));
            ushort fsw = (ushort)(top << 11);
            if (rng.Next(2) == 0) fsw |= (ushort)(rng.Next() & 0x4700);
            if (rng.Next(2) == 0) fsw |= (ushort)(rng.Next() & 0x7f);
            MemoryMarshal.Write(fx, fcw);
            MemoryMarshal.Write(fx[2..], fsw);
            fx[4] = rng.Next(4) switch { 0 => 0xff, 1 => 0, _ => (byte)rng.Next(256) };
            for (int slot = 0; slot < 8; slot++)
            {
                ulong significand = rng.Next(4) == 0 ? (ulong)rng.Next(0, 70) : smallAlphabet ? (ulong)SmallAlphabetXmm(rng) : (ulong)RandomXmm(rng);
                ushort signExponent = rng.Next(4) switch { 0 => 0xffff, 1 => (ushort)(rng.Next(2) << 15), _ => (ushort)rng.Next(0x10000) };
                MemoryMarshal.Write(fx[(32 + 16 * slot)..], significand);
                MemoryMarshal.Write(fx[(40 + 16 * slot)..], signExponent);
            }
        }

        /// <summary>
        /// The x87 state after the instruction, host against soft CPU, from their 64-bit FXSAVE images: control, status
        /// (TOP included) and abridged tag words and the eight registers (named as MMX registers, physical Rn = MMn);
        /// null when they agree.
        /// </summary>
        private static string? X87Mismatch(byte[] host, byte[] soft)
        {
            ushort hw = BitConverter.ToUInt16(host, 0), sw = BitConverter.ToUInt16(soft, 0);
            if (hw != sw) return $"x87 control word host {hw:x4} soft {sw:x4}";
            hw = BitConverter.ToUInt16(host, 2);
            sw = BitConverter.ToUInt16(soft, 2);
            if (hw != sw) return $"x87 status word host {hw:x4} soft {sw:x4} (TOP host {(hw >> 11) & 7} soft {(sw >> 11) & 7})";
            if (host[4] != soft[4]) return $"x87 tag word (abridged) host {host[4]:x2} soft {soft[4]:x2}";
            int top = (hw >> 11) & 7;
            for (int slot = 0; slot < 8; slot++)
            {
                int at = 32 + 16 * slot;
                if (host.AsSpan(at, 10).SequenceEqual(soft.AsSpan(at, 10))) continue;
                int mm = (top + slot) & 7;
                return $"MM{mm} (R{mm}) host {BitConverter.ToUInt16(host, at + 8):x4}:{BitConverter.ToUInt64(host, at):x16} "
                    + $"soft {BitConverter.ToUInt16(soft, at + 8):x4}:{BitConverter.ToUInt64(soft, at):x16}";
            }
            return null;
        }

        private static ulong RandomValue(Random rng) => rng.Next(12) switch
        {
            0 => 0,
            1 => 1,
            2 => ulong.MaxValue,
            3 => 0x8000_0000_0000_0000,
            4 => 0x7fff_ffff_ffff_ffff,
            5 => (ulong)rng.Next(256),
            6 => 0xffff_ffff,
            7 => 0x8000_0000,
            8 => (ulong)rng.NextInt64(0, 1L << 32),
            9 => (ulong)rng.NextInt64(0, 1L << 32) | 0xffff_ffff_0000_0000,
            _ => (ulong)rng.NextInt64() ^ ((ulong)rng.Next(2) << 63),
        };

        private static readonly HashSet<Mnemonic> SmallAlphabetForms =
        [
            Mnemonic.Pcmpestri, Mnemonic.Pcmpestri64, Mnemonic.Pcmpestrm, Mnemonic.Pcmpestrm64, Mnemonic.Pcmpistri, Mnemonic.Pcmpistrm,
            Mnemonic.Pcmpeqq, Mnemonic.Pcmpgtq, Mnemonic.Pminsb, Mnemonic.Pminsd, Mnemonic.Pminuw, Mnemonic.Pminud, Mnemonic.Pmaxsb,
            Mnemonic.Pmaxsd, Mnemonic.Pmaxuw, Mnemonic.Pmaxud, Mnemonic.Phminposuw, Mnemonic.Ptest, Mnemonic.Pshufb, Mnemonic.Psignb,
            Mnemonic.Psignw, Mnemonic.Psignd, Mnemonic.Pabsb, Mnemonic.Pabsw, Mnemonic.Pabsd, Mnemonic.Phaddsw, Mnemonic.Phsubsw,
            Mnemonic.Pmaddubsw, Mnemonic.Pmulhrsw, Mnemonic.Packusdw, Mnemonic.Mpsadbw,
        ];

        private static readonly byte[] Alphabet = [0, 0, 1, 0x61, 0x62, 0x63, 0x7f, 0x80, 0xff];

        /// <summary>An XMM value whose bytes (or, half the time, words) come from a few values, zeros included; sometimes all zero.</summary>
        private static UInt128 SmallAlphabetXmm(Random rng)
        {
            if (rng.Next(16) == 0) return 0;
            UInt128 v = 0;
            bool words = rng.Next(2) == 0;
            int zeroFrom = rng.Next(3) == 0 ? rng.Next(16) : 16; // a terminator somewhere, or none
            for (int k = 0; k < 16; k += words ? 2 : 1)
            {
                ulong x = k >= zeroFrom ? (rng.Next(2) == 0 ? 0UL : Alphabet[rng.Next(Alphabet.Length)]) : Alphabet[1 + rng.Next(Alphabet.Length - 1)];
                if (words && rng.Next(4) == 0) x |= (ulong)Alphabet[rng.Next(Alphabet.Length)] << 8;
                v |= (UInt128)x << (8 * k);
            }
            return v;
        }

        /// <summary>
        /// A random MXCSR the host can run with: all six exception masks set (an unmasked exception is SIGFPE),
        /// random rounding control, DAZ, FTZ and sticky exception flags.
        /// </summary>
        private static uint RandomMxcsr(Random rng)
        {
            uint v = 0x1f80 | ((uint)rng.Next(4) << 13);
            if (rng.Next(3) == 0) v |= SseFloat.Daz;
            if (rng.Next(3) == 0) v |= SseFloat.Ftz;
            if (rng.Next(2) == 0) v |= (uint)rng.Next(64);
            return v;
        }

        // Single-precision values of every class: zeros, ±1, infinities, default and payload QNaNs, SNaNs, denormals
        // (smallest, largest, middle), min and max normal, 2^23 and 2^31/2^63 neighbours for the conversions, 0.5/1.5/2.5
        // ties for rounding to integers, 2^-24 (half an ulp of 1), 1/3, and values near the overflow/underflow edges.
        private static readonly uint[] SpecialSingles =
        [
            0, 0x8000_0000, 0x3f80_0000, 0xbf80_0000, 0x7f80_0000, 0xff80_0000, 0x7fc0_0000, 0xffc0_0000, 0x7fc0_1234, 0xffe0_0001,
            0x7f80_0001, 0xffa0_5a5a, 0x7fbf_ffff, 0x0000_0001, 0x8000_0001, 0x007f_ffff, 0x807f_ffff, 0x0040_0000, 0x0080_0000,
            0x8080_0000, 0x0080_0001, 0x7f7f_ffff, 0xff7f_ffff, 0x7f00_0000, 0x4b00_0000, 0x4aff_ffff, 0x4f00_0000, 0xcf00_0000,
            0x4eff_ffff, 0x5f00_0000, 0xdf00_0000, 0x5eff_ffff, 0x3f00_0000, 0x3fc0_0000, 0x4020_0000, 0xc020_0000, 0x3380_0000,
            0x33c0_0000, 0x3eaa_aaab, 0x3f80_0001, 0x0c00_0000, 0x1f80_0000, 0x5f80_0000, 0x7e80_0000, 0x0100_0000, 0x3400_0000,
        ];

        private static readonly ulong[] SpecialDoubles =
        [
            0, 0x8000_0000_0000_0000, 0x3ff0_0000_0000_0000, 0xbff0_0000_0000_0000, 0x7ff0_0000_0000_0000, 0xfff0_0000_0000_0000,
            0x7ff8_0000_0000_0000, 0xfff8_0000_0000_0000, 0x7ff8_0000_1234_5678, 0xfffc_0000_0000_0001, 0x7ff0_0000_0000_0001,
            0xfff4_5a5a_5a5a_5a5a, 0x7ff7_ffff_ffff_ffff, 1, 0x8000_0000_0000_0001, 0x000f_ffff_ffff_ffff, 0x800f_ffff_ffff_ffff,
            0x0008_0000_0000_0000, 0x0010_0000_0000_0000, 0x8010_0000_0000_0000, 0x0010_0000_0000_0001, 0x7fef_ffff_ffff_ffff,
            0xffef_ffff_ffff_ffff, 0x7fe0_0000_0000_0000, 0x4330_0000_0000_0000, 0x432f_ffff_ffff_ffff, 0x41e0_0000_0000_0000,
            0xc1e0_0000_0000_0000, 0x41df_ffff_ffff_ffff, 0xc1e0_0000_0020_0000, 0x43e0_0000_0000_0000, 0xc3e0_0000_0000_0000,
            0x43df_ffff_ffff_ffff, 0x3fe0_0000_0000_0000, 0x3ff8_0000_0000_0000, 0x4004_0000_0000_0000, 0xc004_0000_0000_0000,
            0x3ca0_0000_0000_0000, 0x3cb0_0000_0000_0000, 0x3fd5_5555_5555_5555, 0x3ff0_0000_0000_0001,
            // Single-precision edges as doubles (CVTSD2SS): max single, past it, half-ulp ties, min normal and denormal singles.
            0x47ef_ffff_e000_0000, 0x47ef_ffff_f000_0000, 0x47f0_0000_0000_0000, 0x3ff0_0000_1000_0000, 0x3ff0_0000_3000_0000,
            0x3810_0000_0000_0000, 0x380f_ffff_f000_0000, 0x36a0_0000_0000_0000, 0x3690_0000_0000_0000, 0x0000_0000_0000_0100,
        ];

        /// <summary>A random single lane: a special value, random bits, or a random value near an interesting exponent.</summary>
        private static uint RandomSingle(Random rng) => rng.Next(4) switch
        {
            0 or 1 => SpecialSingles[rng.Next(SpecialSingles.Length)],
            2 => (uint)rng.NextInt64(0, 1L << 32),
            _ => ((uint)rng.Next(2) << 31) | ((uint)(new[] { 0, 1, 0x67, 0x68, 0x7e, 0x7f, 0x80, 0x96, 0x9d, 0xbe, 0xfd, 0xfe }[rng.Next(12)]) << 23)
                 | ((uint)rng.Next(1 << 23) & (rng.Next(2) == 0 ? 0x7f_ffffu : 0x7f_f000u)),
        };

        private static ulong RandomDouble(Random rng) => rng.Next(4) switch
        {
            0 or 1 => SpecialDoubles[rng.Next(SpecialDoubles.Length)],
            2 => (ulong)rng.NextInt64() ^ ((ulong)rng.Next(2) << 63),
            _ => ((ulong)rng.Next(2) << 63) | ((ulong)new[] { 0, 1, 0x369, 0x36a, 0x380, 0x381, 0x3fe, 0x3ff, 0x400, 0x41d, 0x41e, 0x43e, 0x47e, 0x47f, 0x7fe }[rng.Next(15)] << 52)
                 | ((ulong)rng.NextInt64(0, 1L << 52) & (rng.Next(2) == 0 ? 0xf_ffff_ffff_ffffUL : 0xf_ffff_e000_0000UL)),
        };

        /// <summary>An XMM value: random bits, four single lanes, two double lanes, or small integers (shift counts, conversions).</summary>
        private static UInt128 RandomXmm(Random rng)
        {
            switch (rng.Next(8))
            {
                case 0 or 1:
                    return new UInt128((ulong)rng.NextInt64() ^ ((ulong)rng.Next(2) << 63), (ulong)rng.NextInt64() ^ ((ulong)rng.Next(2) << 63));
                case 2 or 3 or 4:
                    {
                        UInt128 v = 0;
                        for (int k = 0; k < 4; k++) v |= (UInt128)RandomSingle(rng) << (32 * k);
                        return v;
                    }
                case 5 or 6:
                    return new UInt128(RandomDouble(rng), RandomDouble(rng));
                default:
                    {
                        UInt128 v = 0;
                        for (int k = 0; k < 4; k++) v |= (UInt128)(uint)rng.Next(-70, 70) << (32 * k);
                        return rng.Next(2) == 0 ? v : (ulong)rng.Next(0, 130);
                    }
            }
        }

        /// <summary>
        /// RCPPS/RCPSS/RSQRTPS/RSQRTSS: lane by lane (the first <paramref name="lanes"/>; the others must be equal) the
        /// soft CPU's correctly rounded value and the host's approximation are each within the SDM's 1.5 × 2^-12
        /// relative error of the exact value; zeros, infinities and NaNs must be identical. The SDM leaves it to the
        /// implementation whether RCP of |x| between 1.11111111110100000000000b × 2^125 and 1.00000000000110000000001b
        /// × 2^126 is tiny (and flushed to zero): there one may be zero of the operand's sign where the other is not.
        /// </summary>
        private static bool EstimatesAgree(UInt128 host, UInt128 soft, UInt128 source, int lanes)
        {
            for (int k = 0; k < 4; k++)
            {
                uint h = (uint)(host >> (32 * k)), s = (uint)(soft >> (32 * k)), x = (uint)(source >> (32 * k));
                if (h == s) continue;
                if (k >= lanes) return false;
                if ((x & 0x7fff_ffff) is >= 0x7e7f_e800 and <= 0x7e80_0c01 && (h ^ x) >> 31 == 0 && (s ^ x) >> 31 == 0
                    && ((h & 0x7fff_ffff) == 0 || (s & 0x7fff_ffff) == 0))
                    continue;
                float hf = BitConverter.UInt32BitsToSingle(h), sf = BitConverter.UInt32BitsToSingle(s);
                if (!float.IsFinite(hf) || !float.IsFinite(sf) || hf == 0 || sf == 0 || (h ^ s) >> 31 != 0) return false;
                if (Math.Abs((double)hf - sf) > (1.5 * Math.Pow(2, -12) + Math.Pow(2, -23)) * Math.Abs((double)sf)) return false;
            }
            return true;
        }

        private static readonly Register[] R8Legacy = [Register.AL, Register.CL, Register.DL, Register.BL, Register.AH, Register.CH, Register.DH, Register.BH];
        private static readonly Register[] R8Rex =
        [
            Register.AL, Register.CL, Register.DL, Register.BL, Register.BPL, Register.SIL, Register.DIL,
            Register.R8L, Register.R9L, Register.R10L, Register.R11L, Register.R12L, Register.R13L, Register.R14L, Register.R15L,
        ];

        // RSP/ESP/SP are never operands: the test stack pointer must stay where it is.
        private static readonly int[] LegacyIndexes = [0, 1, 2, 3, 5, 6, 7];
        private static readonly int[] AllIndexes = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        // Memory bases and indexes: never RAX/RDX (division and CMPXCHG steer them) nor RSP.
        private static readonly int[] LegacyBases = [1, 3, 5, 6, 7];
        private static readonly int[] AllBases = [1, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

        private static Register Gpr(int bits, int index) => bits switch
        {
            64 => Register.RAX + index,
            32 => Register.EAX + index,
            16 => Register.AX + index,
            _ => throw new ArgumentOutOfRangeException(nameof(bits)),
        };

        private static int RegisterIndex(Register r) => r.GetFullRegister() - Register.RAX;

        private Instruction BuildInstruction(Code code, OpCodeInfo info, Random rng, int k, ulong[] regs, bool legacy)
        {
            var ins = Instruction.Create(code);
            bool memoryChoice = (k & 1) == 1;
            int[] indexes = legacy ? LegacyIndexes : AllIndexes;
            var m = code.Mnemonic();
            for (int n = 0; n < info.OpCount; n++)
            {
                var kind = info.GetOpKind(n);
                switch (kind)
                {
                    case OpCodeOperandKind.r8_reg or OpCodeOperandKind.r8_opcode:
                        SetReg(ref ins, n, Byte(rng, legacy, n, m));
                        break;
                    case OpCodeOperandKind.r16_reg or OpCodeOperandKind.r16_rm or OpCodeOperandKind.r16_opcode or OpCodeOperandKind.r16_reg_mem:
                        SetReg(ref ins, n, Gpr(16, indexes[rng.Next(indexes.Length)]));
                        break;
                    case OpCodeOperandKind.r32_reg or OpCodeOperandKind.r32_rm or OpCodeOperandKind.r32_opcode or OpCodeOperandKind.r32_reg_mem:
                        SetReg(ref ins, n, Gpr(32, indexes[rng.Next(indexes.Length)]));
                        break;
                    case OpCodeOperandKind.r64_reg or OpCodeOperandKind.r64_rm or OpCodeOperandKind.r64_opcode or OpCodeOperandKind.r64_reg_mem:
                        SetReg(ref ins, n, Gpr(64, indexes[rng.Next(indexes.Length)]));
                        break;
                    case OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r16_or_mem or OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r64_or_mem:
                        if (memoryChoice) SetMemory(ref ins, n, rng, regs, legacy);
                        else if (kind == OpCodeOperandKind.r8_or_mem) SetReg(ref ins, n, Byte(rng, legacy, n, m));
                        else
                        {
                            int bits = kind switch { OpCodeOperandKind.r16_or_mem => 16, OpCodeOperandKind.r32_or_mem => 32, _ => 64 };
                            SetReg(ref ins, n, Gpr(bits, indexes[rng.Next(indexes.Length)]));
                        }
                        break;
                    case OpCodeOperandKind.mem:
                        SetMemory(ref ins, n, rng, regs, legacy);
                        break;
                    case OpCodeOperandKind.xmm_reg or OpCodeOperandKind.xmm_rm:
                        SetReg(ref ins, n, Register.XMM0 + rng.Next(legacy ? 8 : 16));
                        break;
                    case OpCodeOperandKind.xmm_or_mem:
                        if (memoryChoice) SetMemory(ref ins, n, rng, regs, legacy);
                        else SetReg(ref ins, n, Register.XMM0 + rng.Next(legacy ? 8 : 16));
                        break;
                    case OpCodeOperandKind.mm_reg or OpCodeOperandKind.mm_rm:
                        SetReg(ref ins, n, Register.MM0 + rng.Next(8));
                        break;
                    case OpCodeOperandKind.mm_or_mem:
                        if (memoryChoice) SetMemory(ref ins, n, rng, regs, legacy);
                        else SetReg(ref ins, n, Register.MM0 + rng.Next(8));
                        break;
                    case OpCodeOperandKind.seg_rDI:
                        {
                            // MASKMOVDQU and MASKMOVQ store through DS:RDI (EDI with 67h, whose upper half must then be ignored).
                            bool address32 = rng.Next(4) == 0;
                            ins.SetOpKind(n, address32 ? OpKind.MemorySegEDI : OpKind.MemorySegRDI);
                            ulong high = address32 ? (ulong)rng.NextInt64() << 32 : 0;
                            regs[7] = high | (DataBase + 0x800 + (ulong)rng.Next(0x400));
                            break;
                        }
                    case OpCodeOperandKind.mem_offs:
                        // MOV AL/AX/EAX/RAX <-> moffs: a 64-bit absolute address, or a 32-bit one with 67h.
                        ins.SetOpKind(n, OpKind.Memory);
                        ins.MemoryBase = Register.None;
                        ins.MemoryIndex = Register.None;
                        ins.MemoryDisplSize = rng.Next(2) == 0 ? 8 : 4;
                        ins.MemoryDisplacement64 = DataBase + 0x400 + (ulong)rng.Next(0x100);
                        break;
                    case OpCodeOperandKind.al: SetReg(ref ins, n, Register.AL); break;
                    case OpCodeOperandKind.cl: SetReg(ref ins, n, Register.CL); break;
                    case OpCodeOperandKind.ax: SetReg(ref ins, n, Register.AX); break;
                    case OpCodeOperandKind.dx: SetReg(ref ins, n, Register.DX); break;
                    case OpCodeOperandKind.eax: SetReg(ref ins, n, Register.EAX); break;
                    case OpCodeOperandKind.rax: SetReg(ref ins, n, Register.RAX); break;
                    case OpCodeOperandKind.seg_reg: SetReg(ref ins, n, Register.ES + rng.Next(6)); break;
                    case OpCodeOperandKind.fs: SetReg(ref ins, n, Register.FS); break;
                    case OpCodeOperandKind.gs: SetReg(ref ins, n, Register.GS); break;
                    case OpCodeOperandKind.imm8:
                        if (n == 1 && info.OpCount == 2 && info.GetOpKind(0) == OpCodeOperandKind.imm16)
                        {
                            ins.SetOpKind(n, OpKind.Immediate8_2nd);
                            ins.Immediate8_2nd = (byte)rng.Next(0, 4); // ENTER nesting level, kept small
                        }
                        else
                        {
                            ins.SetOpKind(n, OpKind.Immediate8);
                            // SSE imm8s select lanes, modes and predicates: their whole range half the time.
                            ins.Immediate8 = info.OpCount > 2 && rng.Next(2) == 0 ? (byte)rng.Next(256) : (byte)RandomValue(rng);
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
                    case OpCodeOperandKind.imm8sex64:
                        ins.SetOpKind(n, OpKind.Immediate8to64);
                        ins.Immediate8to64 = (sbyte)RandomValue(rng);
                        break;
                    case OpCodeOperandKind.imm16:
                        ins.SetOpKind(n, OpKind.Immediate16);
                        ins.Immediate16 = m == Mnemonic.Enter ? (ushort)rng.Next(0, 0x400) : (ushort)RandomValue(rng);
                        break;
                    case OpCodeOperandKind.imm32:
                        ins.SetOpKind(n, OpKind.Immediate32);
                        ins.Immediate32 = (uint)RandomValue(rng);
                        break;
                    case OpCodeOperandKind.imm32sex64:
                        ins.SetOpKind(n, OpKind.Immediate32to64);
                        ins.Immediate32to64 = (int)RandomValue(rng);
                        break;
                    case OpCodeOperandKind.imm64:
                        ins.SetOpKind(n, OpKind.Immediate64);
                        ins.Immediate64 = RandomValue(rng);
                        break;
                    case OpCodeOperandKind.br64_1 or OpCodeOperandKind.br64_4:
                        ins.SetOpKind(n, OpKind.NearBranch64);
                        // A placeholder just after the instruction (the real target is set after the first encoding).
                        ins.NearBranch64 = _base + NativeLong64.CodeOffset + (ulong)NativeLong64.Prologue(_base + NativeLong64.CodeOffset).Length + 0x20;
                        break;
                    case OpCodeOperandKind.seg_rSI or OpCodeOperandKind.es_rDI:
                        // String operands: RSI/RDI, or ESI/EDI with 67h (the upper halves must then be ignored).
                        break;
                    case OpCodeOperandKind.seg_rBX_al:
                        ins.SetOpKind(n, OpKind.Memory);
                        ins.MemoryBase = Register.RBX;
                        ins.MemoryIndex = Register.AL;
                        ins.MemoryIndexScale = 1;
                        regs[3] = DataBase + 0x100;
                        break;
                    default:
                        throw new InvalidOperationException($"{code}: operand kind {kind} has no generator");
                }
            }
            if (Enumerable.Range(0, info.OpCount).Any(n => info.GetOpKind(n) is OpCodeOperandKind.seg_rSI or OpCodeOperandKind.es_rDI))
            {
                bool address32 = rng.Next(4) == 0;
                for (int n = 0; n < info.OpCount; n++)
                {
                    if (info.GetOpKind(n) == OpCodeOperandKind.seg_rSI) ins.SetOpKind(n, address32 ? OpKind.MemorySegESI : OpKind.MemorySegRSI);
                    if (info.GetOpKind(n) == OpCodeOperandKind.es_rDI) ins.SetOpKind(n, address32 ? OpKind.MemoryESEDI : OpKind.MemoryESRDI);
                }
                switch (rng.Next(3))
                {
                    case 1: ins.HasRepePrefix = true; break;
                    case 2: ins.HasRepnePrefix = true; break;
                }
                ulong high = address32 ? (ulong)rng.NextInt64() << 32 : 0;
                regs[6] = high | (DataBase + 0x800 + (ulong)rng.Next(64));
                regs[7] = high | (DataBase + 0x1000 + (ulong)rng.Next(64));
                regs[1] = (address32 ? regs[1] & 0xffff_ffff_0000_0000UL : 0UL) | (uint)rng.Next(0, 17);
            }
            if (m == Mnemonic.Cmpxchg16b) AlignMemory(ref ins, regs, 16);
            // 128-bit SSE operands and the FXSAVE image must be 16-byte aligned (#GP, SIGSEGV natively), except for
            // the unaligned moves, LDDQU and the string compares, which keep a random alignment half the time.
            if (ins.OpCount > 0 && Enumerable.Range(0, ins.OpCount).Any(n => ins.GetOpKind(n) == OpKind.Memory)
                && (ins.MemorySize.GetSize() is 16 or 512)
                && !(m is Mnemonic.Movups or Mnemonic.Movupd or Mnemonic.Movdqu or Mnemonic.Lddqu or Mnemonic.Pcmpestri or Mnemonic.Pcmpestri64
                    or Mnemonic.Pcmpestrm or Mnemonic.Pcmpestrm64 or Mnemonic.Pcmpistri or Mnemonic.Pcmpistrm && rng.Next(2) == 0))
                AlignMemory(ref ins, regs, 16);
            return ins;
        }

        /// <summary>A byte register for operand <paramref name="n"/>: AH-BH without REX, or SPL-DIL and R8L-R15L with it.</summary>
        private static Register Byte(Random rng, bool legacy, int n, Mnemonic m)
        {
            if (legacy) return R8Legacy[rng.Next(R8Legacy.Length)];
            // SPL only as a source: a second operand that the instruction does not write.
            if (n > 0 && m is not (Mnemonic.Xchg or Mnemonic.Xadd) && rng.Next(R8Rex.Length + 1) == 0) return Register.SPL;
            return R8Rex[rng.Next(R8Rex.Length)];
        }

        private static void SetReg(ref Instruction ins, int n, Register r)
        {
            ins.SetOpKind(n, OpKind.Register);
            ins.SetOpRegister(n, r);
        }

        /// <summary>
        /// A memory operand at the data buffer's middle (±1 KiB) through one of five addressings: base + displacement,
        /// base + index × scale + displacement, RIP-relative, absolute disp32 (with or without 67h), or a 32-bit
        /// address size (67h) whose registers carry random upper halves that must be ignored.
        /// </summary>
        private void SetMemory(ref Instruction ins, int n, Random rng, ulong[] regs, bool legacy)
        {
            int[] bases = legacy ? LegacyBases : AllBases;
            ins.SetOpKind(n, OpKind.Memory);
            ins.MemoryIndex = Register.None;
            ins.MemoryIndexScale = 1;
            int disp = rng.Next(-0x400, 0x3f0);
            ulong target = DataBase + 0x1000 + (ulong)(long)disp;
            int mode = rng.Next(5);
            bool address32 = mode == 4;
            int b = bases[rng.Next(bases.Length)];
            ins.MemoryBase = Gpr(address32 ? 32 : 64, b);
            // Iced's displacement sizes: 1 (the shortest that fits), 4 with 32-bit addressing, 8 with 64-bit addressing.
            ins.MemoryDisplSize = disp is >= -128 and <= 127 ? 1 : address32 ? 4 : 8;
            ins.MemoryDisplacement64 = address32 ? (uint)disp : (ulong)(long)disp;
            ulong baseValue = DataBase + 0x1000;
            switch (mode)
            {
                case 1 or 4 when rng.Next(2) == 0 || mode == 1:
                    {
                        int x;
                        do x = bases[rng.Next(bases.Length)]; while (x == b);
                        int scale = 1 << rng.Next(4);
                        long index = rng.Next(-0x40, 0x40);
                        ins.MemoryIndex = Gpr(address32 ? 32 : 64, x);
                        ins.MemoryIndexScale = scale;
                        baseValue -= (ulong)(index * scale);
                        regs[x] = address32 ? ((ulong)rng.NextInt64() << 32) | (uint)index : (ulong)index;
                        break;
                    }
                case 2:
                    ins.MemoryBase = Register.RIP;
                    ins.MemoryDisplSize = 8;
                    ins.MemoryDisplacement64 = target;
                    return;
                case 3:
                    ins.MemoryBase = Register.None;
                    ins.MemoryDisplSize = rng.Next(2) == 0 ? 4 : 8; // [disp32] with 67h, or sign-extended without
                    ins.MemoryDisplacement64 = target;
                    return;
            }
            regs[b] = address32 ? ((ulong)rng.NextInt64() << 32) | (uint)baseValue : baseValue;
        }

        /// <summary>Effective address of the instruction's memory operand (RIP-relative operands hold their target).</summary>
        private static ulong EffectiveAddress(in Instruction ins, ulong[] regs)
        {
            if (ins.MemoryBase == Register.RIP) return ins.MemoryDisplacement64;
            ulong a = ins.MemoryDisplacement64;
            if (ins.MemoryBase != Register.None) a += regs[RegisterIndex(ins.MemoryBase)];
            if (ins.MemoryIndex != Register.None) a += regs[RegisterIndex(ins.MemoryIndex)] * (ulong)ins.MemoryIndexScale;
            return ins.MemoryBase.IsGPR32() || ins.MemoryIndex.IsGPR32() ? (uint)a : a;
        }

        /// <summary>Moves the memory operand to the next multiple of <paramref name="alignment"/> (CMPXCHG16B faults otherwise).</summary>
        private static void AlignMemory(ref Instruction ins, ulong[] regs, uint alignment)
        {
            ulong ea = EffectiveAddress(ins, regs);
            ulong delta = (alignment - (ea % alignment)) % alignment;
            ins.MemoryDisplacement64 += delta;
            if (ins.MemoryBase.IsGPR32()) ins.MemoryDisplacement64 = (uint)ins.MemoryDisplacement64;
            if (ins.MemoryDisplSize == 1 && (long)ins.MemoryDisplacement64 is < -128 or > 127) ins.MemoryDisplSize = ins.MemoryBase.IsGPR32() ? 4 : 8;
        }

        private static int OperandBits(in Instruction ins)
        {
            if (ins.OpCount == 0) return 64;
            if (ins.Op0Kind == OpKind.Register) return ins.Op0Register.GetSize() * 8;
            if (ins.Op0Kind == OpKind.Memory) return ins.MemorySize.GetSize() * 8 is var b && b > 0 ? Math.Min(b, 64) : 64;
            return 64;
        }

        private static ulong Mask(int bits) => bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;

        /// <summary>The value of register operand <paramref name="r"/> as the instruction reads it.</summary>
        private static ulong ReadRegister(Register r, ulong[] regs)
        {
            ulong v = regs[RegisterIndex(r)];
            if (r is Register.AH or Register.CH or Register.DH or Register.BH) return (v >> 8) & 0xff;
            return v & Mask(r.GetSize() * 8);
        }

        /// <summary>
        /// Adjusts operands so the native run cannot fault and control stays in our code, and returns the flags the
        /// SDM leaves undefined for this case (ulong.MaxValue: the whole result is undefined). A destination register
        /// the SDM leaves undefined is named in <paramref name="uncomparedReg"/>.
        /// </summary>
        private ulong Constrain(Code code, Instruction ins, Random rng, ulong[] regs, ulong epilogueB, out int? uncomparedReg)
        {
            uncomparedReg = null;
            var m = code.Mnemonic();
            int bits = OperandBits(ins);
            ulong count = ins.Op1Kind == OpKind.Register && ins.Op1Register == Register.CL || ins.Op2Kind == OpKind.Register && ins.Op2Register == Register.CL
                ? regs[1] & 0xff
                : ins.OpCount > 1 && ins.GetOpKind(ins.OpCount - 1) == OpKind.Immediate8 ? ins.Immediate8 : 1u;
            ulong countMask = bits == 64 ? 0x3fUL : 0x1fUL;
            switch (m)
            {
                case Mnemonic.Div or Mnemonic.Idiv:
                    // A divisor register that is also part of the dividend cannot be steered clear of #DE here.
                    if (ins.Op0Kind == OpKind.Register && RegisterIndex(ins.Op0Register) is 0 or 2) return ulong.MaxValue;
                    MakeDivisionSafe(ins, regs, m == Mnemonic.Idiv, bits);
                    return Arith;
                case Mnemonic.Mul or Mnemonic.Imul:
                    return SF | ZF | AF | PF;
                case Mnemonic.And or Mnemonic.Or or Mnemonic.Xor or Mnemonic.Test:
                    return AF;
                case Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar:
                    {
                        ulong c = count & countMask;
                        if (c == 0) return 0;
                        ulong u = AF;
                        if (c != 1) u |= OF;
                        if (c >= (ulong)bits && m != Mnemonic.Sar) u |= CF;
                        return u;
                    }
                case Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr:
                    return (count & countMask) != 1 ? OF : 0;
                case Mnemonic.Shld or Mnemonic.Shrd:
                    {
                        ulong c = count & countMask;
                        if (c == 0) return 0;
                        if (c > (ulong)bits)
                        {
                            if (ins.Op0Kind == OpKind.Register) uncomparedReg = RegisterIndex(ins.Op0Register);
                            else return ulong.MaxValue; // an undefined memory destination
                            return Arith;
                        }
                        return AF | (c != 1 ? OF : 0);
                    }
                case Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc:
                    if (ins.Op0Kind == OpKind.Memory && ins.Op1Kind == OpKind.Register)
                    {
                        // A register bit offset reaches ±768 bytes around the operand (it is signed, of the operand size).
                        int idx = RegisterIndex(ins.Op1Register);
                        if (ins.MemoryBase != Register.RIP && ins.MemoryBase != Register.None && idx == RegisterIndex(ins.MemoryBase)) return ulong.MaxValue;
                        if (ins.MemoryIndex != Register.None && idx == RegisterIndex(ins.MemoryIndex)) return ulong.MaxValue;
                        long off = rng.Next(-8 * 0x300, 8 * 0x300);
                        regs[idx] = (regs[idx] & ~Mask(bits)) | ((ulong)off & Mask(bits));
                    }
                    return OF | SF | AF | PF;
                case Mnemonic.Pcmpestri or Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm or Mnemonic.Pcmpestrm64:
                    // Lengths in RAX and RDX (EAX/EDX without REX.W): small ones of either sign most of the time.
                    foreach (int r in (ReadOnlySpan<int>)[0, 2])
                    {
                        if (rng.Next(4) != 0) regs[r] = (regs[r] & (m is Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm64 ? 0 : 0xffff_ffff_0000_0000UL))
                            | ((ulong)(long)rng.Next(-20, 21) & (m is Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm64 ? ulong.MaxValue : 0xffff_ffffUL));
                    }
                    return 0;
                case Mnemonic.Lzcnt:
                    return OF | SF | AF | PF;
                case Mnemonic.Bsf or Mnemonic.Bsr or Mnemonic.Tzcnt:
                    {
                        // A zero source leaves the destination undefined.
                        ulong source = ins.Op1Kind == OpKind.Register ? ReadRegister(ins.Op1Register, regs) : ReadData(EffectiveAddress(ins, regs), bits / 8);
                        if (source == 0) uncomparedReg = RegisterIndex(ins.Op0Register);
                        return CF | OF | SF | AF | PF;
                    }
                case Mnemonic.Enter:
                    // Silicon probes the final stack location, so the frame must stay inside the mapped stack.
                    regs[5] = StackPointer + 0x40; // frame pointer inside the stack area
                    return 0;
                case Mnemonic.Leave:
                    regs[5] = StackPointer + 0x20;
                    return 0;
                case Mnemonic.Ret:
                    WriteData(StackPointer, epilogueB, 8);
                    return 0;
                case Mnemonic.Jmp or Mnemonic.Call when ins.Op0Kind is OpKind.Register or OpKind.Memory:
                    if (ins.Op0Kind == OpKind.Register) regs[RegisterIndex(ins.Op0Register)] = epilogueB;
                    else WriteData(EffectiveAddress(ins, regs), epilogueB, 8);
                    return 0;
                case Mnemonic.Popf or Mnemonic.Popfq:
                    WriteData(StackPointer, ((ulong)rng.Next() & (Arith | DF)) | 0x202, m == Mnemonic.Popf ? 2 : 8);
                    return 0;
                case Mnemonic.Cmpxchg8b:
                    if (rng.Next(2) == 0)
                    {
                        ulong addr = EffectiveAddress(ins, regs);
                        WriteData(addr, regs[0], 4);
                        WriteData(addr + 4, regs[2], 4);
                    }
                    return 0;
                case Mnemonic.Cmpxchg16b:
                    if (rng.Next(2) == 0)
                    {
                        ulong addr = EffectiveAddress(ins, regs);
                        WriteData(addr, regs[0], 8);
                        WriteData(addr + 8, regs[2], 8);
                    }
                    return 0;
                case Mnemonic.Ldmxcsr:
                    // A reserved bit would be #GP (SIGSEGV natively) and a clear mask SIGFPE at the next SSE instruction.
                    WriteData(EffectiveAddress(ins, regs), RandomMxcsr(rng), 4);
                    return 0;
                case Mnemonic.Fxrstor or Mnemonic.Fxrstor64:
                    {
                        // The image: a valid MXCSR with every exception masked, random XMM0-15, and a random x87 unit
                        // with no exception pending (the exit gives the host its own back). The MXCSR_MASK field and
                        // bytes 416-511 are not loaded and stay random.
                        ulong addr = EffectiveAddress(ins, regs);
                        byte[] x87 = new byte[160];
                        RandomX87(x87, rng, smallAlphabet: false);
                        for (int b = 0; b < 160; b += 8) WriteData(addr + (ulong)b, BitConverter.ToUInt64(x87, b), 8);
                        WriteData(addr + 24, RandomMxcsr(rng), 4);
                        for (int r = 0; r < 16; r++)
                        {
                            UInt128 v = RandomXmm(rng);
                            WriteData(addr + 160 + (ulong)r * 16, (ulong)v, 8);
                            WriteData(addr + 168 + (ulong)r * 16, (ulong)(v >> 64), 8);
                        }
                        return 0;
                    }
                case Mnemonic.Loop or Mnemonic.Loope or Mnemonic.Loopne or Mnemonic.Jecxz or Mnemonic.Jrcxz:
                    if (rng.Next(3) == 0)
                    {
                        ulong small = (ulong)rng.Next(0, 3);
                        regs[1] = code.ToString().Contains("ECX", StringComparison.Ordinal) || m == Mnemonic.Jecxz
                            ? (regs[1] & 0xffff_ffff_0000_0000) | small
                            : small;
                    }
                    return 0;
            }
            return 0;
        }

        private void MakeDivisionSafe(in Instruction ins, ulong[] regs, bool signed, int bits)
        {
            // Read the divisor as the instruction will, then move the dividend so the quotient fits. The upper
            // parts of RAX and RDX that a narrower division ignores keep their random values.
            ulong mask = Mask(bits);
            ulong divisor;
            if (ins.Op0Kind == OpKind.Register)
            {
                var r = ins.Op0Register;
                int idx = RegisterIndex(r);
                bool high8 = r is Register.AH or Register.CH or Register.DH or Register.BH;
                if (ReadRegister(r, regs) == 0) regs[idx] |= high8 ? 0x300UL : 3UL;
                divisor = ReadRegister(r, regs);
            }
            else
            {
                ulong addr = EffectiveAddress(ins, regs);
                divisor = ReadData(addr, bits / 8);
                if (divisor == 0)
                {
                    divisor = 7;
                    WriteData(addr, divisor, bits / 8);
                }
            }
            // Dividend: AX, DX:AX, EDX:EAX or RDX:RAX. Making the high part smaller than the divisor keeps an
            // unsigned quotient in range; for signed division use the sign extension of the low part.
            if (!signed)
            {
                if (bits == 8) regs[0] = (regs[0] & ~0xff00UL) | ((((regs[0] >> 8) & 0xff) % divisor) << 8);
                else regs[2] = (regs[2] & ~mask) | ((regs[2] & mask) % divisor);
            }
            else
            {
                long low = bits switch
                {
                    8 => (sbyte)regs[0],
                    16 => (short)regs[0],
                    32 => (int)regs[0],
                    _ => (long)regs[0],
                };
                if (bits == 8) regs[0] = (regs[0] & ~0xffffUL) | (ushort)(short)low;
                else regs[2] = (regs[2] & ~mask) | (low < 0 ? mask : 0);
                // MIN / -1 overflows: change the dividend.
                long d = bits switch { 8 => (sbyte)divisor, 16 => (short)divisor, 32 => (int)divisor, _ => (long)divisor };
                ulong min = 1UL << (bits - 1);
                if (d == -1 && (regs[0] & mask) == min) regs[0] ^= 1UL << (bits - 2);
            }
        }

        private ulong ReadData(ulong addr, int size)
        {
            ulong v = 0;
            for (int i = 0; i < size; i++) v |= (ulong)_p[addr - _base + (ulong)i] << (8 * i);
            return v;
        }

        private void WriteData(ulong addr, ulong v, int size)
        {
            for (int i = 0; i < size; i++) _p[addr - _base + (ulong)i] = (byte)(v >> (8 * i));
        }
    }
}

/// <summary>A fact that is skipped, with the reason, where the host cannot run 64-bit code natively from a fixed mapping.</summary>
public sealed class NativeLong64FactAttribute : FactAttribute
{
    public NativeLong64FactAttribute()
    {
        if (!NativeLong64.Available) Skip = $"not run on this host: {NativeLong64.UnavailableReason}";
    }
}
