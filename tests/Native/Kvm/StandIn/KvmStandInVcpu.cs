// Test code, NOT a kernel: one vCPU of the KVM stand-in (KvmStandIn.cs has the overview). KVM_RUN runs the soft
// vCPU with a trap handler: the soft kernel devices (split: the local APIC) answer first; any other port or MMIO
// access throws out of the instruction before it has changed anything, and becomes the exit, completed as
// api.rst says: OUT and OUTS are done when KVM_RUN returns (RIP past the instruction, or RCX/RSI advanced by io.count
// for a REP OUTS that needs more exits); IN and INS are finished on the next KVM_RUN from the data userspace left at
// io.data_offset; an MMIO read is finished on the next KVM_RUN from mmio.data, an MMIO write is done (the next
// KVM_RUN re-executes the instruction once, with every access it already made answered as before, so a
// read-modify-write gives two exits, read then write). Unknown MSRs fault (#GP) inside, as KVM does without
// KVM_CAP_X86_USER_SPACE_MSR. Interrupts: off: KVM_INTERRUPT queues one vector, injected when RFLAGS.IF and no
// interrupt shadow allow; HLT exits (KVM_EXIT_HLT); request_interrupt_window makes KVM_RUN exit
// (KVM_EXIT_IRQ_WINDOW_OPEN) as soon as an interrupt could be injected; kvm_run.cr8 is CR8 (set on entry, reported
// on exit; lowering it exits KVM_EXIT_SET_TPR). split: the local APIC is the soft kernel's; KVM_INTERRUPT gives the
// ExtINT vector the LAPIC takes from LINT0 (pending_external_vector: EEXIST while one waits); the window and
// ready_for_interrupt_injection include "the LAPIC accepts PIC interrupts"; HLT waits inside; a level-triggered EOI
// exits KVM_EXIT_IOAPIC_EOI. A signal (KickThread) ends KVM_RUN with EINTR / KVM_EXIT_INTR; so does immediate_exit,
// after the pending completion is done.
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ActorVmm.Core.Accel;
using ActorVmm.Native.Soft;
using ActorVmm.Native.Sys;
using ActorVmm.Native.Tests.Vmm.StandIn;
using Iced.Intel;

namespace ActorVmm.Native.Tests.Kvm.StandIn;

public sealed unsafe class KvmStandInVcpu
{
    // kvm_run offsets (linux/kvm.h, x86-64).
    private const int RequestInterruptWindow = 0, ImmediateExit = 1, ExitReasonAt = 8, ReadyForInjection = 12, IfFlagAt = 13, FlagsAt = 14,
        Cr8At = 16, ApicBaseAt = 24, U = 32;

    // KVM_EXIT_* numbers.
    public const int ExitIo = 2, ExitHlt = 5, ExitMmio = 6, ExitIrqWindowOpen = 7, ExitShutdown = 8, ExitIntr = 10, ExitSetTpr = 11,
        ExitInternalError = 17, ExitSystemEvent = 24, ExitIoapicEoi = 26;

    private readonly KvmStandInVm _vm;
    private readonly SoftVm _soft;
    private readonly SoftVcpu _cpu;
    private readonly Trap _trap;
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private readonly ConcurrentQueue<byte> _eois = new();
    private byte* _page;
    private bool _mapped, _fdOpen = true, _released;
    private int _running;

    // What the next KVM_RUN must finish (complete_userspace_io).
    private enum Pending { None, PortIn, PortInString, Mmio }

    private Pending _pending;
    private int _pioSize;
    private InsState _ins;
    private readonly List<Access> _replay = [];

    // Interrupt state.
    private int _injected = -1;
    private bool _windowRequested;
    private bool _lineHigh;
    private int _setTpr;
    private volatile bool _nmiQueued;

    internal KvmStandInVcpu(KvmStandInVm vm, int id, SoftVm soft)
    {
        _vm = vm;
        _soft = soft;
        Id = id;
        _cpu = (SoftVcpu)soft.CreateVcpu(id);
        if (id != 0) _cpu.MakeRunnable(); // KVM vCPUs run from the registers set (no wait-for-SIPI without an in-kernel LAPIC)
        _trap = new Trap(this);
        _page = (byte*)NativeMemory.AlignedAlloc(KvmStandIn.VcpuMmapSize, 4096);
        NativeMemory.Clear(_page, KvmStandIn.VcpuMmapSize);
    }

    public int Id { get; }

    /// <summary>Exits returned to userspace, by KVM_EXIT_* number.</summary>
    public long[] Exits { get; } = new long[32];

