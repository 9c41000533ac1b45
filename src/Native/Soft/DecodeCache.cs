// Decoded-instruction cache for the software CPU: Iced decodes each instruction once; the result is kept
// per guest physical page (4 KiB) and bitness, indexed by the offset in the page. A write to a page that
// holds cached code (the CPU's own stores, checked against a per-page bitmap) drops the cache for that page
// and for the page before it, whose last instruction may run into it. With several vCPUs, PageClaimed tells
// SmpCoherence before a page's bytes are first decoded, so other vCPUs' stores to it reach this cache too.
using System.Runtime.CompilerServices;
using ActorVmm.Core.Memory;
using Iced.Intel;

namespace ActorVmm.Native.Soft;

internal sealed unsafe class DecodeCache
{
    private const int PageShift = 12;
    private const int PageSize = 1 << PageShift;
    private const int MaxInstructionLength = 15;

    internal sealed class Page
    {
        public readonly int[] Index = new int[PageSize]; // 0 = not decoded, else 1 + position in Items
        public DecodedInstruction[] Items = new DecodedInstruction[64];
        public int Count;
    }

    private readonly GuestMemory _memory;
    private readonly Dictionary<ulong, Page>[] _pages = [new(), new(), new()]; // by bitness: 16, 32, 64
    private readonly HashSet<ulong> _codePages = [];
    private readonly byte[] _codePageBits = new byte[1 << 20 >> 3]; // first 4 GiB, one bit per page
    private readonly GuestMemoryReader _reader;
    private readonly Decoder[] _decoders = new Decoder[3];
    private DecodedInstruction _invalid;

    // One-entry lookup cache: the page the CPU is executing in.
    private ulong _lastKey = ulong.MaxValue;
    private Page? _lastPage;

    /// <summary>Changes whenever cached code is dropped: a Page handed out earlier is stale once this moves.</summary>
    public int Generation { get; private set; }

    /// <summary>
    /// SMP only (null with one vCPU): called before code is first decoded from a page, and for the page an
    /// instruction runs into (SmpCoherence.Member.Claimed), so stores by other vCPUs drop this cache's copy.
    /// </summary>
    public Action<ulong>? PageClaimed;

    /// <summary>The page of the last successful <see cref="Get"/>.</summary>
    public Page? LastPage => _lastPage;

    /// <param name="options">Decoder options: the 286 model decodes with NoInvalidCheck (it ignores a LOCK prefix
    /// that later processors reject with #UD).</param>
    public DecodeCache(GuestMemory memory, DecoderOptions options = DecoderOptions.None)
    {
        _memory = memory;
        _reader = new GuestMemoryReader(memory);
        _decoders[0] = Decoder.Create(16, _reader, options);
        _decoders[1] = Decoder.Create(32, _reader, options);
        _decoders[2] = Decoder.Create(64, _reader, options);
    }

    /// <summary>Decoded instruction at physical address <paramref name="pa"/>; ok = false when no RAM is there.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref readonly DecodedInstruction Get(ulong pa, int bitness, out bool ok)
    {
        ulong key = (pa >> PageShift) << 2 | (uint)(bitness >> 5);
        Page? page = key == _lastKey ? _lastPage : null;
        if (page is not null)
        {
            int i = page.Index[(int)(pa & (PageSize - 1))];
            if (i != 0)
            {
                ok = true;
                return ref page.Items[i - 1];
            }
        }
        return ref GetSlow(pa, bitness, key, out ok);
    }

    private ref readonly DecodedInstruction GetSlow(ulong pa, int bitness, ulong key, out bool ok)
    {
        int b = bitness == 16 ? 0 : bitness == 32 ? 1 : 2;
        ulong pageNumber = pa >> PageShift;
        if (!_pages[b].TryGetValue(pageNumber, out var page))
        {
            if (_memory.FindRegion(pa) is null)
            {
                ok = false;
                return ref _invalid;
            }
            page = new Page();
            _pages[b][pageNumber] = page;
            MarkCode(pageNumber);
        }
        _lastKey = key;
        _lastPage = page;
        int offset = (int)(pa & (PageSize - 1));
        if (page.Index[offset] == 0)
        {
            _reader.Position = pa;
            var decoder = _decoders[b];
            decoder.IP = pa;
            decoder.Decode(out var insn);
            if (_reader.Failed) insn = default; // ran into unbacked memory: Code.INVALID, #ExUD/#ExGP at execution
            if (offset + insn.Length > PageSize) MarkCode(pageNumber + 1);
            if (page.Count == page.Items.Length) Array.Resize(ref page.Items, page.Items.Length * 2);
            page.Items[page.Count] = new DecodedInstruction(insn);
            page.Index[offset] = ++page.Count;
        }
        ok = true;
        return ref page.Items[page.Index[offset] - 1];
    }

