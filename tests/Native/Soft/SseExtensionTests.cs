// SSE3, SSSE3, SSE4.1, SSE4.2, POPCNT and MOVBE on the soft CPU: what the 64-bit silicon harness (which compares
// every form with the host CPU) cannot reach: exceptions (alignment #GP, #XM, #UD without OSFXSR), CPUID, the
// CRC-32C check value, and F3 0F BC as BSF (BMI1 is not offered, so a host that has it cannot serve as the
// reference).
using ActorVmm.Native.Soft;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace ActorVmm.Native.Tests.Soft;

public sealed class SseExtensionTests
{
    private const uint Data = SoftCpuHarness.Data;

    private static SoftCpuHarness Harness(ulong cr4 = 0x600)
    {
        var h = new SoftCpuHarness();
        var sys = h.Cpu.GetSystemRegisters();
        sys.Cr4 |= cr4; // OSFXSR, OSXMMEXCPT
        h.Cpu.SetSystemRegisters(sys);
        return h;
    }

    /// <summary>Runs to HLT with every exception vector pointing at a HLT handler; the outcome is Exception when one was taken.</summary>
    private static StepOutcome Run(SoftCpuHarness h)
    {
        for (int v = 0; v < 32; v++) h.SetGate(v, SoftCpuHarness.Handler);
        h.Memory.WriteObject(SoftCpuHarness.Handler, (byte)0xf4);
        var o = h.RunToHalt();
        return o == StepOutcome.Halted && h.Regs.Rip == SoftCpuHarness.Handler + 1 ? StepOutcome.Exception : o;
    }

