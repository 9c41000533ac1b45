// Model-specific registers of the software CPU: RDMSR/WRMSR at CPL 0, with the MSRs this CPU's CPUID
// implies (MSR, TSC, PAT, MTRR, the APIC base) modelled here and everything else offered to the platform's
// exit handler, which answers false for what nobody models: the guest then gets #GP(0), as silicon does for
// an MSR it does not have. Reserved bits in a write are #GP(0) too. Values at reset follow the SDM and, where
// the SDM leaves a choice, QEMU's (MTRRcap 0x508: 8 variable ranges, fixed ranges, write-combining;
// MISC_ENABLE 1: fast strings). MTRRs and PAT are stored and read back; memory types have no effect on an
// emulated machine. EFER (SCE, LME, LMA, NXE), the SYSCALL and SYSENTER MSRs, FS/GS bases, KERNEL_GS_BASE and
// TSC_AUX are modelled; addresses written to them must be canonical.
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    internal const uint MsrTsc = 0x10, MsrApicBase = 0x1b, MsrMtrrCap = 0xfe, MsrMiscEnable = 0x1a0, MsrPat = 0x277,
        MsrMtrrDefType = 0x2ff, MsrEfer = 0xc000_0080, MsrSysenterCs = 0x174, MsrSysenterEsp = 0x175, MsrSysenterEip = 0x176,
        MsrStar = 0xc000_0081, MsrLstar = 0xc000_0082, MsrCstar = 0xc000_0083, MsrSfmask = 0xc000_0084,
        MsrFsBase = 0xc000_0100, MsrGsBase = 0xc000_0101, MsrKernelGsBase = 0xc000_0102, MsrTscAux = 0xc000_0103,
        MsrBiosSignId = 0x8b, MsrPlatformId = 0x17;

    // SYSCALL/SYSENTER targets, SWAPGS's other GS base, RDTSCP's processor id.
    internal ulong Star, Lstar, Cstar, Sfmask, KernelGsBase, SysenterCs, SysenterEsp, SysenterEip, TscAux;

    private ulong _pat = 0x0007_0406_0007_0406;
    private ulong _miscEnable = 1;
    private ulong _mtrrDefType;
    private readonly ulong[] _mtrrVariable = new ulong[16];  // 0x200-0x20f: base/mask pairs
    private readonly ulong[] _mtrrFixed = new ulong[11];     // 0x250, 0x258, 0x259, 0x268-0x26f
    private long _tscOffset;

    private static int FixedMtrrIndex(uint msr) => msr switch
    {
        0x250 => 0,
        0x258 => 1,
        0x259 => 2,
        >= 0x268 and <= 0x26f => (int)(msr - 0x268) + 3,
        _ => -1,
    };

    private void Rdmsr()
    {
        RequireCpl0();
        uint msr = (uint)Gpr[1];
        if (!TryReadMsr(msr, out ulong value)) throw new CpuFault(ExGP, 0);
        Gpr[0] = (uint)value;
        Gpr[2] = value >> 32;
    }

    private void Wrmsr()
    {
        Serialize();
        RequireCpl0();
        uint msr = (uint)Gpr[1];
        ulong value = ((Gpr[2] & 0xffff_ffff) << 32) | (Gpr[0] & 0xffff_ffff);
        if (!TryWriteMsr(msr, value)) throw new CpuFault(ExGP, 0);
    }

    internal bool TryReadMsr(uint msr, out ulong value)
    {
        switch (msr)
        {
            case MsrTsc: value = (ulong)((long)TimeStampCounter() + _tscOffset); return true;
            case MsrApicBase: value = ApicBase; return true;
            case MsrMtrrCap: value = 0x508; return true;
            case MsrMiscEnable: value = _miscEnable; return true;
            case MsrPat: value = _pat; return true;
            case MsrMtrrDefType: value = _mtrrDefType; return true;
            case MsrEfer: value = Efer; return true;
            case MsrBiosSignId: value = 0; return true; // microcode update signature (bits 63:32): none loaded
            // IA32_PLATFORM_ID, read-only on Intel family 6: bits 52:50 name the platform a microcode update must
            // match (SDM vol. 3 §10.11.2); 0 here, the other bits reserved. Linux's microcode loader reads it.
            case MsrPlatformId: value = 0; return true;
            case MsrSysenterCs: value = SysenterCs; return true;
            case MsrSysenterEsp: value = SysenterEsp; return true;
            case MsrSysenterEip: value = SysenterEip; return true;
            case MsrStar: value = Star; return true;
            case MsrLstar: value = Lstar; return true;
            case MsrCstar: value = Cstar; return true;
            case MsrSfmask: value = Sfmask; return true;
            case MsrFsBase: value = Fs.Base; return true;
            case MsrGsBase: value = Gs.Base; return true;
            case MsrKernelGsBase: value = KernelGsBase; return true;
            case MsrTscAux: value = TscAux; return true;
            case >= 0x200 and <= 0x20f: value = _mtrrVariable[msr - 0x200]; return true;
        }
        int f = FixedMtrrIndex(msr);
        if (f >= 0)
        {
            value = _mtrrFixed[f];
            return true;
        }
        return _exits.MsrRead(msr, out value);
    }

    internal bool TryWriteMsr(uint msr, ulong value)
    {
        switch (msr)
        {
            case MsrTsc:
                _tscOffset = (long)value - (long)TimeStampCounter();
                return true;
            case MsrApicBase:
                {
                    // BSP (8, read-only), x2APIC enable (10: only with a local APIC wired, as CPUID then offers
                    // x2APIC), global enable (11), base (12-35). SDM vol. 3 §11.12.5: EXTD without EN, and
                    // x2APIC straight back to xAPIC, are invalid transitions (#GP).
                    ulong allowed = 0xf_ffff_f900UL | (TaskPriority is not null ? 0x400UL : 0);
                    if ((value & ~allowed) != 0) return false;
                    bool enable = (value & 0x800) != 0, extd = (value & 0x400) != 0;
                    bool wasX2 = (ApicBase & 0xc00) == 0xc00;
                    if (extd && !enable) return false;
                    if (wasX2 && enable && !extd) return false;
                    ApicBase = (ApicBase & 0x100) | (value & ~0x100UL);
                    return true;
                }
            case MsrMtrrCap:
            case MsrPlatformId:
                return false; // read-only
            case MsrMiscEnable:
                _miscEnable = value;
                return true;
            case MsrPat:
                for (int b = 0; b < 8; b++)
                {
                    ulong type = (value >> (8 * b)) & 0xff;
                    if (type is 2 or 3 or > 7) return false; // reserved memory types
                }
                _pat = value;
                return true;
            case MsrMtrrDefType:
                if ((value & ~0xcffUL) != 0) return false;
                _mtrrDefType = value;
                return true;
            case MsrEfer:
                {
                    // SCE, LME and NXE are writable; LMA is set by the CPU (writes keep it); LME cannot change while paging is on.
                    if ((value & ~(EferSce | EferLme | EferLma | EferNxe)) != 0) return false;
                    if ((Cr0 & 0x8000_0000) != 0 && ((value ^ Efer) & EferLme) != 0) return false;
                    Efer = (value & ~EferLma) | (Efer & EferLma);
                    FlushTlb(keepGlobal: false); // NXE changes how entries read
                    return true;
                }
            case MsrSysenterCs: SysenterCs = value & 0xffff_ffff; return true;
            case MsrBiosSignId: return true; // software writes 0 before CPUID to read the signature back; nothing to store
            case MsrSysenterEsp or MsrSysenterEip or MsrLstar or MsrCstar or MsrFsBase or MsrGsBase or MsrKernelGsBase:
                {
                    if (!IsCanonical(value)) return false;
                    switch (msr)
                    {
                        case MsrSysenterEsp: SysenterEsp = value; break;
                        case MsrSysenterEip: SysenterEip = value; break;
                        case MsrLstar: Lstar = value; break;
                        case MsrCstar: Cstar = value; break;
                        case MsrFsBase: Fs.Base = value; break;
                        case MsrGsBase: Gs.Base = value; break;
                        default: KernelGsBase = value; break;
                    }
                    return true;
                }
            case MsrStar: Star = value; return true;
            case MsrSfmask: Sfmask = value & 0xffff_ffff; return true;
            case MsrTscAux: TscAux = value & 0xffff_ffff; return true;
            case >= 0x200 and <= 0x20f:
                _mtrrVariable[msr - 0x200] = value;
                return true;
        }
        int f = FixedMtrrIndex(msr);
        if (f >= 0)
        {
            _mtrrFixed[f] = value;
            return true;
        }
        return _exits.MsrWrite(msr, value);
    }

    private bool MsrInstruction(in Instruction i)
    {
        switch (i.Mnemonic)
        {
            case Mnemonic.Rdmsr: Rdmsr(); return true;
            case Mnemonic.Wrmsr: Wrmsr(); return true;
            default: return LongModeInstruction(i);
        }
    }
}
