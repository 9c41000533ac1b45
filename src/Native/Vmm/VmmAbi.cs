// The FreeBSD vmm(4) amd64 user ABI as ActorVmm uses it: ioctl requests on /dev/vmm/NAME (group 'v') and
// /dev/vmmctl (group 'V', 15.x), the argument structures with their amd64 layouts, and the enumerations.
// Source: /work/shared/reference/freebsd-vmm-abi.md (sections b.2-b.5), itself read from FreeBSD's
// sys/amd64/include/vmm.h and vmm_dev.h, sys/dev/vmm/vmm_dev.h and vmm_mem.h. Layouts are checked field by field
// in tests/Native/Vmm/VmmAbiLayoutTests.cs. The only request numbers that differ between 14.x and 15.x are
// VM_ALLOC_MEMSEG/VM_GET_MEMSEG (32-byte vs 56-byte vm_memseg); memseg ids for non-system memory differ too.
// Bit-fields (vm_inout, vie) are read from their containing bytes; see VmExit.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Vmm;

/// <summary>Which vmm(4) ABI generation a kernel speaks.</summary>
public enum VmmGeneration
{
    /// <summary>FreeBSD 14.x: VMs created with sysctl hw.vmm.create, 32-byte vm_memseg.</summary>
    FreeBsd14,
    /// <summary>FreeBSD 15.x: /dev/vmmctl, 56-byte vm_memseg with NUMA fields.</summary>
    FreeBsd15,
}

public static class VmmIoctls
{
    private const char G = 'v';

