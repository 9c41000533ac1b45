// One PCI function's 256-byte type-0 configuration space (PCI Local Bus Specification 3.0, chapter 6).
//
// Header: 0x00 vendor ID, 0x02 device ID, 0x04 command, 0x06 status, 0x08 revision, 0x09 class code
// (prog-if, subclass, base class), 0x0c cache line size, 0x0d latency timer, 0x0e header type (bit 7:
// multi-function), 0x0f BIST, 0x10-0x24 BARs, 0x2c subsystem vendor / subsystem ID, 0x30 expansion ROM,
// 0x34 capabilities pointer, 0x3c interrupt line, 0x3d interrupt pin.
//
// Emulated: a byte-granular write mask and write-1-to-clear mask over the whole space, so any register a
// device declares writable behaves right for every access width; command bits I/O, memory, bus master, parity
// error response, SERR# and INTx disable; status bits 15:11 and 8 write-1-to-clear; cache line, latency timer
// and interrupt line writable; BARs declared with PciBarDefinition (I/O, 32-bit or 64-bit memory, prefetchable)
// with the sizing protocol falling out of the mask (write all-ones, read back the size mask and the type bits).
// Devices add their own writable registers with SetWritable and hear about writes through ConfigWritten.
// Not emulated: expansion ROM BARs (0x30 reads 0, so sizing finds none), capability lists, BIST.
using System.Buffers.Binary;

namespace ActorVmm.Core.Devices;

public enum PciBarKind
{
    Io,
    Memory32,
    Memory64,
}

/// <summary>A base address register: its index (0-5; a 64-bit BAR also takes index + 1), size and kind.</summary>
public sealed record PciBarDefinition(int Index, ulong Size, PciBarKind Kind, bool Prefetchable = false);

public class PciFunction
{
    public const int ConfigSize = 256;

    public const int VENDOR_ID = 0x00, DEVICE_ID = 0x02, COMMAND = 0x04, STATUS = 0x06, REVISION_ID = 0x08,
        CLASS_CODE = 0x09, CACHE_LINE_SIZE = 0x0c, LATENCY_TIMER = 0x0d, HEADER_TYPE = 0x0e, BAR0 = 0x10,
        SUBSYSTEM_VENDOR_ID = 0x2c, SUBSYSTEM_ID = 0x2e, EXPANSION_ROM = 0x30, CAPABILITIES_POINTER = 0x34,
        INTERRUPT_LINE = 0x3c, INTERRUPT_PIN = 0x3d;

    public const ushort CommandIoSpace = 1 << 0;
    public const ushort CommandMemorySpace = 1 << 1;
    public const ushort CommandBusMaster = 1 << 2;
    public const ushort CommandWritable = 0x0547; // I/O, memory, bus master, parity, SERR#, INTx disable
    public const ushort StatusWriteOneToClear = 0xf900;

    private readonly byte[] _config = new byte[ConfigSize];
    private readonly byte[] _writeMask = new byte[ConfigSize];
    private readonly byte[] _clearMask = new byte[ConfigSize];
    private readonly PciBarDefinition?[] _bars = new PciBarDefinition?[6];

    /// <param name="classCode">24 bits: base class &lt;&lt; 16 | subclass &lt;&lt; 8 | programming interface.</param>
    /// <param name="interruptPin">0 none, 1-4 INTA#-INTD#.</param>
    public PciFunction(string name, ushort vendorId, ushort deviceId, uint classCode, byte revision = 0,
        bool multiFunction = false, byte interruptPin = 0, IEnumerable<PciBarDefinition>? bars = null,
        ushort subsystemVendorId = 0, ushort subsystemId = 0)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (vendorId == 0xffff) throw new ArgumentException($"PCI function {name}: vendor ID 0xffff means 'absent'", nameof(vendorId));
        if (classCode > 0xffffff) throw new ArgumentOutOfRangeException(nameof(classCode), $"PCI function {name}: class code 0x{classCode:x} is wider than 24 bits");
        if (interruptPin > 4) throw new ArgumentOutOfRangeException(nameof(interruptPin), $"PCI function {name}: interrupt pin {interruptPin} is not INTA#-INTD#");
        Name = name;
        Set16(VENDOR_ID, vendorId);
        Set16(DEVICE_ID, deviceId);
        _config[REVISION_ID] = revision;
        _config[CLASS_CODE] = (byte)classCode;
        _config[CLASS_CODE + 1] = (byte)(classCode >> 8);
        _config[CLASS_CODE + 2] = (byte)(classCode >> 16);
        _config[HEADER_TYPE] = multiFunction ? (byte)0x80 : (byte)0;
        Set16(SUBSYSTEM_VENDOR_ID, subsystemVendorId);
        Set16(SUBSYSTEM_ID, subsystemId);
        _config[INTERRUPT_PIN] = interruptPin;

