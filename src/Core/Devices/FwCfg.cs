// QEMU firmware configuration device (fw_cfg), x86 I/O-port flavour, as QEMU's docs/specs/fw_cfg.rst says.
//
// Ports (offsets relative to 0x510; the model takes 0x510-0x51b):
//   0   selector (0x510): 16-bit write selects an item and resets the data offset. Bit 15 marks
//       architecture-specific keys, bit 14 the old write channel (ignored: the item is key & 0xbfff)
//   0/1 data (0x511; QEMU also answers byte accesses at 0x510): 8-bit reads return the next byte of the item,
//       0 past its end; data-port writes are ignored (as since QEMU 2.4)
//   4-11 DMA address (0x514 high half, 0x518 low half, big-endian): a write of the low half, or one 64-bit
//       write at 0x514, starts an operation; reads return the signature "QEMU CFG"
// Items: 0x0000 signature "QEMU", 0x0001 ID (bit 0 traditional, bit 1 DMA), 0x0002 UUID, 0x0003 RAM size,
//   0x0005 CPU count, 0x000e boot menu, 0x000f max CPUs, Linux boot items 0x0007-0x0008, 0x000a-0x000b,
//   0x0011-0x0018, 0x0019 file directory (big-endian count, then 64-byte entries: size, select, reserved,
//   56-byte NUL-terminated name), files from 0x0020; any other key the host sets with SetItem.
//
// Emulated: the traditional interface and the DMA interface: the FWCfgDmaAccess structure (big-endian control,
// length, address) is read from guest memory; control bits select (upper 16 bits = key), read (copy, zeros past
// the item's end), skip (advance the offset) and write (only to files added as writable, never past their end,
// all or nothing); the control word is written back as 0 or with the error bit (bit 0). Guest memory goes
// through GuestMemory's bounds-checked Try* accessors: an unbacked address sets the error bit, never throws.
// Not emulated: the MMIO flavour, item callbacks (contents are fixed when set, except writable files).
using System.Buffers.Binary;
using System.Text;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Memory;

namespace ActorVmm.Core.Devices;

public sealed record FwCfgItemState(ushort Key, byte[] Data);

/// <summary>Guest-visible fw_cfg state: the selection, the data offset, a half-written DMA address, and writable files.</summary>
public sealed record FwCfgState(ushort Selector, uint Offset, uint DmaAddressHigh, FwCfgItemState[] WritableItems);

public sealed class FwCfg : IBusDevice
{
    public const ushort BasePort = 0x510;
    public const int PortCount = 12;

    public const ushort SIGNATURE = 0x0000, ID = 0x0001, UUID = 0x0002, RAM_SIZE = 0x0003, NOGRAPHIC = 0x0004,
        NB_CPUS = 0x0005, MACHINE_ID = 0x0006, KERNEL_ADDR = 0x0007, KERNEL_SIZE = 0x0008, KERNEL_CMDLINE = 0x0009,
        INITRD_ADDR = 0x000a, INITRD_SIZE = 0x000b, BOOT_DEVICE = 0x000c, NUMA = 0x000d, BOOT_MENU = 0x000e,
        MAX_CPUS = 0x000f, KERNEL_ENTRY = 0x0010, KERNEL_DATA = 0x0011, INITRD_DATA = 0x0012, CMDLINE_ADDR = 0x0013,
        CMDLINE_SIZE = 0x0014, CMDLINE_DATA = 0x0015, SETUP_ADDR = 0x0016, SETUP_SIZE = 0x0017, SETUP_DATA = 0x0018,
        FILE_DIR = 0x0019, FILE_FIRST = 0x0020;

    public const ushort ARCH_LOCAL = 0x8000, WRITE_CHANNEL = 0x4000;
    public const ushort ACPI_TABLES = 0x8000, SMBIOS_ENTRIES = 0x8001, IRQ0_OVERRIDE = 0x8002, E820_TABLE = 0x8003, HPET_BLOCK = 0x8004;

    public const uint DmaError = 1 << 0, DmaRead = 1 << 1, DmaSkip = 1 << 2, DmaSelect = 1 << 3, DmaWrite = 1 << 4;
    public const ulong DmaSignature = 0x51454d5520434647; // "QEMU CFG"

