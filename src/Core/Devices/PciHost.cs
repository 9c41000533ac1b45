// PCI host bridge: configuration mechanism #1 (PCI Local Bus Specification 3.0, 3.2.2.3.2) with bus 0 only,
// and the i440FX / PIIX3 functions a PC firmware expects at 00.0 and 01.0.
//
// Ports (offsets relative to 0xcf8):
//   0 CONFIG_ADDRESS (0xcf8, 32-bit accesses only): bit 31 enable, 23:16 bus, 15:11 device, 10:8 function,
//     7:2 register; bits 30:24 and 1:0 read back as 0
//   4-7 CONFIG_DATA (0xcfc-0xcff): byte, word or dword at any offset that stays inside the dword; the register
//     is CONFIG_ADDRESS[7:2] plus the port's offset
// 0xcf9 belongs to the reset control register, so the host maps port 0xcf8 (one port, dword accesses) and
// 0xcfc-0xcff (an offset endpoint with bias 4) to this model.
//
// Emulated: bus 0 with functions added by the platform (AddFunction); with the enable bit clear, on other
// buses, or at an absent device/function, reads return all-ones (vendor 0xffff) and writes are dropped, as
// a master abort does. CreateI440fx builds the i440FX host bridge (8086:1237 rev 02, class 0x060000, PAM0-6
// at 0x59-0x5f and SMRAM at 0x72 writable) and the PIIX3 ISA bridge (8086:7000, class 0x060100, multi-function,
// PIRQRC[A:D] at 0x60-0x63 reset to 0x80 and writable), both with subsystem 1af4:1100, the ID QEMU gives every PCI
// function of its machines (SeaBIOS recognises QEMU's i440FX by it); the platform hears PAM and PIRQ writes through
// PciFunction.ConfigWritten and does the memory and interrupt routing itself.
// Not emulated: other buses and PCI-to-PCI bridges, configuration mechanism #2, type-1 transactions,
// PCIe extended configuration space (MMCONFIG).
using System.Buffers.Binary;
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

public sealed record PciFunctionState(byte Device, byte Function, byte[] Config);

public sealed record PciHostState(uint ConfigAddress, PciFunctionState[] Functions);

public sealed class PciHost : IBusDevice
{
    public const ushort ConfigAddressPort = 0xcf8;
    public const ushort ConfigDataPort = 0xcfc;
    public const uint ConfigEnable = 0x80000000;
    public const int DeviceCount = 32;
    public const int FunctionCount = 8;

    /// <summary>i440FX PAM0-PAM6 (0x59-0x5f) and SMRAM (0x72) offsets.</summary>
    public const int I440fxPam0 = 0x59;
    public const int I440fxSmram = 0x72;
    /// <summary>PIIX3 PIRQRC[A:D] (0x60-0x63).</summary>
    public const int Piix3Pirqrc = 0x60;

    private readonly PciFunction?[] _functions = new PciFunction?[DeviceCount * FunctionCount];
    private uint _address;

    public string Name => "pci-host";

    /// <summary>Accesses with a bad width or offset. Master aborts (probing empty slots) are normal and not counted.</summary>
    public long BadAccesses { get; private set; }

    public uint ConfigAddress => _address;

    /// <summary>A PCI host with the i440FX host bridge at 00.0 and the PIIX3 ISA bridge at 01.0, as QEMU's pc machine.</summary>
    public static PciHost CreateI440fx()
    {
        var host = new PciHost();
        host.AddFunction(0, 0, CreateI440fxHostBridge());
        host.AddFunction(1, 0, CreatePiix3IsaBridge());
        return host;
    }

    /// <summary>The subsystem vendor and ID QEMU gives every PCI function it does not give another (Red Hat, "QEMU").</summary>
    public const ushort QemuSubsystemVendor = 0x1af4, QemuSubsystem = 0x1100;

    public static PciFunction CreateI440fxHostBridge()
    {
        var f = new PciFunction("i440fx", 0x8086, 0x1237, 0x060000, revision: 0x02,
            subsystemVendorId: QemuSubsystemVendor, subsystemId: QemuSubsystem);
        f.SetConfig16(PciFunction.COMMAND, 0x0006);
        f.SetConfig16(PciFunction.STATUS, 0x0280);
        f.SetWritable(I440fxPam0, 7);
        f.SetWritable(I440fxSmram, 1);
        f.SetConfig8(I440fxSmram, 0x02);
        return f;
    }

