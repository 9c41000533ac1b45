// The "kernel" half of the soft accelerator in kernel-irqchip=on (DESIGN.md §3): the interrupt controller and
// timers a hypervisor keeps in the kernel, here the same Core device models run synchronously on the vCPU
// thread, with no messages. Present: the 8259A PIC pair (0x20, 0xa0, ELCR 0x4d0), the 8254 PIT (0x40-0x43,
// port 0x61), the MC146818 RTC/CMOS (0x70-0x73) and the ACPI PM block (0x600: PM1 event/control, PM timer).
// Their port accesses never leave the vCPU thread; everything else goes on to the platform's exit handler.
// Lines: PIT OUT0 -> IRQ0, RTC -> IRQ8, SCI -> IRQ9, and IVm.SetIrqLine for the platform's devices (GSI 0-15
// are the PIC's inputs). The PIC's INTR is polled by the vCPU at instruction-batch boundaries and acknowledged
// (INTA) when the CPU can take it. ACPI S5 and the PM reset become the vCPU exits PowerOff and Reset, as a
// kernel reports them. Not yet here: LAPIC, IOAPIC and HPET (issue 4), which also belong to this placement.
// Lock: one lock for all kernel devices (they call each other: PIT -> PIC); it is a leaf — nothing else is
// taken while it is held, and the platform's exit handler is called only after it is released.
using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;

namespace ActorVmm.Native.Soft;

public sealed class SoftKernelDevices : IMachineControl
{
    private readonly Lock _lock = new();
    private readonly Action _wake;
    private int _pendingStop; // 0 none, 1 power-off, 2 reset

    internal SoftKernelDevices(IClock clock, ulong ramBytes, int cpuCount, DateTime rtcStart, Action wake)
    {
        Clock = clock;
        _wake = wake;
        Pic = new Pic8259Pair(new WakeLine(this));
        Pit = new Pit8254(clock, new PicInput(Pic, 0));
        Rtc = new Rtc146818(clock, new PicInput(Pic, 8), rtcStart);
        Rtc.SetMemorySize(Math.Min(ramBytes, 0xC000_0000UL), ramBytes > 0xC000_0000UL ? ramBytes - 0xC000_0000UL : 0);
        Rtc.SetCpuCount(cpuCount);
        Pm = new AcpiPm(clock, new PicInput(Pic, 9), this);
        var b = new BusBuilder();
        b.AddPorts(new PortRange(0x20, 2), new DirectEndpoint(Pic.Master, _lock));
        b.AddPorts(new PortRange(0xa0, 2), new DirectEndpoint(Pic.Slave, _lock));
        b.AddPorts(new PortRange(0x4d0, 2), new DirectEndpoint(Pic.Elcr, _lock));
        b.AddPorts(new PortRange(0x40, 4), new DirectEndpoint(Pit, _lock));
        b.AddPorts(new PortRange(0x61, 1), new DirectEndpoint(Pit.Port61, _lock));
        b.AddPorts(new PortRange(0x70, 4), new DirectEndpoint(Rtc, _lock));
        b.AddPorts(new PortRange(Pm.BasePort, 12), new DirectEndpoint(Pm, _lock));
        Bus = b.Build();
    }

    public IClock Clock { get; }

    public Pic8259Pair Pic { get; }

    public Pit8254 Pit { get; }

    public Rtc146818 Rtc { get; }

    public AcpiPm Pm { get; }

    /// <summary>The ports these devices answer (checked before the platform's bus).</summary>
    public Bus Bus { get; }

    /// <summary>Drives PIC input <paramref name="gsi"/> (0-15); other GSIs have no consumer until the IOAPIC exists.</summary>
    public bool SetIrq(int gsi, bool level)
    {
        if ((uint)gsi >= 16 || gsi == 2) return false;
        lock (_lock) Pic.SetIrq(gsi, level);
        return true;
    }

    /// <summary>Runs the timers up to now.</summary>
    public void Advance()
    {
        lock (_lock)
        {
            long now = Clock.NowNanoseconds;
            Pit.Advance(now);
            Rtc.Advance(now);
            Pm.Advance(now);
        }
    }

    /// <summary>The earliest timer deadline, or null.</summary>
    public long? NextDeadlineNs
    {
        get
        {
            lock (_lock) return Min(Min(Pit.NextDeadlineNs, Rtc.NextDeadlineNs), Pm.NextDeadlineNs);
        }
    }

