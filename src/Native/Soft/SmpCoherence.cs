// What several soft CPUs on several host threads share besides guest RAM itself (one SmpCoherence per VM with
// more than one vCPU; with one vCPU there is none and nothing here costs anything):
//
// 1. Cross-modifying code. Each vCPU keeps its own decode cache (DecodeCache), which only sees that vCPU's own
//    stores. Here every RAM page has a mask of the vCPUs that hold decoded code from it. A vCPU sets its bit
//    (Interlocked, so a full fence) before it decodes from a page it had no code from; a store by any vCPU reads
//    the page's mask (one plain load) and, when another vCPU's bit is set, clears those bits and queues the page
//    on each of them. A vCPU drains its queue (drops those pages from its decode cache) between instruction
//    batches and at every serializing instruction (CPUID, IRET, WRMSR, MOV to CR, INVLPG, WBINVD, LGDT...), which
//    is what the SDM's cross-modifying-code protocol (vol. 3 §9.1.3) asks the executing processor to run before it
//    executes the new code: the writer stores, then signals (a flag or an IPI); the executor, once signalled,
//    serializes, and the page is gone from its cache by then.
//    One race remains with a plain load on the writer's side: a store still in the writer's store buffer when it
//    reads the mask (x86 lets a load pass an earlier store) can miss a bit set at the same moment by a vCPU that
//    then decodes the old bytes. Rather than fence every guest store, a page a vCPU has newly claimed is
//    provisional: the vCPU drops it again at every serializing instruction, and for good once every other vCPU
//    has passed an instruction-batch boundary (a full fence: Epoch) or was outside guest code when the page was
//    claimed; stores issued before that are visible by then, stores issued after it see the bit. Pages are
//    4 KiB; an instruction that runs into the next page claims that page too, and dropping a page drops the one
//    before it (DecodeCache.Invalidate).
// 2. LOCK-prefixed read-modify-write and XCHG with memory are atomic across vCPUs: SoftCpu.Smp.cs runs them with a
//    compare-and-swap on the host address of the aligned 8 bytes that hold the operand (so plain stores by other
//    vCPUs are never lost). Operands that cross an 8-byte boundary, live outside RAM or need 16 bytes
//    (CMPXCHG16B) run under AtomicFallbackLock instead: atomic against each other, not against plain stores.
//
// Lock order: AtomicFallbackLock is taken by a vCPU thread around one instruction and may be held while that
// instruction's MMIO access takes a device or kernel-device lock; nothing takes it while holding another lock.
// Member._queueLock is a leaf (held only to push or take page numbers).
using ActorVmm.Core.Memory;

namespace ActorVmm.Native.Soft;

internal sealed class SmpCoherence
{
    private const int PageShift = 12;

    /// <summary>One bit per vCPU in a page mask.</summary>
    public const int MaxMembers = 32;

    private readonly int[] _codeMasks;
    private readonly Member?[] _members;

    public SmpCoherence(GuestMemory memory, int vcpuCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vcpuCount, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(vcpuCount, MaxMembers);
        ulong top = 0;
        foreach (var r in memory.Regions)
        {
            if (!r.ReadOnly) top = Math.Max(top, r.End);
        }
        // Writable RAM below 4 GiB (the soft accelerator's only RAM); stores anywhere else never reach cached code.
        _codeMasks = new int[(int)(Math.Min(top, 1UL << 32) >> PageShift)];
        _members = new Member?[vcpuCount];
    }

    /// <summary>Serializes locked instructions that cannot be a single compare-and-swap (see the file comment).</summary>
    public Lock AtomicFallbackLock { get; } = new();

    /// <summary>Pages queued on vCPUs because another vCPU wrote them (a measure of cross-modifying traffic).</summary>
    public long CrossInvalidations;

    /// <summary>The member for vCPU <paramref name="index"/> (created once; the soft CPU of that vCPU uses it).</summary>
    public Member Join(int index)
    {
        lock (_members)
        {
            return _members[index] ??= new Member(this, index);
        }
    }

    /// <summary>
    /// A store of <paramref name="size"/> bytes at <paramref name="pa"/> by member <paramref name="writer"/>: other
    /// members holding code from the page(s) have them queued for dropping. The writer's own cache is its DecodeCache's
    /// business (NotifyWrite), as on one vCPU.
    /// </summary>
    public void NotifyWrite(int writerBit, ulong pa, int size)
    {
        ulong page = pa >> PageShift;
        if (page < (ulong)_codeMasks.Length && (Volatile.Read(ref _codeMasks[page]) & ~writerBit) == 0
            && ((pa + (ulong)size - 1) >> PageShift) == page)
            return;
        NotifyWriteSlow(writerBit, pa, size);
    }

    private void NotifyWriteSlow(int writerBit, ulong pa, int size)
    {
        ulong first = pa >> PageShift, last = (pa + (ulong)Math.Max(size, 1) - 1) >> PageShift;
        for (ulong p = first; p <= last && p < (ulong)_codeMasks.Length; p++)
        {
            if ((Volatile.Read(ref _codeMasks[p]) & ~writerBit) == 0) continue;
            // Exactly one writer sees each bit go: it queues the page on that member.
            int old = Interlocked.And(ref _codeMasks[p], writerBit);
            int others = old & ~writerBit;
            for (int m = 0; others != 0; m++, others >>= 1)
            {
                if ((others & 1) != 0 && _members[m] is { } member)
                {
                    member.Enqueue(p);
                    Interlocked.Increment(ref CrossInvalidations);
                }
            }
        }
    }

