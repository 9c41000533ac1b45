// I/O APIC: Intel 82093AA programming model, as the version-0x20 parts in ICH/PIIX-era chipsets present it.
//
// Registers (MMIO, normally at 0xfec00000, offsets relative to the base):
//   0x00 IOREGSEL  index of the register IOWIN reaches (bits 7:0), 32-bit (byte writes of bits 7:0 accepted)
//   0x10 IOWIN     the selected register, 32-bit only
//   0x40 EOI       version 0x20's directed EOI: writing a vector (bits 7:0) clears Remote IRR of every
//                  level-triggered entry with that vector, as a local APIC EOI broadcast would
// Indirect registers: 0x00 IOAPICID (ID in bits 27:24), 0x01 IOAPICVER (0x00170020: version 0x20, 24 entries),
//   0x02 IOAPICARB (reads as the ID, as in QEMU), 0x10+2n / 0x11+2n IOREDTBLn low / high.
// Redirection entry bits: 7:0 INTVEC, 10:8 DELMOD (fixed, lowest priority, SMI, NMI, INIT, ExtINT),
//   11 DESTMOD (1 = logical), 12 DELIVS (RO), 13 INTPOL (1 = low active), 14 Remote IRR (RO),
//   15 TRIGGER (1 = level), 16 MASK (set at reset), 63:56 DEST.
//
// Emulated: edge inputs deliver on a rising edge of an unmasked pin and are discarded while masked (82093AA);
// level inputs deliver while asserted and unmasked and Remote IRR is clear, Remote IRR is set on delivery and
// cleared by an EOI for the entry's vector, after which a still-asserted input is delivered again; unmasking an
// asserted level pin delivers it. Only fixed and lowest-priority entries use Remote IRR; SMI, NMI, INIT and
// ExtINT entries deliver on a rising edge whatever their trigger bit (the local APIC treats them as edge).
// ExtINT passes through as a message whose vector the CPU must take from the 8259 (INTA cycle).
// Output: each delivery is one <see cref="ApicMessage"/> handed to an injected <see cref="IInterruptSink"/>;
// the message converts to and from the MSI (address, data) pair, so the sink can route it to local APICs or
// hand it to a kernel irqchip as an MSI.
// Not emulated: the pin polarity is recorded for the guest but not applied (SetIrq takes the asserted state,
// as QEMU and KVM do); delivery is instantaneous, so DELIVS always reads 0; no APIC serial bus arbitration.
using System.Buffers.Binary;
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

/// <summary>How an APIC interrupt message is delivered (ICR / redirection entry bits 10:8).</summary>
public enum ApicDeliveryMode : byte
{
    Fixed = 0,
    LowestPriority = 1,
    Smi = 2,
    Nmi = 4,
    Init = 5,
    StartUp = 6,
    ExtInt = 7,
}

/// <summary>ICR destination shorthand (bits 19:18). Messages from the IOAPIC and MSIs always use None.</summary>
public enum ApicShorthand : byte
{
    None = 0,
    Self = 1,
    AllIncludingSelf = 2,
    AllExcludingSelf = 3,
}

/// <summary>
/// One interrupt message on the APIC bus: what an IOAPIC redirection entry, an MSI or a local APIC's ICR
/// produces. <see cref="Destination"/> is 8 bits wide for xAPIC-format messages (0xff broadcast) and 32 bits
/// wide when <see cref="X2ApicDestination"/> is set (0xffffffff broadcast). <see cref="Level"/> is the ICR's
/// assert bit (false only for an INIT level de-assert); <see cref="LevelTriggered"/> is the trigger mode.
/// </summary>
public readonly record struct ApicMessage(
    byte Vector,
    ApicDeliveryMode DeliveryMode,
    bool LogicalDestination,
    uint Destination,
    bool LevelTriggered = false,
    bool Level = true,
    ApicShorthand Shorthand = ApicShorthand.None,
    bool X2ApicDestination = false,
    uint SourceApicId = 0)
{
    /// <summary>The MSI address window (bits 31:20 = 0xfee).</summary>
    public const uint MsiAddressBase = 0xfee00000;

    /// <summary>True when the destination is the broadcast value for the message's format.</summary>
    public bool IsBroadcast => X2ApicDestination ? Destination == 0xffffffff : (Destination & 0xff) == 0xff;

    /// <summary>The MSI address: 0xfee00000 | destination &lt;&lt; 12 | destination mode &lt;&lt; 2 (8-bit destinations only).</summary>
    public ulong MsiAddress => MsiAddressBase | ((Destination & 0xff) << 12) | (LogicalDestination ? 1u << 2 : 0);

    /// <summary>The MSI data: vector | delivery mode &lt;&lt; 8 | level &lt;&lt; 14 | trigger mode &lt;&lt; 15.</summary>
    public uint MsiData => Vector | ((uint)DeliveryMode << 8) | (Level ? 1u << 14 : 0) | (LevelTriggered ? 1u << 15 : 0);

    /// <summary>Decodes an MSI write. False when the address is outside the 0xfee00000 window.</summary>
    public static bool TryFromMsi(ulong address, uint data, out ApicMessage message)
    {
        if ((address & 0xfff00000) != MsiAddressBase || address >> 32 != 0)
        {
            message = default;
            return false;
        }
        var mode = (ApicDeliveryMode)((data >> 8) & 7);
        bool levelTriggered = (data & (1u << 15)) != 0;
        message = new ApicMessage(
            Vector: (byte)data,
            DeliveryMode: mode,
            LogicalDestination: (address & (1u << 2)) != 0,
            Destination: (uint)(address >> 12) & 0xff,
            LevelTriggered: levelTriggered,
            // Edge messages are always asserts; a level message carries its level bit.
            Level: !levelTriggered || (data & (1u << 14)) != 0);
        return true;
    }
}