    /// <summary>KVM_RUN calls that returned EINTR (a signal or immediate_exit).</summary>
    public long Interrupted;

    /// <summary>The CPUID entries the last KVM_SET_CPUID2 gave (function, index, eax, ebx, ecx, edx).</summary>
    public (uint Function, uint Index, uint Eax, uint Ebx, uint Ecx, uint Edx)[] Cpuid { get; private set; } = [];

    /// <summary>Vectors KVM_INTERRUPT queued, in order.</summary>
    public List<byte> InjectedVectors { get; } = [];

    /// <summary>The soft vCPU behind this one (for tests).</summary>
    public SoftVcpu Soft => _cpu;

    private IrqchipMode Mode => _vm.Mode;

    private static T R<T>(void* arg, int offset) where T : unmanaged => Unsafe.ReadUnaligned<T>((byte*)arg + offset);

    private static void W<T>(void* arg, int offset, T value) where T : unmanaged => Unsafe.WriteUnaligned((byte*)arg + offset, value);

    internal void* MapRunPage()
    {
        _mapped = true;
        return _page;
    }

    internal bool UnmapRunPage(void* address)
    {
        if (address != _page || !_mapped) return false;
        _mapped = false;
        FreeIfUnused();
        return true;
    }

    internal void FdClosed()
    {
        _fdOpen = false;
        _vm.ReleaseReference();
        FreeIfUnused();
    }

    /// <summary>The VM is gone: nothing runs this vCPU any more.</summary>
    internal void Release()
    {
        _released = true;
        FreeIfUnused();
    }

    /// <summary>True once the fd is closed and the page unmapped (everything of this vCPU released).</summary>
    public bool Freed => _page == null;

    private void FreeIfUnused()
    {
        if (_mapped || _fdOpen || !_released || _page == null) return;
        NativeMemory.AlignedFree(_page);
        _page = null;
        _wake.Dispose();
    }

    /// <summary>A signal to the thread running KVM_RUN on this vCPU.</summary>
    internal void Interrupt()
    {
        _cpu.Kick();
        try
        {
            if (_wake.CurrentCount == 0) _wake.Release();
        }
        catch (Exception e) when (e is ObjectDisposedException or SemaphoreFullException)
        {
        }
    }

    internal int Ioctl(ulong request, void* a)
    {
        if (_vm.Destroyed) return -Errno.EIO;
        switch (request)
        {
            case KvmStandIn.RUN:
                return (nint)a != 0 ? -Errno.EINVAL : Run();
            case KvmStandIn.GET_REGS:
                {
                    var r = _cpu.GetRegisters();
                    ulong[] v = [r.Rax, r.Rbx, r.Rcx, r.Rdx, r.Rsi, r.Rdi, r.Rsp, r.Rbp, r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15, r.Rip, r.Rflags];
                    for (int i = 0; i < v.Length; i++) W(a, i * 8, v[i]);
                    return 0;
                }
            case KvmStandIn.SET_REGS:
                {
                    var r = new CpuRegisters
                    {
                        Rax = R<ulong>(a, 0), Rbx = R<ulong>(a, 8), Rcx = R<ulong>(a, 16), Rdx = R<ulong>(a, 24), Rsi = R<ulong>(a, 32), Rdi = R<ulong>(a, 40),
                        Rsp = R<ulong>(a, 48), Rbp = R<ulong>(a, 56), R8 = R<ulong>(a, 64), R9 = R<ulong>(a, 72), R10 = R<ulong>(a, 80), R11 = R<ulong>(a, 88),
                        R12 = R<ulong>(a, 96), R13 = R<ulong>(a, 104), R14 = R<ulong>(a, 112), R15 = R<ulong>(a, 120), Rip = R<ulong>(a, 128), Rflags = R<ulong>(a, 136) | 2,
                    };
                    _cpu.SetRegisters(r);
                    return 0;
                }
            case KvmStandIn.GET_SREGS:
                GetSregs((byte*)a);
                return 0;
            case KvmStandIn.SET_SREGS:
                return SetSregs((byte*)a);
            case KvmStandIn.SET_CPUID2:
                {
                    uint n = R<uint>(a, 0);
                    if (n > 256) return -7; // E2BIG (KVM_MAX_CPUID_ENTRIES)
                    var list = new (uint, uint, uint, uint, uint, uint)[n];
                    for (int i = 0; i < n; i++)
                    {
                        byte* e = (byte*)a + 8 + i * 40;
                        list[i] = (R<uint>(e, 0), R<uint>(e, 4), R<uint>(e, 12), R<uint>(e, 16), R<uint>(e, 20), R<uint>(e, 24));
                    }
                    Cpuid = list;
                    return 0;
                }
            case KvmStandIn.GET_MSRS:
            case KvmStandIn.SET_MSRS:
                {
                    uint n = R<uint>(a, 0);
                    if (n > 255) return -7; // E2BIG
                    var cpu = _cpu.Cpu;
                    int done = 0;
                    for (; done < n && cpu is not null; done++)
                    {
                        byte* e = (byte*)a + 8 + done * 16;
                        uint index = R<uint>(e, 0);
                        if (request == KvmStandIn.GET_MSRS)
                        {
                            if (!cpu.TryReadMsr(index, out ulong value)) break;
                            W(e, 8, value);
                        }
                        else if (!cpu.TryWriteMsr(index, R<ulong>(e, 8))) break;
                    }
                    return done; // the number of entries processed, stopping at the first the CPU refuses
                }
            case KvmStandIn.INTERRUPT:
                {
                    uint irq = R<uint>(a, 0);
                    if (irq >= 256) return -Errno.EINVAL;
                    if (Mode == IrqchipMode.On) return -Errno.ENXIO; // the 8259 is in the kernel
                    lock (InjectedVectors)
                    {
                        if (Mode == IrqchipMode.Split && _injected >= 0) return -Errno.EEXIST; // pending_external_vector
                        Note($"KVM_INTERRUPT {irq:x2}");
                        _injected = (int)irq;
                        InjectedVectors.Add((byte)irq);
                    }
                    return 0;
                }
            case KvmStandIn.NMI:
                _nmiQueued = true;
                _soft.InjectNmi(Id);
                Interrupt();
                return 0;
            default:
                return -Errno.ENOTTY;
        }
    }

