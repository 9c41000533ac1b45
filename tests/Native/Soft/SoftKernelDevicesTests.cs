using System.Buffers.Binary;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Devices;
using ActorVmm.Native.Soft;

namespace ActorVmm.Native.Tests.Soft;

/// <summary>
/// The kernel-irqchip=on wiring of the soft accelerator: ISA lines to the PIC and the IOAPIC, the PIC through
/// LINT0, the APIC bus, the HPET's legacy replacement, timers in the deadline, and the per-vCPU exit filter.
/// The vCPU thread is not run: the tests drive the kernel side as the vCPU would, on the test thread.
/// </summary>
public sealed class SoftKernelDevicesTests : IDisposable
{
    private readonly SoftVm _vm;
    private readonly SoftVcpu _vcpu;
    private readonly SoftKernelDevices _k;
    private readonly LocalApic _apic;

    public SoftKernelDevicesTests()
    {
        _vm = (SoftVm)new SoftAccelerator().CreateVm(new VmSpec(1 << 20, 1, IrqchipMode.On) { Deterministic = true });
        _vcpu = (SoftVcpu)_vm.CreateVcpu(0);
        _k = _vm.Kernel;
        _apic = _vcpu.Apic!;
    }

    public void Dispose() => _vm.Dispose();

    private static void W32(Core.Bus.IBusDevice d, ulong offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        d.Write(offset, b);
    }

