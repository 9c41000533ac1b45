// Guest physical memory: a set of non-overlapping regions, each backed by host memory that the accelerator
// provides (vmm memsegs mapped from the VM fd, KVM user memory regions, or native memory for the soft CPU).
// Every access is bounds-checked; an access may cross from one region into the next when they are adjacent.
// Guest-driven paths use the Try* forms, which never throw; loaders and the host use the throwing forms,
// whose exception names the address that failed.
// The map can change while the guest runs (a chipset's shadow-RAM registers, PAM on the i440FX): Remap swaps
// regions atomically and bumps Version, which CPUs that cache region lookups compare to drop their caches.
// A region may read from one host block and write to another (write-only shadowing: reads still come from
// the ROM while writes fill the RAM beneath).
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ActorVmm.Core.Memory;

/// <summary>One contiguous piece of guest-physical memory and the host memory behind it.</summary>
public sealed unsafe class GuestRegion
{
    /// <param name="writeHost">Where guest writes land when they differ from reads (write-only shadow RAM); null:
    /// writes go to <paramref name="host"/> (or are dropped when <paramref name="readOnly"/>).</param>
    public GuestRegion(string name, ulong start, ulong size, byte* host, bool readOnly = false, byte* writeHost = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (size == 0) throw new ArgumentOutOfRangeException(nameof(size), "a region cannot be empty");
        if (start + size < start) throw new ArgumentOutOfRangeException(nameof(size), $"region {name} wraps the address space");
        if (host == null) throw new ArgumentNullException(nameof(host));
        Name = name;
        Start = start;
        Size = size;
        Host = host;
        ReadOnly = readOnly;
        WriteHost = readOnly ? null : writeHost != null ? writeHost : host;
    }

    public string Name { get; }
    public ulong Start { get; }
    public ulong Size { get; }
    /// <summary>Exclusive end address.</summary>
    public ulong End => Start + Size;
    public byte* Host { get; }
    /// <summary>ROM as the guest sees it: guest writes are dropped. Loaders may still write through the host pointer.</summary>
    public bool ReadOnly { get; }

    /// <summary>Where guest writes land: <see cref="Host"/> for RAM, another block for write-only shadowing, null for ROM.</summary>
    public byte* WriteHost { get; }

    /// <summary>Guest writes land where guest reads come from (plain RAM): a CPU may read and write through one pointer.</summary>
    public bool WritesInPlace => WriteHost == Host;

    public bool Contains(ulong gpa) => gpa - Start < Size;

    public override string ToString() => $"{Name} [0x{Start:x}-0x{End - 1:x}]";
}

/// <summary>Thrown by the host-side (throwing) accessors when an address is not backed by RAM.</summary>
public sealed class GuestMemoryException(string message) : Exception(message);

/// <summary>The guest's physical address space of RAM and ROM (devices live on the bus, not here).</summary>
public sealed unsafe class GuestMemory
{
    private volatile GuestRegion[] _regions;
    private readonly Lock _remapLock = new();
    private int _version;

    public GuestMemory(IEnumerable<GuestRegion> regions) => _regions = Sorted(regions);

    public IReadOnlyList<GuestRegion> Regions => _regions;

    /// <summary>Changes with every <see cref="Remap"/>: a CPU that cached a region (or code read from one) drops it.</summary>
    public int Version => Volatile.Read(ref _version);

    /// <summary>
    /// Replaces <paramref name="remove"/> (regions of this map, by reference) with <paramref name="add"/> in one step.
    /// Readers see the old map or the new one, never a mix. Throws when a region to remove is not mapped or the
    /// result would overlap.
    /// </summary>
    public void Remap(IReadOnlyCollection<GuestRegion> remove, IReadOnlyCollection<GuestRegion> add)
    {
        ArgumentNullException.ThrowIfNull(remove);
        ArgumentNullException.ThrowIfNull(add);
        lock (_remapLock)
        {
            var current = _regions;
            foreach (var r in remove)
            {
                if (Array.IndexOf(current, r) < 0) throw new ArgumentException($"guest memory region {r} is not mapped", nameof(remove));
            }
            _regions = Sorted(current.Where(r => !remove.Contains(r)).Concat(add));
            Interlocked.Increment(ref _version);
        }
    }