        SetWritable(COMMAND, 2, CommandWritable);
        _clearMask[STATUS] = StatusWriteOneToClear & 0xff;
        _clearMask[STATUS + 1] = StatusWriteOneToClear >> 8;
        SetWritable(CACHE_LINE_SIZE, 1);
        SetWritable(LATENCY_TIMER, 1);
        SetWritable(INTERRUPT_LINE, 1);

        foreach (var bar in bars ?? []) DefineBar(name, bar);
    }

    public string Name { get; }

    public ushort VendorId => Get16(VENDOR_ID);
    public ushort DeviceId => Get16(DEVICE_ID);
    public uint ClassCode => (uint)(_config[CLASS_CODE] | _config[CLASS_CODE + 1] << 8 | _config[CLASS_CODE + 2] << 16);
    public bool MultiFunction => (_config[HEADER_TYPE] & 0x80) != 0;
    public ushort CommandBits => Get16(COMMAND);
    public ushort StatusBits => Get16(STATUS);
    public byte InterruptLine => _config[INTERRUPT_LINE];
    public byte InterruptPin => _config[INTERRUPT_PIN];

    /// <summary>Called after a guest write with (function, offset, length), for devices and the platform to react.</summary>
    public Action<PciFunction, int, int>? ConfigWritten { get; set; }

    public PciBarDefinition? GetBar(int index) => (uint)index < 6 ? _bars[index] : null;

    /// <summary>The address a BAR decodes at, or null when the BAR is undefined or its space is disabled in COMMAND.</summary>
    public ulong? BarAddress(int index)
    {
        var bar = GetBar(index);
        if (bar is null) return null;
        uint low = BinaryPrimitives.ReadUInt32LittleEndian(_config.AsSpan(BAR0 + 4 * index));
        switch (bar.Kind)
        {
            case PciBarKind.Io:
                return (CommandBits & CommandIoSpace) != 0 ? low & 0xfffffffcUL : null;
            case PciBarKind.Memory32:
                return (CommandBits & CommandMemorySpace) != 0 ? low & 0xfffffff0UL : null;
            default:
                uint high = BinaryPrimitives.ReadUInt32LittleEndian(_config.AsSpan(BAR0 + 4 * index + 4));
                return (CommandBits & CommandMemorySpace) != 0 ? ((ulong)high << 32) | (low & 0xfffffff0UL) : null;
        }
    }

    /// <summary>Makes <paramref name="length"/> bytes at <paramref name="offset"/> guest-writable with the given bit mask (little-endian).</summary>
    public void SetWritable(int offset, int length, ulong mask = ulong.MaxValue)
    {
        if (offset < 0 || length < 1 || length > 8 || offset + length > ConfigSize)
            throw new ArgumentOutOfRangeException(nameof(offset), $"PCI function {Name}: 0x{offset:x}+{length} is outside the configuration space");
        for (int i = 0; i < length; i++) _writeMask[offset + i] = (byte)(mask >> (8 * i));
    }

    /// <summary>Sets configuration bytes from the device side (initial values of device registers); no masks apply.</summary>
    public void SetConfig(int offset, ReadOnlySpan<byte> value)
    {
        if (offset < 0 || offset + value.Length > ConfigSize)
            throw new ArgumentOutOfRangeException(nameof(offset), $"PCI function {Name}: 0x{offset:x}+{value.Length} is outside the configuration space");
        value.CopyTo(_config.AsSpan(offset));
    }

    public void SetConfig8(int offset, byte value) => SetConfig(offset, [value]);

    public void SetConfig16(int offset, ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        SetConfig(offset, b);
    }

    /// <summary>A guest configuration read; <paramref name="offset"/> + length must stay inside the space.</summary>
    public void ReadConfig(int offset, Span<byte> data)
    {
        if (offset < 0 || offset + data.Length > ConfigSize)
        {
            data.Fill(0xff);
            return;
        }
        _config.AsSpan(offset, data.Length).CopyTo(data);
    }

    /// <summary>A guest configuration write through the write and write-1-to-clear masks.</summary>
    public void WriteConfig(int offset, ReadOnlySpan<byte> data)
    {
        if (offset < 0 || offset + data.Length > ConfigSize) return;
        for (int i = 0; i < data.Length; i++)
        {
            int o = offset + i;
            byte v = data[i];
            byte b = (byte)((_config[o] & ~_writeMask[o]) | (v & _writeMask[o]));
            _config[o] = (byte)(b & ~(v & _clearMask[o]));
        }
        ConfigWritten?.Invoke(this, offset, data.Length);
    }

    /// <summary>A copy of the configuration space (for state).</summary>
    public byte[] GetConfig() => (byte[])_config.Clone();

    /// <summary>Restores a saved configuration space; the identity (IDs, class, header type) must match.</summary>
    public void LoadConfig(byte[] config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Length != ConfigSize)
            throw new ArgumentException($"PCI function {Name}: configuration space must be {ConfigSize} bytes, not {config.Length}", nameof(config));
        if (!config.AsSpan(0, 4).SequenceEqual(_config.AsSpan(0, 4)) || !config.AsSpan(CLASS_CODE, 3).SequenceEqual(_config.AsSpan(CLASS_CODE, 3))
            || config[HEADER_TYPE] != _config[HEADER_TYPE])
            throw new ArgumentException($"PCI function {Name}: saved configuration space belongs to another device", nameof(config));
        config.CopyTo(_config, 0);
    }

    private void DefineBar(string name, PciBarDefinition bar)
    {
        int slots = bar.Kind == PciBarKind.Memory64 ? 2 : 1;
        if (bar.Index < 0 || bar.Index + slots > 6)
            throw new ArgumentOutOfRangeException(nameof(bar), $"PCI function {name}: BAR {bar.Index} does not fit BAR0-BAR5");
        for (int i = bar.Index; i < bar.Index + slots; i++)
        {
            if (_bars[i] is not null || (i > 0 && _bars[i - 1] is { Kind: PciBarKind.Memory64 } prev && prev.Index == i - 1))
                throw new ArgumentException($"PCI function {name}: BAR {i} is defined twice", nameof(bar));
        }
        ulong minimum = bar.Kind == PciBarKind.Io ? 4UL : 16UL;
        ulong maximum = bar.Kind switch { PciBarKind.Io => 256UL, PciBarKind.Memory32 => 1UL << 31, _ => 1UL << 63 };
        if (bar.Size < minimum || bar.Size > maximum || (bar.Size & (bar.Size - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(bar), $"PCI function {name}: BAR {bar.Index} size 0x{bar.Size:x} is not a power of two in 0x{minimum:x}..0x{maximum:x}");
        if (bar.Kind == PciBarKind.Io && bar.Prefetchable)
            throw new ArgumentException($"PCI function {name}: I/O BAR {bar.Index} cannot be prefetchable", nameof(bar));

        int offset = BAR0 + 4 * bar.Index;
        ulong addressMask = ~(bar.Size - 1);
        uint typeBits = bar.Kind switch
        {
            PciBarKind.Io => 1u,
            PciBarKind.Memory32 => bar.Prefetchable ? 8u : 0u,
            _ => bar.Prefetchable ? 0xcu : 0x4u,
        };
        BinaryPrimitives.WriteUInt32LittleEndian(_config.AsSpan(offset), typeBits);
        if (bar.Kind == PciBarKind.Memory64)
        {
            SetWritable(offset, 8, addressMask & ~0xfUL);
        }
        else
        {
            ulong low = addressMask & (bar.Kind == PciBarKind.Io ? 0xfffffffcUL : 0xfffffff0UL);
            SetWritable(offset, 4, low);
        }
        _bars[bar.Index] = bar;
    }

    private ushort Get16(int offset) => BinaryPrimitives.ReadUInt16LittleEndian(_config.AsSpan(offset));

    private void Set16(int offset, ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(_config.AsSpan(offset), value);
}
