// Test doubles shared by the IOAPIC, LAPIC, HPET, PCI, fw_cfg and boot-timer tests: a hand-wound clock,
// recording sinks, and little helpers to drive an IBusDevice with typed widths.
using System.Buffers.Binary;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

internal sealed class ManualClock : IClock
{
    public long NowNanoseconds { get; set; }

    public void Advance(long ns) => NowNanoseconds += ns;
}

internal sealed class RecordingInterruptSink : IInterruptSink
{
    public List<ApicMessage> Messages { get; } = [];

    public Action<ApicMessage>? OnDeliver { get; set; }

    public void Deliver(in ApicMessage message)
    {
        Messages.Add(message);
        OnDeliver?.Invoke(message);
    }
}

/// <summary>Records every (line, level) change an interrupt source makes.</summary>
internal sealed class LineRecorder
{
    public List<(int Line, bool Level)> Changes { get; } = [];
    public Dictionary<int, bool> Levels { get; } = [];

    public void Set(int line, bool level)
    {
        Changes.Add((line, level));
        Levels[line] = level;
    }

    public bool IsHigh(int line) => Levels.TryGetValue(line, out bool v) && v;

    /// <summary>Rising edges seen on <paramref name="line"/>.</summary>
    public int Rises(int line)
    {
        int n = 0;
        bool last = false;
        foreach (var (l, level) in Changes)
        {
            if (l != line) continue;
            if (level && !last) n++;
            last = level;
        }
        return n;
    }
}

internal static class BusAccess
{
    public static byte Read8(this IBusDevice d, ulong offset)
    {
        Span<byte> b = stackalloc byte[1];
        d.Read(offset, b);
        return b[0];
    }

    public static ushort Read16(this IBusDevice d, ulong offset)
    {
        Span<byte> b = stackalloc byte[2];
        d.Read(offset, b);
        return BinaryPrimitives.ReadUInt16LittleEndian(b);
    }

    public static uint Read32(this IBusDevice d, ulong offset)
    {
        Span<byte> b = stackalloc byte[4];
        d.Read(offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public static ulong Read64(this IBusDevice d, ulong offset)
    {
        Span<byte> b = stackalloc byte[8];
        d.Read(offset, b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    public static void Write8(this IBusDevice d, ulong offset, byte value) => d.Write(offset, [value]);

    public static void Write16(this IBusDevice d, ulong offset, ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        d.Write(offset, b);
    }

    public static void Write32(this IBusDevice d, ulong offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        d.Write(offset, b);
    }

    public static void Write64(this IBusDevice d, ulong offset, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        d.Write(offset, b);
    }

    /// <summary>Random access of a random width at a random offset below <paramref name="span"/>; never throws.</summary>
    public static void RandomAccess(this IBusDevice d, Random rng, ulong span)
    {
        int[] widths = [1, 2, 3, 4, 8, 16];
        int width = widths[rng.Next(widths.Length)];
        ulong offset = rng.Next(4) == 0 ? (ulong)rng.NextInt64() : (ulong)rng.NextInt64((long)span);
        var buffer = new byte[width];
        if (rng.Next(2) == 0)
        {
            d.Read(offset, buffer);
        }
        else
        {
            rng.NextBytes(buffer);
            d.Write(offset, buffer);
        }
    }
}
