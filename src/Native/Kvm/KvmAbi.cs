// The Linux KVM x86-64 user ABI as ActorVmm uses it (linux/kvm.h, asm/kvm.h): ioctl requests on /dev/kvm, a VM
// fd and a vCPU fd, the argument structures with their x86-64 layouts, the kvm_run page, and the capability and
// exit-reason numbers. Field names are the C names in PascalCase; tests/Native/Kvm/KvmAbiLayoutTests.cs compiles
// a C program against the system's linux/kvm.h with gcc and checks every size, offset and request number here.
using System.Runtime.InteropServices;
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Kvm;

public static class KvmIoctls
{
    private const int T = 0xAE; // KVMIO

    public static readonly IoctlRequest KVM_GET_API_VERSION = Ioc.LinuxIo(nameof(KVM_GET_API_VERSION), T, 0x00);
    public static readonly IoctlRequest KVM_CREATE_VM = Ioc.LinuxIo(nameof(KVM_CREATE_VM), T, 0x01);
    public static readonly IoctlRequest KVM_CHECK_EXTENSION = Ioc.LinuxIo(nameof(KVM_CHECK_EXTENSION), T, 0x03);
    public static readonly IoctlRequest KVM_GET_VCPU_MMAP_SIZE = Ioc.LinuxIo(nameof(KVM_GET_VCPU_MMAP_SIZE), T, 0x04);
    public static readonly IoctlRequest KVM_GET_SUPPORTED_CPUID = Ioc.LinuxIowr(nameof(KVM_GET_SUPPORTED_CPUID), T, 0x05, KvmCpuid2.HeaderSize);
    public static readonly IoctlRequest KVM_CREATE_VCPU = Ioc.LinuxIo(nameof(KVM_CREATE_VCPU), T, 0x41);
    public static readonly IoctlRequest KVM_SET_USER_MEMORY_REGION = Ioc.LinuxIow(nameof(KVM_SET_USER_MEMORY_REGION), T, 0x46, KvmUserspaceMemoryRegion.Size);
    public static readonly IoctlRequest KVM_SET_TSS_ADDR = Ioc.LinuxIo(nameof(KVM_SET_TSS_ADDR), T, 0x47);
    public static readonly IoctlRequest KVM_SET_IDENTITY_MAP_ADDR = Ioc.LinuxIow(nameof(KVM_SET_IDENTITY_MAP_ADDR), T, 0x48, 8);
    public static readonly IoctlRequest KVM_CREATE_IRQCHIP = Ioc.LinuxIo(nameof(KVM_CREATE_IRQCHIP), T, 0x60);
    public static readonly IoctlRequest KVM_IRQ_LINE = Ioc.LinuxIow(nameof(KVM_IRQ_LINE), T, 0x61, KvmIrqLevel.Size);
    public static readonly IoctlRequest KVM_CREATE_PIT2 = Ioc.LinuxIow(nameof(KVM_CREATE_PIT2), T, 0x77, KvmPitConfig.Size);
    public static readonly IoctlRequest KVM_SET_GSI_ROUTING = Ioc.LinuxIow(nameof(KVM_SET_GSI_ROUTING), T, 0x6a, KvmIrqRouting.HeaderSize);
    public static readonly IoctlRequest KVM_RUN = Ioc.LinuxIo(nameof(KVM_RUN), T, 0x80);
    public static readonly IoctlRequest KVM_GET_REGS = Ioc.LinuxIor(nameof(KVM_GET_REGS), T, 0x81, KvmRegs.Size);
    public static readonly IoctlRequest KVM_SET_REGS = Ioc.LinuxIow(nameof(KVM_SET_REGS), T, 0x82, KvmRegs.Size);
    public static readonly IoctlRequest KVM_GET_SREGS = Ioc.LinuxIor(nameof(KVM_GET_SREGS), T, 0x83, KvmSregs.Size);
    public static readonly IoctlRequest KVM_SET_SREGS = Ioc.LinuxIow(nameof(KVM_SET_SREGS), T, 0x84, KvmSregs.Size);
    public static readonly IoctlRequest KVM_INTERRUPT = Ioc.LinuxIow(nameof(KVM_INTERRUPT), T, 0x86, KvmInterrupt.Size);
    public static readonly IoctlRequest KVM_GET_MSRS = Ioc.LinuxIowr(nameof(KVM_GET_MSRS), T, 0x88, KvmMsrs.HeaderSize);
    public static readonly IoctlRequest KVM_SET_MSRS = Ioc.LinuxIow(nameof(KVM_SET_MSRS), T, 0x89, KvmMsrs.HeaderSize);
    public static readonly IoctlRequest KVM_SET_CPUID2 = Ioc.LinuxIow(nameof(KVM_SET_CPUID2), T, 0x90, KvmCpuid2.HeaderSize);
    public static readonly IoctlRequest KVM_NMI = Ioc.LinuxIo(nameof(KVM_NMI), T, 0x9a);
    public static readonly IoctlRequest KVM_ENABLE_CAP = Ioc.LinuxIow(nameof(KVM_ENABLE_CAP), T, 0xa3, KvmEnableCap.Size);
    public static readonly IoctlRequest KVM_SIGNAL_MSI = Ioc.LinuxIow(nameof(KVM_SIGNAL_MSI), T, 0xa5, KvmMsi.Size);

