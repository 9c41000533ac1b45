// The devices of the split/off irqchip as their hosts see them (PlatformIrqchip.cs has the wiring): a HostedDevice is
// one Core device model behind one IBusDevice, with the model's own lock taken for every touch and a TimerSlot that
// holds its next deadline after every touch. HostedPic (the 8259A pair with the CPU's INTA as an offset no port
// reaches), HostedPit (the 8254 with port 0x61), HostedModel (RTC, ACPI PM, IOAPIC, HPET: registers at their own
// offsets) and HostedLapic (a local APIC's CPU-side window: xAPIC page, MSRs, IA32_APIC_BASE, CR8, INTA; its IPIs
// and level EOIs leave only after its lock is released). Nothing here is an actor: a DeviceActor hosts each one.
using System.Buffers.Binary;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Machine;

/// <summary>A model with a timer: the host calls Advance when NextDeadlineNs (VM-clock ns) has passed.</summary>
public interface ITimedDevice
{
    long? NextDeadlineNs { get; }

    void Advance(long nowNs);
}

/// <summary>
/// One timer deadline as its host sees it (long.MaxValue: none). Written under the device's lock after every touch
/// of the model; <see cref="Changed"/> (set by the timer service, non-blocking) is told when it moves earlier.
/// </summary>
public sealed class TimerSlot
{
    private long _deadline = long.MaxValue;

    public long DeadlineNs => Volatile.Read(ref _deadline);

    public Action? Changed { get; set; }

    public void Set(long? deadlineNs)
    {
        long v = deadlineNs ?? long.MaxValue;
        long old = Interlocked.Exchange(ref _deadline, v);
        if (v < old) Changed?.Invoke();
    }
}

/// <summary>
/// A device model hosted outside the accelerator: every touch takes the model's own lock, and afterwards the timer
/// slot holds the model's next deadline. Subclasses implement the *Locked members.
/// </summary>
public abstract class HostedDevice(string name) : IBusDevice, ITimedDevice
{
    /// <summary>The model's own lock (see the lock order in the file summary).</summary>
    protected Lock ModelLock { get; } = new();

    public string Name { get; } = name;

    public TimerSlot Timer { get; } = new();

    public long? NextDeadlineNs
    {
        get
        {
            long d = Timer.DeadlineNs;
            return d == long.MaxValue ? null : d;
        }
    }

    public void Read(ulong offset, Span<byte> data)
    {
        lock (ModelLock)
        {
            ReadLocked(offset, data);
            Timer.Set(DeadlineLocked);
        }
        AfterUnlock();
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (ModelLock)
        {
            WriteLocked(offset, data);
            Timer.Set(DeadlineLocked);
        }
        AfterUnlock();
    }

    public void Advance(long nowNs)
    {
        lock (ModelLock)
        {
            AdvanceLocked(nowNs);
            Timer.Set(DeadlineLocked);
        }
        AfterUnlock();
    }

    protected abstract void ReadLocked(ulong offset, Span<byte> data);

    protected abstract void WriteLocked(ulong offset, ReadOnlySpan<byte> data);

    protected virtual void AdvanceLocked(long nowNs)
    {
    }

    protected virtual long? DeadlineLocked => null;

    /// <summary>Runs after the lock is released (the local APIC's outbox).</summary>
    protected virtual void AfterUnlock()
    {
    }
}

/// <summary>
/// The 8259A pair as one hosted device: offsets 0-1 the master (ports 0x20-0x21), 2-3 the slave (0xa0-0xa1), 4-5
/// ELCR (0x4d0-0x4d1); offset <see cref="IntaOffset"/> is the CPU's INTA cycle, which no port reaches: a 2-byte read
/// answers [1, vector] (the vector is now in service) or [0, 0] when INTR is low.
/// </summary>
public sealed class HostedPic : HostedDevice
{
    public const ulong SlaveOffset = 2, ElcrOffset = 4, IntaOffset = 8;

    public HostedPic(IIrqLine intr) : base("pic") => Model = new Pic8259Pair(intr);

    public Pic8259Pair Model { get; }

    public void SetIrq(int irq, bool level)
    {
        lock (ModelLock) Model.SetIrq(irq, level);
    }

