using System.Buffers.Binary;
using ActorVmm.Core.Accel;
using ActorVmm.Native.Soft;

namespace ActorVmm.Native.Tests.Soft;

/// <summary>
/// The soft accelerator's kernel side given a real kernel's device set (KernelPlatform.Kvm, KernelPlatform.Vmm), as
/// the backends' stand-ins use it: what the set lacks is no device of the kernel's, so the vCPU's accesses there are
/// ordinary exits to the platform, while what it has still answers on the vCPU thread. The truth is each kernel's
/// documented set: KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2 give the LAPIC, IOAPIC, 8259 and PIT; vmm(4) adds the HPET,
/// the RTC and the PM timer alone at port 0x408.
/// </summary>
public sealed class SoftKernelSubsetTests
{
    private static (SoftVm Vm, SoftKernelDevices.ExitFilter Filter, FakeExits Platform) Create(KernelPlatform kernel)
    {
        var vm = (SoftVm)new SoftAccelerator(kernel).CreateVm(new VmSpec(1 << 20, 1, IrqchipMode.On) { Deterministic = true });
        var vcpu = (SoftVcpu)vm.CreateVcpu(0);
        var platform = new FakeExits();
        return (vm, new SoftKernelDevices.ExitFilter(vm.Kernel, platform, vcpu.Apic, new SoftClock(false)), platform);
    }

    [Fact]
    public void Kvm_set_keeps_the_interrupt_controllers_and_PIT_and_passes_RTC_PM_and_HPET_accesses_out()
    {
        var (vm, filter, platform) = Create(KernelPlatform.Kvm);
        using var _ = vm;
        Assert.NotNull(vm.Kernel.Pic);
        Assert.NotNull(vm.Kernel.IoApic);
        Assert.NotNull(vm.Kernel.Pit);
        Assert.Null(vm.Kernel.Rtc);
        Assert.Null(vm.Kernel.Pm);
        Assert.Null(vm.Kernel.Hpet);
        Span<byte> b = stackalloc byte[4];
        // The kernel's: PIT counter 0, the 8259's IMR, the IOAPIC version register.
        filter.PortRead(0x40, b[..1]);
        filter.PortRead(0x21, b[..1]);
        filter.MmioWrite(0xfec00000, [1, 0, 0, 0]);
        filter.MmioRead(0xfec00010, b);
        Assert.Equal(0x00170020u, BinaryPrimitives.ReadUInt32LittleEndian(b)); // 24 pins, version 0x20
        Assert.Empty(platform.PortReads);
        Assert.Empty(platform.MmioReads);
        // The platform's: RTC index/data, PM1a_EVT, PM1a_CNT, PM timer, HPET.
        filter.PortWrite(0x70, [0x0a]);
        filter.PortRead(0x71, b[..1]);
        filter.PortRead(0x600, b[..2]);
        filter.PortWrite(0x604, [0x00, 0x20]);
        filter.PortRead(0x608, b);
        filter.MmioRead(0xfed00000, b);
        Assert.Equal([(0x70, 1, 0x0au), (0x604, 2, 0x2000u)], platform.PortWrites);
        Assert.Equal([(0x71, 1), (0x600, 2), (0x608, 4)], platform.PortReads);
        Assert.Equal([(0xfed00000UL, 4)], platform.MmioReads);
        // No S5 was taken by the kernel side (the platform's PM block has PM1a_CNT), and no power button is here.
        Assert.Null(vm.Kernel.TakePendingStop());
        Assert.False(vm.PressPowerButton());
        Assert.Null(vm.Kernel.NextDeadlineNs);
    }

    [Fact]
    public void Vmm_set_answers_the_PM_timer_at_0x408_and_passes_PM1_event_and_control_out()
    {
        var (vm, filter, platform) = Create(KernelPlatform.Vmm);
        using var _ = vm;
        Assert.NotNull(vm.Kernel.Rtc);
        Assert.NotNull(vm.Kernel.Hpet);
        Span<byte> b = stackalloc byte[4];
        // PM_TMR at 0x408: the kernel's 24-bit timer (the top byte reads 0; TMR_VAL_EXT is clear), not the platform's.
        filter.PortRead(0x408, b);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(b) >> 24);
        filter.PortRead(0x70, b[..1]);
        filter.MmioRead(0xfed00000, b);
        Assert.Equal(0x8086a201u, BinaryPrimitives.ReadUInt32LittleEndian(b)); // the kernel HPET's GCAP_ID
        Assert.Empty(platform.PortReads);
        Assert.Empty(platform.MmioReads);
        // PM1a_EVT (0x400-0x403) and PM1a_CNT (0x404-0x405) are userspace's in bhyve's layout; S5 there is the platform's.
        filter.PortRead(0x400, b[..2]);
        filter.PortRead(0x402, b[..2]);
        filter.PortWrite(0x404, [0x00, 0x20]);
        Assert.Equal([(0x400, 2), (0x402, 2)], platform.PortReads);
        Assert.Equal([(0x404, 2, 0x2000u)], platform.PortWrites);
        Assert.Null(vm.Kernel.TakePendingStop());
        Assert.False(vm.PressPowerButton());
        // Nothing at the PIIX4 addresses either: 0x600-0x60b are ordinary exits too.
        filter.PortRead(0x608, b);
        Assert.Equal((0x608, 4), platform.PortReads[^1]);
    }

    [Fact]
    public void Default_soft_set_still_has_the_whole_PM_block_at_0x600()
    {
        var (vm, filter, platform) = Create(KernelPlatform.Soft);
        using var _ = vm;
        Span<byte> b = stackalloc byte[2];
        filter.PortRead(0x604, b);
        Assert.Equal(1, b[0] & 1); // SCI_EN
        filter.PortWrite(0x604, [0x00, 0x20]); // SLP_TYP 0, SLP_EN: S5
        Assert.Empty(platform.PortReads);
        Assert.Empty(platform.PortWrites);
        Assert.Equal(VcpuExitKind.PowerOff, vm.Kernel.TakePendingStop()?.Kind);
    }
}
