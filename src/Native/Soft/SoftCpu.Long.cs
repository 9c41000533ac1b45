// IA-32e mode for the software CPU (Intel SDM vol. 3 ch. 2.5, 5.8.8, 6.14, 7.7): interrupt and exception
// delivery through 16-byte IDT gates with the interrupt stack table, IRET in 64-bit mode (always popping SS:RSP),
// 16-byte system descriptors for LDT and TSS, and the fast system calls: SYSCALL/SYSRET and SWAPGS (64-bit mode
// only, as on Intel parts), SYSENTER/SYSEXIT (protected and IA-32e mode), and RDTSCP.
// Entering and leaving IA-32e mode (EFER.LME with CR0.PG) is in WriteCr0; 4-level paging in SoftCpu.Paging.cs;
// 64-bit addressing in SoftCpu.Operands.cs and SoftCpu.Memory.cs.
using ActorVmm.Core.Accel;
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    /// <summary>Upper 32 bits of a 16-byte system descriptor's base (LDT or TSS in IA-32e mode), from its second half.</summary>
    private ulong SystemDescriptorHighBase(ushort selector)
    {
        uint index = (uint)(selector & 0xfff8);
        if (index + 15 > Gdtr.Limit) throw new CpuFault(ExGP, (uint)(selector & 0xfffc));
        ulong high = ReadSystem64(Gdtr.Base + index + 8);
        if (((high >> 40) & 0x1f) != 0) throw new CpuFault(ExGP, (uint)(selector & 0xfffc)); // the upper half's type field (bits 8-12 of its 4th dword) must be 0
        return (high & 0xffff_ffff) << 32;
    }

    /// <summary>A stack pointer from the 64-bit TSS: RSP0-2 at 4 + 8n, IST1-7 at 0x24 + 8(n-1).</summary>
    private ulong ReadTss64(uint offset, uint ext)
    {
        if (!Tr.Present || (Tr.Attributes & 0xf) is not (0x9 or 0xb) || offset + 7 > Tr.Limit)
            throw new CpuFault(ExTS, (uint)(Tr.Selector & 0xfffc) + ext);
        return ReadSystem64(Tr.Base + offset);
    }

    /// <summary>
    /// Event delivery in IA-32e mode: a 64-bit interrupt or trap gate; the handler runs in 64-bit mode on the stack
    /// the TSS names for its privilege (or its IST entry), aligned to 16 bytes; SS:RSP, RFLAGS, CS:RIP and the error
    /// code are pushed as quadwords whatever the interrupted mode.
    /// </summary>
    private void DeliverLongMode(byte vector, uint? errorCode, bool software, bool external)
    {
        uint ext = external ? 1u : 0u;
        uint idtOffset = (uint)vector * 16;
        uint gateError = (uint)vector * 8 + 2 + ext;
        if (idtOffset + 15 > Idtr.Limit) throw new CpuFault(ExGP, gateError);
        ulong low = ReadSystem64(Idtr.Base + idtOffset);
        ulong high = ReadSystem64(Idtr.Base + idtOffset + 8);
        int type = (int)(low >> 40) & 0x1f;
        int gateDpl = (int)(low >> 45) & 3;
        if (type is not (0x0e or 0x0f)) throw new CpuFault(ExGP, gateError);
        if (software && gateDpl < Cpl) throw new CpuFault(ExGP, (uint)vector * 8 + 2);
        if (((low >> 47) & 1) == 0) throw new CpuFault(ExNP, gateError);
        ushort selector = (ushort)(low >> 16);
        ulong target = (low & 0xffff) | ((low >> 32) & 0xffff_0000) | (high << 32);
        int ist = (int)(low >> 32) & 7;

        if ((selector & 0xfffc) == 0) throw new CpuFault(ExGP, ext);
        var cs = DescriptorToSegment(selector, LoadDescriptor(selector, ExGP, ext));
        uint csError = (uint)(selector & 0xfffc) + ext;
        int dpl = (cs.Attributes >> 5) & 3;
        if ((cs.Attributes & 0x18) != 0x18 || dpl > Cpl) throw new CpuFault(ExGP, csError);
        if ((cs.Attributes & 0x6000) != 0x2000) throw new CpuFault(ExGP, csError); // must be a 64-bit code segment (L=1, D=0)
        if (!cs.Present) throw new CpuFault(ExNP, csError);
        if (!IsCanonical(target)) throw new CpuFault(ExGP, ext);
        bool conforming = (cs.Attributes & 0x04) != 0;
        int oldCpl = Cpl;
        int newCpl = conforming ? oldCpl : dpl;

        ulong rsp = ist != 0 ? ReadTss64(0x24 + (uint)(ist - 1) * 8, ext)
            : newCpl < oldCpl ? ReadTss64(4 + (uint)newCpl * 8, ext)
            : Gpr[4];
        rsp &= ~0xfUL;

        ulong oldRflags = Rflags;
        ushort oldSs = Ss.Selector, oldCs = _cs.Selector;
        ulong oldRsp = Gpr[4], oldRip = Rip;
        var savedCs = Cs;
        cs.Selector = (ushort)((selector & 0xfffc) | newCpl);
        cs.Attributes |= 1;
        Cs = cs; // the pushes are supervisor accesses to the new stack
        try
        {
            void Push64(ref ulong sp, ulong value)
            {
                sp -= 8;
                if (!IsCanonical(sp)) throw new CpuFault(ExSS, ext);
                WriteLinear(sp, value, 8);
            }
            Push64(ref rsp, oldSs);
            Push64(ref rsp, oldRsp);
            Push64(ref rsp, oldRflags);
            Push64(ref rsp, oldCs);
            Push64(ref rsp, oldRip);
            if (errorCode is uint code) Push64(ref rsp, code);
        }
        catch (CpuFault)
        {
            Cs = savedCs;
            throw;
        }
        SetAccessed(selector);
        if (newCpl < oldCpl) Ss = new SegmentRegister { Selector = (ushort)newCpl, Attributes = (ushort)(newCpl << 5) }; // null SS, RPL = new CPL
        Gpr[4] = rsp;
        Rip = target;
        _flags &= ~(TF | NT | RF | VM);
        if (type == 0x0e) _flags &= ~IF;
        _halted = false;
    }

    /// <summary>IRET in 64-bit mode: pops RIP, CS, RFLAGS, RSP and SS (each of the operand size) at any privilege change or none.</summary>
    private void Iret64(int opSize)
    {
        ulong size = (ulong)opSize;
        ulong newRip = PeekStack(0, opSize);
        ushort selector = (ushort)PeekStack(size, opSize);
        ulong newFlags = PeekStack(2 * size, opSize);
        ulong newRsp = PeekStack(3 * size, opSize);
        ushort newSs = (ushort)PeekStack(4 * size, opSize);
        if ((selector & 0xfffc) == 0) throw new CpuFault(ExGP, 0);
        var cs = CheckCodeTarget(selector, LoadDescriptor(selector, ExGP), isReturn: true);
        bool to64 = (cs.Attributes & 0x2000) != 0;
        CheckFarTarget(cs, newRip);
        int rpl = selector & 3;
        int oldCpl = Cpl;
        SegmentRegister ss;
        if ((newSs & 0xfffc) == 0)
        {
            if (!to64 || rpl == 3) throw new CpuFault(ExGP, 0);
            ss = new SegmentRegister { Selector = newSs, Attributes = (ushort)(rpl << 5) };
        }
        else
        {
            ss = DescriptorToSegment(newSs, LoadDescriptor(newSs, ExGP));
            uint err = (uint)(newSs & 0xfffc);
            if ((newSs & 3) != rpl || ((ss.Attributes >> 5) & 3) != rpl || (ss.Attributes & 0x1a) != 0x12) throw new CpuFault(ExGP, err);
            if (!ss.Present) throw new CpuFault(ExSS, err);
            SetAccessed(newSs);
            ss.Attributes |= 1;
        }
        SetAccessed(selector);
        Cs = cs;
        Ss = ss;
        Gpr[4] = newRsp;
        _nextRip = to64 ? newRip : newRip & 0xffff_ffff;
        WriteFlagsFromPop(newFlags, opSize, iret: true, cplForRules: oldCpl);
        if (rpl > oldCpl) ClearDataSegmentsForOuterLevel();
    }

    private static SegmentRegister FlatCode(ushort selector, int dpl, bool long64)
        => SegmentRegister.Make(selector, 0, 0xffff_ffff, 0x0b, s: true, dpl, l: long64, db: !long64, g: true);

    private static SegmentRegister FlatData(ushort selector, int dpl)
        => SegmentRegister.Make(selector, 0, 0xffff_ffff, 0x03, s: true, dpl, l: false, db: true, g: true);

    /// <summary>SYSCALL, SYSRET, SWAPGS, SYSENTER, SYSEXIT, RDTSCP; false for anything else.</summary>
    private bool LongModeInstruction(in Instruction i)
    {
        switch (i.Mnemonic)
        {
            case Mnemonic.Syscall:
                {
                    // Intel: 64-bit mode only, with EFER.SCE.
                    if (!Mode64 || (Efer & EferSce) == 0) throw new CpuFault(ExUD, null);
                    ushort sel = (ushort)(Star >> 32);
                    Gpr[1] = _nextRip;
                    Gpr[11] = Rflags & ~(ulong)RF;
                    Cs = FlatCode((ushort)(sel & 0xfffc), 0, long64: true);
                    Ss = FlatData((ushort)((sel + 8) & 0xfffc), 0);
                    Rflags = Rflags & ~Sfmask & ~(ulong)RF;
                    _nextRip = Lstar;
                    return true;
                }
            case Mnemonic.Sysret or Mnemonic.Sysretq:
                {
                    if (!Mode64 || (Efer & EferSce) == 0) throw new CpuFault(ExUD, null);
                    RequireCpl0();
                    bool to64 = i.Code == Code.Sysretq;
                    if (to64 && !IsCanonical(Gpr[1])) throw new CpuFault(ExGP, 0);
                    ushort sel = (ushort)(Star >> 48);
                    Rflags = (Gpr[11] & 0x3c_7fd7) | 2;
                    Cs = to64 ? FlatCode((ushort)((sel + 16) | 3), 3, long64: true) : FlatCode((ushort)(sel | 3), 3, long64: false);
                    Ss = FlatData((ushort)((sel + 8) | 3), 3);
                    _nextRip = to64 ? Gpr[1] : Gpr[1] & 0xffff_ffff;
                    return true;
                }
            case Mnemonic.Swapgs:
                {
                    if (!Mode64) throw new CpuFault(ExUD, null);
                    RequireCpl0();
                    (Gs.Base, KernelGsBase) = (KernelGsBase, Gs.Base);
                    return true;
                }
            case Mnemonic.Sysenter:
                {
                    if (!ProtectedMode || (SysenterCs & 0xfffc) == 0) throw new CpuFault(ExGP, 0);
                    ushort sel = (ushort)(SysenterCs & 0xfffc);
                    bool longMode = LongMode;
                    _flags &= ~(VM | IF | RF);
                    Cs = FlatCode(sel, 0, long64: longMode);
                    Ss = FlatData((ushort)(sel + 8), 0);
                    Gpr[4] = longMode ? SysenterEsp : SysenterEsp & 0xffff_ffff;
                    _nextRip = longMode ? SysenterEip : SysenterEip & 0xffff_ffff;
                    return true;
                }
            case Mnemonic.Sysexit or Mnemonic.Sysexitq:
                {
                    if (!ProtectedMode || Cpl != 0 || (SysenterCs & 0xfffc) == 0) throw new CpuFault(ExGP, 0);
                    bool to64 = i.Code == Code.Sysexitq;
                    if (to64 && (!IsCanonical(Gpr[2]) || !IsCanonical(Gpr[1]))) throw new CpuFault(ExGP, 0);
                    ushort sel = (ushort)SysenterCs;
                    Cs = FlatCode((ushort)((sel + (to64 ? 32 : 16)) | 3), 3, long64: to64);
                    Ss = FlatData((ushort)((sel + (to64 ? 40 : 24)) | 3), 3);
                    Gpr[4] = to64 ? Gpr[1] : Gpr[1] & 0xffff_ffff;
                    _nextRip = to64 ? Gpr[2] : Gpr[2] & 0xffff_ffff;
                    return true;
                }
            case Mnemonic.Rdtscp:
                {
                    if ((Cr4 & 4) != 0 && Cpl != 0) throw new CpuFault(ExGP, 0);
                    ulong tsc = (ulong)((long)TimeStampCounter() + _tscOffset);
                    Gpr[0] = (uint)tsc;
                    Gpr[2] = tsc >> 32;
                    Gpr[1] = TscAux & 0xffff_ffff;
                    return true;
                }
            default:
                return SimdInstruction(i);
        }
    }
}