    public static IReadOnlyList<IoctlRequest> All { get; } = typeof(KvmIoctls).GetFields()
        .Where(f => f.FieldType == typeof(IoctlRequest)).Select(f => (IoctlRequest)f.GetValue(null)!).ToArray();
}

/// <summary>KVM_CAP_* numbers for KVM_CHECK_EXTENSION / KVM_ENABLE_CAP.</summary>
public static class KvmCaps
{
    public const int KVM_CAP_IRQCHIP = 0, KVM_CAP_HLT = 1, KVM_CAP_USER_MEMORY = 3, KVM_CAP_SET_TSS_ADDR = 4, KVM_CAP_EXT_CPUID = 7,
        KVM_CAP_IRQ_ROUTING = 25, KVM_CAP_PIT2 = 33, KVM_CAP_SIGNAL_MSI = 77, KVM_CAP_SPLIT_IRQCHIP = 121, KVM_CAP_IMMEDIATE_EXIT = 136;

    /// <summary>The API version every KVM since 2.6.22 reports.</summary>
    public const int ApiVersion = 12;
}

public enum KvmExitReason : uint
{
    Unknown = 0, Exception = 1, Io = 2, Hypercall = 3, Debug = 4, Hlt = 5, Mmio = 6, IrqWindowOpen = 7, Shutdown = 8,
    FailEntry = 9, Intr = 10, SetTpr = 11, TprAccess = 12, InternalError = 17, SystemEvent = 24, IoapicEoi = 26,
}

/// <summary>struct kvm_regs.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmRegs
{
    public const int Size = 144;
    public ulong Rax, Rbx, Rcx, Rdx, Rsi, Rdi, Rsp, Rbp, R8, R9, R10, R11, R12, R13, R14, R15, Rip, Rflags;
}

/// <summary>struct kvm_segment.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmSegment
{
    public const int Size = 24;
    public ulong Base;
    public uint Limit;
    public ushort Selector;
    public byte Type, Present, Dpl, Db, S, L, G, Avl, Unusable, Padding;
}

/// <summary>struct kvm_dtable.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmDtable
{
    public const int Size = 16;
    public ulong Base;
    public ushort Limit;
    public fixed ushort Padding[3];
}

/// <summary>struct kvm_sregs.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmSregs
{
    public const int Size = 312;
    public KvmSegment Cs, Ds, Es, Fs, Gs, Ss, Tr, Ldt;
    public KvmDtable Gdt, Idt;
    public ulong Cr0, Cr2, Cr3, Cr4, Cr8, Efer, ApicBase;
    public fixed ulong InterruptBitmap[4];
}

