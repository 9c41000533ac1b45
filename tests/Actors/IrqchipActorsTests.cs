using System.Buffers.Binary;
using System.Collections.Concurrent;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Machine;

namespace ActorVmm.Actors.Tests;

/// <summary>
/// kernel-irqchip=off: the local APIC hosted by a DeviceActor on the Mailbox route. An interrupt from the IOAPIC
/// raises the vCPU's interrupt request (and so wakes it: the kick); the vector moves from IRR to ISR only when the
/// vCPU runs the acknowledge cycle at its interrupt window (SDM vol. 3 §11.8.4: the processor's acknowledgement
/// clears IRR and sets ISR), and the EOI clears ISR. The PIC's ExtINT through LINT0 hands the INTA to the 8259.
/// The timer service delivers the APIC timer's deadline to the actor.
/// </summary>
public sealed class IrqchipActorsTests : TestKit
{
    private readonly FakeVm _vm = new(new VmSpec(1 << 20, 1, IrqchipMode.Off), (_, _, _) => VcpuExit.SliceEnd);
    private readonly PlatformIrqchip _chip;
    private readonly SignalRecorder _vcpu = new(0);
    private readonly IActorRef _lapicActor;
    private readonly IrqchipExitHandler _handler;

    public IrqchipActorsTests()
    {
        _chip = new PlatformIrqchip(IrqchipMode.Off, _vm, new HostClock(), new NoMachineStop(), 1 << 20, 1, new DateTime(2026, 1, 1));
        var lapic = _chip.LocalApics[0];
        _lapicActor = Sys.ActorOf(DeviceActor.Props(lapic, new Lock()), "lapic0");
        _chip.Endpoints[lapic.Name] = new MailboxEndpoint(lapic.Name, _lapicActor, TimeSpan.FromSeconds(30));
        _chip.AttachVcpus([_vcpu]);
        _handler = _chip.CreateExitHandler(0, new ExitDispatcher(new BusBuilder().Build()));
    }