    [Fact]
    public void Crc32_computes_crc32c_check_value()
    {
        using var h = Harness();
        h.Memory.Write(Data, "123456789"u8.ToArray());
        h.Program(a =>
        {
            a.mov(eax, -1);
            a.crc32(eax, __dword_ptr[Data]);
            a.crc32(eax, __word_ptr[Data + 4]);
            a.crc32(eax, __byte_ptr[Data + 6]);
            a.mov(ecx, __dword_ptr[Data + 7]);
            a.crc32(eax, cx);
            a.not(eax);
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(0xE306_9283UL, h.Regs.Rax); // CRC-32C("123456789"), RFC 3720 B.4 / the Castagnoli check value
        Assert.Equal(0xE306_9283u, ~SoftCpu.Crc32cUpdate(SoftCpu.Crc32cUpdate(uint.MaxValue, 0x3837_3635_3433_3231, 8), '9', 1));
    }

    [Fact]
    public void Tzcnt_encoding_runs_as_bsf_without_bmi1_and_lzcnt_counts()
    {
        using var h = Harness();
        h.Program(a =>
        {
            a.mov(ecx, 0x10);
            a.tzcnt(eax, ecx);
            a.lzcnt(ebx, ecx);
            a.xor(ecx, ecx);
            a.mov(edx, 0x55);
            a.tzcnt(edx, ecx); // zero source: ZF set, destination unchanged
            a.setz(cl);
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(4UL, h.Regs.Rax);
        Assert.Equal(27UL, h.Regs.Rbx); // LZCNT (ABM is offered)
        Assert.Equal(0x55UL, h.Regs.Rdx);
        Assert.Equal(1UL, h.Regs.Rcx);
    }

    [Fact]
    public void Cpuid_offers_mmx_sse3_to_sse42_popcnt_and_movbe_but_not_monitor()
    {
        using var h = Harness();
        h.Program(a => { a.mov(eax, 1); a.cpuid(); });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        ulong ecx = h.Regs.Rcx, edx = h.Regs.Rdx;
        foreach (int bit in (ReadOnlySpan<int>)[0, 9, 13, 19, 20, 22, 23]) Assert.True(((ecx >> bit) & 1) != 0, $"ECX bit {bit}");
        foreach (int bit in (ReadOnlySpan<int>)[3, 12, 25, 26, 27, 28]) Assert.True(((ecx >> bit) & 1) == 0, $"ECX bit {bit}"); // MONITOR, FMA, AES, XSAVE, OSXSAVE, AVX
        Assert.Equal(1UL, (edx >> 23) & 1); // MMX (SoftCpu.Mmx.cs)

        using var x = Harness();
        x.Program(a => { a.mov(eax, 0x8000_0001); a.cpuid(); });
        Assert.Equal(StepOutcome.Halted, x.RunToHalt());
        Assert.Equal(1UL << 5, x.Regs.Rcx & (1UL << 5)); // ABM (LZCNT)

        using var m = Harness();
        m.Program(a => a.monitor());
        Assert.Equal(StepOutcome.Exception, Run(m));
        Assert.Equal(new ExceptionRecord(SoftCpu.ExUD, null), m.Cpu.LastException);
    }

    public static TheoryData<string, bool> AlignmentCases => new()
    {
        { "ptest", true }, { "movntdqa", true }, { "roundps", true }, { "pminud", true }, { "pshufb", true }, { "haddps", true },
        { "pcmpistri", false }, { "pcmpestrm", false }, { "lddqu", false }, { "pmovzxbw", false }, { "roundss", false }, { "movddup", false },
    };

    [Theory]
    [MemberData(nameof(AlignmentCases))]
    public void Legacy_m128_operands_must_be_aligned_except_where_the_sdm_says_otherwise(string name, bool faults)
    {
        using var h = Harness();
        var mem = __xmmword_ptr[Data + 8];
        h.Program(a =>
        {
            switch (name)
            {
                case "ptest": a.ptest(xmm0, mem); break;
                case "movntdqa": a.movntdqa(xmm0, mem); break;
                case "roundps": a.roundps(xmm0, mem, 0); break;
                case "pminud": a.pminud(xmm0, mem); break;
                case "pshufb": a.pshufb(xmm0, mem); break;
                case "haddps": a.haddps(xmm0, mem); break;
                case "pcmpistri": a.pcmpistri(xmm0, mem, 0x0c); break;
                case "pcmpestrm": a.pcmpestrm(xmm0, mem, 0x40); break;
                case "lddqu": a.lddqu(xmm0, mem); break;
                case "pmovzxbw": a.pmovzxbw(xmm0, __qword_ptr[Data + 1]); break;
                case "roundss": a.roundss(xmm0, __dword_ptr[Data + 1], 4); break;
                default: a.movddup(xmm0, __qword_ptr[Data + 1]); break;
            }
        });
        if (faults)
        {
            Assert.Equal(StepOutcome.Exception, Run(h));
            Assert.Equal(new ExceptionRecord(SoftCpu.ExGP, 0), h.Cpu.LastException);
        }
        else
        {
            Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        }
    }

    [Fact]
    public void Round_raises_an_unmasked_precision_exception_unless_imm8_bit_3_suppresses_it()
    {
        const uint onePointFive = 0x3fc0_0000, two = 0x4000_0000;
        using var h = Harness();
        h.Program(a => a.roundss(xmm0, xmm1, 0));
        h.Cpu.Xmm[1] = onePointFive;
        h.Cpu.Mxcsr = 0x1f80 & ~0x1000u; // PE unmasked
        Assert.Equal(StepOutcome.Exception, Run(h));
        Assert.Equal(new ExceptionRecord(SoftCpu.ExXM, null), h.Cpu.LastException);
        Assert.Equal((UInt128)0, h.Cpu.Xmm[0]); // not written

        using var s = Harness();
        s.Program(a => a.roundss(xmm0, xmm1, 8));
        s.Cpu.Xmm[1] = onePointFive;
        s.Cpu.Mxcsr = 0x1f80 & ~0x1000u;
        Assert.Equal(StepOutcome.Halted, s.RunToHalt());
        Assert.Equal((UInt128)two, s.Cpu.Xmm[0]);
        Assert.Equal(0x1f80 & ~0x1000u, s.Cpu.Mxcsr); // no PE
    }

    [Fact]
    public void Sse4_needs_osfxsr_but_popcnt_crc32_and_movbe_do_not()
    {
        using var h = Harness(cr4: 0);
        h.Program(a => a.pminud(xmm0, xmm1));
        Assert.Equal(StepOutcome.Exception, Run(h));
        Assert.Equal(new ExceptionRecord(SoftCpu.ExUD, null), h.Cpu.LastException);

        using var g = Harness(cr4: 0);
        g.Memory.WriteObject(Data, 0x1122_3344u);
        g.Program(a =>
        {
            a.mov(ecx, 0xf0f0);
            a.popcnt(eax, ecx);
            a.crc32(ebx, ecx);
            a.movbe(edx, __dword_ptr[Data]);
        });
        Assert.Equal(StepOutcome.Halted, g.RunToHalt());
        Assert.Equal(8UL, g.Regs.Rax);
        Assert.Equal(0x4433_2211UL, g.Regs.Rdx);
    }
}