    private static long? Min(long? a, long? b) => a is null ? b : b is null ? a : Math.Min(a.Value, b.Value);

    /// <summary>INTA: when the PIC has a request, returns its vector.</summary>
    public bool TryAcknowledge(out byte vector)
    {
        lock (_lock)
        {
            if (!Pic.IntrLevel)
            {
                vector = 0;
                return false;
            }
            vector = (byte)Pic.Acknowledge();
            return true;
        }
    }

    public bool InterruptRequested
    {
        get
        {
            lock (_lock) return Pic.IntrLevel;
        }
    }

    /// <summary>ACPI S5 or reset from the in-kernel PM block: taken by the vCPU as a PowerOff or Reset exit.</summary>
    public void RequestStop(MachineStopRequest request)
    {
        Interlocked.Exchange(ref _pendingStop, request.Reason == MachineStopReason.Reset ? 2 : 1);
        _wake();
    }

    /// <summary>The stop the guest asked the kernel devices for, once.</summary>
    internal VcpuExit? TakePendingStop() => Interlocked.Exchange(ref _pendingStop, 0) switch
    {
        1 => new VcpuExit(VcpuExitKind.PowerOff, "ACPI S5 (SLP_EN with SLP_TYP = S5)"),
        2 => new VcpuExit(VcpuExitKind.Reset, "reset through the ACPI PM block"),
        _ => null,
    };

    private sealed class PicInput(Pic8259Pair pic, int irq) : IIrqLine
    {
        public void Set(bool level) => pic.SetIrq(irq, level);
    }

    private sealed class WakeLine(SoftKernelDevices owner) : IIrqLine
    {
        public void Set(bool level)
        {
            if (level) owner._wake();
        }
    }

    /// <summary>Routes the kernel devices' ports here and everything else to the platform's handler.</summary>
    internal sealed class ExitFilter(SoftKernelDevices kernel, IExitHandler platform) : IExitHandler
    {
        public IExitHandler Platform { get; } = platform;

        public void PortRead(ushort port, Span<byte> data)
        {
            var e = kernel.Bus.Pio.Lookup(port, out ushort offset);
            if (e is null) Platform.PortRead(port, data);
            else e.Read(offset, data);
        }

        public void PortWrite(ushort port, ReadOnlySpan<byte> data)
        {
            var e = kernel.Bus.Pio.Lookup(port, out ushort offset);
            if (e is null) Platform.PortWrite(port, data);
            else e.Write(offset, data);
        }

        public void MmioRead(ulong gpa, Span<byte> data) => Platform.MmioRead(gpa, data);

        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data) => Platform.MmioWrite(gpa, data);

        public bool MsrRead(uint msr, out ulong value) => Platform.MsrRead(msr, out value);

        public bool MsrWrite(uint msr, ulong value) => Platform.MsrWrite(msr, value);
    }
}

/// <summary>
/// The soft accelerator's one clock: host time since the VM was created, or, in deterministic mode, guest
/// instructions retired (1 ns each) plus the time skipped while the vCPU was halted waiting for a timer.
/// </summary>
internal sealed class SoftClock(bool deterministic) : IClock
{
    private readonly long _start = System.Diagnostics.Stopwatch.GetTimestamp();
    private long _instructions;
    private long _skipped;

    public bool Deterministic { get; } = deterministic;

    /// <summary>Nanoseconds skipped while halted (deterministic mode).</summary>
    public long Skipped => Volatile.Read(ref _skipped);

    public long NowNanoseconds => Deterministic
        ? Volatile.Read(ref _instructions) + Volatile.Read(ref _skipped)
        : (long)((System.Diagnostics.Stopwatch.GetTimestamp() - _start) * (1e9 / System.Diagnostics.Stopwatch.Frequency));

    /// <summary>Deterministic mode: the vCPU reports its retired-instruction count.</summary>
    public void SetInstructions(ulong retired) => Volatile.Write(ref _instructions, (long)retired);

    /// <summary>Deterministic mode: a halted vCPU jumps time forward to the next deadline.</summary>
    public void SkipTo(long deadline)
    {
        long now = NowNanoseconds;
        if (deadline > now) Interlocked.Add(ref _skipped, deadline - now);
    }
}
