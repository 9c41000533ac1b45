// Layout of every vmm(4) structure ActorVmm binds (size and each field's offset) and every ioctl request
// number, against the values in /work/shared/reference/freebsd-vmm-abi.md (sections b.2, b.3.1, b.3.2): those
// were computed with gcc on an LP64 target from the FreeBSD headers and cross-checked with the headers'
// _Static_asserts and published request values. 14.x and 15.x differ only in vm_memseg and its two requests.
using System.Runtime.InteropServices;
using ActorVmm.Native.Sys;
using ActorVmm.Native.Vmm;

namespace ActorVmm.Native.Tests.Vmm;

public sealed unsafe class VmmAbiLayoutTests
{
    private static int Off<T>(string field) => (int)Marshal.OffsetOf<T>(field);

    [Fact]
    public void Struct_sizes_match_the_reference()
    {
        Assert.Equal(16, sizeof(SegDesc));
        Assert.Equal(24, sizeof(VmGuestPaging));
        Assert.Equal(32, sizeof(VmRunArg));
        Assert.Equal(136, sizeof(VmExit));
        Assert.Equal(16, sizeof(VmRegister));
        Assert.Equal(24, sizeof(VmSegDesc));
        Assert.Equal(24, sizeof(VmRegisterSet));
        Assert.Equal(16, sizeof(VmCapability));
        Assert.Equal(32, sizeof(VmMemseg14));
        Assert.Equal(56, sizeof(VmMemseg15));
        Assert.Equal(40, sizeof(VmMemmap));
        Assert.Equal(16, sizeof(VmMunmap));
        Assert.Equal(20, sizeof(VmException));
        Assert.Equal(16, sizeof(VmLapicMsi));
        Assert.Equal(8, sizeof(VmLapicIrq));
        Assert.Equal(8, sizeof(VmIsaIrq));
        Assert.Equal(8, sizeof(VmX2apic));
        Assert.Equal(56, sizeof(VmGla2Gpa));
        Assert.Equal(8, sizeof(VmCpuTopology));
        Assert.Equal(16, sizeof(VmCpuset));
        Assert.Equal(24, sizeof(VmIntinfo));
        Assert.Equal(8, sizeof(VmRtcData));
        Assert.Equal(24, sizeof(VmKernemuDevice));
        Assert.Equal(296, sizeof(VmmctlVm));
    }