    private static uint R32(Core.Bus.IBusDevice d, ulong offset)
    {
        Span<byte> b = stackalloc byte[4];
        d.Read(offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    private static void W8(Core.Bus.IBusDevice d, ulong offset, byte value) => d.Write(offset, [value]);

    private void EnableApic() => W32(_apic, 0xf0, 0x1ff);

    private void Redirect(int pin, uint low)
    {
        W32(_k.IoApic!, IoApic.IOREGSEL, (uint)(IoApic.IOREDTBL + 2 * pin));
        W32(_k.IoApic!, IoApic.IOWIN, low);
        W32(_k.IoApic!, IoApic.IOREGSEL, (uint)(IoApic.IOREDTBL + 2 * pin + 1));
        W32(_k.IoApic!, IoApic.IOWIN, 0); // destination APIC 0
    }

    /// <summary>ICW1-4 for both PICs: vectors 0x20/0x28, then the mask.</summary>
    private void InitPic(byte mask = 0)
    {
        foreach (var (chip, vbase, icw3) in new[] { (_k.Pic!.Master, (byte)0x20, (byte)4), (_k.Pic!.Slave, (byte)0x28, (byte)2) })
        {
            W8(chip, 0, 0x11);
            W8(chip, 1, vbase);
            W8(chip, 1, icw3);
            W8(chip, 1, 0x01);
            W8(chip, 1, mask);
        }
    }

    [Fact]
    public void An_isa_irq_reaches_the_ioapic_and_the_local_apic_hands_out_its_vector()
    {
        InitPic(mask: 0xff); // the same line reaches the PIC: masked there, so only the IOAPIC's vector comes
        EnableApic();
        Redirect(4, 0x41);
        Assert.True(_k.SetIrq(4, true));
        Assert.True(_k.InterruptPending(_apic));
        Assert.True(_k.TryAcknowledge(_apic, out byte v, out _));
        Assert.Equal(0x41, v);
        Assert.False(_k.TryAcknowledge(_apic, out _, out _));
    }

    [Fact]
    public void Irq0_is_ioapic_pin_2_and_gsi_16_to_23_exist_only_on_the_ioapic()
    {
        InitPic(mask: 0xff);
        EnableApic();
        Redirect(2, 0x50);
        Redirect(20, 0x60);
        _k.SetIrq(0, true);
        Assert.Equal(1u << 2, _k.IoApic!.PinLevels & 0b111);
        Assert.True(_k.SetIrq(20, true));
        Assert.False(_k.SetIrq(24, true));
        Assert.True(_k.TryAcknowledge(_apic, out byte v1, out _));
        Assert.Equal(0x60, v1); // higher priority class first
        W32(_apic, 0xb0, 0);
        Assert.True(_k.TryAcknowledge(_apic, out byte v2, out _));
        Assert.Equal(0x50, v2);
    }

    [Fact]
    public void The_pic_reaches_the_cpu_through_lint0_in_extint_mode_as_after_power_up()
    {
        InitPic();
        _k.SetIrq(3, true);
        Assert.True(_k.InterruptPending(_apic));
        Assert.True(_k.TryAcknowledge(_apic, out byte v, out _));
        Assert.Equal(0x23, v);
    }

    [Fact]
    public void A_masked_lint0_keeps_the_pic_out_and_a_hardware_disabled_apic_lets_it_in()
    {
        InitPic();
        EnableApic();
        W32(_apic, 0x350, 0x10700); // LINT0 ExtINT, masked
        _k.SetIrq(3, true);
        Assert.False(_k.InterruptPending(_apic));
        _k.SyncApicBase(_apic, LocalApic.DefaultBase | LocalApic.BaseBsp); // IA32_APIC_BASE.EN cleared
        Assert.False(_apic.HardwareEnabled);
        Assert.True(_k.TryAcknowledge(_apic, out byte v, out _));
        Assert.Equal(0x23, v);
    }

    [Fact]
    public void A_level_eoi_in_the_local_apic_clears_remote_irr_in_the_ioapic()
    {
        InitPic(mask: 0xff);
        EnableApic();
        Redirect(9, 0x8000 | 0x70); // level, vector 0x70
        _k.SetIrq(9, true);
        Assert.True(_k.TryAcknowledge(_apic, out byte v, out _));
        Assert.Equal(0x70, v);
        Assert.NotEqual(0UL, _k.IoApic!.GetRedirection(9) & IoApic.RemoteIrr);
        _k.SetIrq(9, false);
        W32(_apic, 0xb0, 0); // EOI: broadcast for a level vector
        Assert.Equal(0UL, _k.IoApic!.GetRedirection(9) & IoApic.RemoteIrr);
    }

    [Fact]
    public void The_local_apic_timer_is_a_kernel_deadline_and_fires_on_advance()
    {
        EnableApic();
        W32(_apic, 0x3e0, 0xb);      // divide by 1
        W32(_apic, 0x320, 0x40);     // one-shot, vector 0x40
        W32(_apic, 0x380, 1000);     // 1000 ns
        long? deadline = _k.NextDeadlineNs;
        Assert.NotNull(deadline);
        ((SoftClock)_k.Clock).SkipTo(deadline!.Value);
        _k.Advance();
        Assert.True(_k.TryAcknowledge(_apic, out byte v, out _));
        Assert.Equal(0x40, v);
    }

    [Fact]
    public void An_hpet_comparator_routed_to_pin_2_interrupts_through_the_ioapic()
    {
        InitPic(mask: 0xff);
        EnableApic();
        Redirect(2, 0x61);
        var hpet = _k.Hpet!;
        Assert.Equal(SoftKernelDevices.HpetRouteCapability, R32(hpet, 0x104)); // Tn_INT_ROUTE_CAP, as QEMU's pc
        W32(hpet, 0x100, (2u << 9) | 4);   // timer 0: route 2, interrupts enabled, edge, one-shot
        W32(hpet, 0x108, 100);             // comparator: 100 ticks (1 us at 100 MHz)
        W32(hpet, 0x10c, 0);
        W32(hpet, 0x010, 1);               // ENABLE_CNF
        var deadline = _k.NextDeadlineNs;
        Assert.NotNull(deadline);
        ((SoftClock)_k.Clock).SkipTo(deadline!.Value);
        _k.Advance();
        Assert.True(_k.TryAcknowledge(_apic, out byte v, out _));
        Assert.Equal(0x61, v);
    }

    [Fact]
    public void Hpet_legacy_replacement_cuts_the_pit_off_irq0()
    {
        InitPic();
        W32(_k.Hpet!, 0x010, 3); // ENABLE_CNF | LEG_RT_CNF
        W8(_k.Pit!, 3, 0x34);    // counter 0, mode 2
        W8(_k.Pit!, 0, 100);
        W8(_k.Pit!, 0, 0);
        var clock = (SoftClock)_k.Clock;
        for (int i = 0; i < 10; i++)
        {
            clock.SkipTo(clock.NowNanoseconds + 100_000);
            _k.Advance();
        }
        Assert.False(_k.InterruptPending(_apic));
        W32(_k.Hpet!, 0x010, 1); // legacy replacement off: the PIT is back on IRQ0
        for (int i = 0; i < 10; i++)
        {
            clock.SkipTo(clock.NowNanoseconds + 100_000);
            _k.Advance();
        }
        Assert.True(_k.TryAcknowledge(_apic, out byte v, out _));
        Assert.Equal(0x20, v);
    }

    [Fact]
    public void An_msi_reaches_the_local_apic_and_a_bad_address_is_counted()
    {
        EnableApic();
        _vm.SendMsi(0xfee00000, 0x45);
        Assert.True(_k.TryAcknowledge(_apic, out byte v, out _));
        Assert.Equal(0x45, v);
        _vm.SendMsi(0xfed00000, 0x45);
        Assert.Equal(1, _k.BadMsis);
    }

    [Fact]
    public void The_exit_filter_answers_the_apic_page_the_ioapic_hpet_and_apic_msrs_and_passes_the_rest_on()
    {
        var platform = new FakeExits();
        var filter = new SoftKernelDevices.ExitFilter(_k, platform, _apic, new SoftClock(false));
        Span<byte> d = stackalloc byte[4];
        filter.MmioRead(0xfee00030, d);
        Assert.Equal(0x00050014u, BinaryPrimitives.ReadUInt32LittleEndian(d));
        BinaryPrimitives.WriteUInt32LittleEndian(d, 1);
        filter.MmioWrite(0xfec00000, d);
        filter.MmioRead(0xfec00010, d);
        Assert.Equal(0x00170020u, BinaryPrimitives.ReadUInt32LittleEndian(d));
        filter.MmioRead(0xfed00004, d);
        Assert.Equal(Hpet.DefaultPeriodFs, BinaryPrimitives.ReadUInt32LittleEndian(d));
        filter.MmioRead(0xfeb00000, d);
        Assert.Single(platform.MmioReads);
        Assert.True(filter.MsrRead(LocalApic.IA32_TSC_DEADLINE, out ulong deadline));
        Assert.Equal(0UL, deadline);
        Assert.False(filter.MsrRead(0x802, out _)); // x2APIC registers #GP in xAPIC mode
        Assert.False(filter.MsrRead(0x1234, out _)); // the platform's answer (nobody models it)
    }

    [Fact]
    public void The_apic_page_follows_a_relocated_base()
    {
        var platform = new FakeExits();
        var filter = new SoftKernelDevices.ExitFilter(_k, platform, _apic, new SoftClock(false));
        _k.SyncApicBase(_apic, 0xfe000000 | LocalApic.BaseEnable | LocalApic.BaseBsp);
        Span<byte> d = stackalloc byte[4];
        filter.MmioRead(0xfe000030, d);
        Assert.Equal(0x00050014u, BinaryPrimitives.ReadUInt32LittleEndian(d));
        filter.MmioRead(0xfee00030, d);
        Assert.Single(platform.MmioReads);
    }
}