    public const int MaxFileNameLength = 55;
    public const int MaxFiles = 0x4000 - FILE_FIRST;

    private sealed class Item(byte[] data, bool writable)
    {
        public byte[] Data = data;
        public readonly bool Writable = writable;
    }

    private readonly GuestMemory? _memory;
    private readonly Dictionary<ushort, Item> _items = [];
    private readonly List<(string Name, ushort Key)> _files = [];
    private ushort _selector;
    private uint _offset;
    private uint _dmaHigh;

    /// <param name="memory">Guest memory for the DMA interface; null offers no DMA (ID bit 1 clear, DMA ports absent).</param>
    public FwCfg(GuestMemory? memory)
    {
        _memory = memory;
        SetItem(SIGNATURE, "QEMU"u8.ToArray());
        SetU32(ID, memory is null ? 1u : 3u);
        SetItem(UUID, new byte[16]);
        SetU16(NOGRAPHIC, 0);
        SetU64(RAM_SIZE, 0);
        SetU16(NB_CPUS, 1);
        SetU16(MAX_CPUS, 1);
        SetU16(BOOT_MENU, 0);
        SetU64(NUMA, 0);
        RebuildDirectory();
    }

    public string Name => "fw_cfg";

    public bool DmaEnabled => _memory is not null;

    /// <summary>Accesses with a bad width or offset, and data-port writes (ignored).</summary>
    public long BadAccesses { get; private set; }

    /// <summary>DMA operations that ended with the error bit (or could not even read their control structure).</summary>
    public long DmaErrors { get; private set; }

    public ushort Selector => _selector;

    // ---------------------------------------------------------------- host side

    /// <summary>Sets a numbered item (not a file). Throws for file keys and the directory, which AddFile manages.</summary>
    public void SetItem(ushort key, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        key &= unchecked((ushort)~WRITE_CHANNEL);
        if (key == FILE_DIR || ((key & ARCH_LOCAL) == 0 && key >= FILE_FIRST))
            throw new ArgumentException($"fw_cfg key 0x{key:x4} is managed by AddFile", nameof(key));
        _items[key] = new Item((byte[])data.Clone(), writable: false);
    }

    public void SetU16(ushort key, ushort value)
    {
        var b = new byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        SetItem(key, b);
    }

