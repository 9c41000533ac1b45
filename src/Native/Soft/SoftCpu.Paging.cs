// Paging for the software CPU: 32-bit paging (4 KiB pages and, with CR4.PSE, 4 MiB pages), PAE paging
// (4 KiB and 2 MiB pages) and, in IA-32e mode, 4-level paging (4 KiB and 2 MiB pages; 1 GiB pages are not
// offered), with a software TLB in front of the walk. With EFER.NXE the XD bit makes pages non-executable.
// The walk sets accessed bits at every level and the dirty bit on the first write through an entry; permissions combine over the levels (R/W and
// U/S must allow at every level); CR0.WP makes read-only pages read-only for the supervisor too. A fault is
// (with other vCPUs atomically: SoftCpu.Smp.cs) #PF with CR2 = the linear address and the SDM's error code (P, W/R, U/S, RSVD, I/D). Global pages (CR4.PGE)
// survive a CR3 reload; INVLPG drops one page. Implicit supervisor accesses (descriptor tables, TSS, IDT, the
// stack of an interrupt taken from CPL 3) are checked as CPL 0. Not here: PCID, PSE-36, SMEP/SMAP, and
// reserved-bit checks other than XD without NXE and the PS bit of a 4-level PDPTE.
using System.Runtime.CompilerServices;

namespace ActorVmm.Native.Soft;

public sealed partial class SoftCpu
{
    private const int TlbBits = 10;
    private const int TlbSize = 1 << TlbBits;

    // TLB entry i caches linear page (tag - 1); flags: bit 0 writable, bit 1 user, bit 2 dirty already set,
    // bit 3 global.
    private readonly ulong[] _tlbTag = new ulong[TlbSize];
    private readonly ulong[] _tlbPhys = new ulong[TlbSize];
    private readonly byte[] _tlbFlags = new byte[TlbSize];

    private const byte TlbWritable = 1, TlbUser = 2, TlbDirty = 4, TlbGlobal = 8, TlbNoExec = 16;

    private enum Access
    {
        Read,
        Write,
        Fetch,
    }