    // ---- sregs (struct kvm_sregs: 8 kvm_segment of 24 bytes, gdt/idt kvm_dtable of 16, cr0-cr8, efer, apic_base, bitmap) ----

    private static void PutSegment(byte* p, in SegmentRegister s)
    {
        W(p, 0, s.Base);
        W(p, 8, s.Limit);
        W(p, 12, s.Selector);
        int at = s.Attributes;
        p[14] = (byte)(at & 0xf);
        p[15] = (byte)((at >> 7) & 1);
        p[16] = (byte)((at >> 5) & 3);
        p[17] = (byte)((at >> 14) & 1);
        p[18] = (byte)((at >> 4) & 1);
        p[19] = (byte)((at >> 13) & 1);
        p[20] = (byte)((at >> 15) & 1);
        p[21] = (byte)((at >> 12) & 1);
        p[22] = (byte)(((at >> 7) & 1) ^ 1);
        p[23] = 0;
    }

    private static SegmentRegister TakeSegment(byte* p) => new()
    {
        Base = R<ulong>(p, 0),
        Limit = R<uint>(p, 8),
        Selector = R<ushort>(p, 12),
        Attributes = (ushort)((p[14] & 0xf) | ((p[18] & 1) << 4) | ((p[16] & 3) << 5) | ((p[22] != 0 ? 0 : p[15] & 1) << 7)
            | ((p[21] & 1) << 12) | ((p[19] & 1) << 13) | ((p[17] & 1) << 14) | ((p[20] & 1) << 15)),
    };

    private void GetSregs(byte* p)
    {
        var s = _cpu.GetSystemRegisters();
        new Span<byte>(p, 312).Clear();
        PutSegment(p + 0, s.Cs); PutSegment(p + 24, s.Ds); PutSegment(p + 48, s.Es); PutSegment(p + 72, s.Fs);
        PutSegment(p + 96, s.Gs); PutSegment(p + 120, s.Ss); PutSegment(p + 144, s.Tr); PutSegment(p + 168, s.Ldtr);
        W(p, 192, s.Gdtr.Base); W(p, 200, s.Gdtr.Limit);
        W(p, 208, s.Idtr.Base); W(p, 216, s.Idtr.Limit);
        W(p, 224, s.Cr0); W(p, 232, s.Cr2); W(p, 240, s.Cr3); W(p, 248, s.Cr4); W(p, 256, Cr8()); W(p, 264, s.Efer); W(p, 272, s.ApicBase);
        lock (InjectedVectors)
        {
            if (Mode == IrqchipMode.Off && _injected >= 0) p[280 + _injected / 8] |= (byte)(1 << (_injected % 8)); // the queued interrupt
        }
    }

