// Test code: an independent guest page-table walker for the vmm(4) stand-in (VM_GLA2GPA and instruction fetch):
// no paging (CR0.PG = 0), 32-bit paging with 4 MiB pages (CR4.PSE), PAE and 4-level paging with large pages.
// Checks present, write (user writes always; supervisor writes when CR0.WP) and user/supervisor bits, as the
// kernel's vm_gla2gpa does; reports a fault instead of raising it. Shared by the vmm and KVM stand-ins, as is
// DecodeAt, which decodes the instruction at CS:RIP the way those kernels' emulators fetch it.
using ActorVmm.Core.Accel;
using ActorVmm.Core.Memory;
using Iced.Intel;

namespace ActorVmm.Native.Tests.Vmm.StandIn;

public static class GuestPageWalker
{
    /// <summary>
    /// The instruction at CS:RIP, fetched byte by byte through the guest's page tables (up to 15 bytes, fewer where
    /// the mapping ends) and decoded in the CPU's current mode; <paramref name="bytes"/> holds what was fetched.
    /// </summary>
    public static Instruction DecodeAt(GuestMemory memory, in CpuRegisters regs, in SystemRegisters sys, out byte[] bytes)
    {
        bool longMode = (sys.Efer & 0x400) != 0 && (sys.Cs.Attributes & 0x2000) != 0;
        int bitness = longMode ? 64 : (sys.Cr0 & 1) != 0 && (sys.Cs.Attributes & 0x4000) != 0 ? 32 : 16;
        bytes = new byte[15];
        ulong linear = sys.Cs.Base + regs.Rip;
        int n = 0;
        for (; n < 15; n++)
        {
            if (!TryTranslate(memory, sys.Cr0, sys.Cr3, sys.Cr4, sys.Efer, 0, linear + (ulong)n, false, out ulong gpa)) break;
            if (!memory.TryRead(gpa, bytes.AsSpan(n, 1))) break;
        }
        var decoder = Decoder.Create(bitness, new ByteArrayCodeReader(bytes, 0, n));
        decoder.IP = regs.Rip;
        decoder.Decode(out var insn);
        return insn;
    }

    public static bool TryTranslate(GuestMemory memory, ulong cr0, ulong cr3, ulong cr4, ulong efer, int cpl, ulong gla, bool write, out ulong gpa)
    {
        gpa = 0;
        if ((cr0 & 0x8000_0000) == 0)
        {
            gpa = gla & 0xffff_ffff;
            return true;
        }
        bool user = cpl == 3, wp = (cr0 & 0x10000) != 0;
        bool Allowed(ulong e) => (e & 1) != 0 && (!write || (e & 2) != 0 || (!user && !wp)) && (!user || (e & 4) != 0);
        if ((cr4 & 0x20) == 0)
        {
            // 32-bit paging.
            ulong a = gla & 0xffff_ffff;
            ulong pde = memory.ReadObject<uint>((cr3 & 0xffff_f000) + ((a >> 22) << 2));
            if (!Allowed(pde)) return false;
            if ((pde & 0x80) != 0 && (cr4 & 0x10) != 0)
            {
                gpa = (pde & 0xffc0_0000) | (a & 0x3f_ffff);
                return true;
            }
            ulong pte = memory.ReadObject<uint>((pde & 0xffff_f000) + (((a >> 12) & 0x3ff) << 2));
            if (!Allowed(pte)) return false;
            gpa = (pte & 0xffff_f000) | (a & 0xfff);
            return true;
        }
        const ulong AddrMask = 0x000f_ffff_ffff_f000;
        bool longMode = (efer & 0x400) != 0;
        ulong table;
        int level;
        if (longMode)
        {
            table = cr3 & AddrMask;
            level = 4;
        }
        else
        {
            ulong a32 = gla & 0xffff_ffff;
            ulong pdpte = memory.ReadObject<ulong>((cr3 & 0xffff_ffe0) + ((a32 >> 30) << 3));
            if ((pdpte & 1) == 0) return false;
            table = pdpte & AddrMask;
            level = 2;
            gla = a32;
        }
        while (true)
        {
            int shift = 12 + 9 * (level - 1);
            ulong e = memory.ReadObject<ulong>(table + (((gla >> shift) & 0x1ff) << 3));
            if (!Allowed(e)) return false;
            if (level == 1 || (level <= 3 && (e & 0x80) != 0))
            {
                ulong pageMask = (1UL << shift) - 1;
                gpa = (e & AddrMask & ~pageMask) | (gla & pageMask);
                return true;
            }
            table = e & AddrMask;
            level--;
        }
    }
}
