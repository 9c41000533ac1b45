// Segmentation: descriptor loads from the GDT/LDT with the protected-mode checks of the Intel SDM vol. 3
// ch. 5 (type, privilege, presence), segment register loads, and far control transfers (JMP/CALL/RET/IRET)
// including call gates and returns to an outer privilege level. Task switches are not implemented: a task
// gate or TSS as the target raises #ExGP.
using ActorVmm.Core.Accel;
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    /// <summary>Reads the 8-byte descriptor for <paramref name="selector"/>; faults with <paramref name="vector"/>(selector) when outside its table.</summary>
    private ulong LoadDescriptor(ushort selector, byte vector, uint ext = 0)
    {
        bool ldt = (selector & 4) != 0;
        ulong tableBase = ldt ? Ldtr.Base : Gdtr.Base;
        uint tableLimit = ldt ? Ldtr.Limit : Gdtr.Limit;
        if (ldt && !Ldtr.Present) throw new CpuFault(vector, (uint)(selector & 0xfffc) + ext);
        uint index = (uint)(selector & 0xfff8);
        if (index + 7 > tableLimit) throw new CpuFault(vector, (uint)(selector & 0xfffc) + ext);
        return ReadSystem64(tableBase + index);
    }

    private static SegmentRegister DescriptorToSegment(ushort selector, ulong d)
    {
        uint limit = (uint)(d & 0xffff) | (uint)((d >> 32) & 0xf0000);
        bool g = ((d >> 55) & 1) != 0;
        if (g) limit = (limit << 12) | 0xfff;
        return new SegmentRegister
        {
            Selector = selector,
            Base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000),
            Limit = limit,
            Attributes = (ushort)(((d >> 40) & 0xff) | ((d >> 40) & 0xf000)),
        };
    }

    /// <summary>Sets the accessed bit of the descriptor in memory, as the CPU does on a load.</summary>
    private void SetAccessed(ushort selector)
    {
        bool ldt = (selector & 4) != 0;
        ulong addr = (ldt ? Ldtr.Base : Gdtr.Base) + (uint)(selector & 0xfff8) + 5;
        ulong b = ReadSystem(addr, 1);
        if ((b & 1) == 0) WriteSystem(addr, b | 1, 1);
    }

    /// <summary>MOV/POP/LxS to a data segment register or SS, with the protected-mode checks.</summary>
    private void LoadSegment(int sreg, ushort selector)
    {
        if (sreg == 1) throw new CpuFault(ExUD, null); // MOV CS is invalid (in real mode too)
        if (!ProtectedMode)
        {
            SetSreg(sreg, SegmentRegister.RealMode(selector));
            return;
        }
        bool isSs = sreg == 2;
        if ((selector & 0xfffc) == 0)
        {
            // 64-bit mode allows a null SS below CPL 3 (RPL = CPL), as SYSCALL and interrupts leave it.
            if (isSs && !(Mode64 && Cpl != 3 && (selector & 3) == Cpl)) throw new CpuFault(ExGP, 0);
            if (isSs)
            {
                Ss = new SegmentRegister { Selector = selector, Attributes = (ushort)(Cpl << 5) };
                return;
            }
            SetSreg(sreg, new SegmentRegister { Selector = selector }); // null: unusable until reloaded
            return;
        }
        var seg = DescriptorToSegment(selector, LoadDescriptor(selector, ExGP));
        int dpl = (seg.Attributes >> 5) & 3, rpl = selector & 3, cpl = Cpl;
        uint err = (uint)(selector & 0xfffc);
        bool s = (seg.Attributes & 0x10) != 0, code = (seg.Attributes & 0x08) != 0;
        bool writable = !code && (seg.Attributes & 0x02) != 0, readable = code && (seg.Attributes & 0x02) != 0;
        if (isSs)
        {
            if (!s || !writable || rpl != cpl || dpl != cpl) throw new CpuFault(ExGP, err);
            if (!seg.Present) throw new CpuFault(ExSS, err);
        }
        else
        {
            bool conforming = code && (seg.Attributes & 0x04) != 0;
            if (!s || (code && !readable)) throw new CpuFault(ExGP, err);
            if (!conforming && (rpl > dpl || cpl > dpl)) throw new CpuFault(ExGP, err);
            if (!seg.Present) throw new CpuFault(ExNP, err);
        }
        SetAccessed(selector);
        seg.Attributes |= 1;
        SetSreg(sreg, seg);
    }

    private void SetSreg(int sreg, SegmentRegister seg)
    {
        switch (sreg)
        {
            case 0: Es = seg; break;
            case 1: Cs = seg; break;
            case 2: Ss = seg; break;
            case 3: Ds = seg; break;
            case 4: Fs = seg; break;
            default: Gs = seg; break;
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private ref SegmentRegister Sreg(int sreg)
    {
        switch (sreg)
        {
            case 0: return ref Es;
            case 1: return ref _cs; // read through (MemorySegment); writes go through SetSreg
            case 2: return ref Ss;
            case 3: return ref Ds;
            case 4: return ref Fs;
            default: return ref Gs;
        }
    }

    /// <summary>Checks a code-segment target of a far JMP/CALL/RET and returns the loaded segment (CPL-adjusted).</summary>
    private SegmentRegister CheckCodeTarget(ushort selector, ulong descriptor, bool isReturn)
    {
        var cs = DescriptorToSegment(selector, descriptor);
        uint err = (uint)(selector & 0xfffc);
        if ((cs.Attributes & 0x18) != 0x18) throw new CpuFault(ExGP, err);
        int dpl = (cs.Attributes >> 5) & 3, rpl = selector & 3, cpl = Cpl;
        bool conforming = (cs.Attributes & 0x04) != 0;
        if (isReturn)
        {
            if (rpl < cpl || (conforming ? dpl > rpl : dpl != rpl)) throw new CpuFault(ExGP, err);
        }
        else if (conforming ? dpl > cpl : rpl > cpl || dpl != cpl)
        {
            throw new CpuFault(ExGP, err);
        }
        if (!cs.Present) throw new CpuFault(ExNP, err);
        cs.Attributes |= 1;
        cs.Selector = (ushort)((selector & 0xfffc) | (isReturn ? rpl : cpl));
        return cs;
    }

    /// <summary>Far JMP (call = false) or far CALL to selector:offset; handles call gates at the same privilege.</summary>
    private void FarTransfer(ushort selector, ulong offset, int opSize, bool call)
    {
        if (!ProtectedMode)
        {
            if (call)
            {
                Push(_cs.Selector, opSize);
                Push(_nextRip, opSize);
            }
            Cs = SegmentRegister.RealMode(selector, code: true);
            _nextRip = offset & (opSize == 4 ? 0xffff_ffffu : 0xffffu);
            return;
        }
        if ((selector & 0xfffc) == 0) throw new CpuFault(ExGP, 0);
        ulong d = LoadDescriptor(selector, ExGP);
        int type = (int)(d >> 40) & 0x1f;
        if ((type & 0x18) == 0x18)
        {
            var cs = CheckCodeTarget(selector, d, isReturn: false);
            CheckFarTarget(cs, offset);
            if (call)
            {
                Push(_cs.Selector, opSize);
                Push(_nextRip, opSize);
            }
            SetAccessed(selector);
            Cs = cs;
            _nextRip = offset;
            return;
        }
        if (type is 0x0c or 0x04 && !LongMode)
        {
            CallGate(selector, d, call);
            return;
        }
        // Task gates and TSS targets (task switch), and 64-bit call gates in IA-32e mode, are not implemented.
        throw new CpuFault(ExGP, (uint)(selector & 0xfffc));
    }

    /// <summary>The offset of a far transfer: canonical for a 64-bit code segment, else inside the limit.</summary>
    private void CheckFarTarget(in SegmentRegister cs, ulong offset)
    {
        bool to64 = LongMode && (cs.Attributes & 0x2000) != 0;
        if (to64 ? !IsCanonical(offset) : offset > cs.Limit) throw new CpuFault(ExGP, 0);
    }

    private void CallGate(ushort gateSelector, ulong gate, bool call)
    {
        int gateDpl = (int)(gate >> 45) & 3;
        uint err = (uint)(gateSelector & 0xfffc);
        if (gateDpl < Cpl || gateDpl < (gateSelector & 3)) throw new CpuFault(ExGP, err);
        if (((gate >> 47) & 1) == 0) throw new CpuFault(ExNP, err);
        bool gate32 = ((gate >> 40) & 0x8) != 0;
        ushort selector = (ushort)(gate >> 16);
        uint offset = (uint)(gate & 0xffff) | (gate32 ? (uint)((gate >> 32) & 0xffff0000) : 0);
        if ((selector & 0xfffc) == 0) throw new CpuFault(ExGP, 0);
        var cs = DescriptorToSegment(selector, LoadDescriptor(selector, ExGP));
        uint cerr = (uint)(selector & 0xfffc);
        int dpl = (cs.Attributes >> 5) & 3;
        bool conforming = (cs.Attributes & 0x04) != 0;
        if ((cs.Attributes & 0x18) != 0x18 || dpl > Cpl) throw new CpuFault(ExGP, cerr);
        if (!call && !conforming && dpl != Cpl) throw new CpuFault(ExGP, cerr);
        if (!cs.Present) throw new CpuFault(ExNP, cerr);
        int size = gate32 ? 4 : 2;
        if (call && !conforming && dpl < Cpl)
        {
            int paramCount = (int)(gate >> 32) & 0x1f;
            var parameters = new ulong[paramCount];
            for (int i = 0; i < paramCount; i++) parameters[i] = PeekStack((ulong)(i * size), size);
            ushort oldSs = Ss.Selector;
            ulong oldEsp = Gpr[4];
            var (newSs, newEsp) = ReadTssStack(dpl, 0);
            var ss = DescriptorToSegment(newSs, LoadDescriptor(newSs, ExTS));
            if ((newSs & 3) != dpl || ((ss.Attributes >> 5) & 3) != dpl || (ss.Attributes & 0x1a) != 0x12)
                throw new CpuFault(ExTS, (uint)(newSs & 0xfffc));
            if (!ss.Present) throw new CpuFault(ExSS, (uint)(newSs & 0xfffc));
            Ss = ss;
            Gpr[4] = newEsp;
            Push(oldSs, size);
            Push(oldEsp, size);
            for (int i = paramCount - 1; i >= 0; i--) Push(parameters[i], size);
            Push(_cs.Selector, size);
            Push(_nextRip, size);
            cs.Selector = (ushort)((selector & 0xfffc) | dpl);
        }
        else
        {
            if (call)
            {
                Push(_cs.Selector, size);
                Push(_nextRip, size);
            }
            cs.Selector = (ushort)((selector & 0xfffc) | Cpl);
        }
        if (offset > cs.Limit) throw new CpuFault(ExGP, 0);
        cs.Attributes |= 1;
        Cs = cs;
        _nextRip = offset;
    }

    /// <summary>RETF [imm16]: same privilege or to an outer one (popping SS:ESP).</summary>
    private void FarReturn(int opSize, ushort release)
    {
        ulong newEip = PeekStack(0, opSize);
        ushort selector = (ushort)PeekStack((ulong)opSize, opSize);
        if (!ProtectedMode)
        {
            Pop(opSize);
            Pop(opSize);
            Gpr[4] = AdjustSp(release);
            Cs = SegmentRegister.RealMode(selector, code: true);
            _nextRip = newEip;
            return;
        }
        if ((selector & 0xfffc) == 0) throw new CpuFault(ExGP, 0);
        var cs = CheckCodeTarget(selector, LoadDescriptor(selector, ExGP), isReturn: true);
        CheckFarTarget(cs, newEip);
        int rpl = selector & 3;
        if (rpl > Cpl)
        {
            ulong newEsp = PeekStack((ulong)(2 * opSize + release), opSize);
            ushort newSs = (ushort)PeekStack((ulong)(3 * opSize + release), opSize);
            Cs = cs;
            LoadOuterStack(newSs, newEsp, rpl, opSize);
            Gpr[4] = AdjustSp(release);
            ClearDataSegmentsForOuterLevel();
        }
        else
        {
            Pop(opSize);
            Pop(opSize);
            Gpr[4] = AdjustSp(release);
            Cs = cs;
        }
        _nextRip = newEip;
    }

    private ulong AdjustSp(ushort delta)
    {
        if (Mode64) return Gpr[4] + delta;
        bool stack32 = (Ss.Attributes & 0x4000) != 0;
        ulong sp = Gpr[4];
        return stack32 ? (uint)(sp + delta) : (sp & ~0xffffUL) | ((sp + delta) & 0xffff);
    }

    private void LoadOuterStack(ushort newSs, ulong newEsp, int rpl, int opSize)
    {
        if ((newSs & 0xfffc) == 0)
        {
            // Only a return to 64-bit code below CPL 3 may take a null SS.
            if (!Mode64 || rpl == 3) throw new CpuFault(ExGP, 0);
            Ss = new SegmentRegister { Selector = newSs, Attributes = (ushort)(rpl << 5) };
            Gpr[4] = newEsp;
            return;
        }
        var ss = DescriptorToSegment(newSs, LoadDescriptor(newSs, ExGP));
        uint err = (uint)(newSs & 0xfffc);
        if ((newSs & 3) != rpl || ((ss.Attributes >> 5) & 3) != rpl || (ss.Attributes & 0x1a) != 0x12) throw new CpuFault(ExGP, err);
        if (!ss.Present) throw new CpuFault(ExSS, err);
        ss.Attributes |= 1;
        Ss = ss;
        Gpr[4] = opSize switch { 8 => newEsp, 4 => (uint)newEsp, _ => (Gpr[4] & ~0xffffUL) | (newEsp & 0xffff) };
    }

    /// <summary>After a return to an outer level, data segments the new CPL may not use become null.</summary>
    private void ClearDataSegmentsForOuterLevel()
    {
        int cpl = Cpl;
        foreach (int s in (ReadOnlySpan<int>)[0, 3, 4, 5])
        {
            ref var seg = ref Sreg(s);
            bool code = (seg.Attributes & 0x08) != 0, conforming = code && (seg.Attributes & 0x04) != 0;
            int dpl = (seg.Attributes >> 5) & 3;
            if ((seg.Attributes & 0x10) != 0 && !conforming && dpl < cpl) seg = new SegmentRegister { Selector = 0 };
        }
    }

    private void Iret(int opSize)
    {
        if (!ProtectedMode)
        {
            ulong ip = Pop(opSize);
            ushort cs16 = (ushort)Pop(opSize);
            ulong fl = Pop(opSize);
            Cs = SegmentRegister.RealMode(cs16, code: true);
            _nextRip = ip;
            WriteFlagsFromPop(fl, opSize, iret: true);
            return;
        }
        if ((_flags & NT) != 0) throw new CpuFault(ExGP, 0); // nested task return: task switch not implemented
        if (Mode64)
        {
            Iret64(opSize);
            return;
        }
        ulong newEip = PeekStack(0, opSize);
        ushort selector = (ushort)PeekStack((ulong)opSize, opSize);
        ulong newFlags = PeekStack((ulong)(2 * opSize), opSize);
        if ((selector & 0xfffc) == 0) throw new CpuFault(ExGP, 0);
        var cs = CheckCodeTarget(selector, LoadDescriptor(selector, ExGP), isReturn: true);
        CheckFarTarget(cs, newEip);
        int rpl = selector & 3;
        int oldCpl = Cpl;
        if (rpl > oldCpl)
        {
            ulong newEsp = PeekStack((ulong)(3 * opSize), opSize);
            ushort newSs = (ushort)PeekStack((ulong)(4 * opSize), opSize);
            Cs = cs;
            LoadOuterStack(newSs, newEsp, rpl, opSize);
            ClearDataSegmentsForOuterLevel();
        }
        else
        {
            Gpr[4] = AdjustSp((ushort)(3 * opSize));
            Cs = cs;
        }
        _nextRip = newEip;
        WriteFlagsFromPop(newFlags, opSize, iret: true, cplForRules: oldCpl);
    }

    /// <summary>POPF/IRET flag rules: IOPL only at CPL 0, IF only at CPL ≤ IOPL; VM/VIP/VIF untouched; RF cleared by POPF.</summary>
    private void WriteFlagsFromPop(ulong value, int opSize, bool iret, int cplForRules = -1)
    {
        int cpl = cplForRules >= 0 ? cplForRules : Cpl;
        uint current = (uint)Rflags;
        uint changeable = ArithMask | TF | DF | OF_ | NT;
        if (opSize >= 4) changeable |= AC_ | ID | (iret ? RF : 0);
        if (!ProtectedMode || cpl == 0) changeable |= IOPL | IF;
        else if (cpl <= (int)((current >> 12) & 3)) changeable |= IF;
        if (opSize == 2) changeable &= 0xffff;
        if (_model286 && !ProtectedMode) changeable &= ~(IOPL | NT); // a real-mode 286 keeps FLAGS bits 12-15 clear
        uint next = (current & ~changeable) | ((uint)value & changeable);
        if (!iret) next &= ~RF;
        Rflags = next;
    }
}

public sealed partial class SoftCpu
{
    /// <summary>
    /// LAR, LSL, VERR, VERW (SDM vol. 2): look a selector up without loading it. A null selector, one outside its
    /// table, a descriptor type the instruction does not accept, or a privilege check that fails (DPL below CPL
    /// or RPL, conforming code segments excepted) clears ZF and changes nothing else; otherwise ZF is set and
    /// LAR/LSL write the access rights or the byte-granular limit. Never a fault for the selector itself.
    /// </summary>
    private void SegmentQuery(in Instruction i)
    {
        RequireProtectedMode();
        var m = i.Mnemonic;
        ushort selector = (ushort)ReadOp(i, m is Mnemonic.Verr or Mnemonic.Verw ? 0 : 1, 16);
        if (!TryReadDescriptorForQuery(selector, out ulong d, out ulong high))
        {
            SetArith(0, ZF);
            return;
        }
        int type = (int)(d >> 40) & 0x1f; // S bit and type
        int dpl = (int)(d >> 45) & 3;
        bool s = (type & 0x10) != 0, code = s && (type & 0x08) != 0, conforming = code && (type & 0x04) != 0;
        bool privOk = conforming || (dpl >= Cpl && dpl >= (selector & 3));
        bool typeOk = m switch
        {
            Mnemonic.Verr => s && (!code || (type & 0x02) != 0),
            Mnemonic.Verw => s && !code && (type & 0x02) != 0,
            Mnemonic.Lar => s || (LongMode ? (type & 0xf) is 0x2 or 0x9 or 0xb or 0xc : (type & 0xf) is 0x1 or 0x2 or 0x3 or 0x4 or 0x5 or 0x9 or 0xb or 0xc),
            _ => s || (LongMode ? (type & 0xf) is 0x2 or 0x9 or 0xb : (type & 0xf) is 0x1 or 0x2 or 0x3 or 0x9 or 0xb), // LSL
        };
        if (!typeOk || (!conforming || m is Mnemonic.Verw) && !privOk)
        {
            SetArith(0, ZF);
            return;
        }
        switch (m)
        {
            case Mnemonic.Lar:
                {
                    ulong rights = (d >> 32) & 0x00f0_ff00;
                    WriteReg(i.Op0Register, OpBits(i) == 16 ? rights & 0xff00 : rights);
                    break;
                }
            case Mnemonic.Lsl:
                {
                    ulong limit = (d & 0xffff) | ((d >> 32) & 0xf_0000);
                    if (((d >> 55) & 1) != 0) limit = (limit << 12) | 0xfff;
                    WriteReg(i.Op0Register, limit);
                    break;
                }
        }
        _ = high;
        SetArith(ZF, ZF);
    }

    /// <summary>The descriptor for a query instruction; false (ZF = 0) where the lookup itself fails.</summary>
    private bool TryReadDescriptorForQuery(ushort selector, out ulong d, out ulong high)
    {
        d = high = 0;
        if ((selector & 0xfffc) == 0) return false;
        bool ldt = (selector & 4) != 0;
        if (ldt && !Ldtr.Present) return false;
        ulong tableBase = ldt ? Ldtr.Base : Gdtr.Base;
        uint tableLimit = ldt ? Ldtr.Limit : Gdtr.Limit;
        uint index = (uint)(selector & 0xfff8);
        if (index + 7 > tableLimit) return false;
        d = ReadSystem64(tableBase + index);
        bool system = ((d >> 44) & 1) == 0;
        if (LongMode && system)
        {
            // 16-byte system descriptors in IA-32e mode: the upper half must be inside the table too.
            if (index + 15 > tableLimit) return false;
            high = ReadSystem64(tableBase + index + 8);
        }
        return true;
    }
}