    protected override void ReadLocked(ulong offset, Span<byte> data)
    {
        switch (offset)
        {
            case < SlaveOffset: Model.Master.Read(offset, data); break;
            case < ElcrOffset: Model.Slave.Read(offset - SlaveOffset, data); break;
            case < ElcrOffset + 2: Model.Elcr.Read(offset - ElcrOffset, data); break;
            case IntaOffset when data.Length == 2:
                if (Model.IntrLevel)
                {
                    data[0] = 1;
                    data[1] = (byte)Model.Acknowledge();
                }
                else
                {
                    data.Clear();
                }
                break;
            default: data.Fill(0xff); break;
        }
    }

    protected override void WriteLocked(ulong offset, ReadOnlySpan<byte> data)
    {
        switch (offset)
        {
            case < SlaveOffset: Model.Master.Write(offset, data); break;
            case < ElcrOffset: Model.Slave.Write(offset - SlaveOffset, data); break;
            case < ElcrOffset + 2: Model.Elcr.Write(offset - ElcrOffset, data); break;
        }
    }
}

/// <summary>The 8254 with port 0x61 as one hosted device: offsets 0-3 the PIT (0x40-0x43), 4 port 0x61.</summary>
public sealed class HostedPit(IClock clock, IIrqLine irq0) : HostedDevice("pit")
{
    public const ulong Port61Offset = 4;

    public Pit8254 Model { get; } = new(clock, irq0);

    protected override void ReadLocked(ulong offset, Span<byte> data)
    {
        if (offset < Port61Offset) Model.Read(offset, data);
        else Model.Port61.Read(offset - Port61Offset, data);
    }

    protected override void WriteLocked(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset < Port61Offset) Model.Write(offset, data);
        else Model.Port61.Write(offset - Port61Offset, data);
    }

    protected override void AdvanceLocked(long nowNs) => Model.Advance(nowNs);

    protected override long? DeadlineLocked => Model.NextDeadlineNs;
}

/// <summary>A hosted model whose registers are its own offsets (RTC, ACPI PM, IOAPIC, HPET).</summary>
public sealed class HostedModel<T>(T model, Action<T, long>? advance = null, Func<T, long?>? deadline = null, Action<T>? afterAccess = null)
    : HostedDevice(model.Name) where T : IBusDevice
{
    public T Model { get; } = model;

    /// <summary>Runs <paramref name="action"/> on the model under its lock (interrupt inputs, EOIs).</summary>
    public void Locked(Action<T> action)
    {
        lock (ModelLock)
        {
            action(Model);
            Timer.Set(DeadlineLocked);
        }
    }

    protected override void ReadLocked(ulong offset, Span<byte> data)
    {
        Model.Read(offset, data);
        afterAccess?.Invoke(Model);
    }

    protected override void WriteLocked(ulong offset, ReadOnlySpan<byte> data)
    {
        Model.Write(offset, data);
        afterAccess?.Invoke(Model);
    }

    protected override void AdvanceLocked(long nowNs)
    {
        advance?.Invoke(Model, nowNs);
        afterAccess?.Invoke(Model);
    }

    protected override long? DeadlineLocked => deadline?.Invoke(Model);
}

/// <summary>
/// A local APIC outside the accelerator (kernel-irqchip=off): its CPU-side window as one hosted device.
/// Offsets: 0x0000-0x0fff the xAPIC page; <see cref="MsrWindow"/> + 16 × (MSR − 0x800) the x2APIC MSRs and
/// <see cref="TscDeadlineOffset"/> IA32_TSC_DEADLINE: an 8-byte write is WRMSR (its #GP verdict is then read as one
/// byte at <see cref="MsrStatusOffset"/>: 1 accepted, 0 #GP), a 9-byte read is RDMSR (value, then 1 or 0 for
/// #GP); <see cref="ApicBaseOffset"/> (8-byte write) the CPU's new IA32_APIC_BASE; <see cref="TprOffset"/> (4 bytes)
/// the TPR as CR8 sees it in either mode; <see cref="IntaOffset"/> (2-byte read) the CPU's INTA: [1, vector] with
/// the vector moved from IRR to ISR, [2, 0] for ExtINT (take the vector from the 8259), [0, 0] nothing.
/// </summary>
public sealed class HostedLapic : HostedDevice
{
    public const ulong MsrWindow = 0x1000, TscDeadlineOffset = 0x2000, ApicBaseOffset = 0x2010, MsrStatusOffset = 0x2020,
        TprOffset = 0x2030, IntaOffset = 0x2040;

