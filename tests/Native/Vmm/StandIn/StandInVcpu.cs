// Test code, NOT a kernel: one vCPU of the vmm(4) stand-in (VmmStandIn.cs has the overview). VM_RUN runs the soft
// vCPU with a trap handler: the in-kernel devices (SoftKernelDevices) answer their ports and MMIO first, and any
// other port, MMIO or unmodelled MSR access throws out of the instruction before it has changed anything. That
// becomes the vm_exit: INOUT (or INOUT_STR for INS/OUTS, with the paging, index, count, address size and segment
// fields filled from the decoded instruction), INST_EMUL (the instruction bytes, decoded = KernelDecodes) or
// RDMSR/WRMSR. nextrip is kept as the kernel keeps it and applied at the next VM_RUN. Tests can also script exits
// the software CPU never produces (ScriptedExits): VMX errors, BOGUS, REQIDLE, suspends.
using ActorVmm.Core.Accel;
using ActorVmm.Native.Soft;
using ActorVmm.Native.Sys;
using Iced.Intel;

namespace ActorVmm.Native.Tests.Vmm.StandIn;

public sealed unsafe class StandInVcpu : IDisposable
{
    private readonly StandInVm _vm;
    private readonly VmmStandIn _host;
    private readonly SoftVm _soft;
    private readonly IVcpu _cpu;
    private readonly Trap _trap;
    private ulong? _nextRip;
    private volatile bool _debug;
    private bool _active;
    private int _running;

    internal StandInVcpu(StandInVm vm, VmmStandIn host, SoftVm soft)
    {
        _vm = vm;
        _host = host;
        _soft = soft;
        _cpu = soft.CreateVcpu(0);
        _trap = new Trap(this);
    }

    public int[] Capabilities { get; } = new int[11];

    public int X2apic { get; set; }

    /// <summary>Exits returned to userspace, by exit code.</summary>
    public long[] Exits { get; } = new long[27];

    public bool Active => _active;

    public bool InDebugSet => _debug;

    internal int Activate()
    {
        if (_active) return -Errno.EBUSY;
        _active = true;
        return 0;
    }

    internal void EnterDebug()
    {
        _debug = true;
        _cpu.Kick();
    }

    internal void LeaveDebug() => _debug = false;

    internal void KickSoft() => _cpu.Kick();

    internal void Restart() => _nextRip = null;

    internal void WaitIdle()
    {
        var until = DateTime.UtcNow.AddSeconds(10);
        while (Volatile.Read(ref _running) != 0 && DateTime.UtcNow < until) Thread.Sleep(1);
    }

    public void Dispose() => _cpu.Dispose();

    // ---- VM_RUN ----

    /// <summary>What aborted the soft CPU's instruction.</summary>
    private sealed class TrapExit(int kind, ushort port = 0, int size = 0, bool write = false, ulong gpa = 0, uint msr = 0, ulong value = 0) : Exception
    {
        public const int Port = 0, Mmio = 1, Msr = 2;
        public int Kind { get; } = kind;
        public ushort PortNumber { get; } = port;
        public int Size { get; } = size;
        public bool Write { get; } = write;
        public ulong Gpa { get; } = gpa;
        public uint MsrNumber { get; } = msr;
        public ulong Value { get; } = value;
    }

    private sealed class Trap(StandInVcpu owner) : IExitHandler
    {
        public void PortRead(ushort port, Span<byte> data) => throw new TrapExit(TrapExit.Port, port, data.Length);

        public void PortWrite(ushort port, ReadOnlySpan<byte> data) => throw new TrapExit(TrapExit.Port, port, data.Length, write: true);

        public void MmioRead(ulong gpa, Span<byte> data) => throw new TrapExit(TrapExit.Mmio, size: data.Length, gpa: gpa);

        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data) => throw new TrapExit(TrapExit.Mmio, size: data.Length, write: true, gpa: gpa);

        public bool MsrRead(uint msr, out ulong value)
        {
            value = 0;
            if (owner.TakeInjectedGp()) return false;
            throw new TrapExit(TrapExit.Msr, msr: msr);
        }