    private static GuestRegion[] Sorted(IEnumerable<GuestRegion> regions)
    {
        var sorted = regions.OrderBy(r => r.Start).ToArray();
        for (int i = 1; i < sorted.Length; i++)
        {
            if (sorted[i].Start < sorted[i - 1].End)
                throw new ArgumentException($"guest memory region {sorted[i]} overlaps {sorted[i - 1]}");
        }
        return sorted;
    }

    /// <summary>Total bytes of all regions.</summary>
    public ulong TotalSize => _regions.Aggregate(0UL, (a, r) => a + r.Size);

    /// <summary>The region holding <paramref name="gpa"/>, or null.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public GuestRegion? FindRegion(ulong gpa)
    {
        var regions = _regions;
        for (int i = 0; i < regions.Length; i++)
        {
            if (regions[i].Contains(gpa)) return regions[i];
        }
        return null;
    }

    /// <summary>Host pointer for <paramref name="length"/> bytes at <paramref name="gpa"/> when they lie in one region.</summary>
    public bool TryGetHostPointer(ulong gpa, ulong length, out byte* host)
    {
        var r = FindRegion(gpa);
        if (r is not null && length <= r.End - gpa)
        {
            host = r.Host + (gpa - r.Start);
            return true;
        }
        host = null;
        return false;
    }

    /// <summary>Reads guest memory, crossing adjacent regions. False (and nothing read past the hole) if any byte is unbacked.</summary>
    public bool TryRead(ulong gpa, Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            var r = FindRegion(gpa);
            if (r is null) return false;
            int n = (int)Math.Min((ulong)destination.Length, r.End - gpa);
            new ReadOnlySpan<byte>(r.Host + (gpa - r.Start), n).CopyTo(destination);
            destination = destination[n..];
            gpa += (ulong)n;
        }
        return true;
    }

    /// <summary>Writes guest memory as the guest would: writes to read-only regions are dropped. False if any byte is unbacked.</summary>
    public bool TryWrite(ulong gpa, ReadOnlySpan<byte> source) => WriteCore(gpa, source, honourReadOnly: true);

    /// <summary>Reads guest memory for the host (loaders, tests); throws naming the address when unbacked.</summary>
    public void Read(ulong gpa, Span<byte> destination)
    {
        if (!TryRead(gpa, destination))
            throw new GuestMemoryException($"guest read of {destination.Length} bytes at 0x{gpa:x} touches unbacked memory");
    }

    /// <summary>Writes guest memory for the host (loaders, tests), ROM included; throws naming the address when unbacked.</summary>
    public void Write(ulong gpa, ReadOnlySpan<byte> source)
    {
        if (!WriteCore(gpa, source, honourReadOnly: false))
            throw new GuestMemoryException($"guest write of {source.Length} bytes at 0x{gpa:x} touches unbacked memory");
    }

    public T ReadObject<T>(ulong gpa) where T : unmanaged
    {
        T value = default;
        Read(gpa, MemoryMarshal.AsBytes(new Span<T>(ref value)));
        return value;
    }

    public void WriteObject<T>(ulong gpa, in T value) where T : unmanaged
        => Write(gpa, MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)));

    /// <summary>True when every byte of [gpa, gpa+length) is backed.</summary>
    public bool IsBacked(ulong gpa, ulong length)
    {
        while (length > 0)
        {
            var r = FindRegion(gpa);
            if (r is null) return false;
            ulong n = Math.Min(length, r.End - gpa);
            length -= n;
            gpa += n;
        }
        return true;
    }

    private bool WriteCore(ulong gpa, ReadOnlySpan<byte> source, bool honourReadOnly)
    {
        if (!IsBacked(gpa, (ulong)source.Length)) return false;
        while (!source.IsEmpty)
        {
            var r = FindRegion(gpa)!;
            int n = (int)Math.Min((ulong)source.Length, r.End - gpa);
            // The guest's view writes where the region's writes land (nowhere for ROM); the host's writes the contents.
            byte* target = honourReadOnly ? r.WriteHost : r.Host;
            if (target != null)
                source[..n].CopyTo(new Span<byte>(target + (gpa - r.Start), n));
            source = source[n..];
            gpa += (ulong)n;
        }
        return true;
    }
}