    private int SetSregs(byte* p)
    {
        var s = _cpu.GetSystemRegisters();
        s.Cs = TakeSegment(p + 0); s.Ds = TakeSegment(p + 24); s.Es = TakeSegment(p + 48); s.Fs = TakeSegment(p + 72);
        s.Gs = TakeSegment(p + 96); s.Ss = TakeSegment(p + 120); s.Tr = TakeSegment(p + 144); s.Ldtr = TakeSegment(p + 168);
        s.Gdtr = new DescriptorTableRegister { Base = R<ulong>(p, 192), Limit = R<ushort>(p, 200) };
        s.Idtr = new DescriptorTableRegister { Base = R<ulong>(p, 208), Limit = R<ushort>(p, 216) };
        s.Cr0 = R<ulong>(p, 224); s.Cr2 = R<ulong>(p, 232); s.Cr3 = R<ulong>(p, 240); s.Cr4 = R<ulong>(p, 248); s.Efer = R<ulong>(p, 264);
        ulong cr8 = R<ulong>(p, 256);
        if ((cr8 & ~0xfUL) != 0) return -Errno.EINVAL;
        s.ApicBase = R<ulong>(p, 272);
        _cpu.SetSystemRegisters(s);
        if (Mode == IrqchipMode.Off) _trap.Tpr = (uint)cr8 << 4;
        // interrupt_bitmap: at most one bit; it becomes the queued interrupt (off).
        for (int v = 0; v < 256; v++)
        {
            if ((p[280 + v / 8] & (1 << (v % 8))) == 0) continue;
            if (Mode != IrqchipMode.Off) break;
            lock (InjectedVectors) _injected = v;
            break;
        }
        return 0;
    }

    private ulong Cr8()
    {
        if (Mode == IrqchipMode.Off) return (_trap.Tpr >> 4) & 0xf;
        return _cpu.Apic is { } apic ? (ulong)(apic.TaskPriority >> 4) : 0;
    }

    // ---- KVM_RUN ----

    private int Run()
    {
        if (_page == null) return -Errno.EFAULT;
        if (Interlocked.Exchange(ref _running, 1) != 0) return -Errno.EBUSY;
        var signal = _vm.Host.CurrentThreadSignal;
        if (signal is not null) signal.Running = this;
        byte* p = _page;
        try
        {
            if (Mode == IrqchipMode.Off)
            {
                ulong cr8 = R<ulong>(p, Cr8At);
                if ((cr8 & ~0xfUL) != 0) return -Errno.EINVAL; // kvm_set_cr8 of a reserved value
                _trap.Tpr = (uint)cr8 << 4;
            }
            if (CompletePending(p)) return 0; // the completion made the next exit (the write of a read-modify-write)
            if (p[ImmediateExit] != 0 || (signal?.Take() ?? false))
            {
                Exit(p, ExitIntr);
                Interlocked.Increment(ref Interrupted);
                return -Errno.EINTR;
            }
            _windowRequested = p[RequestInterruptWindow] != 0;
            while (true)
            {
                if (signal?.Take() ?? false)
                {
                    Exit(p, ExitIntr);
                    Interlocked.Increment(ref Interrupted);
                    return -Errno.EINTR;
                }
                if (KernelExitDue(p)) return 0;
                SyncRequestLine();
                VcpuExit outcome;
                try
                {
                    outcome = _cpu.Run(_trap);
                }
                catch (PortTrap t)
                {
                    // An exit the kernel owes from an earlier instruction (EOI, SET_TPR) comes first: the trapped
                    // instruction changed nothing and runs again on the next KVM_RUN.
                    if (KernelExitDue(p)) return 0;
                    return PortExit(p, t);
                }
                catch (MmioTrap t)
                {
                    _replay.Clear();
                    if (KernelExitDue(p)) return 0;
                    return MmioExit(p, t);
                }
                catch (WindowOpenTrap)
                {
                    if (KernelExitDue(p)) return 0;
                    Exit(p, ExitIrqWindowOpen);
                    return 0;
                }
                catch (HaltTrap)
                {
                    _cpu.SetRegisters(_cpu.GetRegisters()); // KVM_EXIT_HLT: the HLT is done; the next KVM_RUN runs on after it
                    Exit(p, ExitHlt);
                    return 0;
                }
                switch (outcome.Kind)
                {
                    case VcpuExitKind.SliceEnd:
                    case VcpuExitKind.Kicked:
                        continue;
                    case VcpuExitKind.Halted:
                        if (Mode == IrqchipMode.Off)
                        {
                            _cpu.SetRegisters(_cpu.GetRegisters());
                            Exit(p, ExitHlt);
                            return 0;
                        }
                        // In-kernel LAPIC: the vCPU blocks in KVM_RUN (HLT with interrupts off) until an NMI or a signal.
                        while (!_nmiQueued && !(signal?.Pending ?? false)) _wake.Wait(20);
                        _nmiQueued = false;
                        continue;
                    case VcpuExitKind.Shutdown:
                        Exit(p, ExitShutdown);
                        return 0;
                    case VcpuExitKind.Reset:
                    case VcpuExitKind.PowerOff:
                        Exit(p, ExitSystemEvent);
                        W(p, U, outcome.Kind == VcpuExitKind.Reset ? 2u : 1u);
                        return 0;
                    default:
                        Exit(p, ExitInternalError);
                        W(p, U, 1u); // KVM_INTERNAL_ERROR_EMULATION
                        return 0;
                }
            }
        }
        finally
        {
            FillCommon(p);
            if (signal is not null) signal.Running = null;
            Volatile.Write(ref _running, 0);
        }
    }