        public bool MsrWrite(uint msr, ulong value)
        {
            if (owner.TakeInjectedGp()) return false;
            throw new TrapExit(TrapExit.Msr, write: true, msr: msr, value: value);
        }
    }

    private bool _injectedGp;

    private bool TakeInjectedGp()
    {
        bool r = _injectedGp;
        _injectedGp = false;
        return r;
    }

    internal int InjectException(int vector, uint errorCode, bool errorValid, bool restart)
    {
        if (vector is < 0 or >= 32 || vector == 8) return -Errno.EINVAL;
        if (_injectedGp) return -Errno.EBUSY;
        // The stand-in re-executes the instruction and lets the soft CPU raise the fault itself, which it can for
        // #GP(0) on RDMSR/WRMSR (the MSR hook answers "no such MSR"). Anything else is beyond this stand-in.
        if (vector != 13 || !errorValid || errorCode != 0 || !restart) return -Errno.EINVAL;
        _injectedGp = true;
        _nextRip = null;
        return 0;
    }

    /// <summary>
    /// Exits a test wants VM_RUN to return before the CPU runs again (the action fills the 136-byte vm_exit), for
    /// exit kinds the software CPU never produces (VMX errors, BOGUS, REQIDLE, a suspend for destroy...).
    /// </summary>
    public System.Collections.Concurrent.ConcurrentQueue<Action<nint>> ScriptedExits { get; } = new();

    internal int Run(nint exitPtr, nint cpuset, ulong cpusetSize)
    {
        if (!_active) return -Errno.EINVAL;
        if (exitPtr == 0) return -Errno.EFAULT;
        var exit = (byte*)exitPtr;
        new Span<byte>(exit, 136).Clear();
        if (cpuset != 0) new Span<byte>((void*)cpuset, (int)Math.Min(cpusetSize, 128)).Clear();
        if (ScriptedExits.TryDequeue(out var scripted))
        {
            scripted(exitPtr);
            Exits[Math.Clamp(*(int*)exit, 0, 26)]++;
            return 0;
        }
        Interlocked.Exchange(ref _running, 1);
        try
        {
            while (true)
            {
                if (_vm.SuspendHow != 0) return Emit(exit, 14, 0, Rip(), w => w.I32(16, _vm.SuspendHow));
                if (_debug) return Emit(exit, 21, 0, Rip(), null);
                if (_nextRip is { } next)
                {
                    var r = _cpu.GetRegisters();
                    r.Rip = next;
                    _cpu.SetRegisters(r);
                    _nextRip = null;
                }
                VcpuExit outcome;
                try
                {
                    outcome = _cpu.Run(_trap);
                }
                catch (TrapExit t)
                {
                    return ExitFor(exit, t);
                }
                switch (outcome.Kind)
                {
                    case VcpuExitKind.SliceEnd:
                    case VcpuExitKind.Kicked:
                        continue;
                    case VcpuExitKind.Halted: // every vCPU halted with interrupts off: vmm suspends the VM (halt)
                        _vm.Suspend(3);
                        continue;
                    case VcpuExitKind.Shutdown:
                        _vm.Suspend(4);
                        continue;
                    case VcpuExitKind.Reset:
                        _vm.Suspend(1);
                        continue;
                    case VcpuExitKind.PowerOff:
                        _vm.Suspend(2);
                        continue;
                    default:
                        return -Errno.EIO;
                }
            }
        }
        finally
        {
            Interlocked.Exchange(ref _running, 0);
        }
    }

    private ulong Rip() => _nextRip ?? _cpu.GetRegisters().Rip;

    private readonly ref struct Writer(byte* p)
    {
        public void I32(int off, int v) => *(int*)(p + off) = v;
        public void U16(int off, ushort v) => *(ushort*)(p + off) = v;
        public void U32(int off, uint v) => *(uint*)(p + off) = v;
        public void U64(int off, ulong v) => *(ulong*)(p + off) = v;
        public void U8(int off, byte v) => p[off] = v;
    }

    private delegate void Fill(Writer w);

    private int Emit(byte* exit, int code, int instLength, ulong rip, Fill? fill)
    {
        var w = new Writer(exit);
        w.I32(0, code);
        w.I32(4, instLength);
        w.U64(8, rip);
        fill?.Invoke(w);
        Exits[code]++;
        return 0;
    }

    private int ExitFor(byte* exit, TrapExit t)
    {
        var regs = _cpu.GetRegisters();
        var sys = _cpu.GetSystemRegisters();
        ulong rip = regs.Rip;
        var insn = GuestPageWalker.DecodeAt(_soft.Memory, regs, sys, out byte[] bytes);
        int len = insn.Length;
        switch (t.Kind)
        {
            case TrapExit.Msr:
                _nextRip = rip + (ulong)len;
                return Emit(exit, t.Write ? 4 : 3, len, rip, w =>
                {
                    w.U32(16, t.MsrNumber);
                    w.U64(24, t.Value);
                });
            case TrapExit.Mmio:
                _nextRip = _host.KernelDecodes ? rip + (ulong)len : null;
                return Emit(exit, 9, _host.KernelDecodes ? len : 0, rip, w =>
                {
                    w.U64(16, t.Gpa);
                    w.U64(32, sys.Cs.Base);
                    w.I32(40, (sys.Cs.Attributes & 0x4000) != 0 ? 1 : 0);
                    FillPaging(w, 48, sys);
                    for (int i = 0; i < len; i++) w.U8(72 + i, bytes[i]);
                    w.U8(87, (byte)len);
                    w.U8(88, (byte)(_host.KernelDecodes ? len : 0));
                    w.U8(128, (byte)(_host.KernelDecodes ? 1 : 0));
                    w.U8(130, bytes[0]);
                });
            default:
                {
                    _nextRip = rip + (ulong)len;
                    var m = insn.Mnemonic;
                    bool isString = m is Mnemonic.Insb or Mnemonic.Insw or Mnemonic.Insd or Mnemonic.Outsb or Mnemonic.Outsw or Mnemonic.Outsd;
                    bool input = !t.Write;
                    ushort bits = (ushort)(t.Size | (input ? 8 : 0) | (isString ? 0x10 : 0) | (isString && insn.HasRepPrefix ? 0x20 : 0));
                    if (!isString)
                        return Emit(exit, 0, len, rip, w =>
                        {
                            w.U16(16, bits);
                            w.U16(18, t.PortNumber);
                            w.U32(20, (uint)regs.Rax);
                        });
                    var memKind = input ? insn.Op0Kind : insn.Op1Kind;
                    int addrSize = memKind switch
                    {
                        OpKind.MemoryESDI or OpKind.MemorySegSI => 2,
                        OpKind.MemoryESEDI or OpKind.MemorySegESI => 4,
                        _ => 8,
                    };
                    var segReg = input ? Register.ES : insn.MemorySegment;
                    int segName = segReg switch { Register.ES => 22, Register.CS => 23, Register.SS => 24, Register.DS => 25, Register.FS => 26, _ => 27 };
                    var seg = segReg switch { Register.ES => sys.Es, Register.CS => sys.Cs, Register.SS => sys.Ss, Register.DS => sys.Ds, Register.FS => sys.Fs, _ => sys.Gs };
                    return Emit(exit, 15, len, rip, w =>
                    {
                        w.U16(16, bits);
                        w.U16(18, t.PortNumber);
                        w.U32(20, (uint)regs.Rax);
                        FillPaging(w, 24, sys);
                        w.U64(48, regs.Rflags);
                        w.U64(56, sys.Cr0);
                        w.U64(64, input ? regs.Rdi : regs.Rsi);
                        w.U64(72, regs.Rcx);
                        w.I32(80, addrSize);
                        w.I32(84, segName);
                        w.U64(88, seg.Base);
                        w.U32(96, seg.Limit);
                        w.U32(100, ToAccess(seg));
                    });
                }
        }
    }

    private static int CpuMode(in SystemRegisters s)
        => (s.Efer & 0x400) != 0 ? ((s.Cs.Attributes & 0x2000) != 0 ? 3 : 2) : (s.Cr0 & 1) != 0 ? 1 : 0;

    private static int PagingMode(in SystemRegisters s)
        => (s.Cr0 & 0x8000_0000) == 0 ? 0 : (s.Efer & 0x400) != 0 ? 3 : (s.Cr4 & 0x20) != 0 ? 2 : 1;

    private void FillPaging(Writer w, int at, in SystemRegisters s)
    {
        w.U64(at, s.Cr3);
        w.I32(at + 8, (s.Cr0 & 1) != 0 ? s.Cs.Selector & 3 : 0);
        w.I32(at + 12, CpuMode(s));
        w.I32(at + 16, PagingMode(s));
    }

    internal bool Translate(ulong gla, ulong cr3, int cpl, bool write, out ulong gpa)
    {
        var sys = _cpu.GetSystemRegisters();
        return GuestPageWalker.TryTranslate(_soft.Memory, sys.Cr0, cr3, sys.Cr4, sys.Efer, cpl, gla, write, out gpa);
    }

    // ---- registers (vm_reg_name numbering) ----

    /// <summary>vm_reg_name 0-14 (RAX RBX RCX RDX RSI RDI RBP R8-R15) to x86 encoding order; RSP is 19.</summary>
    private static readonly int[] GprIndex = [0, 3, 1, 2, 6, 7, 5, 8, 9, 10, 11, 12, 13, 14, 15];

    private static uint ToAccess(in SegmentRegister s) => s.Attributes | ((s.Attributes & 0x80) == 0 ? 0x10000u : 0);

    internal int GetRegister(int reg, out ulong value)
    {
        var r = _cpu.GetRegisters();
        var s = _cpu.GetSystemRegisters();
        (bool known, value) = reg switch
        {
            >= 0 and <= 14 => (true, r[GprIndex[reg]]),
            15 => (true, s.Cr0), 16 => (true, s.Cr3), 17 => (true, s.Cr4), 18 => (true, 0x400UL), 19 => (true, r.Rsp), 20 => (true, r.Rip), 21 => (true, r.Rflags),
            22 => (true, s.Es.Selector), 23 => (true, s.Cs.Selector), 24 => (true, s.Ss.Selector), 25 => (true, s.Ds.Selector), 26 => (true, s.Fs.Selector), 27 => (true, s.Gs.Selector),
            28 => (true, s.Ldtr.Selector), 29 => (true, s.Tr.Selector), 32 => (true, s.Efer), 33 => (true, s.Cr2), 38 => (true, 0UL),
            _ => (false, 0UL),
        };
        if (!known) return -Errno.EINVAL; // GDTR/IDTR only through the descriptor ioctls (reference b.7)
        return 0;
    }

    internal int SetRegister(int reg, ulong value)
    {
        var r = _cpu.GetRegisters();
        switch (reg)
        {
            case >= 0 and <= 14: r[GprIndex[reg]] = value; break;
            case 19: r.Rsp = value; break;
            case 20:
                r.Rip = value;
                _nextRip = null; // setting RIP sets nextrip
                break;
            case 21: r.Rflags = value | 2; break;
            case 18: return 0; // DR7: kept by the VMCS; the soft CPU's debug registers are not wired here
            case 38: return value == 0 ? 0 : -Errno.EINVAL; // INTR_SHADOW: only clearing it is accepted (VMX)
            case 15 or 16 or 17 or 22 or 23 or 24 or 25 or 26 or 27 or 28 or 29 or 32 or 33:
                {
                    var s = _cpu.GetSystemRegisters();
                    switch (reg)
                    {
                        case 15: s.Cr0 = value; break;
                        case 16: s.Cr3 = value; break;
                        case 17: s.Cr4 = value; break;
                        case 32: s.Efer = value; break;
                        case 33: s.Cr2 = value; break;
                        case 22: s.Es.Selector = (ushort)value; break;
                        case 23: s.Cs.Selector = (ushort)value; break;
                        case 24: s.Ss.Selector = (ushort)value; break;
                        case 25: s.Ds.Selector = (ushort)value; break;
                        case 26: s.Fs.Selector = (ushort)value; break;
                        case 27: s.Gs.Selector = (ushort)value; break;
                        case 28: s.Ldtr.Selector = (ushort)value; break;
                        case 29: s.Tr.Selector = (ushort)value; break;
                    }
                    _cpu.SetSystemRegisters(s);
                    return 0;
                }
            default:
                return -Errno.EINVAL; // GDTR/IDTR go through the descriptor ioctls; others are not settable
        }
        _cpu.SetRegisters(r);
        return 0;
    }

    private static bool SegmentIndex(int reg) => reg is >= 22 and <= 31;

    internal int GetDescriptor(int reg, out ulong @base, out uint limit, out uint access)
    {
        @base = 0;
        limit = 0;
        access = 0;
        if (!SegmentIndex(reg)) return -Errno.EINVAL;
        var s = _cpu.GetSystemRegisters();
        if (reg is 30 or 31)
        {
            var t = reg == 30 ? s.Idtr : s.Gdtr;
            @base = t.Base;
            limit = t.Limit;
            return 0;
        }
        var seg = SegmentRef(ref s, reg);
        @base = seg.Base;
        limit = seg.Limit;
        access = ToAccess(seg);
        return 0;
    }

    internal int SetDescriptor(int reg, ulong @base, uint limit, uint access)
    {
        if (!SegmentIndex(reg)) return -Errno.EINVAL;
        var s = _cpu.GetSystemRegisters();
        if (reg is 30 or 31)
        {
            var t = new DescriptorTableRegister { Base = @base, Limit = (ushort)limit };
            if (reg == 30) s.Idtr = t;
            else s.Gdtr = t;
        }
        else
        {
            ref var seg = ref SegmentRef(ref s, reg);
            seg.Base = @base;
            seg.Limit = limit;
            seg.Attributes = (ushort)((access & 0xf0ff) & ((access & 0x10000) != 0 ? 0xff7fu : 0xffffu));
        }
        _cpu.SetSystemRegisters(s);
        return 0;
    }

    private static ref SegmentRegister SegmentRef(ref SystemRegisters s, int reg)
    {
        switch (reg)
        {
            case 22: return ref s.Es;
            case 23: return ref s.Cs;
            case 24: return ref s.Ss;
            case 25: return ref s.Ds;
            case 26: return ref s.Fs;
            case 27: return ref s.Gs;
            case 28: return ref s.Ldtr;
            default: return ref s.Tr;
        }
    }
}