    /// <summary>Sets <paramref name="bit"/> in page <paramref name="page"/>'s mask; true when it was clear (newly claimed).</summary>
    private bool Claim(ulong page, int bit)
    {
        if (page >= (ulong)_codeMasks.Length) return false; // ROM or beyond RAM: nobody stores there
        return (Interlocked.Or(ref _codeMasks[page], bit) & bit) == 0;
    }

    /// <summary>
    /// One vCPU's view: its bit, the pages other vCPUs queued on it, its epoch, and the pages it claimed recently
    /// (provisional, see the file comment). Everything but Enqueue and Epoch is called on the vCPU's own thread.
    /// </summary>
    internal sealed class Member
    {
        private const int QueueCapacity = 64;

        private readonly SmpCoherence _owner;
        private readonly Lock _queueLock = new();
        private readonly ulong[] _queue = new ulong[QueueCapacity];
        private int _queued;
        private bool _overflow;
        private int _pending;
        private long _epoch;

        // Provisional pages: claimed since the last batch boundary (open), and the batch before, waiting for every
        // other member to pass a fence (closed, with the epochs seen when it was closed).
        private readonly HashSet<ulong> _open = [];
        private readonly HashSet<ulong> _closed = [];
        private readonly long[] _closedEpochs;
        private readonly ulong[] _drain = new ulong[QueueCapacity];

        internal Member(SmpCoherence owner, int index)
        {
            _owner = owner;
            Index = index;
            Bit = 1 << index;
            _closedEpochs = new long[owner._members.Length];
        }

        public int Index { get; }

        public SmpCoherence Owner => _owner;

        public int Bit { get; }

        /// <summary>Odd while the vCPU runs guest instructions, even outside; every change is a full fence.</summary>
        public long Epoch => Volatile.Read(ref _epoch);

        /// <summary>True while some page waits to be dropped (a cheap check before <see cref="Sync"/>).</summary>
        public bool HasWork => Volatile.Read(ref _pending) != 0 || _open.Count != 0 || _closed.Count != 0;

        /// <summary>The vCPU starts a batch of guest instructions.</summary>
        public void EnterGuest()
        {
            if ((Interlocked.Increment(ref _epoch) & 1) == 0) Interlocked.Increment(ref _epoch); // stay odd inside
        }

        /// <summary>The vCPU stopped running guest instructions (batch end, halt, exit).</summary>
        public void LeaveGuest()
        {
            if ((Interlocked.Increment(ref _epoch) & 1) != 0) Interlocked.Increment(ref _epoch); // stay even outside
        }

        /// <summary>The decode cache is about to decode from <paramref name="page"/> for the first time.</summary>
        public void Claimed(ulong page)
        {
            if (_owner.Claim(page, Bit)) _open.Add(page);
        }

        public void Store(ulong pa, int size) => _owner.NotifyWrite(Bit, pa, size);

        internal void Enqueue(ulong page)
        {
            lock (_queueLock)
            {
                if (_queued < QueueCapacity) _queue[_queued++] = page;
                else _overflow = true;
                Volatile.Write(ref _pending, 1);
            }
        }

        /// <summary>
        /// Drops what must be dropped from <paramref name="cache"/>: queued pages, then provisional ones. At a batch
        /// boundary (<paramref name="boundary"/>) provisional pages whose grace has passed are dropped for the last
        /// time and the newly claimed ones start theirs; at a serializing instruction every provisional page is
        /// dropped (and stays provisional).
        /// </summary>
        public void Sync(DecodeCache cache, bool boundary)
        {
            if (Volatile.Read(ref _pending) != 0)
            {
                int n;
                bool overflow;
                lock (_queueLock)
                {
                    n = _queued;
                    Array.Copy(_queue, _drain, n);
                    overflow = _overflow;
                    _queued = 0;
                    _overflow = false;
                    Volatile.Write(ref _pending, 0);
                }
                if (overflow) cache.Clear();
                else
                {
                    for (int i = 0; i < n; i++) cache.Invalidate(_drain[i] << PageShift, 1);
                }
            }
            if (!boundary)
            {
                foreach (var p in _open) cache.Invalidate(p << PageShift, 1);
                foreach (var p in _closed) cache.Invalidate(p << PageShift, 1);
                return;
            }
            if (_closed.Count != 0 && GraceOver())
            {
                foreach (var p in _closed) cache.Invalidate(p << PageShift, 1);
                _closed.Clear();
            }
            if (_closed.Count == 0 && _open.Count != 0)
            {
                _closed.UnionWith(_open);
                _open.Clear();
                var members = _owner._members;
                for (int m = 0; m < members.Length; m++) _closedEpochs[m] = members[m]?.Epoch ?? 0;
            }
        }

        /// <summary>Every other member was outside guest code when the closed set was closed, or has crossed a fence since.</summary>
        private bool GraceOver()
        {
            var members = _owner._members;
            for (int m = 0; m < members.Length; m++)
            {
                if (m == Index || members[m] is not { } other) continue;
                long seen = _closedEpochs[m];
                if ((seen & 1) != 0 && other.Epoch == seen) return false;
            }
            return true;
        }
    }
}
