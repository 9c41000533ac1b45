// The soft CPU as one of several on a VM (SmpCoherence has the shared half; with one vCPU Smp is null and none of
// this runs):
// - Locked read-modify-write. With a LOCK prefix (ADD, ADC, AND, BTC, BTR, BTS, CMPXCHG, CMPXCHG8B, CMPXCHG16B,
//   DEC, INC, NEG, NOT, OR, SBB, SUB, XOR, XADD) and for XCHG with a memory operand, the instruction's own handler
//   runs in an atomic phase: its one memory read loads the aligned 8 bytes holding the operand (after the segment
//   and page checks of a write: a locked access is a write), its one memory write stores them back with a
//   compare-and-swap on the host address, and if another vCPU changed those 8 bytes in between the registers and
//   flags are restored and the instruction runs again. So a plain store by another vCPU is never lost, which a
//   lock around the instruction alone would not give (x86 spinlocks release with a plain MOV). Operands crossing
//   an 8-byte boundary, outside writable RAM (MMIO, ROM), or read twice (CMPXCHG16B) run under the VM's fallback
//   lock instead. The CAS is a full fence, as LOCK is; MFENCE is one too (SoftCpu.Sse.cs).
// - Page-table accessed and dirty bits are set with an atomic OR, as the hardware walker does, so an OS clearing
//   an entry on another vCPU (XCHG) never has it written back.
// - Serializing instructions drop code other vCPUs changed (SmpCoherence: cross-modifying code).
// - INIT and start-up (Intel SDM vol. 3 §9.4, table 9-1): InitReset puts the CPU in the state INIT gives (real
//   mode at F000:FFF0, registers cleared, EDX = family/model/stepping, CR0 = 0x60000010 with CD/NW kept; x87/SSE
//   state, MSRs other than EFER, the TSC and IA32_APIC_BASE unchanged), StartUp(vector) starts a CPU waiting for
//   SIPI at vector << 12 in real mode. The wait-for-SIPI state itself is the vCPU's (SoftVcpu).
using System.Runtime.CompilerServices;
using ActorVmm.Core.Accel;
using Iced.Intel;

namespace ActorVmm.Native.Soft;

public sealed unsafe partial class SoftCpu
{
    private SmpCoherence.Member? _smp;

    private enum AtomicPhase : byte
    {
        /// <summary>Not inside a locked instruction.</summary>
        Off,
        /// <summary>Running a locked instruction as a compare-and-swap.</summary>
        Cas,
        /// <summary>The compare-and-swap lost to another vCPU: undo and run again.</summary>
        Lost,
        /// <summary>The operand cannot be one compare-and-swap: undo and run under the fallback lock.</summary>
        NeedLock,
        /// <summary>Running under the fallback lock: plain accesses.</summary>
        Locked,
    }

    private const int MaxCasAttempts = 64;

    private AtomicPhase _atomic;
    private bool _atomicRead;
    private ulong* _atomicWord;
    private ulong _atomicExpected;
    private ulong _atomicPa, _atomicOffset;
    private int _atomicSize, _atomicShift;
    private readonly ulong[] _undoGpr = new ulong[16];
    private uint _undoFlags, _undoArith;
    private LazyOp _undoOp;
    private ulong _undoRes, _undoA, _undoB;
    private int _undoBits;
    private bool _undoCarryIn;

    /// <summary>Locked instructions that had to run again because another vCPU changed the operand (contention).</summary>
    public long AtomicRetries { get; private set; }

    /// <summary>Locked instructions that ran under the fallback lock (split, MMIO, ROM, CMPXCHG16B).</summary>
    public long AtomicFallbacks { get; private set; }

    /// <summary>Makes this CPU one of several sharing guest RAM (before it runs; once).</summary>
    internal void JoinSmp(SmpCoherence.Member member)
    {
        _smp = member;
        _decodeCache.PageClaimed = member.Claimed;
    }

    /// <summary>This CPU's share of the VM's SMP state, or null with one vCPU.</summary>
    internal SmpCoherence.Member? Smp => _smp;