    public static readonly IoctlRequest VM_RUN = Ioc.BsdIow(nameof(VM_RUN), G, 1, VmRunArg.Size);
    public static readonly IoctlRequest VM_SET_CAPABILITY = Ioc.BsdIow(nameof(VM_SET_CAPABILITY), G, 2, VmCapability.Size);
    public static readonly IoctlRequest VM_GET_CAPABILITY = Ioc.BsdIowr(nameof(VM_GET_CAPABILITY), G, 3, VmCapability.Size);
    public static readonly IoctlRequest VM_SUSPEND = Ioc.BsdIow(nameof(VM_SUSPEND), G, 4, 4);
    public static readonly IoctlRequest VM_REINIT = Ioc.BsdIo(nameof(VM_REINIT), G, 5);
    public static readonly IoctlRequest VM_GLA2GPA = Ioc.BsdIowr(nameof(VM_GLA2GPA), G, 13, VmGla2Gpa.Size);
    public static readonly IoctlRequest VM_ALLOC_MEMSEG_14 = Ioc.BsdIow("VM_ALLOC_MEMSEG", G, 14, VmMemseg14.Size);
    public static readonly IoctlRequest VM_GET_MEMSEG_14 = Ioc.BsdIowr("VM_GET_MEMSEG", G, 15, VmMemseg14.Size);
    public static readonly IoctlRequest VM_ALLOC_MEMSEG_15 = Ioc.BsdIow("VM_ALLOC_MEMSEG", G, 14, VmMemseg15.Size);
    public static readonly IoctlRequest VM_GET_MEMSEG_15 = Ioc.BsdIowr("VM_GET_MEMSEG", G, 15, VmMemseg15.Size);
    public static readonly IoctlRequest VM_MMAP_MEMSEG = Ioc.BsdIow(nameof(VM_MMAP_MEMSEG), G, 16, VmMemmap.Size);
    public static readonly IoctlRequest VM_MMAP_GETNEXT = Ioc.BsdIowr(nameof(VM_MMAP_GETNEXT), G, 17, VmMemmap.Size);
    public static readonly IoctlRequest VM_GLA2GPA_NOFAULT = Ioc.BsdIowr(nameof(VM_GLA2GPA_NOFAULT), G, 18, VmGla2Gpa.Size);
    public static readonly IoctlRequest VM_MUNMAP_MEMSEG = Ioc.BsdIow(nameof(VM_MUNMAP_MEMSEG), G, 19, VmMunmap.Size);
    public static readonly IoctlRequest VM_SET_REGISTER = Ioc.BsdIow(nameof(VM_SET_REGISTER), G, 20, VmRegister.Size);
    public static readonly IoctlRequest VM_GET_REGISTER = Ioc.BsdIowr(nameof(VM_GET_REGISTER), G, 21, VmRegister.Size);
    public static readonly IoctlRequest VM_SET_SEGMENT_DESCRIPTOR = Ioc.BsdIow(nameof(VM_SET_SEGMENT_DESCRIPTOR), G, 22, VmSegDesc.Size);
    public static readonly IoctlRequest VM_GET_SEGMENT_DESCRIPTOR = Ioc.BsdIowr(nameof(VM_GET_SEGMENT_DESCRIPTOR), G, 23, VmSegDesc.Size);
    public static readonly IoctlRequest VM_SET_REGISTER_SET = Ioc.BsdIow(nameof(VM_SET_REGISTER_SET), G, 24, VmRegisterSet.Size);
    public static readonly IoctlRequest VM_GET_REGISTER_SET = Ioc.BsdIowr(nameof(VM_GET_REGISTER_SET), G, 25, VmRegisterSet.Size);
    public static readonly IoctlRequest VM_GET_KERNEMU_DEV = Ioc.BsdIowr(nameof(VM_GET_KERNEMU_DEV), G, 26, VmKernemuDevice.Size);
    public static readonly IoctlRequest VM_SET_KERNEMU_DEV = Ioc.BsdIow(nameof(VM_SET_KERNEMU_DEV), G, 27, VmKernemuDevice.Size);
    public static readonly IoctlRequest VM_GET_INTINFO = Ioc.BsdIowr(nameof(VM_GET_INTINFO), G, 28, VmIntinfo.Size);
    public static readonly IoctlRequest VM_SET_INTINFO = Ioc.BsdIow(nameof(VM_SET_INTINFO), G, 29, VmIntinfo.Size);
    public static readonly IoctlRequest VM_INJECT_EXCEPTION = Ioc.BsdIow(nameof(VM_INJECT_EXCEPTION), G, 30, VmException.Size);
    public static readonly IoctlRequest VM_LAPIC_IRQ = Ioc.BsdIow(nameof(VM_LAPIC_IRQ), G, 31, VmLapicIrq.Size);
    public static readonly IoctlRequest VM_INJECT_NMI = Ioc.BsdIow(nameof(VM_INJECT_NMI), G, 32, 4);
    public static readonly IoctlRequest VM_IOAPIC_ASSERT_IRQ = Ioc.BsdIow(nameof(VM_IOAPIC_ASSERT_IRQ), G, 33, 4);
    public static readonly IoctlRequest VM_IOAPIC_DEASSERT_IRQ = Ioc.BsdIow(nameof(VM_IOAPIC_DEASSERT_IRQ), G, 34, 4);
    public static readonly IoctlRequest VM_IOAPIC_PULSE_IRQ = Ioc.BsdIow(nameof(VM_IOAPIC_PULSE_IRQ), G, 35, 4);
    public static readonly IoctlRequest VM_LAPIC_MSI = Ioc.BsdIow(nameof(VM_LAPIC_MSI), G, 36, VmLapicMsi.Size);
    public static readonly IoctlRequest VM_LAPIC_LOCAL_IRQ = Ioc.BsdIow(nameof(VM_LAPIC_LOCAL_IRQ), G, 37, VmLapicIrq.Size);
    public static readonly IoctlRequest VM_IOAPIC_PINCOUNT = Ioc.BsdIor(nameof(VM_IOAPIC_PINCOUNT), G, 38, 4);
    public static readonly IoctlRequest VM_RESTART_INSTRUCTION = Ioc.BsdIow(nameof(VM_RESTART_INSTRUCTION), G, 39, 4);
    public static readonly IoctlRequest VM_SET_X2APIC_STATE = Ioc.BsdIow(nameof(VM_SET_X2APIC_STATE), G, 60, VmX2apic.Size);
    public static readonly IoctlRequest VM_GET_X2APIC_STATE = Ioc.BsdIowr(nameof(VM_GET_X2APIC_STATE), G, 61, VmX2apic.Size);
    public static readonly IoctlRequest VM_GET_HPET_CAPABILITIES = Ioc.BsdIor(nameof(VM_GET_HPET_CAPABILITIES), G, 62, 4);
    public static readonly IoctlRequest VM_SET_TOPOLOGY = Ioc.BsdIow(nameof(VM_SET_TOPOLOGY), G, 63, VmCpuTopology.Size);
    public static readonly IoctlRequest VM_GET_TOPOLOGY = Ioc.BsdIor(nameof(VM_GET_TOPOLOGY), G, 64, VmCpuTopology.Size);
    public static readonly IoctlRequest VM_ISA_ASSERT_IRQ = Ioc.BsdIow(nameof(VM_ISA_ASSERT_IRQ), G, 80, VmIsaIrq.Size);
    public static readonly IoctlRequest VM_ISA_DEASSERT_IRQ = Ioc.BsdIow(nameof(VM_ISA_DEASSERT_IRQ), G, 81, VmIsaIrq.Size);
    public static readonly IoctlRequest VM_ISA_PULSE_IRQ = Ioc.BsdIow(nameof(VM_ISA_PULSE_IRQ), G, 82, VmIsaIrq.Size);
    public static readonly IoctlRequest VM_ISA_SET_IRQ_TRIGGER = Ioc.BsdIow(nameof(VM_ISA_SET_IRQ_TRIGGER), G, 83, VmIsaIrq.Size);
    public static readonly IoctlRequest VM_ACTIVATE_CPU = Ioc.BsdIow(nameof(VM_ACTIVATE_CPU), G, 90, 4);
    public static readonly IoctlRequest VM_GET_CPUS = Ioc.BsdIow(nameof(VM_GET_CPUS), G, 91, VmCpuset.Size);
    public static readonly IoctlRequest VM_SUSPEND_CPU = Ioc.BsdIow(nameof(VM_SUSPEND_CPU), G, 92, 4);
    public static readonly IoctlRequest VM_RESUME_CPU = Ioc.BsdIow(nameof(VM_RESUME_CPU), G, 93, 4);
    public static readonly IoctlRequest VM_RTC_READ = Ioc.BsdIowr(nameof(VM_RTC_READ), G, 100, VmRtcData.Size);
    public static readonly IoctlRequest VM_RTC_WRITE = Ioc.BsdIow(nameof(VM_RTC_WRITE), G, 101, VmRtcData.Size);
    public static readonly IoctlRequest VM_RTC_SETTIME = Ioc.BsdIow(nameof(VM_RTC_SETTIME), G, 102, 8);
    public static readonly IoctlRequest VM_RTC_GETTIME = Ioc.BsdIor(nameof(VM_RTC_GETTIME), G, 103, 8);