    /// <summary>KVM_EXIT_IOAPIC_EOI for a level-triggered EOI, or KVM_EXIT_SET_TPR for a lowered CR8, when one is owed.</summary>
    private bool KernelExitDue(byte* p)
    {
        if (_eois.TryDequeue(out byte eoi))
        {
            Exit(p, ExitIoapicEoi);
            p[U] = eoi;
            return true;
        }
        if (Interlocked.Exchange(ref _setTpr, 0) != 0)
        {
            Exit(p, ExitSetTpr);
            return true;
        }
        return false;
    }

    /// <summary>The last exits, newest last ("io out 20 1", "hlt"...), for diagnosing a guest that went wrong.</summary>
    public Queue<string> RecentExits { get; } = new();

    private void Note(string s)
    {
        lock (RecentExits)
        {
            if (RecentExits.Count == 64) RecentExits.Dequeue();
            RecentExits.Enqueue(s);
        }
    }

    private void Exit(byte* p, int reason)
    {
        if (reason != ExitIntr) Note($"exit {reason} rip={_cpu.GetRegisters().Rip:x}");
        new Span<byte>(p + U, 256).Clear();
        W(p, ExitReasonAt, (uint)reason);
        Exits[reason]++;
    }

    /// <summary>post_kvm_run_save: if_flag, cr8, apic_base, ready_for_interrupt_injection, flags.</summary>
    private void FillCommon(byte* p)
    {
        var r = _cpu.GetRegisters();
        var cpu = _cpu.Cpu;
        bool windowOpen = cpu?.InterruptWindowOpen ?? (r.Rflags & 0x200) != 0;
        p[IfFlagAt] = (byte)((r.Rflags & 0x200) != 0 ? 1 : 0);
        W(p, FlagsAt, (ushort)0);
        W(p, Cr8At, Cr8());
        W(p, ApicBaseAt, _cpu.GetSystemRegisters().ApicBase);
        bool injectable;
        lock (InjectedVectors) injectable = _injected < 0;
        if (Mode != IrqchipMode.Off) injectable &= AcceptsPicInterrupts();
        p[ReadyForInjection] = (byte)(windowOpen && injectable ? 1 : 0);
    }

    /// <summary>kvm_apic_accept_pic_intr: the LAPIC is hardware-disabled, or LVT LINT0 is unmasked ExtINT.</summary>
    private bool AcceptsPicInterrupts()
    {
        if (_cpu.Apic is not { } apic) return true;
        if (!apic.HardwareEnabled) return true;
        Span<uint> lint0 = stackalloc uint[1];
        if (apic.MmioEnabled) apic.Read(0x350, MemoryMarshal.AsBytes(lint0));
        else if (apic.ReadMsr(0x835, out ulong v)) lint0[0] = (uint)v;
        return (lint0[0] & (1u << 16)) == 0 && ((lint0[0] >> 8) & 7) == 7;
    }

    /// <summary>The soft vCPU's interrupt request: off, always up (the CPU asks the trap handler at every window); split, the LINT0 line while an ExtINT vector or a window request waits.</summary>
    private void SyncRequestLine()
    {
        bool want;
        if (Mode == IrqchipMode.On) return; // the kernel's 8259 drives LINT0
        if (Mode == IrqchipMode.Off) want = true;
        else
        {
            lock (InjectedVectors) want = _injected >= 0 || _windowRequested;
        }
        if (want == _lineHigh) return;
        _lineHigh = want;
        _cpu.SetInterruptRequest(want);
    }

    // ---- exits and their completion ----

    private CpuRegisters Regs => _cpu.GetRegisters();