    /// <summary>Between instruction batches: drops code other vCPUs wrote (queued and provisional pages).</summary>
    internal void SmpBoundary()
    {
        if (_smp is { HasWork: true } s)
        {
            s.Sync(_decodeCache, boundary: true);
            _fetchValid = false; // the fetch cache may hold a page Sync just dropped (it does not re-check the cache's version)
        }
    }

    /// <summary>A serializing instruction: no code another vCPU wrote before signalling this one survives it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Serialize()
    {
        if (_smp is { HasWork: true } s)
        {
            s.Sync(_decodeCache, boundary: false);
            _fetchValid = false;
        }
    }

    /// <summary>True for the instructions that must be atomic against other vCPUs (the LOCK forms and XCHG with memory).</summary>
    private static bool NeedsAtomic(in Instruction i)
        => i.HasLockPrefix || (i.Mnemonic == Mnemonic.Xchg && (i.Op0Kind == OpKind.Memory || i.Op1Kind == OpKind.Memory));

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ExecuteAtomic(in Instruction i)
    {
        SaveUndo();
        for (int attempt = 0; attempt < MaxCasAttempts; attempt++)
        {
            _atomic = AtomicPhase.Cas;
            _atomicRead = false;
            AtomicPhase outcome;
            try
            {
                Execute(in i);
            }
            finally
            {
                outcome = _atomic;
                _atomic = AtomicPhase.Off;
            }
            if (outcome == AtomicPhase.Cas) return;
            RestoreUndo();
            if (outcome == AtomicPhase.NeedLock) break;
            AtomicRetries++;
        }
        AtomicFallbacks++;
        lock (_smp!.Owner.AtomicFallbackLock)
        {
            _atomic = AtomicPhase.Locked;
            try
            {
                Execute(in i);
            }
            finally
            {
                _atomic = AtomicPhase.Off;
            }
        }
    }

    private void SaveUndo()
    {
        Gpr.AsSpan().CopyTo(_undoGpr);
        _undoFlags = _flags;
        _undoArith = _arith;
        _undoOp = _op;
        _undoRes = _res;
        _undoA = _a;
        _undoB = _b;
        _undoBits = _bits;
        _undoCarryIn = _carryIn;
    }

    private void RestoreUndo()
    {
        _undoGpr.AsSpan().CopyTo(Gpr);
        _flags = _undoFlags;
        _arith = _undoArith;
        _op = _undoOp;
        _res = _undoRes;
        _a = _undoA;
        _b = _undoB;
        _bits = _undoBits;
        _carryIn = _undoCarryIn;
    }

    /// <summary>ReadMem inside a locked instruction: the first read loads the operand's aligned 8 bytes.</summary>
    private ulong AtomicRead(ref SegmentRegister seg, byte faultVector, ulong offset, int size)
    {
        if (_atomic == AtomicPhase.Locked) return ReadSeg(ref seg, faultVector, offset, size);
        if (_atomic != AtomicPhase.Cas) return 0; // already lost or needing the lock: the result is thrown away
        if (_atomicRead)
        {
            _atomic = AtomicPhase.NeedLock; // a second read (CMPXCHG16B): not one compare-and-swap
            return 0;
        }
        ulong linear = WritableLinear(ref seg, faultVector, offset, size);
        ulong pa = PagingEnabled ? Translate(linear, Access.Write) : linear;
        ulong* word = (pa & 7) + (ulong)size <= 8 ? WritableRamWord(pa & ~7UL) : null;
        if (word == null)
        {
            _atomic = AtomicPhase.NeedLock;
            return 0;
        }
        _atomicRead = true;
        _atomicWord = word;
        _atomicExpected = Volatile.Read(ref *word);
        _atomicPa = pa;
        _atomicOffset = offset;
        _atomicSize = size;
        _atomicShift = (int)(pa & 7) * 8;
        return (_atomicExpected >> _atomicShift) & SizeMask(size * 8);
    }