    [Fact]
    public void Field_offsets_match_the_reference()
    {
        Assert.Equal([0, 8, 12], [Off<SegDesc>("Base"), Off<SegDesc>("Limit"), Off<SegDesc>("Access")]);
        Assert.Equal([0, 8, 12, 16], [Off<VmGuestPaging>("Cr3"), Off<VmGuestPaging>("Cpl"), Off<VmGuestPaging>("CpuMode"), Off<VmGuestPaging>("PagingMode")]);
        Assert.Equal([0, 8, 16, 24], [Off<VmRunArg>("CpuId"), Off<VmRunArg>("Cpuset"), Off<VmRunArg>("CpusetSize"), Off<VmRunArg>("Exit")]);
        Assert.Equal([0, 4, 8, 16], [Off<VmExit>("ExitCode"), Off<VmExit>("InstLength"), Off<VmExit>("Rip"), Off<VmExit>("U")]);
        Assert.Equal([0, 4, 8], [Off<VmRegister>("CpuId"), Off<VmRegister>("RegNum"), Off<VmRegister>("RegVal")]);
        Assert.Equal([0, 4, 8], [Off<VmSegDesc>("CpuId"), Off<VmSegDesc>("RegNum"), Off<VmSegDesc>("Desc")]);
        Assert.Equal([0, 4, 8, 16], [Off<VmRegisterSet>("CpuId"), Off<VmRegisterSet>("Count"), Off<VmRegisterSet>("RegNums"), Off<VmRegisterSet>("RegVals")]);
        Assert.Equal([0, 4, 8, 12], [Off<VmCapability>("CpuId"), Off<VmCapability>("CapType"), Off<VmCapability>("CapVal"), Off<VmCapability>("AllCpus")]);
        Assert.Equal([0, 8, 16], [Off<VmMemseg14>("SegId"), Off<VmMemseg14>("Len"), Off<VmMemseg14>("Name")]);
        Assert.Equal([0, 8, 16, 32, 40, 48], [Off<VmMemseg15>("SegId"), Off<VmMemseg15>("Len"), Off<VmMemseg15>("Name"), Off<VmMemseg15>("DsMask"), Off<VmMemseg15>("DsMaskSize"), Off<VmMemseg15>("DsPolicy")]);
        Assert.Equal([0, 8, 16, 24, 32, 36], [Off<VmMemmap>("Gpa"), Off<VmMemmap>("SegId"), Off<VmMemmap>("SegOff"), Off<VmMemmap>("Len"), Off<VmMemmap>("Prot"), Off<VmMemmap>("Flags")]);
        Assert.Equal([0, 8], [Off<VmMunmap>("Gpa"), Off<VmMunmap>("Len")]);
        Assert.Equal([0, 4, 8, 12, 16], [Off<VmException>("CpuId"), Off<VmException>("Vector"), Off<VmException>("ErrorCode"), Off<VmException>("ErrorCodeValid"), Off<VmException>("RestartInstruction")]);
        Assert.Equal([0, 8], [Off<VmLapicMsi>("Msg"), Off<VmLapicMsi>("Addr")]);
        Assert.Equal([0, 4], [Off<VmLapicIrq>("CpuId"), Off<VmLapicIrq>("Vector")]);
        Assert.Equal([0, 4], [Off<VmIsaIrq>("AtpicIrq"), Off<VmIsaIrq>("IoApicIrq")]);
        Assert.Equal([0, 4], [Off<VmX2apic>("CpuId"), Off<VmX2apic>("State")]);
        Assert.Equal([0, 4, 8, 16, 40, 48], [Off<VmGla2Gpa>("VcpuId"), Off<VmGla2Gpa>("Prot"), Off<VmGla2Gpa>("Gla"), Off<VmGla2Gpa>("Paging"), Off<VmGla2Gpa>("Fault"), Off<VmGla2Gpa>("Gpa")]);
        Assert.Equal([0, 2, 4, 6], [Off<VmCpuTopology>("Sockets"), Off<VmCpuTopology>("Cores"), Off<VmCpuTopology>("Threads"), Off<VmCpuTopology>("MaxCpus")]);
        Assert.Equal([0, 4, 8], [Off<VmCpuset>("Which"), Off<VmCpuset>("CpusetSize"), Off<VmCpuset>("Cpus")]);
        Assert.Equal([0, 8, 16], [Off<VmIntinfo>("VcpuId"), Off<VmIntinfo>("Info1"), Off<VmIntinfo>("Info2")]);
        Assert.Equal([0, 4], [Off<VmRtcData>("Offset"), Off<VmRtcData>("Value")]);
        Assert.Equal([0, 4, 8, 16], [Off<VmKernemuDevice>("VcpuId"), Off<VmKernemuDevice>("AccessWidth"), Off<VmKernemuDevice>("Gpa"), Off<VmKernemuDevice>("Value")]);
        Assert.Equal([0, 232], [Off<VmmctlVm>("Name"), Off<VmmctlVm>("Reserved")]);
    }

    private static byte[] Bytes(VmExit e) => new ReadOnlySpan<byte>(&e, sizeof(VmExit)).ToArray();

    private static ulong At(byte[] b, int offset, int size)
    {
        ulong v = 0;
        for (int i = size - 1; i >= 0; i--) v = (v << 8) | b[offset + i];
        return v;
    }