    private int PortExit(byte* p, PortTrap t)
    {
        var regs = _cpu.GetRegisters();
        var sys = _cpu.GetSystemRegisters();
        var insn = GuestPageWalker.DecodeAt(_soft.Memory, regs, sys, out _);
        var m = insn.Mnemonic;
        bool isString = m is Mnemonic.Insb or Mnemonic.Insw or Mnemonic.Insd or Mnemonic.Outsb or Mnemonic.Outsw or Mnemonic.Outsd;
        Exit(p, ExitIo);
        Note($"io {(t.Write ? "out" : "in")} {t.Port:x} {t.Size}");
        p[U] = (byte)(t.Write ? 1 : 0);
        p[U + 1] = (byte)t.Size;
        W(p, U + 2, t.Port);
        W(p, U + 8, (ulong)KvmStandIn.PioDataOffset);
        byte* data = p + KvmStandIn.PioDataOffset;
        if (!isString)
        {
            W(p, U + 4, 1u);
            regs.Rip += (ulong)insn.Length; // KVM skips the instruction before the exit; an IN's RAX waits for the next KVM_RUN
            _cpu.SetRegisters(regs);
            if (t.Write) new ReadOnlySpan<byte>(&regs.Rax, t.Size).CopyTo(new Span<byte>(data, t.Size));
            else
            {
                _pending = Pending.PortIn;
                _pioSize = t.Size;
            }
            return 0;
        }
        // INS/OUTS: as many elements as fit the rest of the guest page and the data page, in one exit.
        var memKind = t.Write ? insn.Op1Kind : insn.Op0Kind;
        ulong mask = memKind switch
        {
            OpKind.MemoryESDI or OpKind.MemorySegSI => 0xffff,
            OpKind.MemoryESEDI or OpKind.MemorySegESI => 0xffff_ffff,
            _ => ulong.MaxValue,
        };
        bool rep = insn.HasRepPrefix || insn.HasRepnePrefix;
        bool down = (regs.Rflags & 0x400) != 0;
        ulong index = (t.Write ? regs.Rsi : regs.Rdi) & mask;
        var seg = t.Write ? SegmentOf(sys, insn.MemorySegment) : sys.Es;
        ulong linear = seg.Base + index;
        ulong inPage = down ? (linear & 0xfff) + (ulong)t.Size : 0x1000 - (linear & 0xfff);
        ulong count = rep ? regs.Rcx & mask : 1;
        count = Math.Min(count, Math.Max(1, inPage / (ulong)t.Size));
        count = Math.Min(count, 1024UL / (ulong)t.Size);
        int cpl = (sys.Cr0 & 1) != 0 ? sys.Cs.Selector & 3 : 0;
        var state = new InsState(t.Size, (int)count, down, mask, seg.Base, index, rep, (ulong)insn.Length, cpl, sys);
        W(p, U + 4, (uint)count);
        if (t.Write)
        {
            for (int i = 0; i < (int)count; i++)
            {
                if (!state.Translate(_soft, i, false, out ulong gpa) || !_soft.Memory.TryRead(gpa, new Span<byte>(data + i * t.Size, t.Size)))
                    return InternalError(p);
            }
            FinishString(ref regs, state, isOut: true);
            _cpu.SetRegisters(regs);
            return 0;
        }
        _pending = Pending.PortInString;
        _ins = state;
        return 0;
    }

    private int InternalError(byte* p)
    {
        Exit(p, ExitInternalError);
        W(p, U, 1u);
        return 0;
    }

    private void FinishString(ref CpuRegisters regs, in InsState s, bool isOut)
    {
        ulong step = (ulong)(s.Size * s.Count);
        ulong moved = s.Down ? s.Index - step : s.Index + step;
        if (isOut) regs.Rsi = Update(regs.Rsi, moved, s.Mask);
        else regs.Rdi = Update(regs.Rdi, moved, s.Mask);
        bool done = true;
        if (s.Rep)
        {
            ulong left = (regs.Rcx & s.Mask) - (ulong)s.Count;
            regs.Rcx = Update(regs.Rcx, left, s.Mask);
            done = left == 0;
        }
        if (done) regs.Rip += s.Length;
    }

    private static ulong Update(ulong old, ulong value, ulong mask) => mask == 0xffff ? (old & ~0xffffUL) | (value & 0xffff) : value & mask;

    private static SegmentRegister SegmentOf(in SystemRegisters s, Register r) => r switch
    {
        Register.ES => s.Es, Register.CS => s.Cs, Register.SS => s.Ss, Register.FS => s.Fs, Register.GS => s.Gs, _ => s.Ds,
    };