    /// <summary>The seed project's kernel extension (GSoC 2025 fork; not upstream): set the VM_OP_F_* flags.</summary>
    public static readonly IoctlRequest VM_SET_FLAGS = Ioc.BsdIow(nameof(VM_SET_FLAGS), G, 121, 4);

    /// <summary>The seed project's kernel extension: read the VM_OP_F_* flags. ENOTTY on a stock kernel.</summary>
    public static readonly IoctlRequest VM_GET_FLAGS = Ioc.BsdIor(nameof(VM_GET_FLAGS), G, 122, 4);

    public static readonly IoctlRequest VMMCTL_VM_CREATE = Ioc.BsdIowr(nameof(VMMCTL_VM_CREATE), 'V', 0, VmmctlVm.Size);
    public static readonly IoctlRequest VMMCTL_VM_DESTROY = Ioc.BsdIowr(nameof(VMMCTL_VM_DESTROY), 'V', 1, VmmctlVm.Size);

    public static IoctlRequest AllocMemseg(VmmGeneration g) => g == VmmGeneration.FreeBsd14 ? VM_ALLOC_MEMSEG_14 : VM_ALLOC_MEMSEG_15;

    public static IoctlRequest GetMemseg(VmmGeneration g) => g == VmmGeneration.FreeBsd14 ? VM_GET_MEMSEG_14 : VM_GET_MEMSEG_15;