/// <summary>Where interrupt messages go: the router that finds the target local APICs, or a kernel irqchip.</summary>
public interface IInterruptSink
{
    void Deliver(in ApicMessage message);
}

/// <summary>Saved IOAPIC state. <see cref="Redirection"/> has one 64-bit entry per pin.</summary>
public sealed record IoApicState(byte Id, byte RegisterSelect, ulong[] Redirection, uint PinLevels);

/// <summary>An 82093AA-style I/O APIC with 24 pins.</summary>
public sealed class IoApic : IBusDevice
{
    public const ulong DefaultBase = 0xfec00000;
    public const ulong MmioSize = 0x1000;
    public const int PinCount = 24;
    public const byte Version = 0x20;

    public const ulong IOREGSEL = 0x00;
    public const ulong IOWIN = 0x10;
    public const ulong EoiRegister = 0x40;

    public const byte IOAPICID = 0x00;
    public const byte IOAPICVER = 0x01;
    public const byte IOAPICARB = 0x02;
    public const byte IOREDTBL = 0x10;

    public const ulong INTVEC = 0xff;
    public const ulong DELMOD = 7ul << 8;
    public const ulong DESTMOD = 1ul << 11;
    public const ulong DELIVS = 1ul << 12;
    public const ulong INTPOL = 1ul << 13;
    public const ulong RemoteIrr = 1ul << 14;
    public const ulong TRIGGER = 1ul << 15;
    public const ulong MASK = 1ul << 16;
    /// <summary>Bits the guest may write: everything but DELIVS, Remote IRR and the reserved bits 55:17.</summary>
    public const ulong WritableBits = 0xff000000_0001afffUL;

    private readonly IInterruptSink _sink;
    private readonly ulong[] _redirection = new ulong[PinCount];
    private byte _id;
    private byte _select;
    private uint _pinLevels;

    public IoApic(IInterruptSink sink, byte id = 0)
    {
        _sink = sink;
        Reset();
        _id = (byte)(id & 0xf);
    }

    public string Name => "ioapic";

    /// <summary>Accesses with a bad width or offset, and selections of registers that do not exist.</summary>
    public long BadAccesses { get; private set; }

    /// <summary>Messages handed to the sink.</summary>
    public long Deliveries { get; private set; }

    public byte Id => _id;

    /// <summary>The raw redirection entry of <paramref name="pin"/> (for the host's routing decisions and tests).</summary>
    public ulong GetRedirection(int pin) => _redirection[pin];

    /// <summary>The asserted state of each input pin, bit n for pin n.</summary>
    public uint PinLevels => _pinLevels;

    /// <summary>Power-on state: every entry masked, edge, fixed, vector 0; ID kept.</summary>
    public void Reset()
    {
        Array.Fill(_redirection, MASK);
        _select = 0;
        _pinLevels = 0;
    }

    /// <summary>
    /// Drives input <paramref name="pin"/>: <paramref name="level"/> true is the asserted state. Edge entries
    /// deliver on a rising edge; level entries deliver while asserted (see the file summary). Out-of-range pins
    /// are counted and ignored.
    /// </summary>
    public void SetIrq(int pin, bool level)
    {
        if ((uint)pin >= PinCount)
        {
            BadAccesses++;
            return;
        }
        uint bit = 1u << pin;
        bool wasAsserted = (_pinLevels & bit) != 0;
        if (level) _pinLevels |= bit;
        else _pinLevels &= ~bit;
        if (!level) return;

        ulong entry = _redirection[pin];
        if (UsesRemoteIrr(entry))
            TryDeliverLevel(pin);
        else if (!wasAsserted && (entry & MASK) == 0)
            Deliver(entry);
    }

    /// <summary>
    /// An EOI for <paramref name="vector"/> from a local APIC (broadcast) or the EOI register: clears Remote IRR
    /// of the level entries with that vector and re-delivers those whose pin is still asserted.
    /// </summary>
    public void Eoi(byte vector)
    {
        for (int pin = 0; pin < PinCount; pin++)
        {
            ulong entry = _redirection[pin];
            if ((entry & RemoteIrr) == 0 || (byte)entry != vector) continue;
            _redirection[pin] = entry & ~RemoteIrr;
            TryDeliverLevel(pin);
        }
    }

