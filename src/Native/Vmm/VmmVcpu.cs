// One vmm(4) vCPU and its VM_RUN loop. Set-up (vmm creates a vCPU on the first ioctl naming it): capabilities
// HALT_EXIT (the kernel sleeps a halted vCPU instead of spinning), PAUSE_EXIT, UNRESTRICTED_GUEST (real-mode code
// on Intel; AMD answers ENOENT/EINVAL, which is fine) and IPI_EXIT (INIT/STARTUP come to us), x2APIC disabled,
// VM_ACTIVATE_CPU; an AP (id > 0) is parked in the debug set with VM_SUSPEND_CPU until a STARTUP IPI names it.
// Exit completion (reference section c.6): the kernel has already set nextrip past the instruction for INOUT,
// RDMSR/WRMSR and a kernel-decoded INST_EMUL, so we only write results:
//   INOUT        OUT: the port write; IN: the port read merged into RAX (upper bytes kept for 1/2-byte reads).
//   INOUT_STR    INS/OUTS, REP or not: up to 16 iterations per exit, each element's linear address translated
//                with VM_GLA2GPA (a fault means the kernel injected #PF: re-run), RSI/RDI and RCX updated in the
//                address size, VM_RESTART_INSTRUCTION while count remains.
//   INST_EMUL    the instruction at RIP runs once in the software CPU (SoftCpu.EmulateOne) against guest RAM
//                and the exit handler; changed GPRs and RFLAGS are written back; RIP too when the kernel did not
//                decode it (vie.decoded = 0); a fault is injected with VM_INJECT_EXCEPTION (restart).
//   RDMSR/WRMSR  the exit handler's MSR hooks; an MSR nobody models gets #GP(0) (VM_INJECT_EXCEPTION, restart).
//   SUSPENDED    reset, power-off, halt (every vCPU halted with interrupts off), triple fault, destroy (15.x).
//   DEBUG        the vCPU is in the debug set: our kick (VM_SUSPEND_CPU from Kick) or a parked AP.
//   IPI          INIT parks and resets the destinations; STARTUP starts the parked ones in real mode at vector << 12.
//   SPINUP_AP    (without IPI_EXIT) starts the named vCPU the same way.
//   HLT/PAUSE/BOGUS/REQIDLE/MTRAP re-enter; VMX/SVM/TASK_SWITCH/anything else ends Run with Error and the details.
// Kick: sets a flag and calls VM_SUSPEND_CPU for this vCPU, which forces it out of the guest or out of the
// kernel's HLT sleep with a DEBUG exit; Run answers Kicked after VM_RESUME_CPU. A DEBUG exit with no kick pending
// (a kick that raced with an earlier return) is resumed and ignored.
// Register state: VM_GET/SET_REGISTER_SET for the general and control registers, VM_GET/SET_SEGMENT_DESCRIPTOR
// for segment caches and GDTR/IDTR. IA32_APIC_BASE has no ioctl; it is kept as last set.
using ActorVmm.Core.Accel;
using ActorVmm.Native.Soft;
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Vmm;

public sealed unsafe class VmmVcpu : IVcpu
{
    /// <summary>String I/O iterations done per INOUT_STR exit before restarting the instruction (bhyve's figure).</summary>
    public const int StringIoIterationsPerExit = 16;

    private const uint ApicModeInit = 0x500, ApicModeStartup = 0x600;
    private const ulong RflagsDf = 1 << 10, RflagsIf = 1 << 9;

    private readonly VmmVm _vm;
    private readonly IKernelInterface _kernel;
    private readonly KernelFd _fd;
    private readonly VmRunArg* _run;
    private readonly VmExit* _exit;
    private readonly byte* _cpuset;
    private readonly SemaphoreSlim _startup = new(0, int.MaxValue);
    private SoftCpu? _emulator;
    private EmulatorExits? _emulatorExits;
    private int _kick;
    private volatile bool _parked;
    private bool _pinned;
    private ulong _apicBase = 0xfee0_0900;
    private int _disposed;

