// The x87 as a part of the soft CPU (SDM vol. 1 ch. 8, vol. 3 §2.5, §6.15 and table 9-1): power-on and FNINIT
// state, #NM for CR0.EM/TS, #MF at the next waiting instruction with CR0.NE = 1 (and nothing with NE = 0), the
// FNSTENV/FNSAVE layouts with the instruction and operand pointers and the opcode, FRSTOR, the FXSAVE helpers,
// FCOMI's EFLAGS, and results checked against the host's double arithmetic and hand-derived bit patterns. The
// arithmetic itself is compared with the host FPU form by form in X87SiliconTests.
using System.Buffers.Binary;
using ActorVmm.Core.Accel;
using ActorVmm.Native.Soft;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace ActorVmm.Native.Tests.Soft;

public sealed class X87Tests
{
    private const uint D = SoftCpuHarness.Data;

    private static SoftCpuHarness Run(Action<Assembler> program, ulong cr0 = 0x11, Action<SoftCpuHarness>? setup = null)
    {
        var h = new SoftCpuHarness();
        setup?.Invoke(h);
        var sys = h.Cpu.GetSystemRegisters();
        sys.Cr0 = cr0;
        h.Cpu.SetSystemRegisters(sys);
        h.SetGate(SoftCpu.ExNM, SoftCpuHarness.Handler);
        h.SetGate(SoftCpu.ExMF, SoftCpuHarness.Handler);
        h.Load(SoftCpuHarness.Handler, a => a.hlt());
        h.Program(program);
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        return h;
    }

    private static ushort Read16(SoftCpuHarness h, ulong at) => h.Memory.ReadObject<ushort>(at);

    private static ulong Read64(SoftCpuHarness h, ulong at) => h.Memory.ReadObject<ulong>(at);

    private static void WriteDouble(SoftCpuHarness h, ulong at, double v) => h.Memory.WriteObject(at, BitConverter.DoubleToUInt64Bits(v));

    [Fact]
    public void Power_on_state_is_FCW_0040_with_every_register_valid_and_FNINIT_loads_037F()
    {
        using var h = Run(a =>
        {
            a.fnstcw(__word_ptr[D]);
            a.fnstenv(__[D + 0x10]);   // after this the exceptions are masked
            a.fninit();
            a.fnstcw(__word_ptr[D + 2]);
            a.fnstsw(__word_ptr[D + 4]);
            a.fnstenv(__[D + 0x40]);
        });
        Assert.Equal(0x0040, Read16(h, D));
        Assert.Equal(0x5555, Read16(h, D + 0x10 + 8)); // +0.0 in all eight: tag "zero"
        Assert.Equal(0x037f, Read16(h, D + 2));
        Assert.Equal(0x0000, Read16(h, D + 4));
        Assert.Equal(0xffff, Read16(h, D + 0x40 + 8));
        Assert.Equal(0x037f, h.Cpu.X87ControlWord);
    }

    [Fact]
    public void Double_precision_control_gives_the_hosts_double_results_through_FSTP_m64()
    {
        var rng = new Random(7);
        using var h = new SoftCpuHarness();
        h.Program(a =>
        {
            a.fninit();
            a.fldcw(__word_ptr[D]);
            a.fld(__qword_ptr[D + 8]);
            a.fld(__qword_ptr[D + 16]);
            a.fld(st1);
            a.fadd(st0, st1);
            a.fstp(__qword_ptr[D + 24]);   // a + b
            a.fld(st1);
            a.fmul(st0, st1);
            a.fstp(__qword_ptr[D + 32]);   // a × b
            a.fdivr(st0, st1);
            a.fstp(__qword_ptr[D + 40]);   // a / b
            a.fsqrt();
            a.fstp(__qword_ptr[D + 48]);   // √a
        });
        for (int k = 0; k < 2000; k++)
        {
            double x = (rng.NextDouble() + 0.5) * Math.Pow(2, rng.Next(-200, 200)), y = (rng.NextDouble() - 0.5) * Math.Pow(2, rng.Next(-200, 200));
            h.Memory.WriteObject(D, (ushort)0x027f); // PC = 53 bits, nearest
            WriteDouble(h, D + 8, x);
            WriteDouble(h, D + 16, y);
            h.Regs = new CpuRegisters { Rip = SoftCpuHarness.Code, Rsp = SoftCpuHarness.Stack, Rflags = 2 };
            Assert.Equal(StepOutcome.Halted, h.RunToHalt());
            Assert.Equal(BitConverter.DoubleToUInt64Bits(x + y), Read64(h, D + 24));
            Assert.Equal(BitConverter.DoubleToUInt64Bits(x * y), Read64(h, D + 32));
            Assert.Equal(BitConverter.DoubleToUInt64Bits(x / y), Read64(h, D + 40));
            Assert.Equal(BitConverter.DoubleToUInt64Bits(Math.Sqrt(x)), Read64(h, D + 48));
        }
    }

