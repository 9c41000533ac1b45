using ActorVmm.Native.Soft;
using static Iced.Intel.AssemblerRegisters;

namespace ActorVmm.Native.Tests.Soft;

public sealed class SoftCpuArithTests
{
    private const ulong CF = 1, PF = 4, AF = 0x10, ZF = 0x40, SF = 0x80, OF = 0x800;

    private static CpuRegistersView Run(Action<Iced.Intel.Assembler> prog, ulong eflagsIn = 2)
    {
        using var h = new SoftCpuHarness();
        h.Set(r => { r.Rflags = eflagsIn; return r; });
        h.Program(prog);
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        var r = h.Regs;
        return new CpuRegistersView(r.Rax, r.Rbx, r.Rcx, r.Rdx, r.Rflags, h.Cpu.LastException);
    }

    internal readonly record struct CpuRegistersView(ulong Eax, ulong Ebx, ulong Ecx, ulong Edx, ulong Flags, ExceptionRecord? Ex);

    [Fact]
    public void Add_SignedOverflow_SetsOfSfNotCf()
    {
        // 0x7fffffff + 1 = 0x80000000: signed overflow (OF=1), SF=1, no unsigned carry (CF=0), AF=1 (0xf+1).
        var r = Run(a => { a.mov(eax, 0x7fffffff); a.add(eax, 1); });
        Assert.Equal(0x80000000UL, r.Eax);
        Assert.Equal(OF | SF | AF | PF, r.Flags & (CF | PF | AF | ZF | SF | OF));
    }

    [Fact]
    public void Add_UnsignedWrap_SetsCfZf()
    {
        // 0xffffffff + 1 = 0 with carry out; ZF=1, PF=1 (0 has even parity), AF=1.
        var r = Run(a => { a.mov(eax, -1); a.add(eax, 1); });
        Assert.Equal(0UL, r.Eax);
        Assert.Equal(CF | ZF | PF | AF, r.Flags & (CF | PF | AF | ZF | SF | OF));
    }

    [Fact]
    public void Adc_And_Sbb_UseCarryIn()
    {
        // STC; ADC 5+3+1 = 9. Then STC; SBB 9-3-1 = 5.
        var r = Run(a => { a.mov(eax, 5); a.stc(); a.adc(eax, 3); a.mov(ebx, eax); a.stc(); a.sbb(eax, 3); });
        Assert.Equal(9UL, r.Ebx);
        Assert.Equal(5UL, r.Eax);
        // ADC 0xffffffff + 0 + CF=1 = 0 with carry.
        var c = Run(a => { a.mov(eax, -1); a.stc(); a.adc(eax, 0); });
        Assert.Equal(0UL, c.Eax);
        Assert.Equal(CF | ZF, c.Flags & (CF | ZF));
    }

    [Fact]
    public void Cmp_Borrow_And_Overflow()
    {
        // CMP 0x80000000, 1: 0x7fffffff, signed overflow (neg - pos = pos), no borrow.
        var r = Run(a => { a.mov(eax, unchecked((int)0x80000000)); a.cmp(eax, 1); });
        Assert.Equal(OF, r.Flags & (CF | ZF | SF | OF));
        // CMP 0, 1: borrow (CF=1), result 0xffffffff negative.
        var b = Run(a => { a.xor(eax, eax); a.cmp(eax, 1); });
        Assert.Equal(CF | SF, b.Flags & (CF | ZF | SF | OF));
    }

    [Fact]
    public void IncDec_PreserveCarry()
    {
        var r = Run(a => { a.stc(); a.mov(eax, -1); a.inc(eax); });
        Assert.Equal(0UL, r.Eax);
        Assert.Equal(CF | ZF, r.Flags & (CF | ZF));
        var d = Run(a => { a.clc(); a.xor(eax, eax); a.dec(eax); });
        Assert.Equal(0xffffffffUL, d.Eax);
        Assert.Equal(SF, d.Flags & (CF | SF | ZF));
    }

    [Fact]
    public void Neg_Edges()
    {
        // NEG 0: CF=0, ZF=1. NEG 0x80000000: result 0x80000000, CF=1, OF=1.
        var z = Run(a => { a.xor(eax, eax); a.neg(eax); });
        Assert.Equal(ZF, z.Flags & (CF | ZF | OF));
        var m = Run(a => { a.mov(eax, unchecked((int)0x80000000)); a.neg(eax); });
        Assert.Equal(0x80000000UL, m.Eax);
        Assert.Equal(CF | OF | SF, m.Flags & (CF | ZF | OF | SF));
    }