    [Fact]
    public void Exit_payload_accessors_use_the_reference_absolute_offsets()
    {
        // Section b.3.1: each exit's payload at its absolute offset inside the 136-byte vm_exit.
        var e = new VmExit();
        e.SetInOut(4, @in: true, @string: true, rep: true, port: 0x3f8, eax: 0xdeadbeef);
        e.StrPaging = new VmGuestPaging { Cr3 = 0x1122334455, Cpl = 3, CpuMode = VmCpuMode.Long64, PagingMode = VmPagingMode.Paging64 };
        e.StrRflags = 0x246; e.StrCr0 = 0x80000011; e.StrIndex = 0x1000; e.StrCount = 7; e.StrAddrSize = 8; e.StrSegName = VmRegName.Ds;
        e.StrSegDesc = new SegDesc { Base = 0xabc, Limit = 0xffff, Access = 0x93 };
        var b = Bytes(e);
        Assert.Equal(4UL | 8 | 0x10 | 0x20, At(b, 16, 2));   // bytes bits 0-2, in bit 3, string bit 4, rep bit 5
        Assert.Equal(0x3f8UL, At(b, 18, 2));
        Assert.Equal(0xdeadbeefUL, At(b, 20, 4));
        Assert.Equal(0x1122334455UL, At(b, 24, 8));
        Assert.Equal(3UL, At(b, 32, 4));
        Assert.Equal(3UL, At(b, 36, 4));
        Assert.Equal(3UL, At(b, 40, 4));
        Assert.Equal(0x246UL, At(b, 48, 8));
        Assert.Equal(0x80000011UL, At(b, 56, 8));
        Assert.Equal(0x1000UL, At(b, 64, 8));
        Assert.Equal(7UL, At(b, 72, 8));
        Assert.Equal(8UL, At(b, 80, 4));
        Assert.Equal((ulong)VmRegName.Ds, At(b, 84, 4));
        Assert.Equal(0xabcUL, At(b, 88, 8));
        Assert.Equal(0xffffUL, At(b, 96, 4));
        Assert.Equal(0x93UL, At(b, 100, 4));

        e = new VmExit();
        e.EmulGpa = 0xfed00010; e.EmulGla = 0xffff0010; e.EmulCsBase = 0x10000; e.EmulCsD = 1;
        e.EmulPaging = new VmGuestPaging { Cr3 = 0x5000, Cpl = 0, CpuMode = VmCpuMode.Protected, PagingMode = VmPagingMode.Pae };
        e.SetVieInstruction([0x8b, 0x05, 1, 2, 3, 4]);
        e.VieNumProcessed = 6; e.VieDecoded = true; e.VieOpByte = 0x8b;
        b = Bytes(e);
        Assert.Equal(0xfed00010UL, At(b, 16, 8));
        Assert.Equal(0xffff0010UL, At(b, 24, 8));
        Assert.Equal(0x10000UL, At(b, 32, 8));
        Assert.Equal(1UL, At(b, 40, 4));
        Assert.Equal(0x5000UL, At(b, 48, 8));
        Assert.Equal(1UL, At(b, 60, 4));   // cpu_mode @60
        Assert.Equal(2UL, At(b, 64, 4));   // paging_mode @64
        Assert.Equal(0x8bUL, At(b, 72, 1)); // vie.inst @72
        Assert.Equal(6UL, At(b, 87, 1));    // num_valid
        Assert.Equal(6UL, At(b, 88, 1));    // num_processed
        Assert.Equal(1UL, At(b, 128, 1));   // decoded
        Assert.Equal(0x8bUL, At(b, 130, 1)); // op.op_byte

        e = new VmExit { MsrCode = 0xc0000080, MsrValue = 0x0123456789abcdef };
        b = Bytes(e);
        Assert.Equal(0xc0000080UL, At(b, 16, 4));
        Assert.Equal(0x0123456789abcdefUL, At(b, 24, 8));

        e = new VmExit { SpinupVcpu = 3, SpinupRip = 0x9f000 };
        b = Bytes(e);
        Assert.Equal(3UL, At(b, 16, 4));
        Assert.Equal(0x9f000UL, At(b, 24, 8));

        e = new VmExit { IpiMode = 0x600, IpiVector = 0x9f };
        b = Bytes(e);
        Assert.Equal(0x600UL, At(b, 16, 4));
        Assert.Equal(0x9fUL, At(b, 20, 1));

        e = new VmExit { SuspendHow = VmSuspendHow.TripleFault };
        Assert.Equal(4UL, At(Bytes(e), 16, 4));
        e = new VmExit { HltRflags = 0x202 };
        Assert.Equal(0x202UL, At(Bytes(e), 16, 8));
        e = new VmExit { VmxStatus = 1, VmxExitReason = 48, VmxQualification = 0x181, VmxInstError = 7 };
        b = Bytes(e);
        Assert.Equal([1UL, 48UL, 0x181UL, 7UL], [At(b, 16, 4), At(b, 20, 4), At(b, 24, 8), At(b, 36, 4)]);
    }