    private uint ApicRead(uint offset)
    {
        Span<byte> b = stackalloc byte[4];
        _handler.MmioRead(LocalApic.DefaultBase + offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    private void ApicWrite(uint offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        _handler.MmioWrite(LocalApic.DefaultBase + offset, b);
    }

    private void Redirect(int pin, uint low)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)(IoApic.IOREDTBL + 2 * pin));
        _chip.IoApic.Write(IoApic.IOREGSEL, b);
        BinaryPrimitives.WriteUInt32LittleEndian(b, low);
        _chip.IoApic.Write(IoApic.IOWIN, b);
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)(IoApic.IOREDTBL + 2 * pin + 1));
        _chip.IoApic.Write(IoApic.IOREGSEL, b);
        BinaryPrimitives.WriteUInt32LittleEndian(b, 0);
        _chip.IoApic.Write(IoApic.IOWIN, b);
    }

    /// <summary>ICW1-ICW4 for both 8259As (vectors 0x20/0x28), then OCW1 with <paramref name="mask"/> (0xff: an APIC-mode OS).</summary>
    private void InitPic(byte mask)
    {
        foreach (var (at, vbase, icw3) in new[] { (0UL, (byte)0x20, (byte)4), (HostedPic.SlaveOffset, (byte)0x28, (byte)2) })
        {
            _chip.Pic.Write(at, [0x11]);
            _chip.Pic.Write(at + 1, [vbase]);
            _chip.Pic.Write(at + 1, [icw3]);
            _chip.Pic.Write(at + 1, [0x01]);
            _chip.Pic.Write(at + 1, [mask]);
        }
    }

    [Fact]
    public void An_IOAPIC_interrupt_raises_the_request_and_moves_from_IRR_to_ISR_only_at_the_acknowledge()
    {
        InitPic(0xff);
        ApicWrite(0xf0, 0x1ff); // SVR: software-enabled (a posted write; the read below comes after it)
        Assert.Equal(0x1ffu, ApicRead(0xf0));
        Redirect(4, 0x44);
        Assert.False(_vcpu.Level);

        _chip.SetIrq(4, true);
        AwaitCondition(() => _vcpu.Level, TimeSpan.FromSeconds(30));
        Assert.Equal(1u << 4, ApicRead(0x220)); // IRR bits 64-95: vector 0x44 requested
        Assert.Equal(0u, ApicRead(0x120));      // not in service yet

        Assert.True(_handler.TryAcknowledge(0, out byte vector));
        Assert.Equal(0x44, vector);
        Assert.Equal(0u, ApicRead(0x220));
        Assert.Equal(1u << 4, ApicRead(0x120)); // ISR
        Assert.False(_vcpu.Level);              // nothing else to deliver
        Assert.False(_handler.TryAcknowledge(0, out _));

        ApicWrite(0xb0, 0); // EOI
        Assert.Equal(0u, ApicRead(0x120));
    }

    [Fact]
    public void The_PICs_ExtINT_through_LINT0_is_acknowledged_by_the_8259()
    {
        InitPic(0); // all inputs unmasked; the BSP's LINT0 is ExtINT at power-up
        _chip.SetIrq(3, true);
        AwaitCondition(() => _vcpu.Level, TimeSpan.FromSeconds(30));
        Assert.True(_handler.TryAcknowledge(0, out byte vector));
        Assert.Equal(0x23, vector);
        Assert.False(_vcpu.Level);
    }

    [Fact]
    public void Cr8_and_the_TPR_are_one_register_and_mask_lower_priority_classes()
    {
        InitPic(0xff);
        ApicWrite(0xf0, 0x1ff);
        _handler.WriteTaskPriority(0, 0x50);
        Assert.Equal(0x50u, ApicRead(0x80));
        Redirect(5, 0x45); // class 4, below TPR class 5
        _chip.SetIrq(5, true);
        Assert.Equal(1u << 5, ApicRead(0x220));
        Assert.False(_vcpu.Level);
        ApicWrite(0x80, 0x30); // the guest lowers TPR through the page: CR8 sees it, the vector goes through
        Assert.Equal(0x30u, _handler.ReadTaskPriority(0));
        AwaitCondition(() => _vcpu.Level, TimeSpan.FromSeconds(30));
        Assert.True(_handler.TryAcknowledge(0, out byte vector));
        Assert.Equal(0x45, vector);
    }

    [Fact]
    public void X2apic_msrs_reach_the_actor_and_a_gp_comes_back()
    {
        // In xAPIC mode the x2APIC MSRs #GP; IA32_APIC_BASE.EXTD (from the CPU) turns them on.
        Assert.False(_handler.MsrRead(0x802, out _));
        _handler.ApicBaseChanged(0, LocalApic.DefaultBase | LocalApic.BaseEnable | LocalApic.BaseExtd | LocalApic.BaseBsp);
        Assert.True(_handler.MsrRead(0x802, out ulong id));
        Assert.Equal(0UL, id);
        Assert.True(_handler.MsrWrite(0x80f, 0x1ff));
        Assert.True(_handler.MsrRead(0x80f, out ulong svr));
        Assert.Equal(0x1ffUL, svr);
        Assert.False(_handler.MsrWrite(0x802, 1)); // the x2APIC ID is read-only: #GP
    }

    [Fact]
    public void The_timer_service_delivers_the_APIC_timer_to_the_actor()
    {
        ApicWrite(0xf0, 0x1ff);
        ApicWrite(0x3e0, 0xb);      // divide by 1
        ApicWrite(0x320, 0x60);     // LVT timer: one-shot, vector 0x60
        using var timers = new TimerService(_chip.Clock, [(_chip.LocalApics[0].Timer, TimerService.ToActor(_lapicActor))]);
        ApicWrite(0x380, 2_000_000); // 2 ms
        AwaitCondition(() => _vcpu.Level, TimeSpan.FromSeconds(30));
        Assert.True(_handler.TryAcknowledge(0, out byte vector));
        Assert.Equal(0x60, vector);
        // Nothing else advances this APIC (no vCPU runs): the timer service delivered it. A deadline the actor has not
        // acted on within TimerService.RedeliverNs is delivered again, so a loaded host may show more than one.
        Assert.True(timers.Delivered >= 1);
    }
}
