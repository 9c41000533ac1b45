// MMX on the soft CPU where the 64-bit silicon harness (which compares every mm form's results, the x87 tag word,
// TOP and all eight registers with the host CPU) cannot reach: the exceptions (SDM vol. 2 table 22-7 and the mm
// forms of SSE/SSE2 with an XMM operand, table 22-5/22-6: #UD for CR0.EM or, with an XMM operand, a clear
// CR4.OSFXSR; #NM for CR0.TS; #MF for a pending unmasked x87 exception), the aliasing of MMn to the physical x87
// register Rn whatever TOP says (SDM vol. 3 §12.2), FXSAVE/FXRSTOR and FNSAVE carrying the MMX registers, and CPUID.
using ActorVmm.Native.Soft;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace ActorVmm.Native.Tests.Soft;

public sealed class MmxTests
{
    private const uint D = SoftCpuHarness.Data;

    /// <summary>Runs to HLT with #UD, #NM and #MF pointing at a HLT handler.</summary>
    private static SoftCpuHarness Run(Action<Assembler> program, ulong cr0 = 0x11, ulong cr4 = 0x600)
    {
        var h = new SoftCpuHarness();
        var sys = h.Cpu.GetSystemRegisters();
        sys.Cr0 = cr0;
        sys.Cr4 = cr4;
        h.Cpu.SetSystemRegisters(sys);
        foreach (byte v in (ReadOnlySpan<byte>)[SoftCpu.ExUD, SoftCpu.ExNM, SoftCpu.ExMF]) h.SetGate(v, SoftCpuHarness.Handler);
        h.Load(SoftCpuHarness.Handler, a => a.hlt());
        h.Program(program);
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        return h;
    }

    private static byte[] Fxsave(SoftCpuHarness h)
    {
        var area = new byte[512];
        h.Cpu.SaveX87ToFxsave(area, rexW: false);
        return area;
    }

    /// <summary>FLD1 then FLDZ; FDIVP with ZE unmasked: an unmasked exception pending, TOP 6.</summary>
    private static void DivideByZeroUnmasked(Assembler a)
    {
        a.fninit();
        a.mov(__word_ptr[D], 0x037b); // ZE unmasked
        a.fldcw(__word_ptr[D]);
        a.fld1();
        a.fldz();
        a.fdivp(st1, st0);
    }

    public static TheoryData<string, ulong, byte?> ExceptionCases => new()
    {
        { "em", 0x15, SoftCpu.ExUD },
        { "ts", 0x19, SoftCpu.ExNM },
        { "em-and-ts", 0x1d, SoftCpu.ExUD },   // #UD comes first
        { "mp-alone", 0x13, null },             // MP matters to WAIT only
    };

    [Theory]
    [MemberData(nameof(ExceptionCases))]
    public void Cr0_em_is_ud_and_ts_is_nm_before_anything_changes(string name, ulong cr0, byte? vector)
    {
        using var h = Run(a =>
        {
            a.mov(eax, 0x0101_0101);
            a.paddb(mm0, mm0);
        }, cr0);
        Assert.Equal(vector is byte v ? new ExceptionRecord(v, null) : null, h.Cpu.LastException);
        // Power-on x87: every tag valid, TOP 0. A faulting PADDB leaves R0 as it was (+0.0).
        if (vector is not null) Assert.True(h.Cpu.X87Register(0).IsZero, name);
    }

    [Fact]
    public void A_pending_unmasked_x87_exception_is_mf_with_ne_and_the_x87_state_is_left_alone()
    {
        using var h = Run(a =>
        {
            DivideByZeroUnmasked(a);
            a.pxor(mm1, mm1);
        }, cr0: 0x31);
        Assert.Equal(new ExceptionRecord(SoftCpu.ExMF, null), h.Cpu.LastException);
        Assert.Equal(6, (h.Cpu.X87StatusWord >> 11) & 7); // no transition: TOP still 6
        Assert.Equal(0xc0, Fxsave(h)[4]);                  // R6, R7 valid, the rest empty

        // With CR0.NE = 0 the exception stays pending (FERR# is not modelled) and the MMX instruction runs.
        using var n = Run(a =>
        {
            DivideByZeroUnmasked(a);
            a.pxor(mm1, mm1);
        }, cr0: 0x11);
        Assert.Null(n.Cpu.LastException);
        Assert.Equal(0, (n.Cpu.X87StatusWord >> 11) & 7);
        Assert.Equal(0x80, n.Cpu.X87StatusWord & 0x80); // still pending
        Assert.Equal(0xff, Fxsave(n)[4]);
    }

    [Theory]
    [InlineData("paddb", false)]
    [InlineData("pshufw", false)]
    [InlineData("paddq", false)]
    [InlineData("pshufb", false)]
    [InlineData("cvtpi2ps", true)]
    [InlineData("cvttpd2pi", true)]
    [InlineData("movq2dq", true)]
    [InlineData("movdq2q", true)]
    public void Without_osfxsr_only_the_forms_with_an_xmm_operand_are_ud(string name, bool ud)
    {
        using var h = Run(a =>
        {
            switch (name)
            {
                case "paddb": a.paddb(mm0, mm1); break;
                case "pshufw": a.pshufw(mm0, mm1, 0x1b); break;
                case "paddq": a.paddq(mm0, mm1); break;
                case "pshufb": a.pshufb(mm0, mm1); break;
                case "cvtpi2ps": a.cvtpi2ps(xmm0, mm1); break;
                case "cvttpd2pi": a.cvttpd2pi(mm0, xmm1); break;
                case "movq2dq": a.movq2dq(xmm0, mm1); break;
                case "movdq2q": a.movdq2q(mm0, xmm1); break;
            }
        }, cr4: 0);
        Assert.Equal(ud ? new ExceptionRecord(SoftCpu.ExUD, null) : null, h.Cpu.LastException);
    }

