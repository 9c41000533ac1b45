// Paging for the software CPU: 32-bit paging (4 KiB pages and, with CR4.PSE, 4 MiB pages) and PAE paging
// (4 KiB and 2 MiB pages), with a software TLB in front of the walk. The walk sets accessed bits at every
// level and the dirty bit on the first write through an entry; permissions combine over the levels (R/W and
// U/S must allow at every level); CR0.WP makes read-only pages read-only for the supervisor too. A fault is
// #PF with CR2 = the linear address and the SDM's error code (P, W/R, U/S). Global pages (CR4.PGE) survive a
// CR3 reload; INVLPG drops one page. Not here yet: 4-level paging (long mode), NX (needs EFER), PCID,
// PSE-36 and reserved-bit checks; implicit supervisor accesses (descriptor tables, TSS, IDT) made at CPL 3
// are checked as user accesses.
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

    private const byte TlbWritable = 1, TlbUser = 2, TlbDirty = 4, TlbGlobal = 8;

    private enum Access
    {
        Read,
        Write,
        Fetch,
    }

    private bool PagingEnabled => (Cr0 & 0x8000_0001) == 0x8000_0001;

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
            bool user = Cpl == 3;
            bool ok = access != Access.Write
                ? !user || (f & TlbUser) != 0
                : (f & TlbDirty) != 0 && (user ? (f & (TlbUser | TlbWritable)) == (TlbUser | TlbWritable) : (f & TlbWritable) != 0 || (Cr0 & 0x1_0000) == 0);
            if (ok) return _tlbPhys[i] | (linear & 0xfff);
        }
        return Walk(linear, access);
    }

    private ulong Walk(ulong linear, Access access)
    {
        bool write = access == Access.Write;
        bool user = Cpl == 3;
        bool pae = (Cr4 & 0x20) != 0;
        bool writable = true, userOk = true;
        ulong phys;
        bool global;
        ulong leafAddr;
        int leafSize;
        ulong leaf;
        if (!pae)
        {
            ulong pdeAddr = (Cr3 & 0xffff_f000) + ((linear >> 22) & 0x3ff) * 4;
            ulong pde = ReadPhysical(pdeAddr, 4);
            if ((pde & 1) == 0) throw PageFault(linear, false, write, user, access);
            writable &= (pde & 2) != 0;
            userOk &= (pde & 4) != 0;
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
                if ((pte & 1) == 0) throw PageFault(linear, false, write, user, access);
                writable &= (pte & 2) != 0;
                userOk &= (pte & 4) != 0;
                leaf = pte;
                leafAddr = pteAddr;
                leafSize = 4;
                phys = pte & 0xffff_f000;
                global = (pte & 0x100) != 0;
            }
        }
        else
        {
            const ulong AddrMask = 0x000f_ffff_ffff_f000;
            ulong pdpteAddr = (Cr3 & 0xffff_ffe0) + ((linear >> 30) & 3) * 8;
            ulong pdpte = ReadPhysical(pdpteAddr, 8);
            if ((pdpte & 1) == 0) throw PageFault(linear, false, write, user, access);
            ulong pdeAddr = (pdpte & AddrMask) + ((linear >> 21) & 0x1ff) * 8;
            ulong pde = ReadPhysical(pdeAddr, 8);
            if ((pde & 1) == 0) throw PageFault(linear, false, write, user, access);
            writable &= (pde & 2) != 0;
            userOk &= (pde & 4) != 0;
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
                ulong pteAddr = (pde & AddrMask) + ((linear >> 12) & 0x1ff) * 8;
                ulong pte = ReadPhysical(pteAddr, 8);
                if ((pte & 1) == 0) throw PageFault(linear, false, write, user, access);
                writable &= (pte & 2) != 0;
                userOk &= (pte & 4) != 0;
                leaf = pte;
                leafAddr = pteAddr;
                leafSize = 8;
                phys = pte & AddrMask;
                global = (pte & 0x100) != 0;
            }
        }
        // Permission: user accesses need U/S everywhere; writes need R/W everywhere, for the supervisor only when CR0.WP is set.
        if (user && !userOk) throw PageFault(linear, true, write, user, access);
        if (write && !writable && (user || (Cr0 & 0x1_0000) != 0)) throw PageFault(linear, true, write, user, access);

        // Accessed on every use, dirty on the first write.
        ulong updated = leaf | 0x20 | (write ? 0x40UL : 0);
        if (updated != leaf) WritePhysical(leafAddr, updated, leafSize);

        ulong page = linear >> 12;
        int i = (int)(page & (TlbSize - 1));
        _tlbTag[i] = page + 1;
        _tlbPhys[i] = phys;
        _tlbFlags[i] = (byte)((writable ? TlbWritable : 0) | (userOk ? TlbUser : 0) | ((updated & 0x40) != 0 ? TlbDirty : 0)
            | (global && (Cr4 & 0x80) != 0 ? TlbGlobal : 0));
        return phys | (linear & 0xfff);
    }

    private void SetAccessedBit(ulong entryAddr, ulong entry, int size)
    {
        if ((entry & 0x20) == 0) WritePhysical(entryAddr, entry | 0x20, size);
    }

    private CpuFault PageFault(ulong linear, bool present, bool write, bool user, Access access)
    {
        Cr2 = linear & 0xffff_ffff;
        uint code = (present ? 1u : 0) | (write ? 2u : 0) | (user ? 4u : 0);
        _ = access;
        return new CpuFault(ExPF, code);
    }

    /// <summary>Drops TLB entries: all of them, or all but global pages.</summary>
    private void FlushTlb(bool keepGlobal)
    {
        for (int i = 0; i < TlbSize; i++)
        {
            if (keepGlobal && (_tlbFlags[i] & TlbGlobal) != 0) continue;
            _tlbTag[i] = 0;
        }
    }

    private void InvalidatePage(ulong linear)
    {
        ulong page = linear >> 12;
        int i = (int)(page & (TlbSize - 1));
        if (_tlbTag[i] == page + 1) _tlbTag[i] = 0;
    }
}