    [Fact]
    public void Logic_ClearsCfOf()
    {
        var r = Run(a => { a.mov(eax, unchecked((int)0x80000000)); a.add(eax, eax); a.mov(eax, 0xf0); a.and(eax, 0x0f); });
        Assert.Equal(0UL, r.Eax);
        Assert.Equal(ZF | PF, r.Flags & (CF | OF | ZF | PF | SF));
    }

    [Fact]
    public void Rcl_Rcr_ThroughCarry()
    {
        // RCL 0x80000000 by 1 with CF=0: result 0, CF=1. RCR 1 by 1 with CF=1: 0x80000000, CF=1.
        var r = Run(a => { a.clc(); a.mov(eax, unchecked((int)0x80000000)); a.rcl(eax, 1); a.mov(ebx, eax); a.setc(cl);
            a.stc(); a.mov(edx, 1); a.rcr(edx, 1); });
        Assert.Equal(0UL, r.Ebx);
        Assert.Equal(1UL, r.Ecx & 0xff);
        Assert.Equal(0x80000000UL, r.Edx);
        Assert.Equal(CF, r.Flags & CF);
    }

    [Fact]
    public void Shld_Shrd()
    {
        // SHLD eax(0x12345678), ebx(0x9abcdef0), 8 = 0x3456789a. SHRD edx(0x12345678), ebx, 8 = 0xf0123456.
        var r = Run(a => { a.mov(eax, 0x12345678); a.mov(edx, 0x12345678); a.mov(ebx, unchecked((int)0x9abcdef0));
            a.shld(eax, ebx, 8); a.shrd(edx, ebx, 8); });
        Assert.Equal(0x3456789aUL, r.Eax);
        Assert.Equal(0xf0123456UL, r.Edx);
    }

    [Fact]
    public void Mul_And_Imul_Forms()
    {
        // MUL: 0x80000000 * 4 = 0x2_00000000 -> EDX=2, EAX=0, CF=OF=1.
        var m = Run(a => { a.mov(eax, unchecked((int)0x80000000)); a.mov(ecx, 4); a.mul(ecx); });
        Assert.Equal(0UL, m.Eax); Assert.Equal(2UL, m.Edx);
        Assert.Equal(CF | OF, m.Flags & (CF | OF));
        // IMUL one-operand: -2 * 3 = -6 sign-extends into EDX (CF=OF=0).
        var i1 = Run(a => { a.mov(eax, -2); a.mov(ecx, 3); a.imul(ecx); });
        Assert.Equal(0xfffffffaUL, i1.Eax); Assert.Equal(0xffffffffUL, i1.Edx);
        Assert.Equal(0UL, i1.Flags & (CF | OF));
        // IMUL two-operand overflow: 0x10000 * 0x10000 truncates to 0, CF=OF=1.
        var i2 = Run(a => { a.mov(eax, 0x10000); a.mov(ebx, 0x10000); a.imul(eax, ebx); });
        Assert.Equal(0UL, i2.Eax); Assert.Equal(CF | OF, i2.Flags & (CF | OF));
        // IMUL three-operand: ebx = ecx * -7 = -21.
        var i3 = Run(a => { a.mov(ecx, 3); a.imul(ebx, ecx, -7); });
        Assert.Equal(unchecked((ulong)(uint)-21), i3.Ebx); Assert.Equal(0UL, i3.Flags & (CF | OF));
    }

    [Fact]
    public void Div_Idiv_Results()
    {
        // 0x1_00000005 / 2 = 0x80000002 rem 1.
        var d = Run(a => { a.mov(edx, 1); a.mov(eax, 5); a.mov(ecx, 2); a.div(ecx); });
        Assert.Equal(0x80000002UL, d.Eax); Assert.Equal(1UL, d.Edx);
        // IDIV -7 / 2 = -3 rem -1 (truncation toward zero).
        var i = Run(a => { a.mov(eax, -7); a.cdq(); a.mov(ecx, 2); a.idiv(ecx); });
        Assert.Equal(0xfffffffdUL, i.Eax); Assert.Equal(0xffffffffUL, i.Edx);
    }

    [Theory]
    [InlineData(0)] // divide by zero
    [InlineData(1)] // quotient overflow: EDX:EAX = 0x2_00000000 / 1
    [InlineData(2)] // IDIV 0x80000000 / -1
    [InlineData(3)] // AAM 0
    public void DivideError_RaisesDE(int which)
    {
        using var h = new SoftCpuHarness();
        h.Program(a =>
        {
            switch (which)
            {
                case 0: a.xor(ecx, ecx); a.div(ecx); break;
                case 1: a.mov(edx, 2); a.xor(eax, eax); a.mov(ecx, 1); a.div(ecx); break;
                case 2: a.mov(eax, unchecked((int)0x80000000)); a.cdq(); a.mov(ecx, -1); a.idiv(ecx); break;
                default: a.db(0xd4, 0x00); break;
            }
        });
        h.SetGate(0, SoftCpuHarness.Handler);
        h.Load(SoftCpuHarness.Handler, a => a.hlt());
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal((byte)0, h.Cpu.LastException?.Vector);
        Assert.Equal(SoftCpuHarness.Handler + 1UL, h.Regs.Rip);
    }