    /// <summary>Every request this binding defines, for the layout tests.</summary>
    public static IReadOnlyList<IoctlRequest> All { get; } = typeof(VmmIoctls).GetFields()
        .Where(f => f.FieldType == typeof(IoctlRequest)).Select(f => (IoctlRequest)f.GetValue(null)!).ToArray();
}

public static class VmmConstants
{
    /// <summary>VM_MAX_NAMELEN: SPECNAMELEN 255 less the /dev/vmm prefix and devmem suffix room.</summary>
    public const int MaxNameLength = 229;
    public const int MaxSuffixLength = 15;

    /// <summary>Userland cpuset_t: CPU_SETSIZE 1024 bits.</summary>
    public const int CpusetBytes = 128;

    public const int SysmemSegment = 0;

    /// <summary>VM_OP_F_QEMU (seed fork): the kernel hands PIC/PIT/RTC/PM-timer ports and the HPET window to userspace.</summary>
    public const int FlagQemu = 1;

    public const uint DefaultApicBase = 0xfee0_0000;
    public const uint IoApicBase = 0xfec0_0000;
    public const uint HpetBase = 0xfed0_0000;

    /// <summary>vmm's in-kernel ACPI PM timer port (IO_PMTMR).</summary>
    public const ushort PmTimerPort = 0x408;

    public const int IoApicPins = 32;
}

public enum VmExitCode
{
    InOut = 0, Vmx = 1, Bogus = 2, RdMsr = 3, WrMsr = 4, Hlt = 5, Mtrap = 6, Pause = 7, Paging = 8, InstEmul = 9,
    SpinupAp = 10, Deprecated1 = 11, Rendezvous = 12, IoApicEoi = 13, Suspended = 14, InOutStr = 15, TaskSwitch = 16,
    Monitor = 17, Mwait = 18, Svm = 19, ReqIdle = 20, Debug = 21, VmInsn = 22, Bpt = 23, Ipi = 24, Db = 25, Max = 26,
}

public enum VmRegName
{
    Rax, Rbx, Rcx, Rdx, Rsi, Rdi, Rbp, R8, R9, R10, R11, R12, R13, R14, R15,
    Cr0 = 15, Cr3, Cr4, Dr7, Rsp, Rip, Rflags, Es, Cs, Ss, Ds, Fs, Gs, Ldtr, Tr, Idtr, Gdtr, Efer, Cr2,
    Pdpte0, Pdpte1, Pdpte2, Pdpte3, IntrShadow, Dr0, Dr1, Dr2, Dr3, Dr6, EntryInstLength,
    FsBase, GsBase, KgsBase, Tpr, Last,
}

public enum VmCapType
{
    HaltExit = 0, MtrapExit = 1, PauseExit = 2, UnrestrictedGuest = 3, EnableInvpcid = 4, BptExit = 5, Rdpid = 6,
    Rdtscp = 7, IpiExit = 8, MaskHwintr = 9, RflagsTf = 10,
}

public enum VmSuspendHow
{
    None = 0, Reset = 1, PowerOff = 2, Halt = 3, TripleFault = 4,
    /// <summary>15.x only: the VM is being destroyed while vCPUs run.</summary>
    Destroy = 5,
}

public enum VmCpuMode { Real = 0, Protected = 1, Compatibility = 2, Long64 = 3 }

public enum VmPagingMode { Flat = 0, Paging32 = 1, Pae = 2, Paging64 = 3, Paging64La57 = 4 }

/// <summary>struct seg_desc: base, limit, VMX access rights (unusable = bit 16).</summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct SegDesc
{
    public const int Size = 16;
    public const uint Unusable = 0x10000;
    [FieldOffset(0)] public ulong Base;
    [FieldOffset(8)] public uint Limit;
    [FieldOffset(12)] public uint Access;
}

