// Memory access for the software CPU: segment checks (limit, type, presence), linear to physical (identity
// while paging is off), and physical access straight to host memory for RAM or through the exit handler for
// everything else (MMIO). Writes to pages holding cached code drop that code (self-modifying code).
// The one-region cache (_ramStart/_ramEnd/_ramHost) and the decoded code are dropped when the guest memory map
// changes (GuestMemory.Version: ROM shadowing through the chipset's PAM registers); the check runs after each port
// or MMIO write, where such a change comes from, and at the start of each run batch. A region whose writes land
// elsewhere than its reads (ROM, write-only shadow RAM) takes the slow write path.
using System.Runtime.CompilerServices;
using ActorVmm.Core.Accel;

namespace ActorVmm.Native.Soft;

public sealed unsafe partial class SoftCpu
{
    /// <summary>Reads <paramref name="size"/> bytes at seg:offset, checking the segment as the CPU does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ulong ReadSeg(ref SegmentRegister seg, byte faultVector, ulong offset, int size)
    {
        if (Mode64) return ReadLinear(Linear64(ref seg, faultVector, offset), size);
        CheckSegment(ref seg, faultVector, offset, size, write: false);
        return ReadLinear((seg.Base + offset) & 0xffff_ffff, size);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void WriteSeg(ref SegmentRegister seg, byte faultVector, ulong offset, ulong value, int size)
    {
        if (Mode64)
        {
            WriteLinear(Linear64(ref seg, faultVector, offset), value, size);
            return;
        }
        CheckSegment(ref seg, faultVector, offset, size, write: true);
        WriteLinear((seg.Base + offset) & 0xffff_ffff, value, size);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void CheckSegment(ref SegmentRegister seg, byte faultVector, ulong offset, int size, bool write)
    {
        ushort attr = seg.Attributes;
        // The common case: a present, writable, expand-up data segment, access inside its limit.
        if ((attr & 0x9e) == 0x92 && offset + (ulong)size - 1 <= seg.Limit) return;
        CheckSegmentSlow(ref seg, faultVector, offset, size, write);
    }

    /// <summary>
    /// 64-bit mode: the segment's base counts only for FS and GS, there are no limit or type checks, and the address
    /// must be canonical (#SS(0) for stack references, else #GP(0)).
    /// </summary>
    private ulong Linear64(ref SegmentRegister seg, byte faultVector, ulong offset)
    {
        ulong linear = Unsafe.AreSame(ref seg, ref Fs) || Unsafe.AreSame(ref seg, ref Gs) ? offset + seg.Base : offset;
        if (!IsCanonical(linear)) throw new CpuFault(faultVector == ExSS ? ExSS : ExGP, 0);
        return linear;
    }

    /// <summary>A 64-bit mode stack address (RSP-based): canonical or #SS(0).</summary>
    private static ulong StackLinear64(ulong rsp)
    {
        if (!IsCanonical(rsp)) throw new CpuFault(ExSS, 0);
        return rsp;
    }

    private void CheckSegmentSlow(ref SegmentRegister seg, byte faultVector, ulong offset, int size, bool write)
    {
        if (Mode64) return; // no segment checks in 64-bit mode (INS checks its destination through here)
        ushort attr = seg.Attributes;
        if (!ProtectedMode)
        {
            if (offset + (ulong)size - 1 > seg.Limit) throw new CpuFault(faultVector, 0);
            return;
        }
        if ((attr & 0x80) == 0 || (attr & 0x10) == 0) throw new CpuFault(faultVector, 0); // null or unusable
        bool code = (attr & 0x08) != 0;
        if (code)
        {
            if (write || (attr & 0x02) == 0) throw new CpuFault(ExGP, 0);
        }
        else if (write && (attr & 0x02) == 0)
        {
            throw new CpuFault(faultVector, 0);
        }
        ulong last = offset + (ulong)size - 1;
        if (!code && (attr & 0x04) != 0)
        {
            // Expand-down: valid offsets are (limit, top], top = 0xffffffff with B set, else 0xffff.
            ulong top = (attr & 0x4000) != 0 ? 0xffff_ffffUL : 0xffffUL;
            if (offset <= seg.Limit || last > top) throw new CpuFault(faultVector, 0);
        }
        else if (last > seg.Limit)
        {
            throw new CpuFault(faultVector, 0);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ulong ReadLinear(ulong linear, int size)
    {
        if (!PagingEnabled) return ReadPhysical(linear, size);
        if ((linear & 0xfff) + (ulong)size <= 0x1000) return ReadPhysical(Translate(linear, Access.Read), size);
        // Crosses a page boundary: each byte through its own translation.
        ulong v = 0;
        for (int i = 0; i < size; i++) v |= ReadPhysical(Translate((linear + (ulong)i) & LinearMask, Access.Read), 1) << (8 * i);
        return v;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void WriteLinear(ulong linear, ulong value, int size)
    {
        if (!PagingEnabled)
        {
            WritePhysical(linear, value, size);
            return;
        }
        if ((linear & 0xfff) + (ulong)size <= 0x1000)
        {
            WritePhysical(Translate(linear, Access.Write), value, size);
            return;
        }
        // Crosses a page boundary: both pages are checked before anything is written.
        ulong first = Translate(linear, Access.Write);
        ulong second = Translate((linear + (ulong)size - 1) & LinearMask, Access.Write);
        _ = first;
        _ = second;
        for (int i = 0; i < size; i++) WritePhysical(Translate((linear + (ulong)i) & LinearMask, Access.Write), (value >> (8 * i)) & 0xff, 1);
    }

    /// <summary>Descriptor-table, IDT and TSS accesses: linear addresses, no segment checks, supervisor accesses whatever the CPL.</summary>
    private ulong ReadSystem(ulong linear, int size)
    {
        bool saved = _systemAccess;
        _systemAccess = true;
        try
        {
            return ReadLinear(linear, size);
        }
        finally
        {
            _systemAccess = saved;
        }
    }

    private void WriteSystem(ulong linear, ulong value, int size)
    {
        bool saved = _systemAccess;
        _systemAccess = true;
        try
        {
            WriteLinear(linear, value, size);
        }
        finally
        {
            _systemAccess = saved;
        }
    }

    private ulong ReadSystem64(ulong linear) => ReadSystem(linear, 8);

    private ulong ReadSystem32(ulong linear) => ReadSystem(linear, 4);

    private ulong ReadSystem16(ulong linear) => ReadSystem(linear, 2);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ulong ReadPhysical(ulong pa, int size)
    {
        if (pa - _ramStart <= _ramEnd - _ramStart - (ulong)size && _ramHost != null)
        {
            byte* p = _ramHost + (pa - _ramStart);
            return size switch
            {
                1 => *p,
                2 => Unsafe.ReadUnaligned<ushort>(p),
                4 => Unsafe.ReadUnaligned<uint>(p),
                _ => Unsafe.ReadUnaligned<ulong>(p),
            };
        }
        return ReadPhysicalSlow(pa, size);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void WritePhysical(ulong pa, ulong value, int size)
    {
        if (pa - _ramStart <= _ramEnd - _ramStart - (ulong)size && _ramHost != null && !_ramReadOnly)
        {
            byte* p = _ramHost + (pa - _ramStart);
            switch (size)
            {
                case 1: *p = (byte)value; break;
                case 2: Unsafe.WriteUnaligned(p, (ushort)value); break;
                case 4: Unsafe.WriteUnaligned(p, (uint)value); break;
                default: Unsafe.WriteUnaligned(p, value); break;
            }
            if (_decodeCache.NotifyWrite(pa, size)) _fetchValid = false; // stored into cached code: fetch through the cache again
            _smp?.Store(pa, size); // other vCPUs' cached code (SmpCoherence); null with one vCPU
            return;
        }
        WritePhysicalSlow(pa, value, size);
    }

    private ulong ReadPhysicalSlow(ulong pa, int size)
    {
        var region = _memory.FindRegion(pa);
        if (region is not null && pa + (ulong)size <= region.End)
        {
            _ramStart = region.Start;
            _ramEnd = region.End;
            _ramHost = region.Host;
            _ramReadOnly = !region.WritesInPlace;
            return ReadPhysical(pa, size);
        }
        Span<byte> buf = stackalloc byte[8];
        buf.Clear();
        var data = buf[..size];
        if (region is not null || _memory.FindRegion(pa + (ulong)size - 1) is not null)
        {
            // Straddles a region boundary: byte by byte, each byte from RAM or the bus.
            for (int i = 0; i < size; i++) data[i] = (byte)ReadPhysical(pa + (ulong)i, 1);
        }
        else
        {
            _exits.MmioRead(pa, data);
        }
        return BitConverter.ToUInt64(buf);
    }

    private void WritePhysicalSlow(ulong pa, ulong value, int size)
    {
        var region = _memory.FindRegion(pa);
        if (region is not null && pa + (ulong)size <= region.End)
        {
            if (!region.WritesInPlace)
            {
                // ROM: writes are dropped, as on a real board; write-only shadow RAM: they fill the RAM beneath.
                if (region.WriteHost != null)
                {
                    byte* w = region.WriteHost + (pa - region.Start);
                    for (int i = 0; i < size; i++) w[i] = (byte)(value >> (8 * i));
                    if (_decodeCache.NotifyWrite(pa, size)) _fetchValid = false;
                }
                return;
            }
            _ramStart = region.Start;
            _ramEnd = region.End;
            _ramHost = region.Host;
            _ramReadOnly = false;
            WritePhysical(pa, value, size);
            return;
        }
        Span<byte> buf = stackalloc byte[8];
        BitConverter.TryWriteBytes(buf, value);
        var data = buf[..size];
        if (region is not null || _memory.FindRegion(pa + (ulong)size - 1) is not null)
        {
            for (int i = 0; i < size; i++) WritePhysical(pa + (ulong)i, data[i], 1);
        }
        else
        {
            _exits.MmioWrite(pa, data);
            SyncMemoryMap();
        }
    }

    private int _memoryVersion;

    /// <summary>Drops the cached region and all decoded code when the guest memory map has changed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SyncMemoryMap()
    {
        if (_memory.Version == _memoryVersion) return;
        _memoryVersion = _memory.Version;
        _ramHost = null;
        _ramStart = _ramEnd = 0;
        _decodeCache.Clear();
        _fetchValid = false; // the fetch cache holds a decoded page that Clear just dropped
    }
}