    internal VmmVcpu(VmmVm vm, int id)
    {
        _vm = vm;
        _kernel = vm.Kernel;
        _fd = vm.Fd;
        Id = id;
        // One native block per vCPU: vm_run, vm_exit and the IPI cpuset, filled once and reused by every VM_RUN.
        _run = (VmRunArg*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(VmRunArg.Size + VmExit.Size + VmmConstants.CpusetBytes, 64);
        _exit = (VmExit*)((byte*)_run + VmRunArg.Size);
        _cpuset = (byte*)_exit + VmExit.Size;
        new Span<byte>(_run, VmRunArg.Size + VmExit.Size + VmmConstants.CpusetBytes).Clear();
        _run->CpuId = id;
        _run->Exit = _exit;
        _run->Cpuset = _cpuset;
        _run->CpusetSize = VmmConstants.CpusetBytes;

        SetCapability(VmCapType.HaltExit, 1, required: true);
        SetCapability(VmCapType.PauseExit, 1, required: false);
        SetCapability(VmCapType.UnrestrictedGuest, 1, required: false);
        SetCapability(VmCapType.IpiExit, 1, required: false);
        var x2 = new VmX2apic { CpuId = id, State = 0 };
        _kernel.Ioctl(_fd, VmmIoctls.VM_SET_X2APIC_STATE, ref x2);
        SetSystemRegisters(SystemRegisters.PowerOn());
        var regs = new CpuRegisters { Rip = 0xfff0, Rflags = 2, Rdx = 0x600 };
        SetRegisters(regs);
        int vcpu = id;
        _kernel.Ioctl(_fd, VmmIoctls.VM_ACTIVATE_CPU, ref vcpu);
        if (id != 0)
        {
            _parked = true;
            _kernel.Ioctl(_fd, VmmIoctls.VM_SUSPEND_CPU, ref vcpu);
        }
    }

    public int Id { get; }

    public ulong InstructionsRetired => 0;

    /// <summary>Exits by kind, for tests and statistics.</summary>
    public long[] ExitCounts { get; } = new long[(int)VmExitCode.Max + 1];

    private void SetCapability(VmCapType cap, int value, bool required)
    {
        var c = new VmCapability { CpuId = Id, CapType = cap, CapVal = value };
        int r = _kernel.TryIoctl(_fd, VmmIoctls.VM_SET_CAPABILITY, ref c);
        if (r < 0 && required) throw new KernelCallException($"ioctl {VmmIoctls.VM_SET_CAPABILITY} ({cap}) on {_fd.Path}", -r, _kernel.Os);
    }

    public VcpuExit Run(IExitHandler handler)
    {
        PinOnce();
        while (true)
        {
            if (Interlocked.Exchange(ref _kick, 0) != 0)
            {
                Resume();
                return VcpuExit.Kicked;
            }
            int r = _kernel.TryIoctl(_fd, VmmIoctls.VM_RUN, _run);
            if (r < 0)
            {
                if (-r == Errno.EINTR) continue;
                return new VcpuExit(VcpuExitKind.Error, $"ioctl {VmmIoctls.VM_RUN} on {_fd.Path} (vCPU {Id}): {Errno.Describe(-r, _kernel.Os)}");
            }
            var code = _exit->ExitCode;
            if ((uint)code <= (uint)VmExitCode.Max) ExitCounts[(int)code]++;
            switch (code)
            {
                case VmExitCode.InOut when !_exit->InOutString:
                    PortIo(handler);
                    break;
                case VmExitCode.InOut:
                case VmExitCode.InOutStr:
                    StringIo(handler);
                    break;
                case VmExitCode.InstEmul:
                    if (Mmio(handler) is { } mmioError) return mmioError;
                    break;
                case VmExitCode.RdMsr:
                    if (handler.MsrRead(_exit->MsrCode, out ulong value))
                    {
                        SetRegister(VmRegName.Rax, (uint)value);
                        SetRegister(VmRegName.Rdx, value >> 32);
                    }
                    else InjectGp();
                    break;
                case VmExitCode.WrMsr:
                    if (!handler.MsrWrite(_exit->MsrCode, _exit->MsrValue)) InjectGp();
                    break;
                case VmExitCode.Suspended:
                    return _exit->SuspendHow switch
                    {
                        VmSuspendHow.Reset => new VcpuExit(VcpuExitKind.Reset, "vmm: VM suspended for reset"),
                        VmSuspendHow.PowerOff => new VcpuExit(VcpuExitKind.PowerOff, "vmm: VM suspended for power-off"),
                        VmSuspendHow.Halt => new VcpuExit(VcpuExitKind.Halted, "HLT with interrupts disabled (vmm suspended the VM: halt)"),
                        VmSuspendHow.TripleFault => new VcpuExit(VcpuExitKind.Shutdown, "triple fault (vmm suspended the VM)"),
                        VmSuspendHow.Destroy => new VcpuExit(VcpuExitKind.Error, "vmm: the VM is being destroyed"),
                        var how => new VcpuExit(VcpuExitKind.Error, $"vmm: VM suspended with unknown reason {(int)how}"),
                    };
                case VmExitCode.Debug:
                    if (Interlocked.Exchange(ref _kick, 0) != 0)
                    {
                        Resume();
                        return VcpuExit.Kicked;
                    }
                    if (_parked)
                    {
                        // An AP waiting for its STARTUP IPI: sleep until one comes (or a kick).
                        _startup.Wait(TimeSpan.FromMilliseconds(50));
                        break;
                    }
                    Resume();
                    break;
                case VmExitCode.Ipi:
                    Ipi();
                    break;
                case VmExitCode.SpinupAp:
                    StartAp(_exit->SpinupVcpu, _exit->SpinupRip);
                    break;
                case VmExitCode.Hlt:
                    if ((_exit->HltRflags & RflagsIf) == 0)
                        return new VcpuExit(VcpuExitKind.Halted, "HLT with interrupts disabled");
                    break;
                case VmExitCode.Bogus:
                case VmExitCode.ReqIdle:
                case VmExitCode.Pause:
                case VmExitCode.Mtrap:
                    break;
                case VmExitCode.Bpt:
                case VmExitCode.Db:
                    return new VcpuExit(VcpuExitKind.Debug, $"vmm exit {code} at rip 0x{_exit->Rip:x}");
                case VmExitCode.Vmx:
                    return new VcpuExit(VcpuExitKind.Error, $"vmm: VMX exit at rip 0x{_exit->Rip:x}: status {_exit->VmxStatus}, exit reason {_exit->VmxExitReason}, qualification 0x{_exit->VmxQualification:x}, instruction error {_exit->VmxInstError}");
                case VmExitCode.Svm:
                    return new VcpuExit(VcpuExitKind.Error, $"vmm: SVM exit at rip 0x{_exit->Rip:x}: exit code 0x{_exit->SvmExitCode:x}");
                default:
                    return new VcpuExit(VcpuExitKind.Error, $"vmm: unhandled exit {code} ({(int)code}) at rip 0x{_exit->Rip:x}");
            }
        }
    }

    private void PinOnce()
    {
        if (_pinned) return;
        _pinned = true;
        if (_vm.HostCpus is { Count: > 0 } cpus)
        {
            int e = _kernel.SetThreadAffinity([cpus[Id % cpus.Count]]);
            if (e != 0) throw new KernelCallException($"pinning vCPU {Id} to host CPU {cpus[Id % cpus.Count]}", e, _kernel.Os);
        }
    }

    private void Resume()
    {
        int v = Id;
        _kernel.TryIoctl(_fd, VmmIoctls.VM_RESUME_CPU, ref v);
    }

    public void Kick()
    {
        if (Volatile.Read(ref _disposed) != 0) return;
        Interlocked.Exchange(ref _kick, 1);
        int v = Id;
        // EALREADY-like answers (already suspended) are fine: the flag is what Run looks at.
        _kernel.TryIoctl(_fd, VmmIoctls.VM_SUSPEND_CPU, ref v);
        try
        {
            _startup.Release();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public void QueueInterrupt(byte vector)
        => throw new NotSupportedException("vmm accelerator: userspace interrupt injection (kernel-irqchip=off) is not possible on vmm(4)");

    // ---- port I/O ----

    private void PortIo(IExitHandler handler)
    {
        int bytes = _exit->InOutBytes;
        if (bytes is not (1 or 2 or 4)) return; // the kernel never reports other widths; ignore a malformed exit
        ushort port = _exit->InOutPort;
        Span<byte> data = stackalloc byte[4];
        data = data[..bytes];
        if (_exit->InOutIn)
        {
            handler.PortRead(port, data);
            ulong value = bytes switch { 1 => data[0], 2 => BitConverter.ToUInt16(data), _ => BitConverter.ToUInt32(data) };
            if (bytes == 4)
            {
                SetRegister(VmRegName.Rax, value); // a 32-bit destination zero-extends into RAX
            }
            else
            {
                ulong mask = bytes == 1 ? 0xffUL : 0xffffUL;
                ulong rax = GetRegister(VmRegName.Rax);
                SetRegister(VmRegName.Rax, (rax & ~mask) | value);
            }
        }
        else
        {
            uint eax = _exit->InOutEax;
            for (int i = 0; i < bytes; i++) data[i] = (byte)(eax >> (8 * i));
            handler.PortWrite(port, data);
        }
    }

    private void StringIo(IExitHandler handler)
    {
        int bytes = _exit->InOutBytes;
        if (bytes is not (1 or 2 or 4)) return;
        bool input = _exit->InOutIn, rep = _exit->InOutRep;
        ushort port = _exit->InOutPort;
        int addrSize = _exit->StrAddrSize;
        ulong addrMask = addrSize switch { 2 => 0xffffUL, 4 => 0xffff_ffffUL, _ => ulong.MaxValue };
        ulong index = _exit->StrIndex & addrMask;
        ulong count = rep ? _exit->StrCount & addrMask : 1;
        bool down = (_exit->StrRflags & RflagsDf) != 0;
        var seg = _exit->StrSegDesc;
        var paging = _exit->StrPaging;
        var memory = _vm.Memory;
        Span<byte> data = stackalloc byte[4];
        data = data[..bytes];
        ulong done = 0;
        bool faulted = false;
        while (done < count && done < StringIoIterationsPerExit)
        {
            ulong gla = seg.Base + index;
            if (!(paging.CpuMode == VmCpuMode.Long64)) gla &= 0xffff_ffffUL;
            if (input)
            {
                if (!TranslateRange(gla, bytes, write: true, paging, out var gpas)) { faulted = true; break; }
                handler.PortRead(port, data);
                for (int i = 0; i < bytes; i++) WriteGuestByte(memory, handler, gpas[i], data[i]);
            }
            else
            {
                if (!TranslateRange(gla, bytes, write: false, paging, out var gpas)) { faulted = true; break; }
                for (int i = 0; i < bytes; i++) data[i] = ReadGuestByte(memory, handler, gpas[i]);
                handler.PortWrite(port, data);
            }
            index = down ? index - (ulong)bytes : index + (ulong)bytes;
            done++;
        }
        var indexReg = input ? VmRegName.Rdi : VmRegName.Rsi;
        if (done > 0)
        {
            ulong full = GetRegister(indexReg);
            SetRegister(indexReg, MergeSized(full, index, addrMask));
            if (rep)
            {
                ulong rcx = GetRegister(VmRegName.Rcx);
                SetRegister(VmRegName.Rcx, MergeSized(rcx, (count - done) & addrMask, addrMask));
            }
        }
        // More iterations to go (REP), or an element that faulted: the guest re-executes the instruction.
        if (faulted || (rep && done < count))
        {
            int v = Id;
            _kernel.Ioctl(_fd, VmmIoctls.VM_RESTART_INSTRUCTION, ref v);
        }
    }

    /// <summary>A register written in an address size: a 32-bit write zero-extends, a 16-bit one keeps bits 63:16.</summary>
    private static ulong MergeSized(ulong full, ulong value, ulong mask) => mask == 0xffff_ffffUL ? value & mask : (full & ~mask) | (value & mask);

    private bool TranslateRange(ulong gla, int bytes, bool write, VmGuestPaging paging, out ulong[] gpas)
    {
        gpas = new ulong[bytes];
        ulong pageGpa = 0, page = ulong.MaxValue;
        for (int i = 0; i < bytes; i++)
        {
            ulong a = gla + (ulong)i;
            if ((a & ~0xfffUL) != page)
            {
                page = a & ~0xfffUL;
                if (!Gla2Gpa(page, write, paging, out pageGpa)) return false;
            }
            gpas[i] = pageGpa + (a & 0xfff);
        }
        return true;
    }

    private bool Gla2Gpa(ulong gla, bool write, VmGuestPaging paging, out ulong gpa)
    {
        var arg = new VmGla2Gpa { VcpuId = Id, Prot = (int)(write ? MapProtection.Write : MapProtection.Read), Gla = gla, Paging = paging };
        _kernel.Ioctl(_fd, VmmIoctls.VM_GLA2GPA, ref arg);
        gpa = arg.Gpa;
        return arg.Fault == 0;
    }

    private static byte ReadGuestByte(Core.Memory.GuestMemory memory, IExitHandler handler, ulong gpa)
    {
        if (memory.TryGetHostPointer(gpa, 1, out byte* p)) return *p;
        Span<byte> b = stackalloc byte[1];
        handler.MmioRead(gpa, b);
        return b[0];
    }

    private static void WriteGuestByte(Core.Memory.GuestMemory memory, IExitHandler handler, ulong gpa, byte value)
    {
        if (memory.TryGetHostPointer(gpa, 1, out byte* p))
        {
            *p = value;
            return;
        }
        handler.MmioWrite(gpa, [value]);
    }

    // ---- MMIO through the software CPU's single-instruction emulator ----

    /// <summary>Routes the emulator's exits to the handler of the current Run.</summary>
    private sealed class EmulatorExits : IExitHandler
    {
        public IExitHandler Target = null!;
        public void PortRead(ushort port, Span<byte> data) => Target.PortRead(port, data);
        public void PortWrite(ushort port, ReadOnlySpan<byte> data) => Target.PortWrite(port, data);
        public void MmioRead(ulong gpa, Span<byte> data) => Target.MmioRead(gpa, data);
        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data) => Target.MmioWrite(gpa, data);
        public bool MsrRead(uint msr, out ulong value) => Target.MsrRead(msr, out value);
        public bool MsrWrite(uint msr, ulong value) => Target.MsrWrite(msr, value);
    }

    private VcpuExit? Mmio(IExitHandler handler)
    {
        bool decoded = _exit->VieDecoded;
        ulong exitRip = _exit->Rip;
        if (_emulator is null)
        {
            _emulatorExits = new EmulatorExits();
            _emulator = new SoftCpu(_vm.Memory, _emulatorExits);
        }
        _emulatorExits!.Target = handler;
        var regs = GetRegisters();
        regs.Rip = exitRip;
        var sys = GetSystemRegisters();
        var before = regs;
        var result = _emulator.EmulateOne(ref regs, ref sys);
        if (result.Outcome == EmulationOutcome.Fault)
        {
            if (result.Vector == 14) SetRegister(VmRegName.Cr2, sys.Cr2);
            var ex = new VmException
            {
                CpuId = Id,
                Vector = result.Vector,
                ErrorCode = result.ErrorCode ?? 0,
                ErrorCodeValid = result.ErrorCode.HasValue ? 1 : 0,
                RestartInstruction = 1,
            };
            _kernel.Ioctl(_fd, VmmIoctls.VM_INJECT_EXCEPTION, ref ex);
            return null;
        }
        // Write back what the instruction changed: GPRs and RFLAGS; RIP only when the kernel did not decode it
        // (for a decoded instruction the kernel already set nextrip past it).
        var names = new List<int>(18);
        var values = new List<ulong>(18);
        for (int i = 0; i < 16; i++)
        {
            if (regs[i] != before[i])
            {
                names.Add((int)VmmRegisters.GprNames[i]);
                values.Add(regs[i]);
            }
        }
        if (regs.Rflags != before.Rflags)
        {
            names.Add((int)VmRegName.Rflags);
            values.Add(regs.Rflags);
        }
        if (!decoded)
        {
            names.Add((int)VmRegName.Rip);
            values.Add(regs.Rip);
        }
        if (names.Count > 0) SetRegisterSet(names.ToArray(), values.ToArray());
        return null;
    }

    private void InjectGp()
    {
        var ex = new VmException { CpuId = Id, Vector = 13, ErrorCode = 0, ErrorCodeValid = 1, RestartInstruction = 1 };
        _kernel.Ioctl(_fd, VmmIoctls.VM_INJECT_EXCEPTION, ref ex);
    }

    // ---- INIT / STARTUP ----

    private void Ipi()
    {
        uint mode = _exit->IpiMode & 0x700;
        byte vector = _exit->IpiVector;
        for (int cpu = 0; cpu < VmmConstants.CpusetBytes * 8; cpu++)
        {
            if ((_cpuset[cpu >> 3] & (1 << (cpu & 7))) == 0) continue;
            var target = _vm.FindVcpu(cpu);
            if (target is null) continue;
            if (mode == ApicModeInit) target.Init();
            else if (mode == ApicModeStartup && target._parked) StartAp(cpu, (ulong)vector << 12);
        }
    }

    /// <summary>INIT: park this vCPU in the debug set and give it the power-on state (it waits for STARTUP).</summary>
    private void Init()
    {
        if (Id == 0) return; // the BSP's INIT is a reset of the machine, which the platform decides
        _parked = true;
        int v = Id;
        _kernel.TryIoctl(_fd, VmmIoctls.VM_SUSPEND_CPU, ref v);
        SetSystemRegisters(SystemRegisters.PowerOn());
        SetRegisters(new CpuRegisters { Rip = 0xfff0, Rflags = 2, Rdx = 0x600 });
    }

    private void StartAp(int cpu, ulong startRip)
    {
        var target = _vm.FindVcpu(cpu);
        if (target is null) return;
        var sys = SystemRegisters.PowerOn();
        ushort selector = (ushort)(startRip >> 4);
        sys.Cs = new SegmentRegister { Selector = selector, Base = startRip, Limit = 0xffff, Attributes = 0x9b };
        target.SetSystemRegisters(sys);
        target.SetRegisters(new CpuRegisters { Rip = 0, Rflags = 2, Rdx = 0x600 });
        target._parked = false;
        int v = cpu;
        _kernel.TryIoctl(_fd, VmmIoctls.VM_RESUME_CPU, ref v);
        try
        {
            target._startup.Release();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    // ---- registers ----

    private ulong GetRegister(VmRegName name)
    {
        var r = new VmRegister { CpuId = Id, RegNum = name };
        _kernel.Ioctl(_fd, VmmIoctls.VM_GET_REGISTER, ref r);
        return r.RegVal;
    }

    private void SetRegister(VmRegName name, ulong value)
    {
        var r = new VmRegister { CpuId = Id, RegNum = name, RegVal = value };
        _kernel.Ioctl(_fd, VmmIoctls.VM_SET_REGISTER, ref r);
    }

    private void GetRegisterSet(ReadOnlySpan<VmRegName> names, Span<ulong> values)
    {
        Span<int> nums = stackalloc int[names.Length];
        for (int i = 0; i < names.Length; i++) nums[i] = (int)names[i];
        fixed (int* pn = nums)
        fixed (ulong* pv = values)
        {
            var set = new VmRegisterSet { CpuId = Id, Count = names.Length, RegNums = pn, RegVals = pv };
            _kernel.Ioctl(_fd, VmmIoctls.VM_GET_REGISTER_SET, ref set);
        }
    }

    private void SetRegisterSet(int[] names, ulong[] values)
    {
        fixed (int* pn = names)
        fixed (ulong* pv = values)
        {
            var set = new VmRegisterSet { CpuId = Id, Count = names.Length, RegNums = pn, RegVals = pv };
            _kernel.Ioctl(_fd, VmmIoctls.VM_SET_REGISTER_SET, ref set);
        }
    }

    private SegDesc GetDesc(VmRegName name)
    {
        var d = new VmSegDesc { CpuId = Id, RegNum = name };
        _kernel.Ioctl(_fd, VmmIoctls.VM_GET_SEGMENT_DESCRIPTOR, ref d);
        return d.Desc;
    }

    private void SetDesc(VmRegName name, SegDesc desc)
    {
        var d = new VmSegDesc { CpuId = Id, RegNum = name, Desc = desc };
        _kernel.Ioctl(_fd, VmmIoctls.VM_SET_SEGMENT_DESCRIPTOR, ref d);
    }

    public CpuRegisters GetRegisters()
    {
        Span<ulong> v = stackalloc ulong[VmmRegisters.GeneralSet.Length];
        GetRegisterSet(VmmRegisters.GeneralSet, v);
        var r = new CpuRegisters();
        for (int i = 0; i < 16; i++) r[i] = v[i];
        r.Rip = v[16];
        r.Rflags = v[17];
        return r;
    }

    public void SetRegisters(in CpuRegisters registers)
    {
        var copy = registers;
        var names = new int[VmmRegisters.GeneralSet.Length];
        var values = new ulong[names.Length];
        for (int i = 0; i < names.Length; i++) names[i] = (int)VmmRegisters.GeneralSet[i];
        for (int i = 0; i < 16; i++) values[i] = copy[i];
        values[16] = registers.Rip;
        values[17] = registers.Rflags;
        SetRegisterSet(names, values);
    }

    public SystemRegisters GetSystemRegisters()
    {
        Span<ulong> v = stackalloc ulong[VmmRegisters.ControlSet.Length];
        GetRegisterSet(VmmRegisters.ControlSet, v);
        var s = new SystemRegisters { Cr0 = v[0], Cr2 = v[1], Cr3 = v[2], Cr4 = v[3], Efer = v[4], ApicBase = _apicBase };
        for (int i = 0; i < VmmRegisters.Segments.Length; i++)
        {
            var name = VmmRegisters.Segments[i];
            VmmRegisters.Segment(ref s, name) = VmmRegisters.FromDesc((ushort)v[5 + i], GetDesc(name));
        }
        var gdt = GetDesc(VmRegName.Gdtr);
        var idt = GetDesc(VmRegName.Idtr);
        s.Gdtr = new DescriptorTableRegister { Base = gdt.Base, Limit = (ushort)gdt.Limit };
        s.Idtr = new DescriptorTableRegister { Base = idt.Base, Limit = (ushort)idt.Limit };
        return s;
    }

    public void SetSystemRegisters(in SystemRegisters registers)
    {
        var s = registers;
        _apicBase = s.ApicBase;
        // Descriptors first (base/limit/access), then selectors, CRs and EFER in one register-set call.
        foreach (var name in VmmRegisters.Segments) SetDesc(name, VmmRegisters.ToDesc(VmmRegisters.Segment(ref s, name)));
        SetDesc(VmRegName.Gdtr, new SegDesc { Base = s.Gdtr.Base, Limit = s.Gdtr.Limit });
        SetDesc(VmRegName.Idtr, new SegDesc { Base = s.Idtr.Base, Limit = s.Idtr.Limit });
        var names = new int[VmmRegisters.ControlSet.Length];
        var values = new ulong[names.Length];
        for (int i = 0; i < names.Length; i++) names[i] = (int)VmmRegisters.ControlSet[i];
        values[0] = s.Cr0; values[1] = s.Cr2; values[2] = s.Cr3; values[3] = s.Cr4; values[4] = s.Efer;
        for (int i = 0; i < VmmRegisters.Segments.Length; i++) values[5 + i] = VmmRegisters.Segment(ref s, VmmRegisters.Segments[i]).Selector;
        SetRegisterSet(names, values);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _startup.Dispose();
        System.Runtime.InteropServices.NativeMemory.AlignedFree(_run);
    }
}
