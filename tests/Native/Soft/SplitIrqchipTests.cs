using System.Buffers.Binary;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Machine;
using ActorVmm.Native.Soft;

namespace ActorVmm.Native.Tests.Soft;

/// <summary>
/// kernel-irqchip=split on the soft accelerator: the local APIC in the accelerator, the 8259 pair and the IOAPIC as
/// platform devices (PlatformIrqchip, Direct route). The interrupt paths between them are checked against the
/// datasheets: the 8259A's INTA cycle (IRR bit to ISR bit, INTR dropped) run by the vCPU when it takes an ExtINT,
/// and the 82093AA's Remote IRR, cleared by the local APIC's EOI of a level-triggered vector, after which a line
/// still asserted is delivered again. The vCPU's run loop is exercised with a real-mode guest taking the PIC's
/// vector through the kernel LAPIC's LINT0.
/// </summary>
public sealed class SplitIrqchipTests : IDisposable
{
    private sealed class NoStop : IMachineControl
    {
        public void RequestStop(MachineStopRequest request)
        {
        }
    }

    /// <summary>A platform with nothing but a debug port (0x80) that records the bytes written to it.</summary>
    private sealed class RecordingPlatform : IExitHandler
    {
        public readonly List<byte> Port80 = [];

        public void PortRead(ushort port, Span<byte> data) => data.Fill(0xff);

        public void PortWrite(ushort port, ReadOnlySpan<byte> data)
        {
            if (port == 0x80) lock (Port80) Port80.Add(data[0]);
        }

        public void MmioRead(ulong gpa, Span<byte> data) => data.Fill(0xff);

        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data)
        {
        }

        public bool MsrRead(uint msr, out ulong value)
        {
            value = 0;
            return false;
        }