    private int MmioExit(byte* p, MmioTrap t)
    {
        if (t.Bytes.Length > 8) return InternalError(p);
        Exit(p, ExitMmio);
        W(p, U, t.Gpa);
        t.Bytes.CopyTo(new Span<byte>(p + U + 8, 8));
        W(p, U + 16, (uint)t.Bytes.Length);
        p[U + 20] = (byte)(t.Write ? 1 : 0);
        _replay.Add(new Access(t.Gpa, t.Write, t.Bytes));
        _pending = Pending.Mmio;
        return 0;
    }

    /// <summary>complete_userspace_io: finishes what the last exit left. True when that made a new exit.</summary>
    private bool CompletePending(byte* p)
    {
        var pending = _pending;
        _pending = Pending.None;
        byte* data = p + KvmStandIn.PioDataOffset;
        switch (pending)
        {
            case Pending.PortIn:
                {
                    var regs = _cpu.GetRegisters();
                    ulong v = _pioSize switch { 1 => data[0], 2 => *(ushort*)data, _ => *(uint*)data };
                    regs.Rax = _pioSize switch
                    {
                        1 => (regs.Rax & ~0xffUL) | v,
                        2 => (regs.Rax & ~0xffffUL) | v,
                        _ => v, // a 32-bit destination clears RAX[63:32]
                    };
                    _cpu.SetRegisters(regs);
                    return false;
                }
            case Pending.PortInString:
                {
                    var s = _ins;
                    for (int i = 0; i < s.Count; i++)
                    {
                        if (!s.Translate(_soft, i, true, out ulong gpa)) break;
                        _soft.Memory.TryWrite(gpa, new ReadOnlySpan<byte>(data + i * s.Size, s.Size));
                    }
                    var regs = _cpu.GetRegisters();
                    FinishString(ref regs, s, isOut: false);
                    _cpu.SetRegisters(regs);
                    return false;
                }
            case Pending.Mmio:
                {
                    var last = _replay[^1];
                    if (!last.Write) _replay[^1] = last with { Data = new ReadOnlySpan<byte>(p + U + 8, last.Data.Length).ToArray() };
                    // Re-execute the instruction alone, its earlier accesses answered from the replay list.
                    var cpu = _cpu.Cpu!;
                    _trap.Replay = _replay;
                    _trap.ReplayIndex = 0;
                    try
                    {
                        int stop = 0;
                        cpu.Run(1, ref stop);
                    }
                    catch (MmioTrap t)
                    {
                        MmioExit(p, t); // a further access of the same instruction (the write of a read-modify-write)
                        return true;
                    }
                    catch (PortTrap t)
                    {
                        _replay.Clear();
                        PortExit(p, t);
                        return true;
                    }
                    finally
                    {
                        _trap.Replay = null;
                    }
                    _replay.Clear();
                    return false;
                }
            default:
                return false;
        }
    }

    private readonly record struct InsState(int Size, int Count, bool Down, ulong Mask, ulong SegBase, ulong Index, bool Rep, ulong Length, int Cpl, SystemRegisters Sys)
    {
        public bool Translate(SoftVm soft, int i, bool write, out ulong gpa)
        {
            ulong offset = (ulong)(i * Size);
            ulong idx = (Down ? Index - offset : Index + offset) & Mask;
            return GuestPageWalker.TryTranslate(soft.Memory, Sys.Cr0, Sys.Cr3, Sys.Cr4, Sys.Efer, Cpl, SegBase + idx, write, out gpa);
        }
    }

    // ---- the trap handler ----

    private sealed record Access(ulong Gpa, bool Write, byte[] Data);

    private sealed class PortTrap(ushort port, int size, bool write) : Exception
    {
        public ushort Port { get; } = port;
        public int Size { get; } = size;
        public bool Write { get; } = write;
    }

    private sealed class MmioTrap(ulong gpa, bool write, byte[] data) : Exception
    {
        public ulong Gpa { get; } = gpa;
        public bool Write { get; } = write;
        public byte[] Bytes { get; } = data;
    }

    private sealed class WindowOpenTrap : Exception;

    private sealed class HaltTrap : Exception;

    private sealed class Trap(KvmStandInVcpu owner) : IExitHandler, IUserspaceIrqchip
    {
        public List<Access>? Replay;
        public int ReplayIndex;
        public uint Tpr;

        public void PortRead(ushort port, Span<byte> data) => throw new PortTrap(port, data.Length, false);

        public void PortWrite(ushort port, ReadOnlySpan<byte> data) => throw new PortTrap(port, data.Length, true);