    /// <summary>Section b.2 of the reference: every request this binding defines, by name, with its hex value.</summary>
    public static TheoryData<string, ulong> ReferenceRequests => new()
    {
        { "VM_RUN", 0x80207601 }, { "VM_SET_CAPABILITY", 0x80107602 }, { "VM_GET_CAPABILITY", 0xC0107603 },
        { "VM_SUSPEND", 0x80047604 }, { "VM_REINIT", 0x20007605 }, { "VM_GLA2GPA", 0xC038760D },
        { "VM_ALLOC_MEMSEG_14", 0x8020760E }, { "VM_GET_MEMSEG_14", 0xC020760F },
        { "VM_ALLOC_MEMSEG_15", 0x8038760E }, { "VM_GET_MEMSEG_15", 0xC038760F },
        { "VM_MMAP_MEMSEG", 0x80287610 }, { "VM_MMAP_GETNEXT", 0xC0287611 }, { "VM_GLA2GPA_NOFAULT", 0xC0387612 },
        { "VM_MUNMAP_MEMSEG", 0x80107613 }, { "VM_SET_REGISTER", 0x80107614 }, { "VM_GET_REGISTER", 0xC0107615 },
        { "VM_SET_SEGMENT_DESCRIPTOR", 0x80187616 }, { "VM_GET_SEGMENT_DESCRIPTOR", 0xC0187617 },
        { "VM_SET_REGISTER_SET", 0x80187618 }, { "VM_GET_REGISTER_SET", 0xC0187619 },
        { "VM_GET_KERNEMU_DEV", 0xC018761A }, { "VM_SET_KERNEMU_DEV", 0x8018761B },
        { "VM_GET_INTINFO", 0xC018761C }, { "VM_SET_INTINFO", 0x8018761D }, { "VM_INJECT_EXCEPTION", 0x8014761E },
        { "VM_LAPIC_IRQ", 0x8008761F }, { "VM_INJECT_NMI", 0x80047620 }, { "VM_IOAPIC_ASSERT_IRQ", 0x80047621 },
        { "VM_IOAPIC_DEASSERT_IRQ", 0x80047622 }, { "VM_IOAPIC_PULSE_IRQ", 0x80047623 }, { "VM_LAPIC_MSI", 0x80107624 },
        { "VM_LAPIC_LOCAL_IRQ", 0x80087625 }, { "VM_IOAPIC_PINCOUNT", 0x40047626 }, { "VM_RESTART_INSTRUCTION", 0x80047627 },
        { "VM_SET_X2APIC_STATE", 0x8008763C }, { "VM_GET_X2APIC_STATE", 0xC008763D }, { "VM_GET_HPET_CAPABILITIES", 0x4004763E },
        { "VM_SET_TOPOLOGY", 0x8008763F }, { "VM_GET_TOPOLOGY", 0x40087640 },
        { "VM_ISA_ASSERT_IRQ", 0x80087650 }, { "VM_ISA_DEASSERT_IRQ", 0x80087651 }, { "VM_ISA_PULSE_IRQ", 0x80087652 },
        { "VM_ISA_SET_IRQ_TRIGGER", 0x80087653 }, { "VM_ACTIVATE_CPU", 0x8004765A }, { "VM_GET_CPUS", 0x8010765B },
        { "VM_SUSPEND_CPU", 0x8004765C }, { "VM_RESUME_CPU", 0x8004765D },
        { "VM_RTC_READ", 0xC0087664 }, { "VM_RTC_WRITE", 0x80087665 }, { "VM_RTC_SETTIME", 0x80087666 }, { "VM_RTC_GETTIME", 0x40087667 },
        { "VM_SET_FLAGS", 0x80047679 }, { "VM_GET_FLAGS", 0x4004767A },
        { "VMMCTL_VM_CREATE", 0xC1285600 }, { "VMMCTL_VM_DESTROY", 0xC1285601 },
    };