        public bool MsrWrite(uint msr, ulong value) => false;
    }

    private readonly SoftVm _vm;
    private readonly SoftVcpu _vcpu;
    private readonly PlatformIrqchip _chip;
    private readonly RecordingPlatform _platform = new();
    private readonly IrqchipExitHandler _handler;

    public SplitIrqchipTests()
    {
        _vm = (SoftVm)new SoftAccelerator().CreateVm(new VmSpec(1 << 20, 1, IrqchipMode.Split) { Deterministic = true });
        _vcpu = (SoftVcpu)_vm.CreateVcpu(0);
        _chip = new PlatformIrqchip(IrqchipMode.Split, _vm, ((IVm)_vm).Clock!, new NoStop(), 1 << 20, 1, new DateTime(2026, 1, 1));
        _chip.AttachVcpus([_vcpu]);
        _handler = _chip.CreateExitHandler(0, _platform);
    }

    public void Dispose() => _vm.Dispose();

    private LocalApic Apic => _vcpu.Apic!;

    private static void W32(IBusDevice d, ulong offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        d.Write(offset, b);
    }

    private static uint R32(IBusDevice d, ulong offset)
    {
        Span<byte> b = stackalloc byte[4];
        d.Read(offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    private byte PicRead(ulong offset)
    {
        Span<byte> b = stackalloc byte[1];
        _chip.Pic.Read(offset, b);
        return b[0];
    }

    /// <summary>ICW1-ICW4 for both 8259As (vectors 0x20 and 0x28, cascade on IRQ2), then OCW1 with <paramref name="mask"/>.</summary>
    private void InitPic(byte mask = 0)
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

    private void Redirect(int pin, uint low)
    {
        W32(_chip.IoApic, IoApic.IOREGSEL, (uint)(IoApic.IOREDTBL + 2 * pin));
        W32(_chip.IoApic, IoApic.IOWIN, low);
        W32(_chip.IoApic, IoApic.IOREGSEL, (uint)(IoApic.IOREDTBL + 2 * pin + 1));
        W32(_chip.IoApic, IoApic.IOWIN, 0); // physical destination APIC 0
    }

    [Fact]
    public void The_8259s_INTR_reaches_the_kernel_LAPIC_as_ExtINT_and_the_INTA_runs_on_the_platform_PIC()
    {
        InitPic();
        Assert.False(_vm.Kernel.InterruptPending(Apic));
        _chip.SetIrq(1, true); // keyboard, edge-triggered (ELCR clear)

        // INTR is up: the BSP's LINT0 is ExtINT at power-up (virtual wire), so the CPU has something to take.
        Assert.True(_vm.Kernel.InterruptPending(Apic));
        Assert.Equal(0x02, PicRead(0)); // OCW3 default reads IRR: IRQ1 requested
        // The kernel LAPIC has no vector of its own: it takes ExtINT and leaves the vector to the 8259's INTA.
        Assert.False(_vm.Kernel.TryAcknowledge(Apic, out _, out bool extInt));
        Assert.True(extInt);
        Assert.True(_handler.TryAcknowledge(0, out byte vector));
        Assert.Equal(0x21, vector);

        // 8259A datasheet: the first INTA pulse sets the ISR bit and resets the IRR bit of the highest request.
        Assert.Equal(0x00, PicRead(0)); // IRR
        _chip.Pic.Write(0, [0x0b]); // OCW3: read ISR
        Assert.Equal(0x02, PicRead(0));
        Assert.False(_vm.Kernel.InterruptPending(Apic)); // INTR fell
        _chip.Pic.Write(0, [0x20]); // OCW2: non-specific EOI
        Assert.Equal(0x00, PicRead(0));
    }

    [Fact]
    public void A_level_triggered_EOI_of_the_kernel_LAPIC_clears_Remote_IRR_and_redelivers_a_line_still_asserted()
    {
        InitPic(mask: 0xff); // the line also reaches the 8259's IRQ9; masked there, as an APIC-mode OS does
        W32(Apic, 0xf0, 0x1ff); // SVR: software-enabled
        Redirect(9, 0x39 | (uint)IoApic.TRIGGER); // level-triggered, active high, fixed, vector 0x39
        var filter = new SoftKernelDevices.ExitFilter(_vm.Kernel, _handler, Apic, _vm.Clock, 0);

        _chip.SetIrq(9, true);
        Assert.NotEqual(0UL, _chip.IoApic.Model.GetRedirection(9) & IoApic.RemoteIrr); // 82093AA: Remote IRR set on delivery
        Assert.True(_vm.Kernel.TryAcknowledge(Apic, out byte vector, out _));
        Assert.Equal(0x39, vector);
        Assert.False(_vm.Kernel.InterruptPending(Apic));

        // The guest's EOI (xAPIC page, register 0xb0): the TMR bit says level, so the EOI leaves the kernel for the
        // platform's IOAPIC; the pin is still asserted, so the IOAPIC delivers the vector again.
        filter.MmioWrite(LocalApic.DefaultBase + 0xb0, [0, 0, 0, 0]);
        Assert.True(_vm.Kernel.TryAcknowledge(Apic, out vector, out _));
        Assert.Equal(0x39, vector);

        // Deasserted before the EOI: Remote IRR clears and nothing more arrives.
        _chip.SetIrq(9, false);
        filter.MmioWrite(LocalApic.DefaultBase + 0xb0, [0, 0, 0, 0]);
        Assert.Equal(0UL, _chip.IoApic.Model.GetRedirection(9) & IoApic.RemoteIrr);
        Assert.Equal(0u, R32(Apic, 0x230)); // IRR bits 32-63
        Assert.Equal(0u, R32(Apic, 0x130)); // ISR bits 32-63
        Assert.False(_vm.Kernel.InterruptPending(Apic));
    }

    [Fact]
    public void An_edge_triggered_EOI_stays_in_the_kernel()
    {
        InitPic(mask: 0xff);
        W32(Apic, 0xf0, 0x1ff);
        Redirect(4, 0x34); // edge
        var filter = new SoftKernelDevices.ExitFilter(_vm.Kernel, _handler, Apic, _vm.Clock, 0);
        _chip.SetIrq(4, true);
        Assert.True(_vm.Kernel.TryAcknowledge(Apic, out byte vector, out _));
        Assert.Equal(0x34, vector);
        Assert.Equal(1u << 20, R32(Apic, 0x110)); // ISR bit 0x34
        filter.MmioWrite(LocalApic.DefaultBase + 0xb0, [0, 0, 0, 0]);
        Assert.Equal(0u, R32(Apic, 0x110));
        Assert.False(_vm.Kernel.TakeLevelEoi(Apic, out _));
    }

    [Fact]
    public void A_halted_vcpu_wakes_for_the_platform_PIC_and_runs_the_handler_of_the_vector_it_acknowledged()
    {
        // Real mode at 0:0x7000: STI; HLT; OUT 0x80, AL (AL = 1 after the handler); JMP $.
        // IVT entry 0x21 -> 0:0x7100: MOV AL, 0x21; OUT 0x80, AL; MOV AL, 1; IRET.
        _vm.Memory.Write(0x7000, [0xfb, 0xf4, 0xe6, 0x80, 0xeb, 0xfe]);
        _vm.Memory.Write(0x7100, [0xb0, 0x21, 0xe6, 0x80, 0xb0, 0x01, 0xcf]);
        _vm.Memory.Write(0x21 * 4, [0x00, 0x71, 0x00, 0x00]);
        var sregs = SystemRegisters.PowerOn();
        sregs.Cs.Selector = 0;
        sregs.Cs.Base = 0;
        _vcpu.SetSystemRegisters(sregs);
        var regs = new CpuRegisters { Rip = 0x7000, Rflags = 2 };
        regs[4] = 0x6000;
        _vcpu.SetRegisters(regs);
        InitPic();

        using var raise = new Timer(_ => _chip.SetIrq(1, true), null, 100, Timeout.Infinite);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (sw.ElapsedMilliseconds < 10_000)
        {
            lock (_platform.Port80) if (_platform.Port80.Count >= 2) break;
            _vcpu.Run(_handler);
        }
        lock (_platform.Port80) Assert.Equal([0x21, 0x01], _platform.Port80);
        _chip.Pic.Write(0, [0x0b]);
        Assert.Equal(0x02, PicRead(0)); // IRQ1 in service until the guest's EOI
    }
}