[StructLayout(LayoutKind.Sequential)]
public struct KvmUserspaceMemoryRegion
{
    public const int Size = 32;
    public uint Slot, Flags;
    public ulong GuestPhysAddr, MemorySize, UserspaceAddr;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmCpuidEntry2
{
    public const int Size = 40;
    public uint Function, Index, Flags, Eax, Ebx, Ecx, Edx;
    public fixed uint Padding[3];
}

/// <summary>struct kvm_cpuid2 header (nent, padding), followed by nent kvm_cpuid_entry2.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmCpuid2
{
    public const int HeaderSize = 8;
    public uint Nent, Padding;
}

[StructLayout(LayoutKind.Sequential)]
public struct KvmMsrEntry
{
    public const int Size = 16;
    public uint Index, Reserved;
    public ulong Data;
}

/// <summary>struct kvm_msrs header (nmsrs, pad), followed by nmsrs kvm_msr_entry.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmMsrs
{
    public const int HeaderSize = 8;
    public uint Nmsrs, Pad;
}

[StructLayout(LayoutKind.Sequential)]
public struct KvmIrqLevel
{
    public const int Size = 8;
    public uint Irq, Level;
}

/// <summary>struct kvm_irq_routing: its header; nr entries of <see cref="KvmIrqRoutingEntry"/> follow.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmIrqRouting
{
    public const int HeaderSize = 8;
    public uint Nr, Flags;
}

/// <summary>struct kvm_irq_routing_entry; for type KVM_IRQ_ROUTING_IRQCHIP the union starts with irqchip (u32) and pin (u32).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmIrqRoutingEntry
{
    public const int Size = 48;
    public const uint TypeIrqchip = 1, IrqchipPicMaster = 0, IrqchipPicSlave = 1, IrqchipIoapic = 2;
    public uint Gsi, Type, Flags, Pad;
    public fixed uint U[8];
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmMsi
{
    public const int Size = 32;
    public uint AddressLo, AddressHi, Data, Flags, Devid;
    public fixed byte Pad[12];
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmEnableCap
{
    public const int Size = 104;
    public uint Cap, Flags;
    public fixed ulong Args[4];
    public fixed byte Pad[64];
}

[StructLayout(LayoutKind.Sequential)]
public struct KvmInterrupt
{
    public const int Size = 4;
    public uint Irq;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmPitConfig
{
    public const int Size = 64;
    public uint Flags;
    public fixed uint Pad[15];
}

/// <summary>
/// The head of struct kvm_run (the vCPU's mmapped page) and the exit payloads ActorVmm reads, at their offsets in
/// the union at 32. The page is larger (KVM_GET_VCPU_MMAP_SIZE); PIO data lives at io.data_offset inside it.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 48)]
public unsafe struct KvmRun
{
    [FieldOffset(0)] public byte RequestInterruptWindow;
    [FieldOffset(1)] public byte ImmediateExit;
    [FieldOffset(8)] public KvmExitReason ExitReason;
    [FieldOffset(12)] public byte ReadyForInterruptInjection;
    [FieldOffset(13)] public byte IfFlag;
    [FieldOffset(14)] public ushort Flags;
    [FieldOffset(16)] public ulong Cr8;
    [FieldOffset(24)] public ulong ApicBase;
    // io (KVM_EXIT_IO)
    [FieldOffset(32)] public byte IoDirection;
    [FieldOffset(33)] public byte IoSize;
    [FieldOffset(34)] public ushort IoPort;
    [FieldOffset(36)] public uint IoCount;
    [FieldOffset(40)] public ulong IoDataOffset;
    // mmio (KVM_EXIT_MMIO)
    [FieldOffset(32)] public ulong MmioPhysAddr;
    [FieldOffset(40)] public fixed byte MmioData[8];
    // fail_entry (KVM_EXIT_FAIL_ENTRY)
    [FieldOffset(32)] public ulong FailEntryHardwareEntryFailureReason;
    // internal (KVM_EXIT_INTERNAL_ERROR)
    [FieldOffset(32)] public uint InternalSuberror;
    [FieldOffset(36)] public uint InternalNdata;
    // ex (KVM_EXIT_EXCEPTION)
    [FieldOffset(32)] public uint ExException;
    [FieldOffset(36)] public uint ExErrorCode;
    // system_event (KVM_EXIT_SYSTEM_EVENT)
    [FieldOffset(32)] public uint SystemEventType;
    // eoi (KVM_EXIT_IOAPIC_EOI, split irqchip)
    [FieldOffset(32)] public byte EoiVector;

    /// <summary>mmio.len (u32 at 48) and mmio.is_write (u8 at 52) lie past this struct's head: read them through the page pointer.</summary>
    public const int MmioLenOffset = 48, MmioIsWriteOffset = 52, FailEntryCpuOffset = 40, InternalDataOffset = 40;

    public const byte IoIn = 0, IoOut = 1;
}