    [Theory]
    [MemberData(nameof(ReferenceRequests))]
    public void Request_number_matches_the_reference(string field, ulong expected)
    {
        var request = (IoctlRequest)typeof(VmmIoctls).GetField(field)!.GetValue(null)!;
        Assert.Equal($"0x{expected:x8}", $"0x{request.Value:x8}");
    }

    [Fact]
    public void Every_defined_request_is_checked_against_the_reference()
    {
        var checkedFields = ReferenceRequests.Select(r => (string)r[0]).ToHashSet();
        var defined = typeof(VmmIoctls).GetFields().Where(f => f.FieldType == typeof(IoctlRequest)).Select(f => f.Name);
        Assert.Equal([], defined.Where(n => !checkedFields.Contains(n)).ToArray());
        Assert.Equal(checkedFields.Count, VmmIoctls.All.Count);
    }

    [Fact]
    public void Memseg_requests_differ_by_generation_and_encode_the_struct_size()
    {
        Assert.Equal(VmMemseg14.Size, Ioc.BsdSize(VmmIoctls.AllocMemseg(VmmGeneration.FreeBsd14).Value));
        Assert.Equal(VmMemseg15.Size, Ioc.BsdSize(VmmIoctls.AllocMemseg(VmmGeneration.FreeBsd15).Value));
        Assert.Equal(0xC020760FUL, VmmIoctls.GetMemseg(VmmGeneration.FreeBsd14).Value);
        Assert.Equal(0xC038760FUL, VmmIoctls.GetMemseg(VmmGeneration.FreeBsd15).Value);
    }

    [Fact]
    public void Enumerations_match_the_reference()
    {
        Assert.Equal([0, 9, 14, 15, 21, 24, 26], new[] { VmExitCode.InOut, VmExitCode.InstEmul, VmExitCode.Suspended, VmExitCode.InOutStr, VmExitCode.Debug, VmExitCode.Ipi, VmExitCode.Max }.Select(e => (int)e));
        Assert.Equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14], new[] { VmRegName.Rax, VmRegName.Rbx, VmRegName.Rcx, VmRegName.Rdx, VmRegName.Rsi, VmRegName.Rdi, VmRegName.Rbp, VmRegName.R8, VmRegName.R9, VmRegName.R10, VmRegName.R11, VmRegName.R12, VmRegName.R13, VmRegName.R14, VmRegName.R15 }.Select(e => (int)e));
        Assert.Equal([15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 38, 44, 45, 48, 49],
            new[] { VmRegName.Cr0, VmRegName.Cr3, VmRegName.Cr4, VmRegName.Dr7, VmRegName.Rsp, VmRegName.Rip, VmRegName.Rflags, VmRegName.Es, VmRegName.Cs, VmRegName.Ss, VmRegName.Ds, VmRegName.Fs, VmRegName.Gs, VmRegName.Ldtr, VmRegName.Tr, VmRegName.Idtr, VmRegName.Gdtr, VmRegName.Efer, VmRegName.Cr2, VmRegName.IntrShadow, VmRegName.EntryInstLength, VmRegName.FsBase, VmRegName.Tpr, VmRegName.Last }.Select(e => (int)e));
        Assert.Equal([0, 2, 3, 8], new[] { VmCapType.HaltExit, VmCapType.PauseExit, VmCapType.UnrestrictedGuest, VmCapType.IpiExit }.Select(e => (int)e));
        Assert.Equal([1, 2, 3, 4, 5], new[] { VmSuspendHow.Reset, VmSuspendHow.PowerOff, VmSuspendHow.Halt, VmSuspendHow.TripleFault, VmSuspendHow.Destroy }.Select(e => (int)e));
    }
}