    private bool PagingEnabled
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => (Cr0 & 0x8000_0001) == 0x8000_0001;
    }

    /// <summary>Linear to physical for an access of one byte at <paramref name="linear"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong Translate(ulong linear, Access access)
    {
        if (!PagingEnabled) return linear;
        ulong page = linear >> 12;
        int i = (int)(page & (TlbSize - 1));
        if (_tlbTag[i] == page + 1)
        {
            byte f = _tlbFlags[i];
            bool user = Cpl == 3 && !_systemAccess;
            bool ok = access != Access.Write
                ? (!user || (f & TlbUser) != 0) && (access != Access.Fetch || (f & TlbNoExec) == 0)
                : (f & TlbDirty) != 0 && (user ? (f & (TlbUser | TlbWritable)) == (TlbUser | TlbWritable) : (f & TlbWritable) != 0 || (Cr0 & 0x1_0000) == 0);
            if (ok) return _tlbPhys[i] | (linear & 0xfff);
        }
        return Walk(linear, access);
    }

    private const ulong PteAddrMask = 0x000f_ffff_ffff_f000;

    private ulong Walk(ulong linear, Access access)
    {
        bool write = access == Access.Write;
        bool user = Cpl == 3 && !_systemAccess;
        bool pae = (Cr4 & 0x20) != 0;
        var walk = new WalkState { Linear = linear, Write = write, User = user, Access = access, Nxe = (Efer & EferNxe) != 0 };
        ulong phys;
        bool global;
        ulong leafAddr;
        int leafSize;
        ulong leaf;
        if (!pae)
        {
            ulong pdeAddr = (Cr3 & 0xffff_f000) + ((linear >> 22) & 0x3ff) * 4;
            ulong pde = ReadPhysical(pdeAddr, 4);
            if ((pde & 1) == 0) throw PageFault(ref walk, present: false);
            walk.Writable &= (pde & 2) != 0;
            walk.UserOk &= (pde & 4) != 0;
            if ((pde & 0x80) != 0 && (Cr4 & 0x10) != 0)
            {
                leaf = pde;
                leafAddr = pdeAddr;
                leafSize = 4;
                phys = (pde & 0xffc0_0000) | (linear & 0x3f_f000);
                global = (pde & 0x100) != 0;
            }
            else
            {
                SetAccessedBit(pdeAddr, pde, 4);
                ulong pteAddr = (pde & 0xffff_f000) + ((linear >> 12) & 0x3ff) * 4;
                ulong pte = ReadPhysical(pteAddr, 4);
                if ((pte & 1) == 0) throw PageFault(ref walk, present: false);
                walk.Writable &= (pte & 2) != 0;
                walk.UserOk &= (pte & 4) != 0;
                leaf = pte;
                leafAddr = pteAddr;
                leafSize = 4;
                phys = pte & 0xffff_f000;
                global = (pte & 0x100) != 0;
            }
        }
        else
        {
            ulong pdBase;
            if (LongMode)
            {
                // 4-level paging: PML4 and page-directory-pointer tables carry permissions like the lower levels.
                ulong pml4eAddr = (Cr3 & PteAddrMask) + ((linear >> 39) & 0x1ff) * 8;
                ulong pml4e = NonLeafEntry(ref walk, pml4eAddr);
                ulong pdpteAddr = (pml4e & PteAddrMask) + ((linear >> 30) & 0x1ff) * 8;
                ulong pdpte = ReadPhysical(pdpteAddr, 8);
                if ((pdpte & 1) == 0) throw PageFault(ref walk, present: false);
                if ((pdpte & 0x80) != 0) throw PageFault(ref walk, present: true, reserved: true); // 1 GiB pages are not offered
                pdpte = NonLeafEntry(ref walk, pdpteAddr);
                pdBase = pdpte & PteAddrMask;
            }
            else
            {
                // PAE: the four PDPTEs have no permission bits.
                ulong pdpteAddr = (Cr3 & 0xffff_ffe0) + ((linear >> 30) & 3) * 8;
                ulong pdpte = ReadPhysical(pdpteAddr, 8);
                if ((pdpte & 1) == 0) throw PageFault(ref walk, present: false);
                pdBase = pdpte & PteAddrMask;
            }
            ulong pdeAddr = pdBase + ((linear >> 21) & 0x1ff) * 8;
            ulong pde = ReadPhysical(pdeAddr, 8);
            if ((pde & 1) == 0) throw PageFault(ref walk, present: false);
            CheckPaeEntry(ref walk, pde);
            if ((pde & 0x80) != 0)
            {
                leaf = pde;
                leafAddr = pdeAddr;
                leafSize = 8;
                phys = (pde & 0x000f_ffff_ffe0_0000) | (linear & 0x1f_f000);
                global = (pde & 0x100) != 0;
            }
            else
            {
                SetAccessedBit(pdeAddr, pde, 8);
                ulong pteAddr = (pde & PteAddrMask) + ((linear >> 12) & 0x1ff) * 8;
                ulong pte = ReadPhysical(pteAddr, 8);
                if ((pte & 1) == 0) throw PageFault(ref walk, present: false);
                CheckPaeEntry(ref walk, pte);
                leaf = pte;
                leafAddr = pteAddr;
                leafSize = 8;
                phys = pte & PteAddrMask;
                global = (pte & 0x100) != 0;
            }
        }
        // Permission: user accesses need U/S everywhere; writes need R/W everywhere, for the supervisor only when
        // CR0.WP is set; fetches need XD clear everywhere (with EFER.NXE).
        if (user && !walk.UserOk) throw PageFault(ref walk, present: true);
        if (write && !walk.Writable && (user || (Cr0 & 0x1_0000) != 0)) throw PageFault(ref walk, present: true);
        if (access == Access.Fetch && walk.NoExec) throw PageFault(ref walk, present: true);

        // Accessed on every use, dirty on the first write.
        ulong updated = leaf | 0x20 | (write ? 0x40UL : 0);
        if (updated != leaf) SetEntryBits(leafAddr, leaf, updated & ~leaf, leafSize);

        ulong page = linear >> 12;
        int i = (int)(page & (TlbSize - 1));
        _tlbTag[i] = page + 1;
        _tlbPhys[i] = phys;
        _tlbFlags[i] = (byte)((walk.Writable ? TlbWritable : 0) | (walk.UserOk ? TlbUser : 0) | ((updated & 0x40) != 0 ? TlbDirty : 0)
            | (global && (Cr4 & 0x80) != 0 ? TlbGlobal : 0) | (walk.NoExec ? TlbNoExec : 0));
        return phys | (linear & 0xfff);
    }

    private struct WalkState
    {
        public ulong Linear;
        public bool Write, User, Nxe;
        public Access Access;
        public bool Writable, UserOk, NoExec;

        public WalkState()
        {
            Writable = true;
            UserOk = true;
        }
    }

    /// <summary>A PML4E or (4-level) PDPTE: present, reserved bits, permissions folded in, accessed bit set.</summary>
    private ulong NonLeafEntry(ref WalkState walk, ulong entryAddr)
    {
        ulong e = ReadPhysical(entryAddr, 8);
        if ((e & 1) == 0) throw PageFault(ref walk, present: false);
        CheckPaeEntry(ref walk, e);
        SetAccessedBit(entryAddr, e, 8);
        return e;
    }

    /// <summary>Folds a PAE/4-level entry's R/W, U/S and XD into the walk; XD without EFER.NXE is a reserved bit.</summary>
    private void CheckPaeEntry(ref WalkState walk, ulong e)
    {
        if ((e >> 63) != 0)
        {
            if (!walk.Nxe) throw PageFault(ref walk, present: true, reserved: true);
            walk.NoExec = true;
        }
        walk.Writable &= (e & 2) != 0;
        walk.UserOk &= (e & 4) != 0;
    }

    private void SetAccessedBit(ulong entryAddr, ulong entry, int size)
    {
        if ((entry & 0x20) == 0) SetEntryBits(entryAddr, entry, 0x20, size);
    }

    /// <summary>#PF: CR2 = the linear address; error code P, W/R, U/S, RSVD, and I/D for fetches where NX applies.</summary>
    private CpuFault PageFault(ref WalkState walk, bool present, bool reserved = false)
    {
        Cr2 = LongMode ? walk.Linear : walk.Linear & 0xffff_ffff;
        bool pae = (Cr4 & 0x20) != 0;
        uint code = (present ? 1u : 0) | (walk.Write ? 2u : 0) | (walk.User ? 4u : 0) | (reserved ? 8u : 0)
            | (walk.Access == Access.Fetch && walk.Nxe && pae ? 16u : 0);
        return new CpuFault(ExPF, code);
    }

    /// <summary>Drops TLB entries: all of them, or all but global pages.</summary>
    private void FlushTlb(bool keepGlobal)
    {
        _fetchValid = false;
        for (int i = 0; i < TlbSize; i++)
        {
            if (keepGlobal && (_tlbFlags[i] & TlbGlobal) != 0) continue;
            _tlbTag[i] = 0;
        }
    }

    private void InvalidatePage(ulong linear)
    {
        _fetchValid = false;
        ulong page = linear >> 12;
        int i = (int)(page & (TlbSize - 1));
        if (_tlbTag[i] == page + 1) _tlbTag[i] = 0;
    }
}