    public static PciFunction CreatePiix3IsaBridge()
    {
        var f = new PciFunction("piix3", 0x8086, 0x7000, 0x060100, multiFunction: true,
            subsystemVendorId: QemuSubsystemVendor, subsystemId: QemuSubsystem);
        f.SetConfig16(PciFunction.COMMAND, 0x0007);
        f.SetConfig16(PciFunction.STATUS, 0x0200);
        f.SetConfig(Piix3Pirqrc, [0x80, 0x80, 0x80, 0x80]);
        f.SetWritable(Piix3Pirqrc, 4, 0x8f8f8f8f); // IRQROUTEEN (bit 7) and the IRQ number (3:0)
        return f;
    }

    /// <summary>Places <paramref name="function"/> at 00:<paramref name="device"/>.<paramref name="fn"/>.</summary>
    public void AddFunction(int device, int fn, PciFunction function)
    {
        ArgumentNullException.ThrowIfNull(function);
        if ((uint)device >= DeviceCount || (uint)fn >= FunctionCount)
            throw new ArgumentOutOfRangeException(nameof(device), $"PCI slot {device:x2}.{fn} does not exist on bus 0");
        ref var slot = ref _functions[device * FunctionCount + fn];
        if (slot is not null)
            throw new ArgumentException($"PCI slot 00:{device:x2}.{fn} already holds {slot.Name}; cannot add {function.Name}", nameof(device));
        slot = function;
    }

    public PciFunction? GetFunction(int device, int fn)
        => (uint)device < DeviceCount && (uint)fn < FunctionCount ? _functions[device * FunctionCount + fn] : null;

    /// <summary>The functions present, with their slots.</summary>
    public IEnumerable<(int Device, int Function, PciFunction Pci)> Functions
    {
        get
        {
            for (int i = 0; i < _functions.Length; i++)
            {
                if (_functions[i] is { } f) yield return (i / FunctionCount, i % FunctionCount, f);
            }
        }
    }

    public void Read(ulong offset, Span<byte> data)
    {
        if (offset == 0 && data.Length == 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(data, _address);
            return;
        }
        if (TryTarget(offset, data.Length, out var function, out int register))
        {
            function.ReadConfig(register, data);
            return;
        }
        data.Fill(0xff);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset == 0 && data.Length == 4)
        {
            _address = BinaryPrimitives.ReadUInt32LittleEndian(data) & 0x80fffffc;
            return;
        }
        if (TryTarget(offset, data.Length, out var function, out int register))
            function.WriteConfig(register, data);
    }

    public PciHostState GetState()
        => new(_address, Functions.Select(f => new PciFunctionState((byte)f.Device, (byte)f.Function, f.Pci.GetConfig())).ToArray());

    /// <summary>Restores a saved state onto the same set of functions; throws naming what does not match.</summary>
    public void FromState(PciHostState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var saved = state.Functions ?? throw new ArgumentException("PCI host state has no function list", nameof(state));
        var present = Functions.Select(f => (f.Device, f.Function)).ToHashSet();
        var given = saved.Select(f => ((int)f.Device, (int)f.Function)).ToHashSet();
        if (!present.SetEquals(given) || given.Count != saved.Length)
            throw new ArgumentException("PCI host state lists other functions than this bus holds", nameof(state));
        foreach (var f in saved) GetFunction(f.Device, f.Function)!.LoadConfig(f.Config);
        _address = state.ConfigAddress & 0x80fffffc;
    }

    /// <summary>Resolves a CONFIG_DATA access to a present function and register; counts everything else.</summary>
    private bool TryTarget(ulong offset, int width, out PciFunction function, out int register)
    {
        function = null!;
        register = 0;
        if (offset < 4 || offset > 7 || width is not (1 or 2 or 4) || (offset - 4) + (ulong)width > 4)
        {
            BadAccesses++;
            return false;
        }
        // Disabled, another bus or an empty slot: a master abort.
        if ((_address & ConfigEnable) == 0 || ((_address >> 16) & 0xff) != 0) return false;
        int device = (int)(_address >> 11) & 0x1f, fn = (int)(_address >> 8) & 7;
        var f = _functions[device * FunctionCount + fn];
        if (f is null) return false;
        function = f;
        register = (int)(_address & 0xfc) + (int)(offset - 4);
        return true;
    }
}