    [Fact]
    public void Constants_integers_and_bcd_store_the_documented_bit_patterns()
    {
        using var h = Run(a =>
        {
            a.fninit();
            a.fldpi();
            a.fstp(__tword_ptr[D]);
            a.fild(__dword_ptr[D + 0x100]);        // −123456789
            a.fist(__word_ptr[D + 0x10]);          // out of range: the integer indefinite, IE
            a.fistp(__qword_ptr[D + 0x18]);
            a.fld1();
            a.fchs();
            a.fbstp(__tword_ptr[D + 0x20]);        // −1 in packed BCD
            a.fnstsw(ax);
        }, setup: m => m.Memory.WriteObject(D + 0x100, -123456789));
        Assert.Equal(0xc90f_daa2_2168_c235UL, Read64(h, D));
        Assert.Equal(0x4000, Read16(h, D + 8));
        Assert.Equal(0x8000, Read16(h, D + 0x10));
        Assert.Equal(0x01UL, Read64(h, D + 0x20));
        Assert.Equal(0x8000, Read16(h, D + 0x28));
        Assert.Equal(0x01u, (uint)h.Regs.Rax & 0x01); // IE from the FIST
    }

    [Fact]
    public void Fcomi_sets_ZF_PF_CF_and_clears_OF_SF_AF()
    {
        using var h = new SoftCpuHarness();
        foreach (var (x, y, flags) in new[] { (1.0, 2.0, SoftCpu.CF), (2.0, 1.0, 0u), (3.0, 3.0, SoftCpu.ZF), (double.NaN, 1.0, SoftCpu.ZF | SoftCpu.PF | SoftCpu.CF) })
        {
            WriteDouble(h, D, x);
            WriteDouble(h, D + 8, y);
            h.Program(a =>
            {
                a.fninit();
                a.fld(__qword_ptr[D + 8]);
                a.fld(__qword_ptr[D]);
                a.mov(eax, 0x8d5);
                a.push(eax);
                a.popfd();                 // OF, SF, AF, ZF, PF, CF all set beforehand
                a.fucomip(st0, st1);
                a.pushfd();
                a.pop(ebx);
            });
            h.Cpu.SetSystemRegisters(h.Cpu.GetSystemRegisters());
            h.Regs = new CpuRegisters { Rip = SoftCpuHarness.Code, Rsp = SoftCpuHarness.Stack, Rflags = 2 };
            Assert.Equal(StepOutcome.Halted, h.RunToHalt());
            Assert.Equal(flags, (uint)h.Regs.Rbx & 0x8d5);
            Assert.Equal(7, (h.Cpu.X87StatusWord >> 11) & 7); // popped once
        }
    }

    [Theory]
    [InlineData(0x15UL)] // EM
    [InlineData(0x19UL)] // TS
    public void Em_or_ts_make_every_x87_instruction_raise_NM(ulong cr0)
    {
        using var h = Run(a => a.fnstcw(__word_ptr[D]), cr0);
        Assert.Equal(new ExceptionRecord(SoftCpu.ExNM, null), h.Cpu.LastException);
        Assert.Equal((uint)SoftCpuHarness.Code, h.Read32(SoftCpuHarness.Stack - 12));
    }

    [Fact]
    public void Wait_with_TS_alone_does_not_fault_but_with_MP_and_TS_raises_NM()
    {
        using (var h = Run(a => a.wait(), 0x19))
            Assert.Null(h.Cpu.LastException);
        using (var h = Run(a => a.wait(), 0x1b))
            Assert.Equal(new ExceptionRecord(SoftCpu.ExNM, null), h.Cpu.LastException);
    }

    /// <summary>1/0 with ZE unmasked: the division sets ES and B; the next waiting instruction takes #MF.</summary>
    private static void DivideByZeroUnmasked(Assembler a)
    {
        a.fninit();
        a.mov(__word_ptr[D], 0x037b); // ZM clear
        a.fldcw(__word_ptr[D]);
        a.fld1();
        a.fldz();
        a.fdivp(st1, st0);             // ST(0) = 1/0: unmasked ZE, result not written, no pop
        a.fnstsw(ax);                  // no-wait: no #MF here
    }