    /// <summary>WriteMem inside a locked instruction: the compare-and-swap of what the read loaded.</summary>
    private void AtomicWrite(ref SegmentRegister seg, byte faultVector, ulong offset, ulong value, int size)
    {
        if (_atomic == AtomicPhase.Locked)
        {
            WriteSeg(ref seg, faultVector, offset, value, size);
            return;
        }
        if (_atomic != AtomicPhase.Cas) return;
        if (!_atomicRead || offset != _atomicOffset || size != _atomicSize)
        {
            _atomic = AtomicPhase.NeedLock;
            return;
        }
        ulong mask = SizeMask(size * 8) << _atomicShift;
        ulong desired = (_atomicExpected & ~mask) | ((value << _atomicShift) & mask);
        long seen = Interlocked.CompareExchange(ref *(long*)_atomicWord, (long)desired, (long)_atomicExpected);
        if ((ulong)seen != _atomicExpected)
        {
            _atomic = AtomicPhase.Lost;
            return;
        }
        _atomicRead = false; // committed: a further write (there is none in the locked forms) needs the lock
        if (desired != _atomicExpected)
        {
            _decodeCache.NotifyWrite(_atomicPa, size);
            _smp!.Store(_atomicPa, size);
        }
    }

    /// <summary>The linear address of a write of <paramref name="size"/> bytes at seg:offset, with the segment checks of a write.</summary>
    private ulong WritableLinear(ref SegmentRegister seg, byte faultVector, ulong offset, int size)
    {
        if (Mode64) return Linear64(ref seg, faultVector, offset);
        CheckSegment(ref seg, faultVector, offset, size, write: true);
        return (seg.Base + offset) & 0xffff_ffff;
    }

    /// <summary>The host address of the 8 bytes at <paramref name="pa"/> (8-aligned) when they are writable RAM, else null.</summary>
    private ulong* WritableRamWord(ulong pa)
    {
        if (pa - _ramStart <= _ramEnd - _ramStart - 8 && _ramHost != null && !_ramReadOnly)
            return (ulong*)(_ramHost + (pa - _ramStart));
        var region = _memory.FindRegion(pa);
        if (region is null || region.ReadOnly || pa + 8 > region.End) return null;
        return (ulong*)(region.Host + (pa - region.Start));
    }

    /// <summary>
    /// Sets accessed/dirty <paramref name="bits"/> in the paging entry at <paramref name="entryAddr"/> whose value was
    /// <paramref name="entry"/>: with other vCPUs an atomic OR on RAM (the entry may have changed since it was read).
    /// </summary>
    private void SetEntryBits(ulong entryAddr, ulong entry, ulong bits, int size)
    {
        if (_smp is not null && (entryAddr & (ulong)(size - 1)) == 0 && WritableRamWord(entryAddr & ~7UL) is var word && word != null)
        {
            if (size == 8) Interlocked.Or(ref *(long*)word, (long)bits);
            else Interlocked.Or(ref *(int*)((byte*)word + (entryAddr & 4)), (int)bits);
            _decodeCache.NotifyWrite(entryAddr, size);
            _smp.Store(entryAddr, size);
            return;
        }
        WritePhysical(entryAddr, entry | bits, size);
    }

    /// <summary>
    /// INIT (SDM table 9-1): the CPU as after RESET except that x87/SSE state, MSRs other than EFER, the TSC offset
    /// and IA32_APIC_BASE are kept, and CR0.CD/NW keep their values. Pending events are dropped.
    /// </summary>
    internal void InitReset()
    {
        var s = SystemRegisters.PowerOn();
        s.ApicBase = ApicBase;
        s.Cr0 = (s.Cr0 & ~0x6000_0000UL) | (Cr0 & 0x6000_0000UL);
        SetSystemRegisters(s);
        var r = new CpuRegisters { Rip = 0xfff0, Rflags = 0x2, Rdx = 0x600 };
        SetRegisters(r);
        Cr8 = 0;
        _pendingVector = -1;
        _pendingNmi = false;
        _interruptShadow = false;
        _shutdown = false;
        _halted = false;
        _lastException = null;
    }

    /// <summary>Start-up IPI: real mode at <paramref name="vector"/> &lt;&lt; 12 (CS = vector &lt;&lt; 8, IP = 0).</summary>
    internal void StartUp(byte vector)
    {
        Cs = SegmentRegister.RealMode((ushort)(vector << 8), code: true);
        Rip = 0;
        _halted = false;
    }
}