    [Fact]
    public void Bt_Family_RegisterAndMemory()
    {
        using var h = new SoftCpuHarness();
        h.Memory.WriteObject(SoftCpuHarness.Data, 0u);
        h.Memory.WriteObject(SoftCpuHarness.Data - 4, 0u);
        h.Program(a =>
        {
            a.mov(ebx, SoftCpuHarness.Data);
            a.mov(ecx, 35);
            a.bts(__dword_ptr[ebx], ecx);   // bit 35 -> byte +4, bit 3
            a.mov(ecx, -1);
            a.bts(__dword_ptr[ebx], ecx);   // bit -1 -> byte -1, bit 7 (dword at -4, bit 31)
            a.mov(eax, 0x10);
            a.btc(eax, 4); a.setc(dl);      // was set -> CF=1, now clear
            a.btr(eax, 4); a.setc(dh);      // now clear -> CF=0
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(8u, h.Read32(SoftCpuHarness.Data + 4));
        Assert.Equal(0x80000000u, h.Read32(SoftCpuHarness.Data - 4));
        Assert.Equal(0u, h.Read32(SoftCpuHarness.Data));
        Assert.Equal(0UL, h.Regs.Rax);
        Assert.Equal(0x0001UL, h.Regs.Rdx & 0xffff);
    }

    [Fact]
    public void Bsf_Bsr()
    {
        var r = Run(a => { a.mov(ecx, 0x00f000f0); a.bsf(eax, ecx); a.bsr(ebx, ecx); a.mov(edx, 77); a.xor(ecx, ecx); a.bsf(edx, ecx); });
        Assert.Equal(4UL, r.Eax); Assert.Equal(23UL, r.Ebx);
        Assert.Equal(77UL, r.Edx); // zero source: destination unchanged (as hardware does), ZF=1
        Assert.Equal(ZF, r.Flags & ZF);
    }

    [Fact]
    public void RepBsf_RunsAsBsf_WithoutBmi1_And_RepBsr_IsLzcnt_WithAbm()
    {
        // F3 0F BC: TZCNT on BMI1 parts, BSF here (CPUID offers no BMI1), as Linux's "rep; bsf" in __ffs expects;
        // zero source: ZF=1, destination unchanged (BSF's behaviour, not TZCNT's). F3 0F BD: LZCNT, which CPUID
        // offers (ABM): 0x00f000f0 has 8 leading zeros.
        var r = Run(a =>
        {
            a.mov(ecx, 0x00f000f0);
            a.db(0xf3, 0x0f, 0xbc, 0xc1); // rep bsf eax, ecx
            a.db(0xf3, 0x0f, 0xbd, 0xd9); // lzcnt ebx, ecx
            a.mov(edx, 77); a.xor(ecx, ecx);
            a.db(0xf3, 0x0f, 0xbc, 0xd1); // rep bsf edx, ecx
        });
        Assert.Equal(4UL, r.Eax); Assert.Equal(8UL, r.Ebx);
        Assert.Equal(77UL, r.Edx);
        Assert.Equal(ZF, r.Flags & ZF);
    }

    [Fact]
    public void Daa_AfterPackedBcdAdd()
    {
        // 0x19 + 0x28 = 0x41, DAA -> 0x47 (19+28=47). 0x99+0x01 = 0x9a, DAA -> 0x00 CF=1.
        var r = Run(a => { a.mov(al, 0x19); a.add(al, 0x28); a.daa(); a.mov(bl, al); a.mov(al, 0x99); a.add(al, 1); a.daa(); });
        Assert.Equal(0x47UL, r.Ebx & 0xff);
        Assert.Equal(0UL, r.Eax & 0xff);
        Assert.Equal(CF, r.Flags & CF);
    }

    [Fact]
    public void Cmpxchg_Xadd_Cmpxchg8b_Bswap()
    {
        using var h = new SoftCpuHarness();
        const uint d = SoftCpuHarness.Data;
        h.Memory.WriteObject(d, 5u);
        h.Memory.WriteObject(d + 8, 0x1111111122222222UL);
        h.Program(a =>
        {
            a.mov(eax, 5); a.mov(ecx, 9);
            a.cmpxchg(__dword_ptr[d], ecx);   // equal: [d]=9, ZF=1
            a.setz(bl);
            a.mov(eax, 1);
            a.cmpxchg(__dword_ptr[d], ecx);   // not equal: EAX=9, ZF=0
            a.setz(bh);
            a.mov(esi, eax);
            a.mov(eax, 0x22222222); a.mov(edx, 0x11111111);
            a.mov(ebx, 0x44444444); a.mov(ecx, 0x33333333);
            a.cmpxchg8b(__qword_ptr[d + 8]);  // equal: store ECX:EBX
            a.mov(edi, 3);
            a.xadd(__dword_ptr[d], edi);      // [d]=12, EDI=9
            a.mov(edx, 0x12345678); a.bswap(edx);
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        var r = h.Regs;
        Assert.Equal(9UL, r.Rsi);
        Assert.Equal(12u, h.Read32(d));
        Assert.Equal(9UL, r.Rdi);
        Assert.Equal(0x3333333344444444UL, h.Memory.ReadObject<ulong>(d + 8));
        Assert.Equal(0x78563412UL, r.Rdx);
    }

    [Fact]
    public void Setcc_Cmovcc_Lahf_Sahf()
    {
        var r = Run(a =>
        {
            a.mov(eax, 1); a.cmp(eax, 2);           // below, less
            a.setb(bl); a.setl(bh); a.mov(ecx, 0); a.mov(edx, 7); a.cmovge(ecx, edx); a.cmovl(edx, eax);
            a.mov(ah, 0xd5); a.sahf(); a.mov(ah, 0); a.lahf();
        });
        Assert.Equal(0x0101UL, r.Ebx & 0xffff);
        Assert.Equal(0UL, r.Ecx); Assert.Equal(1UL, r.Edx);
        // SAHF loads SF ZF AF PF CF from AH (0xd5 = SF ZF AF PF CF); LAHF reads them back with bit 1 set.
        Assert.Equal(0xd7UL, (r.Eax >> 8) & 0xff);
    }

    [Fact]
    public void Pushf_Popf_AtCpl0_ChangesIfAndIopl()
    {
        var r = Run(a => { a.push(0x3202 | 0x1); a.popfd(); a.pushfd(); a.pop(eax); });
        Assert.Equal(0x3203UL, r.Eax & 0x3fff);
    }

    [Fact]
    public void Pusha_Popa_RoundTrip()
    {
        var r = Run(a => { a.mov(eax, 1); a.mov(ebx, 2); a.mov(ecx, 3); a.pushad(); a.xor(eax, eax); a.xor(ebx, ebx); a.xor(ecx, ecx); a.popad(); a.mov(edx, esp); });
        Assert.Equal(1UL, r.Eax); Assert.Equal(2UL, r.Ebx); Assert.Equal(3UL, r.Ecx);
        Assert.Equal((ulong)SoftCpuHarness.Stack, r.Edx);
    }

    [Fact]
    public void Enter_Leave_WithNesting()
    {
        using var h = new SoftCpuHarness();
        h.Program(a => { a.mov(ebp, 0x1234); a.enter(16, 2); a.mov(eax, esp); a.mov(ebx, ebp); a.leave(); });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        var r = h.Regs;
        const uint s = SoftCpuHarness.Stack;
        // ENTER 16,2: push EBP (s-4); frame = s-4; level 1 copies [EBP-4] (s-8); push frame (s-12); ESP = s-12-16.
        Assert.Equal((ulong)(s - 4), r.Rbx);
        Assert.Equal((ulong)(s - 28), r.Rax);
        Assert.Equal(s - 4, h.Read32(s - 12));
        Assert.Equal(0x1234u, h.Read32(s - 4));
        Assert.Equal(0x1234UL, r.Rbp);
        Assert.Equal((ulong)s, r.Rsp);
    }

    [Fact]
    public void Loop_Jecxz_And_OperandAddressSize()
    {
        var r = Run(a =>
        {
            var top = a.CreateLabel(); var skip = a.CreateLabel();
            a.xor(eax, eax); a.mov(ecx, 5);
            a.Label(ref top); a.add(eax, 2); a.loop(top);
            a.jecxz(skip); a.mov(eax, 99);
            a.Label(ref skip);
            a.mov(ebx, unchecked((int)0xaaaa0000)); a.mov(bx, 0xffff); a.inc(bx); // 16-bit wrap keeps upper half
            a.mov(__dword_ptr[0x6000], 0x55);
            a.mov(edx, 0x12346000);          // 16-bit addressing uses only DI's low 16 bits: [0x6000]
            a.mov(edi, edx);
            a.db(0x67, 0x8b, 0x0d);          // mov ecx, [di] (0x67: ModRM 00 001 101 = [di])
        });
        Assert.Equal(10UL, r.Eax);
        Assert.Equal(0xaaaa0000UL, r.Ebx);
        Assert.Equal(0x55UL, r.Ecx);
    }
}