    [Fact]
    public void Unmasked_exception_raises_MF_at_the_next_waiting_instruction_with_NE()
    {
        using var h = Run(a =>
        {
            DivideByZeroUnmasked(a);
            a.fld1();                  // waiting: #MF before it executes
        }, cr0: 0x31);
        Assert.Equal(new ExceptionRecord(SoftCpu.ExMF, null), h.Cpu.LastException);
        ushort fsw = (ushort)h.Regs.Rax;
        Assert.Equal(0x8084 | (6 << 11), fsw);      // B, ES, ZE; TOP 6 (the FDIVP did not pop)
        uint faultEip = h.Read32(SoftCpuHarness.Stack - 12);
        Assert.Equal(0xd9, h.Memory.ReadObject<byte>(faultEip));   // D9 E8: the FLD1 that waited
        Assert.Equal(0xe8, h.Memory.ReadObject<byte>(faultEip + 1));
        Assert.True(h.Cpu.X87Register(0).IsZero);   // ST(0) still 0 and ST(1) still 1: nothing written
        Assert.Equal(Float80.One, h.Cpu.X87Register(1));
    }

    [Fact]
    public void Fwait_raises_MF_and_FNCLEX_clears_the_pending_exception()
    {
        using (var h = Run(a => { DivideByZeroUnmasked(a); a.wait(); }, cr0: 0x31))
        {
            Assert.Equal(new ExceptionRecord(SoftCpu.ExMF, null), h.Cpu.LastException);
            Assert.Equal(0x9b, h.Memory.ReadObject<byte>(h.Read32(SoftCpuHarness.Stack - 12)));
        }
        using (var h = Run(a => { DivideByZeroUnmasked(a); a.fnclex(); a.wait(); a.fld1(); }, cr0: 0x31))
            Assert.Null(h.Cpu.LastException);
    }

    [Fact]
    public void Without_NE_the_exception_stays_pending_and_execution_continues()
    {
        using var h = Run(a =>
        {
            DivideByZeroUnmasked(a);
            a.wait();
            a.fld1();
            a.fnstsw(__word_ptr[D + 2]);
        }, cr0: 0x11);
        Assert.Null(h.Cpu.LastException);
        Assert.Equal(0x8084, Read16(h, D + 2) & 0x80ff);
    }