    [Fact]
    public void Mm_registers_are_the_physical_x87_registers_whatever_top_says()
    {
        using var h = Run(a =>
        {
            a.fninit();
            a.fld1();                          // TOP 7: R7 = 1.0 (significand 8000000000000000h)
            a.fldz();                          // TOP 6: R6 = +0
            a.movq(__qword_ptr[D], mm7);       // reads R7, not ST(7)
            a.fnstsw(__word_ptr[D + 8]);       // TOP 0 after the MMX instruction
            a.mov(eax, 0x1234_5678);
            a.movd(mm2, eax);                  // R2 = FFFFh:0000000012345678h
            a.fnstenv(__[D + 0x40]);           // the full tag word, from the contents
            a.emms();
            a.fnstsw(__word_ptr[D + 10]);
        });
        Assert.Null(h.Cpu.LastException);
        Assert.Equal(0x8000_0000_0000_0000UL, h.Memory.ReadObject<ulong>(D));
        Assert.Equal(0, (h.Memory.ReadObject<ushort>(D + 8) >> 11) & 7);
        // The MMX instruction made every tag valid; FNSTENV derives each 2-bit tag from the contents: R2 has sign
        // and exponent all ones (special), R6 is +0 (zero), R7 is 1.0 (valid).
        ushort tags = h.Memory.ReadObject<ushort>(D + 0x40 + 8);
        Assert.Equal(2, (tags >> 4) & 3);   // R2: special (exponent 7FFFh)
        Assert.Equal(0, (tags >> 14) & 3);  // R7: valid
        Assert.Equal(1, (tags >> 12) & 3);  // R6: zero
        Assert.Equal(0, (h.Memory.ReadObject<ushort>(D + 10) >> 11) & 7); // EMMS: TOP 0
        Assert.Equal(new Float80(0xffff, 0x1234_5678), h.Cpu.X87Register(2));
        Assert.Equal(0, Fxsave(h)[4]);      // EMMS: every tag empty
        Assert.Equal(0x1234_5678UL, h.Cpu.Mm(2));
    }

    [Fact]
    public void Fxsave_fxrstor_and_fnsave_carry_the_mmx_registers()
    {
        using var h = Run(a =>
        {
            a.mov(eax, 0x0bad_cafe);
            a.movd(mm3, eax);
            a.fxsave(__[D]);                                   // R3 in slot 3 (TOP 0)
            a.mov(__dword_ptr[D + 32 + 16 * 5], 0x1122_3344);  // slot 5: R5 when restored with TOP 0
            a.mov(__dword_ptr[D + 32 + 16 * 5 + 4], 0x5566_7788);
            a.fxrstor(__[D]);
            a.movq(__qword_ptr[D + 0x300], mm5);
            a.fnsave(__[D + 0x400]);                           // ST(i) = R(i) again (TOP 0), 10 bytes each from byte 28
        });
        Assert.Null(h.Cpu.LastException);
        Assert.Equal(0x0bad_cafeUL, h.Memory.ReadObject<ulong>(D + 32 + 16 * 3));
        Assert.Equal(0xffff, h.Memory.ReadObject<ushort>(D + 32 + 16 * 3 + 8));
        Assert.Equal(0xff, h.Memory.ReadObject<byte>(D + 4));          // abridged tags: all valid
        Assert.Equal(0, h.Memory.ReadObject<ushort>(D + 2) & 0x3800);   // TOP 0
        Assert.Equal(0x5566_7788_1122_3344UL, h.Memory.ReadObject<ulong>(D + 0x300));
        Assert.Equal(0x0bad_cafeUL, h.Memory.ReadObject<ulong>(D + 0x400 + 28 + 10 * 3));
        Assert.Equal(0x5566_7788_1122_3344UL, h.Memory.ReadObject<ulong>(D + 0x400 + 28 + 10 * 5));
        var area = Fxsave(h);
        Assert.Equal(0, area[4]); // FNSAVE re-initialised the unit: every tag empty
    }

    [Fact]
    public void Cpuid_offers_mmx_and_every_mm_form_is_implemented()
    {
        using var h = Run(a => { a.mov(eax, 1); a.cpuid(); });
        Assert.Equal(1UL, (h.Regs.Rdx >> 23) & 1);
        foreach (var code in new[] { Code.Emms, Code.Paddb_mm_mmm64, Code.Pshufw_mm_mmm64_imm8, Code.Maskmovq_rDI_mm_mm, Code.Cvtpd2pi_mm_xmmm128,
                     Code.Movq2dq_xmm_mm, Code.Palignr_mm_mmm64_imm8, Code.Movq_rm64_mm, Code.Pmuludq_mm_mmm64 })
            Assert.True(SoftCpu.Implements(code), code.ToString());
        Assert.False(SoftCpu.Implements(Code.Paveb_mm_mmm64)); // Cyrix EMMI: not offered
    }
}