    public const byte IntaNone = 0, IntaVector = 1, IntaExtInt = 2;

    private readonly Queue<ApicMessage> _ipis = new();
    private readonly Queue<byte> _eois = new();
    private readonly IInterruptSink _bus;
    private readonly Action<byte> _eoi;
    private readonly CpuLink _cpu;
    private bool _lastMsrOk = true;

    /// <param name="id">The vCPU (and initial APIC ID).</param>
    /// <param name="bus">Where IPIs go (sent after the lock is released).</param>
    /// <param name="levelEoi">Where level-triggered EOIs go (the IOAPIC; called after the lock is released).</param>
    /// <param name="nmi">Injects an NMI into the vCPU.</param>
    public HostedLapic(int id, IClock clock, IInterruptSink bus, Action<byte> levelEoi, Action<int> nmi) : base($"lapic{id}")
    {
        Id = id;
        _bus = bus;
        _eoi = levelEoi;
        _cpu = new CpuLink(this, nmi);
        Model = new LocalApic((uint)id, bsp: id == 0, 1_000_000_000, clock, _cpu, new Outbox(this), v =>
        {
            if (_eois.Count < 256) _eois.Enqueue(v); // flushed after every access: a bound, never reached
        });
    }

    public int Id { get; }

    public LocalApic Model { get; }

    /// <summary>SMI signals (no SMM), and INIT or start-up signals the vCPU's backend cannot take from a userspace APIC; counted.</summary>
    public long UnsupportedSignals => Interlocked.Read(ref _cpu.Unsupported);

    /// <summary>The vCPU whose interrupt request this APIC drives (set once the vCPU exists).</summary>
    public IVcpu? Vcpu
    {
        get => _cpu.Vcpu;
        set
        {
            lock (ModelLock)
            {
                _cpu.Vcpu = value;
                _cpu.Update(force: true);
            }
        }
    }

    /// <summary>An APIC-bus message: accepted if this APIC is a destination. Returns whether it matched.</summary>
    public bool Offer(in ApicMessage message, bool accept)
    {
        lock (ModelLock)
        {
            if (!Model.Matches(message)) return false;
            if (accept)
            {
                Model.AcceptMessage(message);
                _cpu.Update();
            }
            return true;
        }
    }

    public void Accept(in ApicMessage message)
    {
        lock (ModelLock)
        {
            Model.AcceptMessage(message);
            _cpu.Update();
        }
    }

    public byte ProcessorPriority
    {
        get
        {
            lock (ModelLock) return Model.ProcessorPriority;
        }
    }

    public void SetLint(int pin, bool level)
    {
        lock (ModelLock)
        {
            Model.SetLint(pin, level);
            _cpu.Update();
        }
        AfterUnlock();
    }

    protected override void ReadLocked(ulong offset, Span<byte> data)
    {
        if (offset < LocalApic.MmioSize)
        {
            Model.Read(offset, data);
        }
        else if (TryMsr(offset, out uint msr) && data.Length == 9)
        {
            bool ok = Model.ReadMsr(msr, out ulong value);
            BinaryPrimitives.WriteUInt64LittleEndian(data, value);
            data[8] = ok ? (byte)1 : (byte)0;
        }
        else if (offset == MsrStatusOffset && data.Length == 1)
        {
            data[0] = _lastMsrOk ? (byte)1 : (byte)0;
        }
        else if (offset == TprOffset && data.Length == 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(data, Model.TaskPriority);
        }
        else if (offset == IntaOffset && data.Length == 2)
        {
            data[1] = 0;
            if (Model.HasInterrupt(out _))
            {
                data[0] = IntaVector;
                data[1] = Model.Acknowledge();
            }
            else if (Model.ExtIntPending)
            {
                Model.AcknowledgeExtInt();
                data[0] = IntaExtInt;
            }
            else
            {
                data[0] = IntaNone;
            }
        }
        else
        {
            data.Fill(0xff);
        }
        _cpu.Update();
    }