    [Fact]
    public void Fnstenv_stores_the_pointers_and_opcode_of_the_last_non_control_instruction()
    {
        using var h = new SoftCpuHarness();
        WriteDouble(h, D + 0x100, 2.5);
        h.Program(a =>
        {
            a.fninit();
            a.mov(esi, D + 0xf8);
            a.fld(__qword_ptr[esi + 8]);   // DD 46 08
            a.fld1();                      // no memory operand: FDP stays
            a.fnstcw(__word_ptr[D]);       // control instructions leave the pointers alone
            a.fnstenv(__[D + 0x200]);
            a.fldcw(__word_ptr[D]);
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        const uint env = D + 0x200;
        uint fld1At = SoftCpuHarness.Code + 2 + 5 + 3;
        Assert.Equal(0x037f, Read16(h, env));
        Assert.Equal(0x3000, Read16(h, env + 4));                // TOP 6
        Assert.Equal(0x0fff, Read16(h, env + 8));                // two valid normals in R6, R7
        Assert.Equal(fld1At, h.Read32(env + 12));                 // FIP: the FLD1
        Assert.Equal(0x08, Read16(h, env + 16));                  // FCS
        Assert.Equal(0x1e8, Read16(h, env + 18));                 // FOP: D9 E8
        Assert.Equal(D + 0x100, h.Read32(env + 20));              // FDP: the FLD m64 operand
        Assert.Equal(0x10, Read16(h, env + 24));                  // FDS
        Assert.Equal(0x037f, h.Cpu.X87ControlWord);               // FLDCW restored the masks FNSTENV had set
    }

    [Fact]
    public void Sixteen_bit_fnstenv_uses_the_14_byte_layout_and_fldenv_reads_it_back()
    {
        using var h = new SoftCpuHarness();
        h.Program(a =>
        {
            a.fninit();
            a.fld1();
            a.fldpi();
            a.AddInstruction(Instruction.Create(Code.Fnstenv_m14byte, new MemoryOperand(Register.None, (long)(D + 0x40))));
            a.fninit();
            a.AddInstruction(Instruction.Create(Code.Fldenv_m14byte, new MemoryOperand(Register.None, (long)(D + 0x40))));
            a.fnstsw(__word_ptr[D]);
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(0x037f, Read16(h, D + 0x40));
        Assert.Equal(0x3000, Read16(h, D + 0x42));
        Assert.Equal(0x0fff, Read16(h, D + 0x44));
        Assert.Equal(0x08, Read16(h, D + 0x48));  // FCS at offset 8 in the 16-bit layout
        Assert.Equal(0x3000, Read16(h, D));        // TOP came back from the environment
        Assert.False(h.Cpu.X87Empty(0));
        Assert.Equal(0x037f | 0x3f, h.Cpu.X87ControlWord); // the stored FCW had the masks FNSTENV sets afterwards
    }

    [Fact]
    public void Fnsave_stores_the_registers_and_reinitializes_and_frstor_restores_them()
    {
        using var h = new SoftCpuHarness();
        h.Program(a =>
        {
            a.fninit();
            a.fld1();
            a.fldl2t();
            a.fldpi();
            a.fnsave(__[D + 0x100]);
            a.fnstcw(__word_ptr[D]);       // 037F after the implicit FNINIT
            a.frstor(__[D + 0x100]);
            a.fstp(__tword_ptr[D + 0x10]); // π
            a.fstp(__tword_ptr[D + 0x20]); // log2 10
            a.fstp(__tword_ptr[D + 0x30]); // 1
        });
        Assert.Equal(StepOutcome.Halted, h.RunToHalt());
        Assert.Equal(0x037f, Read16(h, D));
        Assert.Equal(0xc90f_daa2_2168_c235UL, Read64(h, D + 0x10));
        Assert.Equal(0xd49a_784b_cd1b_8afeUL, Read64(h, D + 0x20));
        Assert.Equal(0x8000_0000_0000_0000UL, Read64(h, D + 0x30));
        Assert.Equal(0x3fff, Read16(h, D + 0x38));
        // The image: ST(0) (π) right after the 28-byte environment.
        Assert.Equal(0xc90f_daa2_2168_c235UL, Read64(h, D + 0x100 + 28));
        Assert.Equal(0x4000, Read16(h, D + 0x100 + 28 + 8));
    }

    [Fact]
    public void Fxsave_helpers_round_trip_the_x87_state_in_both_layouts()
    {
        foreach (bool rexW in new[] { false, true })
        {
            using var h = Run(a =>
            {
                a.fninit();
                a.fld1();
                a.fldpi();
                a.fld(__qword_ptr[D + 0x100]);
                a.fnstsw(ax);
            });
            var area = new byte[512];
            h.Cpu.SaveX87ToFxsave(area, rexW);
            Assert.Equal(0x037f, BinaryPrimitives.ReadUInt16LittleEndian(area));
            Assert.Equal(0x2800, BinaryPrimitives.ReadUInt16LittleEndian(area.AsSpan(2)));  // TOP 5
            Assert.Equal(0xe0, area[4]);                                                      // R5-R7 valid
            Assert.Equal(0x505, BinaryPrimitives.ReadUInt16LittleEndian(area.AsSpan(6)));    // FOP: DD 05 (fld qword [disp32])
            Assert.Equal(0xc90f_daa2_2168_c235UL, BinaryPrimitives.ReadUInt64LittleEndian(area.AsSpan(32 + 16)));
            if (rexW) Assert.Equal(D + 0x100UL, BinaryPrimitives.ReadUInt64LittleEndian(area.AsSpan(16)));
            else Assert.Equal(0x10, BinaryPrimitives.ReadUInt16LittleEndian(area.AsSpan(20)));

            using var fresh = new SoftCpuHarness();
            fresh.Cpu.LoadX87FromFxsave(area, rexW);
            Assert.Equal(h.Cpu.X87StatusWord, fresh.Cpu.X87StatusWord);
            Assert.Equal(h.Cpu.X87TagWord, fresh.Cpu.X87TagWord);
            for (int r = 0; r < 8; r++) Assert.Equal(h.Cpu.X87Register(r), fresh.Cpu.X87Register(r));
        }
    }

    [Fact]
    public void X87_forms_are_implemented_and_listed()
    {
        foreach (var code in new[] { Code.Fadd_m32fp, Code.Faddp_sti_st0, Code.Fcomip_st0_sti, Code.Fnstsw_AX, Code.Fbstp_m80bcd, Code.Fnsave_m108byte, Code.Fcmovnbe_st0_sti })
            Assert.True(SoftCpu.Implements(code), code.ToString());
        Assert.False(SoftCpu.Implements(Code.Fstdw_AX)); // the 387SL's, not implemented
    }
}