    public void Read(ulong offset, Span<byte> data)
    {
        uint value;
        if (offset == IOREGSEL && (data.Length == 4 || data.Length == 1))
            value = _select;
        else if (offset == IOWIN && data.Length == 4)
            value = ReadRegister(_select);
        else if (offset == EoiRegister && data.Length == 4)
            value = 0; // write-only
        else
        {
            BadAccesses++;
            data.Fill(0xff);
            return;
        }
        Span<byte> buffer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(buffer, value);
        buffer[..data.Length].CopyTo(data);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset == IOREGSEL && (data.Length == 4 || data.Length == 1))
            _select = data[0];
        else if (offset == IOWIN && data.Length == 4)
            WriteRegister(_select, BinaryPrimitives.ReadUInt32LittleEndian(data));
        else if (offset == EoiRegister && data.Length == 4)
            Eoi(data[0]);
        else
            BadAccesses++;
    }

    public IoApicState GetState() => new(_id, _select, (ulong[])_redirection.Clone(), _pinLevels);

    /// <summary>Restores a saved state; throws <see cref="ArgumentException"/> naming the bad field.</summary>
    public void FromState(IoApicState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Id > 0xf) throw new ArgumentException($"IOAPIC ID {state.Id} does not fit 4 bits", nameof(state));
        if (state.Redirection is null || state.Redirection.Length != PinCount)
            throw new ArgumentException($"IOAPIC state needs {PinCount} redirection entries", nameof(state));
        if (state.PinLevels >> PinCount != 0)
            throw new ArgumentException($"IOAPIC pin levels 0x{state.PinLevels:x} name pins past {PinCount - 1}", nameof(state));
        for (int i = 0; i < PinCount; i++)
        {
            if ((state.Redirection[i] & ~(WritableBits | RemoteIrr)) != 0)
                throw new ArgumentException($"IOAPIC redirection entry {i} 0x{state.Redirection[i]:x} sets reserved bits", nameof(state));
        }
        _id = state.Id;
        _select = state.RegisterSelect;
        state.Redirection.CopyTo(_redirection, 0);
        _pinLevels = state.PinLevels;
    }

    private uint ReadRegister(byte index)
    {
        switch (index)
        {
            case IOAPICID:
            case IOAPICARB:
                return (uint)_id << 24;
            case IOAPICVER:
                return Version | ((PinCount - 1) << 16);
        }
        int entry = (index - IOREDTBL) >> 1;
        if (index >= IOREDTBL && entry < PinCount)
        {
            ulong value = _redirection[entry];
            return (index & 1) == 0 ? (uint)value : (uint)(value >> 32);
        }
        BadAccesses++;
        return 0;
    }

    private void WriteRegister(byte index, uint value)
    {
        if (index == IOAPICID)
        {
            _id = (byte)((value >> 24) & 0xf);
            return;
        }
        int pin = (index - IOREDTBL) >> 1;
        if (index < IOREDTBL || pin >= PinCount)
        {
            // IOAPICVER and IOAPICARB are read-only; anything else does not exist.
            BadAccesses++;
            return;
        }
        ulong old = _redirection[pin];
        ulong written = (index & 1) == 0
            ? (old & 0xffffffff00000000UL) | value
            : (old & 0xffffffffUL) | ((ulong)value << 32);
        ulong entry = (written & WritableBits) | (old & RemoteIrr);
        // An entry that stops being level-triggered can never see the EOI that would clear Remote IRR.
        if (!UsesRemoteIrr(entry)) entry &= ~RemoteIrr;
        _redirection[pin] = entry;

        if ((_pinLevels & (1u << pin)) != 0 && UsesRemoteIrr(entry))
            TryDeliverLevel(pin);
    }

    private static bool UsesRemoteIrr(ulong entry)
    {
        if ((entry & TRIGGER) == 0) return false;
        var mode = (ApicDeliveryMode)((entry & DELMOD) >> 8);
        return mode is ApicDeliveryMode.Fixed or ApicDeliveryMode.LowestPriority;
    }

    private void TryDeliverLevel(int pin)
    {
        ulong entry = _redirection[pin];
        if ((_pinLevels & (1u << pin)) == 0 || (entry & (MASK | RemoteIrr)) != 0 || !UsesRemoteIrr(entry)) return;
        _redirection[pin] = entry | RemoteIrr;
        Deliver(entry);
    }

    private void Deliver(ulong entry)
    {
        var message = new ApicMessage(
            Vector: (byte)(entry & INTVEC),
            DeliveryMode: (ApicDeliveryMode)((entry & DELMOD) >> 8),
            LogicalDestination: (entry & DESTMOD) != 0,
            Destination: (uint)(entry >> 56),
            LevelTriggered: UsesRemoteIrr(entry));
        Deliveries++;
        _sink.Deliver(message);
    }
}
