// The instruction forms this CPU executes, as Iced codes: legacy encodings (in any mode) whose mnemonic the interpreter dispatches and whose operands are general-purpose, segment, control or debug
// registers, memory, immediates or branch targets, and the x87 forms (ST(0), ST(i), memory). The differential tests verify each one against silicon.
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    private static readonly HashSet<Mnemonic> HandledMnemonics =
    [
        Mnemonic.Add, Mnemonic.Or, Mnemonic.Adc, Mnemonic.Sbb, Mnemonic.And, Mnemonic.Sub, Mnemonic.Xor, Mnemonic.Cmp, Mnemonic.Test,
        Mnemonic.Inc, Mnemonic.Dec, Mnemonic.Neg, Mnemonic.Not, Mnemonic.Mov, Mnemonic.Movzx, Mnemonic.Movsx, Mnemonic.Lea,
        Mnemonic.Xchg, Mnemonic.Xadd, Mnemonic.Cmpxchg, Mnemonic.Cmpxchg8b, Mnemonic.Bswap, Mnemonic.Cbw, Mnemonic.Cwde,
        Mnemonic.Cwd, Mnemonic.Cdq, Mnemonic.Xlatb, Mnemonic.Lds, Mnemonic.Les, Mnemonic.Lfs, Mnemonic.Lgs, Mnemonic.Lss,
        Mnemonic.Push, Mnemonic.Pop, Mnemonic.Pusha, Mnemonic.Pushad, Mnemonic.Popa, Mnemonic.Popad, Mnemonic.Pushf,
        Mnemonic.Pushfd, Mnemonic.Popf, Mnemonic.Popfd, Mnemonic.Enter, Mnemonic.Leave, Mnemonic.Jmp, Mnemonic.Call,
        Mnemonic.Ret, Mnemonic.Retf, Mnemonic.Jo, Mnemonic.Jno, Mnemonic.Jb, Mnemonic.Jae, Mnemonic.Je, Mnemonic.Jne,
        Mnemonic.Jbe, Mnemonic.Ja, Mnemonic.Js, Mnemonic.Jns, Mnemonic.Jp, Mnemonic.Jnp, Mnemonic.Jl, Mnemonic.Jge,
        Mnemonic.Jle, Mnemonic.Jg, Mnemonic.Loop, Mnemonic.Loope, Mnemonic.Loopne, Mnemonic.Jcxz, Mnemonic.Jecxz,
        Mnemonic.Seto, Mnemonic.Setno, Mnemonic.Setb, Mnemonic.Setae, Mnemonic.Sete, Mnemonic.Setne, Mnemonic.Setbe,
        Mnemonic.Seta, Mnemonic.Sets, Mnemonic.Setns, Mnemonic.Setp, Mnemonic.Setnp, Mnemonic.Setl, Mnemonic.Setge,
        Mnemonic.Setle, Mnemonic.Setg, Mnemonic.Cmovo, Mnemonic.Cmovno, Mnemonic.Cmovb, Mnemonic.Cmovae, Mnemonic.Cmove,
        Mnemonic.Cmovne, Mnemonic.Cmovbe, Mnemonic.Cmova, Mnemonic.Cmovs, Mnemonic.Cmovns, Mnemonic.Cmovp, Mnemonic.Cmovnp,
        Mnemonic.Cmovl, Mnemonic.Cmovge, Mnemonic.Cmovle, Mnemonic.Cmovg, Mnemonic.Rol, Mnemonic.Ror, Mnemonic.Rcl,
        Mnemonic.Rcr, Mnemonic.Shl, Mnemonic.Sal, Mnemonic.Shr, Mnemonic.Sar, Mnemonic.Shld, Mnemonic.Shrd, Mnemonic.Mul,
        Mnemonic.Imul, Mnemonic.Div, Mnemonic.Idiv, Mnemonic.Bt, Mnemonic.Bts, Mnemonic.Btr, Mnemonic.Btc, Mnemonic.Bsf,
        Mnemonic.Bsr, Mnemonic.Tzcnt, Mnemonic.Lzcnt, Mnemonic.Daa, Mnemonic.Das, Mnemonic.Aaa, Mnemonic.Aas, Mnemonic.Aam, Mnemonic.Aad, Mnemonic.Clc,
        Mnemonic.Stc, Mnemonic.Cmc, Mnemonic.Cld, Mnemonic.Std, Mnemonic.Cli, Mnemonic.Sti, Mnemonic.Lahf, Mnemonic.Sahf,
        Mnemonic.Nop, Mnemonic.Pause, Mnemonic.Wait, Mnemonic.Movsb, Mnemonic.Movsw, Mnemonic.Movsd, Mnemonic.Cmpsb, Mnemonic.Cmpsw,
        Mnemonic.Cmpsd, Mnemonic.Scasb, Mnemonic.Scasw, Mnemonic.Scasd, Mnemonic.Lodsb, Mnemonic.Lodsw, Mnemonic.Lodsd,
        Mnemonic.Stosb, Mnemonic.Stosw, Mnemonic.Stosd, Mnemonic.Insb, Mnemonic.Insw, Mnemonic.Insd, Mnemonic.Outsb,
        Mnemonic.Outsw, Mnemonic.Outsd, Mnemonic.In, Mnemonic.Out, Mnemonic.Hlt, Mnemonic.Int, Mnemonic.Int3, Mnemonic.Int1,
        Mnemonic.Into, Mnemonic.Iret, Mnemonic.Iretd, Mnemonic.Bound, Mnemonic.Ud0, Mnemonic.Ud1, Mnemonic.Ud2,
        Mnemonic.Cpuid, Mnemonic.Rdtsc, Mnemonic.Lgdt, Mnemonic.Lidt, Mnemonic.Sgdt, Mnemonic.Sidt, Mnemonic.Lldt,
        Mnemonic.Ltr, Mnemonic.Sldt, Mnemonic.Str, Mnemonic.Smsw, Mnemonic.Lmsw, Mnemonic.Clts, Mnemonic.Invd,
        Mnemonic.Wbinvd, Mnemonic.Invlpg, Mnemonic.Rdmsr, Mnemonic.Wrmsr,
        // IA-32e mode
        Mnemonic.Movsxd, Mnemonic.Cdqe, Mnemonic.Cqo, Mnemonic.Cmpxchg16b, Mnemonic.Pushfq, Mnemonic.Popfq, Mnemonic.Iretq,
        Mnemonic.Jrcxz, Mnemonic.Movsq, Mnemonic.Cmpsq, Mnemonic.Scasq, Mnemonic.Lodsq, Mnemonic.Stosq, Mnemonic.Syscall,
        Mnemonic.Sysret, Mnemonic.Sysretq, Mnemonic.Swapgs, Mnemonic.Sysenter, Mnemonic.Sysexit, Mnemonic.Sysexitq,
        Mnemonic.Rdtscp, Mnemonic.Lar, Mnemonic.Lsl, Mnemonic.Verr, Mnemonic.Verw, Mnemonic.Endbr32, Mnemonic.Endbr64, Mnemonic.Rdsspd,
        Mnemonic.Rdsspq,
        // x87 (SoftCpu.X87.cs)
        Mnemonic.Fld, Mnemonic.Fst, Mnemonic.Fstp, Mnemonic.Fstpnce, Mnemonic.Fild, Mnemonic.Fist, Mnemonic.Fistp, Mnemonic.Fisttp,
        Mnemonic.Fbld, Mnemonic.Fbstp, Mnemonic.Fldz, Mnemonic.Fld1, Mnemonic.Fldpi, Mnemonic.Fldl2e, Mnemonic.Fldl2t, Mnemonic.Fldlg2,
        Mnemonic.Fldln2, Mnemonic.Fxch, Mnemonic.Fadd, Mnemonic.Faddp, Mnemonic.Fiadd, Mnemonic.Fsub, Mnemonic.Fsubp, Mnemonic.Fisub,
        Mnemonic.Fsubr, Mnemonic.Fsubrp, Mnemonic.Fisubr, Mnemonic.Fmul, Mnemonic.Fmulp, Mnemonic.Fimul, Mnemonic.Fdiv, Mnemonic.Fdivp,
        Mnemonic.Fidiv, Mnemonic.Fdivr, Mnemonic.Fdivrp, Mnemonic.Fidivr, Mnemonic.Fcom, Mnemonic.Fcomp, Mnemonic.Fcompp, Mnemonic.Fucom,
        Mnemonic.Fucomp, Mnemonic.Fucompp, Mnemonic.Ficom, Mnemonic.Ficomp, Mnemonic.Fcomi, Mnemonic.Fcomip, Mnemonic.Fucomi,
        Mnemonic.Fucomip, Mnemonic.Ftst, Mnemonic.Fxam, Mnemonic.Fchs, Mnemonic.Fabs, Mnemonic.Fsqrt, Mnemonic.Frndint, Mnemonic.Fscale,
        Mnemonic.Fxtract, Mnemonic.Fprem, Mnemonic.Fprem1, Mnemonic.F2xm1, Mnemonic.Fyl2x, Mnemonic.Fyl2xp1, Mnemonic.Fptan,
        Mnemonic.Fpatan, Mnemonic.Fsin, Mnemonic.Fcos, Mnemonic.Fsincos, Mnemonic.Fcmovb, Mnemonic.Fcmove, Mnemonic.Fcmovbe,
        Mnemonic.Fcmovu, Mnemonic.Fcmovnb, Mnemonic.Fcmovne, Mnemonic.Fcmovnbe, Mnemonic.Fcmovnu, Mnemonic.Ffree, Mnemonic.Ffreep,
        Mnemonic.Fincstp, Mnemonic.Fdecstp, Mnemonic.Fnop, Mnemonic.Fneni, Mnemonic.Fndisi, Mnemonic.Fnsetpm, Mnemonic.Fninit,
        Mnemonic.Finit, Mnemonic.Fnclex, Mnemonic.Fclex, Mnemonic.Fldcw, Mnemonic.Fnstcw, Mnemonic.Fstcw, Mnemonic.Fnstsw,
        Mnemonic.Fstsw, Mnemonic.Fnstenv, Mnemonic.Fstenv, Mnemonic.Fldenv, Mnemonic.Fnsave, Mnemonic.Fsave, Mnemonic.Frstor,
    ];

    /// <summary>MMX (SoftCpu.Mmx.cs), SSE to SSE4.2 (SoftCpu.Sse.cs, Ssse3.cs, Sse4.cs) on XMM and MMX registers, POPCNT/CRC32/MOVBE (BitExt.cs) and the cache-control instructions.
    /// (A property: static fields in other files of this partial class may not be initialised yet.)</summary>
    private static HashSet<Mnemonic> SimdHandledMnemonics =>
    [
        .. SseMnemonics, .. MmxMnemonics, .. Sse3Mnemonics, .. Sse4Mnemonics, .. BitExtMnemonics, Mnemonic.Sfence, Mnemonic.Lfence, Mnemonic.Mfence, Mnemonic.Prefetchnta, Mnemonic.Prefetcht0, Mnemonic.Prefetcht1,
        Mnemonic.Prefetcht2, Mnemonic.Clflush, Mnemonic.Movnti, Mnemonic.Fxsave, Mnemonic.Fxrstor, Mnemonic.Fxsave64, Mnemonic.Fxrstor64,
    ];

    private static readonly Lazy<IReadOnlyCollection<Code>> Forms = new(ComputeForms);

    /// <summary>Every Iced code this CPU executes.</summary>
    public static IReadOnlyCollection<Code> ImplementedForms => Forms.Value;

    /// <summary>True when <paramref name="code"/> is one of <see cref="ImplementedForms"/>.</summary>
    public static bool Implements(Code code) => FormSet.Value.Contains(code);

    private static readonly Lazy<HashSet<Code>> FormSet = new(() => [.. ImplementedForms]);

    private static IReadOnlyCollection<Code> ComputeForms()
    {
        var forms = new List<Code>();
        var simd = SimdHandledMnemonics;
        foreach (var code in Enum.GetValues<Code>())
        {
            if (code == Code.INVALID) continue;
            var info = code.ToOpCode();
            if (!info.IsInstruction || info.Encoding != EncodingKind.Legacy) continue;
            if (!HandledMnemonics.Contains(code.Mnemonic()) && !simd.Contains(code.Mnemonic())) continue;
            // SIMD mnemonics name forms from several extensions: only those of the extensions implemented (not
            // Cyrix's EMMI, 3DNow! or AVX). TZCNT's encoding (BMI1) runs as BSF.
            if (simd.Contains(code.Mnemonic()) && !HandledMnemonics.Contains(code.Mnemonic())
                && !code.CpuidFeatures().All(f => f is CpuidFeature.MMX or CpuidFeature.SSE or CpuidFeature.SSE2 or CpuidFeature.FXSR or CpuidFeature.CLFSH
                    or CpuidFeature.SSE3 or CpuidFeature.SSSE3 or CpuidFeature.SSE4_1 or CpuidFeature.SSE4_2 or CpuidFeature.POPCNT
                    or CpuidFeature.MOVBE or CpuidFeature.BMI1 or CpuidFeature.LZCNT))
                continue;
            // Encodings only some early parts had (486 A-step CMPXCHG at 0F A6/A7, 8086 POP CS) are not part of
            // the Pentium-class ISA this CPU implements; the decoder never produces them in 32-bit mode.
            if (code.CpuidFeatures().Any(f => f is CpuidFeature.INTEL486_A_ONLY or CpuidFeature.INTEL8086_ONLY)) continue;
            bool ok = true;
            for (int n = 0; n < info.OpCount && ok; n++) ok = OperandSupported(info.GetOpKind(n));
            if (ok) forms.Add(code);
        }
        return forms;
    }

    private static bool OperandSupported(OpCodeOperandKind k) => k switch
    {
        OpCodeOperandKind.r8_reg or OpCodeOperandKind.r8_opcode or OpCodeOperandKind.r16_reg or OpCodeOperandKind.r16_rm
            or OpCodeOperandKind.r16_opcode or OpCodeOperandKind.r32_reg or OpCodeOperandKind.r32_rm or OpCodeOperandKind.r32_opcode
            or OpCodeOperandKind.r16_reg_mem or OpCodeOperandKind.r32_reg_mem => true,
        OpCodeOperandKind.r64_reg or OpCodeOperandKind.r64_rm or OpCodeOperandKind.r64_opcode or OpCodeOperandKind.r64_reg_mem => true,
        OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r16_or_mem or OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r64_or_mem
            or OpCodeOperandKind.mem => true,
        OpCodeOperandKind.xmm_reg or OpCodeOperandKind.xmm_rm or OpCodeOperandKind.xmm_or_mem => true,
        OpCodeOperandKind.mm_reg or OpCodeOperandKind.mm_rm or OpCodeOperandKind.mm_or_mem => true,
        OpCodeOperandKind.seg_reg or OpCodeOperandKind.es or OpCodeOperandKind.cs or OpCodeOperandKind.ss or OpCodeOperandKind.ds
            or OpCodeOperandKind.fs or OpCodeOperandKind.gs => true,
        OpCodeOperandKind.cr_reg or OpCodeOperandKind.dr_reg => true,
        OpCodeOperandKind.al or OpCodeOperandKind.cl or OpCodeOperandKind.ax or OpCodeOperandKind.dx or OpCodeOperandKind.eax
            or OpCodeOperandKind.rax => true,
        OpCodeOperandKind.imm8 or OpCodeOperandKind.imm8_const_1 or OpCodeOperandKind.imm8sex16 or OpCodeOperandKind.imm8sex32
            or OpCodeOperandKind.imm16 or OpCodeOperandKind.imm32 or OpCodeOperandKind.imm8sex64 or OpCodeOperandKind.imm32sex64
            or OpCodeOperandKind.imm64 => true,
        OpCodeOperandKind.mem_offs or OpCodeOperandKind.br16_1 or OpCodeOperandKind.br32_1 or OpCodeOperandKind.br16_2
            or OpCodeOperandKind.br32_4 or OpCodeOperandKind.brdisp_2 or OpCodeOperandKind.brdisp_4 or OpCodeOperandKind.farbr2_2
            or OpCodeOperandKind.farbr4_2 or OpCodeOperandKind.br64_1 or OpCodeOperandKind.br64_4 => true,
        OpCodeOperandKind.seg_rSI or OpCodeOperandKind.es_rDI or OpCodeOperandKind.seg_rBX_al => true,
        OpCodeOperandKind.seg_rDI => true, // MASKMOVDQU, MASKMOVQ: DS:rDI
        OpCodeOperandKind.st0 or OpCodeOperandKind.sti_opcode => true, // x87 registers
        _ => false,
    };
}