        private bool TryReplay(ulong gpa, bool write, int length, out Access a)
        {
            a = null!;
            if (Replay is null || ReplayIndex >= Replay.Count) return false;
            a = Replay[ReplayIndex];
            if (a.Gpa != gpa || a.Write != write || a.Data.Length != length) return false;
            ReplayIndex++;
            return true;
        }

        public void MmioRead(ulong gpa, Span<byte> data)
        {
            if (TryReplay(gpa, false, data.Length, out var a))
            {
                a.Data.CopyTo(data);
                return;
            }
            throw new MmioTrap(gpa, false, new byte[data.Length]);
        }

        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data)
        {
            if (TryReplay(gpa, true, data.Length, out _)) return;
            throw new MmioTrap(gpa, true, data.ToArray());
        }

        public bool MsrRead(uint msr, out ulong value)
        {
            value = 0;
            return false; // an MSR the CPU does not know: #GP, as KVM does by default
        }

        public bool MsrWrite(uint msr, ulong value) => false;

        public bool TryAcknowledge(int vcpuId, out byte vector)
        {
            lock (owner.InjectedVectors)
            {
                if (owner._injected >= 0)
                {
                    owner.Note($"acknowledged {owner._injected:x2}");
                    vector = (byte)owner._injected;
                    owner._injected = -1;
                    return true;
                }
            }
            vector = 0;
            if (owner._windowRequested) throw new WindowOpenTrap();
            if (owner.Mode == IrqchipMode.Off && owner._cpu.Cpu is { IsHalted: true }) throw new HaltTrap();
            return false;
        }

        public void KernelLapicEoi(int vcpuId, byte vector)
        {
            owner._eois.Enqueue(vector);
            owner._cpu.Kick(); // KVM_REQ_IOAPIC_EOI_EXIT: the exit follows the EOI
        }

        public uint ReadTaskPriority(int vcpuId) => Tpr;

        public void WriteTaskPriority(int vcpuId, uint tpr)
        {
            uint old = Tpr;
            Tpr = tpr & 0xf0;
            if (Tpr < old)
            {
                Interlocked.Exchange(ref owner._setTpr, 1); // CR8 lowered: KVM_EXIT_SET_TPR
                owner._cpu.Kick();
            }
        }

        public void ApicBaseChanged(int vcpuId, ulong value)
        {
        }

        public long? NextDeadlineNs => null;

        public void RunDueTimers(long nowNs)
        {
        }
    }
}

/// <summary>What KVM_GET_SUPPORTED_CPUID reports: the soft CPU's own answers to CPUID, read by running CPUID on it.</summary>
internal static unsafe class SupportedCpuid
{
    public readonly record struct Leaf(uint Function, uint Eax, uint Ebx, uint Ecx, uint Edx);

    private static readonly Lazy<Leaf[]> All = new(Read);

    public static Leaf[] Leaves => All.Value;

    private sealed class NoDevices : IExitHandler
    {
        public void PortRead(ushort port, Span<byte> data) => data.Fill(0xff);
        public void PortWrite(ushort port, ReadOnlySpan<byte> data) { }
        public void MmioRead(ulong gpa, Span<byte> data) => data.Fill(0xff);
        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data) { }
        public bool MsrRead(uint msr, out ulong value) { value = 0; return false; }
        public bool MsrWrite(uint msr, ulong value) => false;
    }

    private static Leaf[] Read()
    {
        using var vm = new SoftAccelerator().CreateVm(new VmSpec(0x10000, 1, IrqchipMode.Split));
        vm.Memory.Write(0x1000, [0x0F, 0xA2, 0xFA, 0xF4]); // cpuid; cli; hlt
        var cpu = vm.CreateVcpu(0);
        var sys = cpu.GetSystemRegisters();
        sys.Cs = SegmentRegister.RealMode(0, code: true);
        cpu.SetSystemRegisters(sys);
        var leaves = new List<Leaf>();
        uint Ask(uint leaf)
        {
            cpu.SetRegisters(new CpuRegisters { Rip = 0x1000, Rflags = 2, Rax = leaf });
            cpu.Run(new NoDevices());
            var r = cpu.GetRegisters();
            leaves.Add(new Leaf(leaf, (uint)r.Rax, (uint)r.Rbx, (uint)r.Rcx, (uint)r.Rdx));
            return (uint)r.Rax;
        }
        uint maxBasic = Ask(0);
        for (uint l = 1; l <= maxBasic; l++) Ask(l);
        uint maxExt = Ask(0x8000_0000);
        for (uint l = 0x8000_0001; l <= maxExt; l++) Ask(l);
        return [.. leaves];
    }
}