    private void MarkCode(ulong pageNumber)
    {
        PageClaimed?.Invoke(pageNumber);
        if (pageNumber < (ulong)_codePageBits.Length * 8) _codePageBits[pageNumber >> 3] |= (byte)(1 << (int)(pageNumber & 7));
        else _codePages.Add(pageNumber);
    }

    /// <summary>
    /// 80286 decoding for 16-bit code: LOCK is accepted on any instruction (the 286 does not raise #UD for it).
    /// Drops everything cached.
    /// </summary>
    public void SetLenient16(bool lenient)
    {
        _decoders[0] = Decoder.Create(16, _reader, lenient ? DecoderOptions.NoInvalidCheck : DecoderOptions.None);
        Clear();
    }

    /// <summary>
    /// Called for every CPU store to RAM; drops cached code on the pages written. True when it dropped some: the CPU's
    /// fetch cache (which does not look at <see cref="Generation"/> per instruction) must then be rebuilt.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool NotifyWrite(ulong pa, int size)
    {
        ulong first = pa >> PageShift;
        if (first < (ulong)_codePageBits.Length * 8 && (_codePageBits[first >> 3] & (1 << (int)(first & 7))) == 0
            && ((pa + (ulong)size - 1) >> PageShift) == first)
            return false;
        return Invalidate(pa, size);
    }

    /// <summary>Drops cached code overlapping [pa, pa+size) (also for host writes: loaders, DMA); true when some was dropped.</summary>
    public bool Invalidate(ulong pa, long size)
    {
        int generation = Generation;
        ulong first = pa >> PageShift, last = (pa + (ulong)Math.Max(size, 1) - 1) >> PageShift;
        for (ulong p = first; p <= last; p++)
        {
            bool isCode = p < (ulong)_codePageBits.Length * 8
                ? (_codePageBits[p >> 3] & (1 << (int)(p & 7))) != 0
                : _codePages.Contains(p);
            if (!isCode) continue;
            if (p < (ulong)_codePageBits.Length * 8) _codePageBits[p >> 3] &= (byte)~(1 << (int)(p & 7));
            else _codePages.Remove(p);
            foreach (var d in _pages)
            {
                d.Remove(p);
                if (p > 0) d.Remove(p - 1);
            }
            if (p > 0 && p - 1 < (ulong)_codePageBits.Length * 8) _codePageBits[(p - 1) >> 3] &= (byte)~(1 << (int)((p - 1) & 7));
            _lastKey = ulong.MaxValue;
            _lastPage = null;
            Generation++;
        }
        return Generation != generation;
    }

    public void Clear()
    {
        foreach (var d in _pages) d.Clear();
        Array.Clear(_codePageBits);
        _codePages.Clear();
        _lastKey = ulong.MaxValue;
        _lastPage = null;
        Generation++;
    }

    /// <summary>Feeds Iced bytes from guest physical memory (no paging in stage 1), at most 15 bytes past the start.</summary>
    private sealed class GuestMemoryReader(GuestMemory memory) : CodeReader
    {
        private ulong _start;
        private ulong _position;

        public bool Failed { get; private set; }

        public ulong Position
        {
            get => _position;
            set
            {
                _start = value;
                _position = value;
                Failed = false;
            }
        }

        public override int ReadByte()
        {
            if (_position - _start >= MaxInstructionLength) return -1;
            Span<byte> b = stackalloc byte[1];
            if (!memory.TryRead(_position, b))
            {
                Failed = true;
                return -1;
            }
            _position++;
            return b[0];
        }
    }
}