    protected override void WriteLocked(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset < LocalApic.MmioSize)
        {
            Model.Write(offset, data);
        }
        else if (TryMsr(offset, out uint msr) && data.Length == 8)
        {
            _lastMsrOk = Model.WriteMsr(msr, BinaryPrimitives.ReadUInt64LittleEndian(data));
        }
        else if (offset == ApicBaseOffset && data.Length == 8)
        {
            ulong value = BinaryPrimitives.ReadUInt64LittleEndian(data);
            if (Model.ApicBaseMsr != value) Model.WriteMsr(LocalApic.IA32_APIC_BASE, value);
        }
        else if (offset == TprOffset && data.Length == 4)
        {
            uint tpr = BinaryPrimitives.ReadUInt32LittleEndian(data) & 0xff;
            if (Model.X2ApicMode) Model.WriteMsr((uint)(LocalApic.X2ApicMsrFirst + LocalApic.TPR), tpr);
            else if (Model.MmioEnabled) Model.Write(LocalApic.TPR << 4, data);
        }
        _cpu.Update();
    }

    private static bool TryMsr(ulong offset, out uint msr)
    {
        if (offset == TscDeadlineOffset)
        {
            msr = LocalApic.IA32_TSC_DEADLINE;
            return true;
        }
        if (offset >= MsrWindow && offset < MsrWindow + 0x100 * 16 && (offset & 0xf) == 0)
        {
            msr = LocalApic.X2ApicMsrFirst + (uint)((offset - MsrWindow) >> 4);
            return true;
        }
        msr = 0;
        return false;
    }

    /// <summary>The window offset of an APIC MSR the CPU forwards (x2APIC range or TSC deadline), or null.</summary>
    public static ulong? MsrOffset(uint msr) => msr switch
    {
        LocalApic.IA32_TSC_DEADLINE => TscDeadlineOffset,
        >= LocalApic.X2ApicMsrFirst and <= LocalApic.X2ApicMsrLast => MsrWindow + ((ulong)(msr - LocalApic.X2ApicMsrFirst) << 4),
        _ => null,
    };

    protected override void AdvanceLocked(long nowNs)
    {
        Model.Advance(nowNs);
        _cpu.Update();
    }

    protected override long? DeadlineLocked => Model.NextDeadlineNs;

    protected override void AfterUnlock()
    {
        // Only this APIC's lock guards the outbox; take what is there under it, send outside it.
        while (true)
        {
            ApicMessage ipi = default;
            byte eoi = 0;
            bool haveIpi, haveEoi;
            lock (ModelLock)
            {
                haveIpi = _ipis.TryDequeue(out ipi);
                haveEoi = !haveIpi && _eois.TryDequeue(out eoi);
            }
            if (haveIpi) _bus.Deliver(ipi);
            else if (haveEoi) _eoi(eoi);
            else return;
        }
    }

    /// <summary>IPIs the model sends while locked: queued for AfterUnlock.</summary>
    private sealed class Outbox(HostedLapic owner) : IInterruptSink
    {
        public void Deliver(in ApicMessage message)
        {
            if (owner._ipis.Count < 1024) owner._ipis.Enqueue(message);
        }
    }

    /// <summary>What the APIC tells its CPU: the interrupt request level (kept in step after every touch), NMI.</summary>
    private sealed class CpuLink(HostedLapic owner, Action<int> nmi) : IApicCpu
    {
        public IVcpu? Vcpu;
        public long Unsupported;
        private bool _level;

        public void Update(bool force = false)
        {
            if (owner.Model is null) return; // signals from inside the model's constructor
            bool level = owner.Model.HasInterrupt(out _) || owner.Model.ExtIntPending;
            if (level == _level && !force) return;
            _level = level;
            Vcpu?.SetInterruptRequest(level);
        }

        public void SignalInterrupt() => Update();

        public void SignalNmi() => nmi(owner.Id);

        public void SignalSmi() => Interlocked.Increment(ref Unsupported);

        // INIT and start-up go to the vCPU, which takes them at its next instruction boundary (IVcpu.SignalInit and
        // SignalStartup only record the signal and wake the vCPU: its event lock is a leaf below this APIC's lock).
        // A backend that cannot take them from a userspace APIC says so; the signal is counted, as SMI is.
        public void SignalInit() => Forward(v => v.SignalInit());

        public void SignalStartup(byte vector) => Forward(v => v.SignalStartup(vector));

        private void Forward(Action<IVcpu> signal)
        {
            if (Vcpu is not { } vcpu)
            {
                Interlocked.Increment(ref Unsupported); // no vCPU yet (machine construction): nobody to start
                return;
            }
            try
            {
                signal(vcpu);
            }
            catch (NotSupportedException)
            {
                Interlocked.Increment(ref Unsupported);
            }
        }
    }
}
