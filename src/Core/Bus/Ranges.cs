// Port and MMIO address ranges as validated values (a range is never empty and never wraps).
namespace ActorVmm.Core.Bus;

/// <summary>A range of I/O ports [First, First+Count).</summary>
public readonly record struct PortRange
{
    public PortRange(ushort first, int count)
    {
        if (count <= 0 || first + count > 0x10000)
            throw new ArgumentOutOfRangeException(nameof(count), $"port range 0x{first:x}+{count} is empty or runs past 0xffff");
        First = first;
        Count = count;
    }

    public ushort First { get; }
    public int Count { get; }
    public ushort Last => (ushort)(First + Count - 1);

    public bool Contains(ushort port) => port >= First && port - First < Count;

    public bool Overlaps(PortRange other) => First <= other.Last && other.First <= Last;

    public override string ToString() => Count == 1 ? $"0x{First:x}" : $"0x{First:x}-0x{Last:x}";
}

/// <summary>A range of guest-physical MMIO addresses [Start, Start+Size).</summary>
public readonly record struct MmioRange
{
    public MmioRange(ulong start, ulong size)
    {
        if (size == 0 || start + size - 1 < start)
            throw new ArgumentOutOfRangeException(nameof(size), $"MMIO range 0x{start:x}+0x{size:x} is empty or wraps");
        Start = start;
        Size = size;
    }

    public ulong Start { get; }
    public ulong Size { get; }
    public ulong Last => Start + Size - 1;

    public bool Contains(ulong gpa) => gpa - Start < Size;

    public bool Overlaps(MmioRange other) => Start <= other.Last && other.Start <= Last;

    public override string ToString() => $"0x{Start:x}-0x{Last:x}";
}