    public void SetU32(ushort key, uint value)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        SetItem(key, b);
    }

    public void SetU64(ushort key, ulong value)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        SetItem(key, b);
    }

    /// <summary>Adds a named file at the next key from 0x0020 and lists it in the directory; returns its key.</summary>
    public ushort AddFile(string name, byte[] data, bool writable = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(data);
        if (Encoding.UTF8.GetByteCount(name) > MaxFileNameLength || name.Contains('\0', StringComparison.Ordinal))
            throw new ArgumentException($"fw_cfg file name '{name}' is longer than {MaxFileNameLength} bytes or holds a NUL", nameof(name));
        if (_files.Exists(f => f.Name == name))
            throw new ArgumentException($"fw_cfg file '{name}' already exists", nameof(name));
        if (_files.Count >= MaxFiles)
            throw new InvalidOperationException($"fw_cfg holds {MaxFiles} files already; cannot add '{name}'");
        ushort key = (ushort)(FILE_FIRST + _files.Count);
        _items[key] = new Item((byte[])data.Clone(), writable);
        _files.Add((name, key));
        RebuildDirectory();
        return key;
    }

    /// <summary>The key of a named file, or null.</summary>
    public ushort? FindFile(string name) => _files.Find(f => f.Name == name) is { Name: not null } f ? f.Key : null;

    /// <summary>The current contents of an item (a copy), or null.</summary>
    public byte[]? GetItem(ushort key) => _items.TryGetValue((ushort)(key & ~WRITE_CHANNEL), out var item) ? (byte[])item.Data.Clone() : null;

    public void SetRamSize(ulong bytes) => SetU64(RAM_SIZE, bytes);

    public void SetCpuCount(ushort cpus, ushort maxCpus)
    {
        if (cpus == 0 || maxCpus < cpus)
            throw new ArgumentOutOfRangeException(nameof(cpus), $"fw_cfg CPU count {cpus} must be 1..max CPUs ({maxCpus})");
        SetU16(NB_CPUS, cpus);
        SetU16(MAX_CPUS, maxCpus);
    }

    public void SetBootMenu(bool enabled) => SetU16(BOOT_MENU, enabled ? (ushort)1 : (ushort)0);

    /// <summary>Linux direct boot: the protected-mode kernel, loaded by the firmware at <paramref name="address"/>.</summary>
    public void SetKernel(uint address, byte[] data) => SetBlob(KERNEL_ADDR, KERNEL_SIZE, KERNEL_DATA, address, data);

    public void SetInitrd(uint address, byte[] data) => SetBlob(INITRD_ADDR, INITRD_SIZE, INITRD_DATA, address, data);

    /// <summary>The real-mode setup part of a bzImage.</summary>
    public void SetSetup(uint address, byte[] data) => SetBlob(SETUP_ADDR, SETUP_SIZE, SETUP_DATA, address, data);

    /// <summary>The kernel command line; its size and data include the terminating NUL, as QEMU's.</summary>
    public void SetCommandLine(uint address, string commandLine)
    {
        ArgumentNullException.ThrowIfNull(commandLine);
        byte[] bytes = Encoding.ASCII.GetBytes(commandLine + "\0");
        SetBlob(CMDLINE_ADDR, CMDLINE_SIZE, CMDLINE_DATA, address, bytes);
    }

    private void SetBlob(ushort addrKey, ushort sizeKey, ushort dataKey, uint address, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        SetU32(addrKey, address);
        SetU32(sizeKey, (uint)data.Length);
        SetItem(dataKey, data);
    }

    private void RebuildDirectory()
    {
        var dir = new byte[4 + 64 * _files.Count];
        BinaryPrimitives.WriteUInt32BigEndian(dir, (uint)_files.Count);
        for (int i = 0; i < _files.Count; i++)
        {
            var entry = dir.AsSpan(4 + 64 * i, 64);
            var (name, key) = _files[i];
            BinaryPrimitives.WriteUInt32BigEndian(entry, (uint)_items[key].Data.Length);
            BinaryPrimitives.WriteUInt16BigEndian(entry[4..], key);
            Encoding.UTF8.GetBytes(name, entry[8..]);
        }
        _items[FILE_DIR] = new Item(dir, writable: false);
    }

    // ---------------------------------------------------------------- guest side

    public void Read(ulong offset, Span<byte> data)
    {
        if (offset <= 1 && data.Length == 1)
        {
            data[0] = ReadDataByte();
            return;
        }
        bool signatureRead = (data.Length == 4 && (offset == 4 || offset == 8)) || (data.Length == 8 && offset == 4);
        if (DmaEnabled && signatureRead)
        {
            Span<byte> signature = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(signature, DmaSignature);
            signature.Slice((int)offset - 4, data.Length).CopyTo(data);
            return;
        }
        BadAccesses++;
        data.Fill(0xff);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset == 0 && data.Length == 2)
        {
            Select(BinaryPrimitives.ReadUInt16LittleEndian(data));
            return;
        }
        if (DmaEnabled && offset == 4 && data.Length == 4)
        {
            _dmaHigh = BinaryPrimitives.ReadUInt32BigEndian(data);
            return;
        }
        if (DmaEnabled && offset == 8 && data.Length == 4)
        {
            ulong address = ((ulong)_dmaHigh << 32) | BinaryPrimitives.ReadUInt32BigEndian(data);
            _dmaHigh = 0;
            RunDma(address);
            return;
        }
        if (DmaEnabled && offset == 4 && data.Length == 8)
        {
            _dmaHigh = 0;
            RunDma(BinaryPrimitives.ReadUInt64BigEndian(data));
            return;
        }
        // Includes byte writes to the data port, which QEMU has ignored since 2.4.
        BadAccesses++;
    }

    private void Select(ushort key)
    {
        _selector = key;
        _offset = 0;
    }

    private Item? Current => _items.TryGetValue((ushort)(_selector & ~WRITE_CHANNEL), out var item) ? item : null;

    private byte ReadDataByte()
    {
        var item = Current;
        if (item is null || _offset >= item.Data.Length) return 0;
        return item.Data[_offset++];
    }

    private void RunDma(ulong address)
    {
        var memory = _memory!;
        Span<byte> access = stackalloc byte[16];
        if (!memory.TryRead(address, access))
        {
            DmaErrors++; // nowhere to report the error
            return;
        }
        uint control = BinaryPrimitives.ReadUInt32BigEndian(access);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(access[4..]);
        ulong target = BinaryPrimitives.ReadUInt64BigEndian(access[8..]);

        if ((control & DmaSelect) != 0) Select((ushort)(control >> 16));
        bool ok = true;
        if ((control & DmaRead) != 0) ok = DmaReadItem(memory, target, length);
        else if ((control & DmaWrite) != 0) ok = DmaWriteItem(memory, target, length);
        else if ((control & DmaSkip) != 0) Skip(length);

        if (!ok) DmaErrors++;
        Span<byte> result = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(result, ok ? 0 : DmaError);
        if (!memory.TryWrite(address, result)) DmaErrors++;
    }

    private void Skip(uint length)
    {
        var item = Current;
        uint size = item is null ? 0 : (uint)item.Data.Length;
        _offset = (uint)Math.Min((ulong)_offset + length, size);
    }

    private bool DmaReadItem(GuestMemory memory, ulong target, uint length)
    {
        if (length == 0) return true;
        if (!memory.IsBacked(target, length)) return false;
        var item = Current;
        int available = item is null ? 0 : (int)Math.Max(0, item.Data.Length - (long)_offset);
        int n = (int)Math.Min(available, length);
        if (n > 0)
        {
            if (!memory.TryWrite(target, item!.Data.AsSpan((int)_offset, n))) return false;
            _offset += (uint)n;
        }
        // Past the end of the item (or with no item) the rest of the buffer is filled with zeros.
        ReadOnlySpan<byte> zeros = stackalloc byte[512];
        for (ulong done = (ulong)n; done < length;)
        {
            int chunk = (int)Math.Min((ulong)zeros.Length, length - done);
            if (!memory.TryWrite(target + done, zeros[..chunk])) return false;
            done += (ulong)chunk;
        }
        return true;
    }

    private bool DmaWriteItem(GuestMemory memory, ulong target, uint length)
    {
        var item = Current;
        if (item is null || !item.Writable || (ulong)_offset + length > (ulong)item.Data.Length) return false;
        if (length == 0) return true;
        if (!memory.TryRead(target, item.Data.AsSpan((int)_offset, (int)length))) return false;
        _offset += length;
        return true;
    }

    // ---------------------------------------------------------------- state

    public FwCfgState GetState() => new(_selector, _offset, _dmaHigh,
        _items.Where(kv => kv.Value.Writable).OrderBy(kv => kv.Key).Select(kv => new FwCfgItemState(kv.Key, (byte[])kv.Value.Data.Clone())).ToArray());

    /// <summary>Restores guest-visible state onto a device the host configured the same way; throws naming the mismatch.</summary>
    public void FromState(FwCfgState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var writable = state.WritableItems ?? throw new ArgumentException("fw_cfg state has no writable item list", nameof(state));
        foreach (var w in writable)
        {
            if (!_items.TryGetValue(w.Key, out var item) || !item.Writable || w.Data is null || w.Data.Length != item.Data.Length)
                throw new ArgumentException($"fw_cfg state item 0x{w.Key:x4} is not a writable file of the same size here", nameof(state));
        }
        if (writable.Length != _items.Count(kv => kv.Value.Writable))
            throw new ArgumentException("fw_cfg state lists a different set of writable files", nameof(state));
        var selected = _items.TryGetValue((ushort)(state.Selector & ~WRITE_CHANNEL), out var sel) ? sel : null;
        if (state.Offset > (selected?.Data.Length ?? 0))
            throw new ArgumentException($"fw_cfg state offset {state.Offset} lies past the selected item", nameof(state));
        foreach (var w in writable) _items[w.Key] = new Item((byte[])w.Data.Clone(), writable: true);
        _selector = state.Selector;
        _offset = state.Offset;
        _dmaHigh = state.DmaAddressHigh;
    }
}