/// <summary>struct vm_guest_paging.</summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmGuestPaging
{
    public const int Size = 24;
    [FieldOffset(0)] public ulong Cr3;
    [FieldOffset(8)] public int Cpl;
    [FieldOffset(12)] public VmCpuMode CpuMode;
    [FieldOffset(16)] public VmPagingMode PagingMode;
}

/// <summary>struct vm_run (14.x and 15.x): pointers to the exit and the IPI destination set.</summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public unsafe struct VmRunArg
{
    public const int Size = 32;
    [FieldOffset(0)] public int CpuId;
    [FieldOffset(8)] public void* Cpuset;
    [FieldOffset(16)] public ulong CpusetSize;
    [FieldOffset(24)] public VmExit* Exit;
}

/// <summary>
/// struct vm_exit (136 bytes): exitcode, inst_length, rip, and a 120-byte union at 16 read through the typed
/// accessors below (absolute offsets, reference b.3.1).
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public unsafe struct VmExit
{
    public const int Size = 136;
    public const int UnionOffset = 16;
    [FieldOffset(0)] public VmExitCode ExitCode;
    [FieldOffset(4)] public int InstLength;
    [FieldOffset(8)] public ulong Rip;
    [FieldOffset(16)] public fixed byte U[120];

    private readonly T At<T>(int absolute) where T : unmanaged
    {
        fixed (byte* p = U) return Unsafe.ReadUnaligned<T>(p + absolute - UnionOffset);
    }

    private void Put<T>(int absolute, T value) where T : unmanaged
    {
        fixed (byte* p = U) Unsafe.WriteUnaligned(p + absolute - UnionOffset, value);
    }

    // INOUT / INOUT_STR: u.inout bit-field word at 16 (bytes bits 0-2, in bit 3, string bit 4, rep bit 5), port 18, eax 20.
    public readonly int InOutBytes => At<ushort>(16) & 7;
    public readonly bool InOutIn => (At<ushort>(16) & 8) != 0;
    public readonly bool InOutString => (At<ushort>(16) & 0x10) != 0;
    public readonly bool InOutRep => (At<ushort>(16) & 0x20) != 0;
    public readonly ushort InOutPort => At<ushort>(18);
    public readonly uint InOutEax => At<uint>(20);

    public void SetInOut(int bytes, bool @in, bool @string, bool rep, ushort port, uint eax)
    {
        Put(16, (ushort)((bytes & 7) | (@in ? 8 : 0) | (@string ? 0x10 : 0) | (rep ? 0x20 : 0)));
        Put(18, port);
        Put(20, eax);
    }

    // INOUT_STR: paging at 24, rflags 48, cr0 56, index 64, count 72, addrsize 80, seg_name 84, seg_desc 88.
    public VmGuestPaging StrPaging { readonly get => At<VmGuestPaging>(24); set => Put(24, value); }
    public ulong StrRflags { readonly get => At<ulong>(48); set => Put(48, value); }
    public ulong StrCr0 { readonly get => At<ulong>(56); set => Put(56, value); }
    public ulong StrIndex { readonly get => At<ulong>(64); set => Put(64, value); }
    public ulong StrCount { readonly get => At<ulong>(72); set => Put(72, value); }
    public int StrAddrSize { readonly get => At<int>(80); set => Put(80, value); }
    public VmRegName StrSegName { readonly get => At<VmRegName>(84); set => Put(84, value); }
    public SegDesc StrSegDesc { readonly get => At<SegDesc>(88); set => Put(88, value); }

    // RDMSR/WRMSR: code at 16, wval at 24.
    public uint MsrCode { readonly get => At<uint>(16); set => Put(16, value); }
    public ulong MsrValue { readonly get => At<ulong>(24); set => Put(24, value); }

    // INST_EMUL: gpa 16, gla 24, cs_base 32, cs_d 40, paging 48, vie 72..135.
    public ulong EmulGpa { readonly get => At<ulong>(16); set => Put(16, value); }
    public ulong EmulGla { readonly get => At<ulong>(24); set => Put(24, value); }
    public ulong EmulCsBase { readonly get => At<ulong>(32); set => Put(32, value); }
    public int EmulCsD { readonly get => At<int>(40); set => Put(40, value); }
    public VmGuestPaging EmulPaging { readonly get => At<VmGuestPaging>(48); set => Put(48, value); }

    /// <summary>vie.inst (15 bytes at 72), vie.num_valid (87), vie.num_processed (88), vie.decoded (128).</summary>
    public readonly ReadOnlySpan<byte> VieInstruction
    {
        get
        {
            int n = Math.Min((int)At<byte>(87), 15);
            var copy = new byte[n];
            fixed (byte* p = U) new ReadOnlySpan<byte>(p + 72 - UnionOffset, n).CopyTo(copy);
            return copy;
        }
    }

    public byte VieNumValid { readonly get => At<byte>(87); set => Put(87, value); }
    public byte VieNumProcessed { readonly get => At<byte>(88); set => Put(88, value); }
    public bool VieDecoded { readonly get => At<byte>(128) != 0; set => Put(128, (byte)(value ? 1 : 0)); }
    public byte VieOpByte { readonly get => At<byte>(130); set => Put(130, value); }

    public void SetVieInstruction(ReadOnlySpan<byte> bytes)
    {
        int n = Math.Min(bytes.Length, 15);
        fixed (byte* p = U) bytes[..n].CopyTo(new Span<byte>(p + 72 - UnionOffset, 15));
        Put(87, (byte)n);
    }

    // HLT: rflags 16, intr_status 24.
    public ulong HltRflags { readonly get => At<ulong>(16); set => Put(16, value); }

    // SPINUP_AP: vcpu 16, rip 24. SUSPENDED: how 16. IPI: mode 16, vector 20. VMX: status 16, exit_reason 20, qualification 24, inst_error 36.
    public int SpinupVcpu { readonly get => At<int>(16); set => Put(16, value); }
    public ulong SpinupRip { readonly get => At<ulong>(24); set => Put(24, value); }
    public VmSuspendHow SuspendHow { readonly get => At<VmSuspendHow>(16); set => Put(16, value); }
    public uint IpiMode { readonly get => At<uint>(16); set => Put(16, value); }
    public byte IpiVector { readonly get => At<byte>(20); set => Put(20, value); }
    public int VmxStatus { readonly get => At<int>(16); set => Put(16, value); }
    public uint VmxExitReason { readonly get => At<uint>(20); set => Put(20, value); }
    public ulong VmxQualification { readonly get => At<ulong>(24); set => Put(24, value); }
    public int VmxInstError { readonly get => At<int>(36); set => Put(36, value); }
    public ulong SvmExitCode { readonly get => At<ulong>(16); set => Put(16, value); }
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmRegister
{
    public const int Size = 16;
    [FieldOffset(0)] public int CpuId;
    [FieldOffset(4)] public VmRegName RegNum;
    [FieldOffset(8)] public ulong RegVal;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmSegDesc
{
    public const int Size = 24;
    [FieldOffset(0)] public int CpuId;
    [FieldOffset(4)] public VmRegName RegNum;
    [FieldOffset(8)] public SegDesc Desc;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public unsafe struct VmRegisterSet
{
    public const int Size = 24;
    [FieldOffset(0)] public int CpuId;
    [FieldOffset(4)] public int Count;
    [FieldOffset(8)] public int* RegNums;
    [FieldOffset(16)] public ulong* RegVals;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmCapability
{
    public const int Size = 16;
    [FieldOffset(0)] public int CpuId;
    [FieldOffset(4)] public VmCapType CapType;
    [FieldOffset(8)] public int CapVal;
    [FieldOffset(12)] public int AllCpus;
}

/// <summary>struct vm_memseg, 14.x layout.</summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public unsafe struct VmMemseg14
{
    public const int Size = 32;
    [FieldOffset(0)] public int SegId;
    [FieldOffset(8)] public ulong Len;
    [FieldOffset(16)] public fixed byte Name[16];
}

/// <summary>struct vm_memseg, 15.x layout (NUMA domain set fields; all zero = no policy).</summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public unsafe struct VmMemseg15
{
    public const int Size = 56;
    [FieldOffset(0)] public int SegId;
    [FieldOffset(8)] public ulong Len;
    [FieldOffset(16)] public fixed byte Name[16];
    [FieldOffset(32)] public void* DsMask;
    [FieldOffset(40)] public ulong DsMaskSize;
    [FieldOffset(48)] public int DsPolicy;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmMemmap
{
    public const int Size = 40;
    [FieldOffset(0)] public ulong Gpa;
    [FieldOffset(8)] public int SegId;
    [FieldOffset(16)] public ulong SegOff;
    [FieldOffset(24)] public ulong Len;
    [FieldOffset(32)] public int Prot;
    [FieldOffset(36)] public int Flags;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmMunmap
{
    public const int Size = 16;
    [FieldOffset(0)] public ulong Gpa;
    [FieldOffset(8)] public ulong Len;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmException
{
    public const int Size = 20;
    [FieldOffset(0)] public int CpuId;
    [FieldOffset(4)] public int Vector;
    [FieldOffset(8)] public uint ErrorCode;
    [FieldOffset(12)] public int ErrorCodeValid;
    [FieldOffset(16)] public int RestartInstruction;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmLapicMsi
{
    public const int Size = 16;
    [FieldOffset(0)] public ulong Msg;
    [FieldOffset(8)] public ulong Addr;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmLapicIrq
{
    public const int Size = 8;
    [FieldOffset(0)] public int CpuId;
    [FieldOffset(4)] public int Vector;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmIsaIrq
{
    public const int Size = 8;
    [FieldOffset(0)] public int AtpicIrq;
    /// <summary>The IOAPIC pin, or -1 for none.</summary>
    [FieldOffset(4)] public int IoApicIrq;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmX2apic
{
    public const int Size = 8;
    [FieldOffset(0)] public int CpuId;
    [FieldOffset(4)] public int State;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmGla2Gpa
{
    public const int Size = 56;
    [FieldOffset(0)] public int VcpuId;
    [FieldOffset(4)] public int Prot;
    [FieldOffset(8)] public ulong Gla;
    [FieldOffset(16)] public VmGuestPaging Paging;
    [FieldOffset(40)] public int Fault;
    [FieldOffset(48)] public ulong Gpa;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmCpuTopology
{
    public const int Size = 8;
    [FieldOffset(0)] public ushort Sockets;
    [FieldOffset(2)] public ushort Cores;
    [FieldOffset(4)] public ushort Threads;
    [FieldOffset(6)] public ushort MaxCpus;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public unsafe struct VmCpuset
{
    public const int Size = 16;
    [FieldOffset(0)] public int Which;
    [FieldOffset(4)] public int CpusetSize;
    [FieldOffset(8)] public void* Cpus;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmIntinfo
{
    public const int Size = 24;
    [FieldOffset(0)] public int VcpuId;
    [FieldOffset(8)] public ulong Info1;
    [FieldOffset(16)] public ulong Info2;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmRtcData
{
    public const int Size = 8;
    [FieldOffset(0)] public int Offset;
    [FieldOffset(4)] public byte Value;
}

[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct VmKernemuDevice
{
    public const int Size = 24;
    [FieldOffset(0)] public int VcpuId;
    /// <summary>Low 3 bits: access_width (log2 of the size).</summary>
    [FieldOffset(4)] public uint AccessWidth;
    [FieldOffset(8)] public ulong Gpa;
    [FieldOffset(16)] public ulong Value;
}

/// <summary>struct vmmctl_vm_create / vmmctl_vm_destroy (15.x): name[230], reserved int32[16] at 232 (must be zero).</summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public unsafe struct VmmctlVm
{
    public const int Size = 296;
    public const int NameBytes = VmmConstants.MaxNameLength + 1;
    public const int ReservedOffset = 232;
    [FieldOffset(0)] public fixed byte Name[NameBytes];
    [FieldOffset(ReservedOffset)] public fixed int Reserved[16];
}
