// One KVM vCPU: KVM_CREATE_VCPU, its kvm_run page (mmap of the vCPU fd), CPUID from KVM_GET_SUPPORTED_CPUID, and
// the KVM_RUN loop. Exits: IO (each of io.count elements handed to the exit handler; KVM completes an IN from the
// data area on the next KVM_RUN), MMIO (mmio.data read or written in place), HLT (only without an in-kernel LAPIC:
// wait for a queued interrupt, or Halted when interrupts are off), IRQ_WINDOW_OPEN (inject now), SHUTDOWN (triple
// fault), SYSTEM_EVENT (reset/shutdown requested), FAIL_ENTRY and INTERNAL_ERROR (Error with KVM's codes), INTR
// (a signal: a kick). MSRs are KVM's: an MSR it does not know gets #GP in the kernel, so the MSR hooks are unused.
// split and off (a userspace irqchip, IUserspaceIrqchip on the exit handler): while the platform holds the vCPU's
// interrupt request (SetInterruptRequest) and kvm_run says the vCPU can take an interrupt now
// (ready_for_interrupt_injection; in split KVM sets it only when the kernel LAPIC accepts ExtINT on LINT0, in off
// also RFLAGS.IF), the vCPU runs the INTA (TryAcknowledge) and injects the vector with KVM_INTERRUPT; otherwise
// request_interrupt_window asks KVM to exit (IRQ_WINDOW_OPEN) when it can. split: KVM_EXIT_IOAPIC_EOI (a kernel LAPIC
// EOI of a level-triggered vector routed from the userspace IOAPIC) goes to KernelLapicEoi. off: kvm_run.cr8 is the
// userspace LAPIC's TPR[7:4], set before each KVM_RUN from ReadTaskPriority and written back (WriteTaskPriority)
// when the guest changed it (KVM exits SET_TPR when CR8 drops); a changed kvm_run.apic_base goes to ApicBaseChanged.
// QueueInterrupt'ed vectors (off, no platform irqchip) take the same KVM_INTERRUPT path. Kick: immediate_exit = 1
// (covers a kick just before KVM_RUN) and a signal to the vCPU thread (interrupts a running KVM_RUN with EINTR).
// off with several vCPUs: KVM has no local APIC, so the userspace LAPIC's INIT and start-up IPIs (SignalInit,
// SignalStartup) are carried out here, on the vCPU's own thread before its next KVM_RUN, as the SDM (vol. 3 §9.4)
// has a processor take them: INIT gives the power-on register state, after which the BSP runs from F000:FFF0 and an
// AP waits for a STARTUP (it does not enter KVM_RUN meanwhile); a STARTUP to a waiting vCPU starts it in real mode
// at vector << 12 (CS = vector << 8, IP = 0); a STARTUP to a vCPU that is not waiting is ignored. APs start waiting.
using ActorVmm.Core.Accel;
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Kvm;

public sealed unsafe class KvmVcpu : IVcpu
{
    private readonly KvmVm _vm;
    private readonly IKernelInterface _kernel;
    private readonly KernelFd _fd;
    private readonly KernelMapping _runPage;
    private readonly Lock _eventLock = new();
    private readonly Queue<byte> _interrupts = new();
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private bool _nmi;
    private bool _intrRequest;
    private ulong _lastCr8, _lastApicBase;
    private int _kick;
    private nint _thread;
    private bool _threadReady;
    private int _disposed;
    private bool _waitForStartup, _pendingInit;
    private int _pendingStartup = -1;
    private long _ignoredStartups;

    internal KvmVcpu(KvmVm vm, int id)
    {
        _vm = vm;
        _kernel = vm.Kernel;
        Id = id;
        int fd = _kernel.Ioctl(vm.Fd, KvmIoctls.KVM_CREATE_VCPU, (void*)id);
        _fd = new KernelFd(_kernel, fd, $"kvm-vcpu{id}");
        _runPage = _kernel.Map(_fd, (ulong)vm.VcpuMmapSize, MapProtection.Read | MapProtection.Write, 0, $"kvm_run of vCPU {id}");
        SetCpuid(vm.SupportedCpuid);
        // off: the APs wait for their start-up IPI (on and split: KVM's own LAPIC holds them in its MP state).
        _waitForStartup = vm.Spec.Irqchip == IrqchipMode.Off && id != 0;
    }

    /// <summary>STARTUP IPIs that reached this vCPU while it was not waiting for one (ignored, as the SDM says).</summary>
    public long IgnoredStartups => Interlocked.Read(ref _ignoredStartups);

    /// <summary>kernel-irqchip=off: INIT from the platform's local APIC (IVcpu contract), taken before the next KVM_RUN.</summary>
    public void SignalInit()
    {
        lock (_eventLock)
        {
            _pendingInit = true;
            _pendingStartup = -1;
        }
        Kick();
    }

    /// <summary>kernel-irqchip=off: a start-up IPI from the platform's local APIC; kept for a vCPU that waits for one (or will, after a pending INIT).</summary>
    public void SignalStartup(byte vector)
    {
        lock (_eventLock)
        {
            if (_pendingStartup < 0 && (_waitForStartup || _pendingInit)) _pendingStartup = vector;
            else Interlocked.Increment(ref _ignoredStartups);
        }
        Wake();
    }

    /// <summary>Carries out a pending INIT and STARTUP on the vCPU thread. True while the vCPU must still wait for a STARTUP.</summary>
    private bool TakeStartupSignals()
    {
        bool init;
        int startup;
        lock (_eventLock)
        {
            init = _pendingInit;
            startup = _pendingStartup;
            _pendingInit = false;
            _pendingStartup = -1;
            if (init)
            {
                _waitForStartup = Id != 0;
                _interrupts.Clear();
                _nmi = false;
            }
            if (startup >= 0 && !_waitForStartup) startup = -1;
            if (startup >= 0) _waitForStartup = false;
        }
        if (init || startup >= 0)
        {
            // KVM finishes an IN or MMIO read of the last exit on the next KVM_RUN (api.rst): let it, without running
            // the guest (immediate_exit), before the registers are replaced.
            Run_->ImmediateExit = 1;
            _kernel.TryIoctl(_fd, KvmIoctls.KVM_RUN, null);
            Run_->ImmediateExit = 0;
        }
        if (init)
        {
            SetSystemRegisters(SystemRegisters.PowerOn());
            SetRegisters(new CpuRegisters { Rip = 0xfff0, Rflags = 2, Rdx = 0x600 });
        }
        if (startup >= 0)
        {
            ulong start = (ulong)startup << 12;
            var sys = SystemRegisters.PowerOn();
            sys.Cs = new SegmentRegister { Selector = (ushort)(start >> 4), Base = start, Limit = 0xffff, Attributes = 0x9b };
            SetSystemRegisters(sys);
            SetRegisters(new CpuRegisters { Rip = 0, Rflags = 2, Rdx = 0x600 });
        }
        lock (_eventLock) return _waitForStartup;
    }

    public int Id { get; }

    public ulong InstructionsRetired => 0;

    private KvmRun* Run_ => (KvmRun*)_runPage.Pointer;

    private void SetCpuid(KvmCpuidEntry2[] entries)
    {
        var buf = new byte[KvmCpuid2.HeaderSize + entries.Length * KvmCpuidEntry2.Size];
        fixed (byte* p = buf)
        {
            ((KvmCpuid2*)p)->Nent = (uint)entries.Length;
            var dest = new Span<KvmCpuidEntry2>(p + KvmCpuid2.HeaderSize, entries.Length);
            entries.CopyTo(dest);
            // The initial APIC ID (leaf 1 EBX[31:24], leaf 0xb EDX) is this vCPU's.
            foreach (ref var e in dest)
            {
                if (e.Function == 1) e.Ebx = (e.Ebx & 0x00ff_ffff) | ((uint)Id << 24);
                if (e.Function is 0xb or 0x1f) e.Edx = (uint)Id;
            }
            _kernel.Ioctl(_fd, KvmIoctls.KVM_SET_CPUID2, p);
        }
    }

    public VcpuExit Run(IExitHandler handler)
    {
        if (!_threadReady)
        {
            _thread = _kernel.PrepareKickableThread();
            if (_vm.HostCpus is { Count: > 0 } cpus)
            {
                int e = _kernel.SetThreadAffinity([cpus[Id % cpus.Count]]);
                if (e != 0) throw new KernelCallException($"pinning vCPU {Id} to host CPU {cpus[Id % cpus.Count]}", e, _kernel.Os);
            }
            _threadReady = true;
        }
        var run = Run_;
        while (true)
        {
            if (Interlocked.Exchange(ref _kick, 0) != 0)
            {
                run->ImmediateExit = 0;
                return VcpuExit.Kicked;
            }
            if (_vm.Spec.Irqchip == IrqchipMode.Off && TakeStartupSignals())
            {
                // Waiting for a STARTUP: the vCPU does not run; a kick ends the slice as usual.
                if (!WaitForStartup()) return VcpuExit.Kicked;
                continue;
            }
            var chip = _vm.Spec.Irqchip == IrqchipMode.On ? null : handler as IUserspaceIrqchip;
            if (InjectPending(run, chip) is { } failure) return failure;
            if (chip is not null && _vm.Spec.Irqchip == IrqchipMode.Off)
            {
                _lastCr8 = (chip.ReadTaskPriority(Id) >> 4) & 0xf;
                run->Cr8 = _lastCr8;
            }
            int r = _kernel.TryIoctl(_fd, KvmIoctls.KVM_RUN, null);
            if (r < 0)
            {
                if (-r == Errno.EINTR || -r == Errno.EAGAIN(_kernel.Os)) continue; // a kick: the flag is checked above
                return new VcpuExit(VcpuExitKind.Error, $"ioctl {KvmIoctls.KVM_RUN} on vCPU {Id}: {Errno.Describe(-r, _kernel.Os)}");
            }
            if (chip is not null && _vm.Spec.Irqchip == IrqchipMode.Off) SyncApicState(run, chip);
            switch (run->ExitReason)
            {
                case KvmExitReason.Io:
                    PortIo(run, handler);
                    break;
                case KvmExitReason.Mmio:
                    {
                        byte* page = (byte*)run;
                        int len = (int)Math.Min(*(uint*)(page + KvmRun.MmioLenOffset), 8u);
                        var data = new Span<byte>(run->MmioData, len);
                        if (page[KvmRun.MmioIsWriteOffset] != 0) handler.MmioWrite(run->MmioPhysAddr, data);
                        else handler.MmioRead(run->MmioPhysAddr, data);
                        break;
                    }
                case KvmExitReason.Hlt:
                    if (run->IfFlag == 0 && !HasQueued())
                    {
                        // With other vCPUs, a halt with interrupts off parks this processor (an AP done with its work,
                        // or parked by the OS): only INIT, an NMI or a kick moves it. The run ends (Halted) only when
                        // every vCPU is parked so, as with the soft accelerator.
                        if (_vm.Park()) return new VcpuExit(VcpuExitKind.Halted, "HLT with interrupts disabled");
                        try
                        {
                            if (!WaitForEvent()) return VcpuExit.Kicked;
                        }
                        finally
                        {
                            _vm.Unpark();
                        }
                        break;
                    }
                    if (!WaitForEvent()) return VcpuExit.Kicked;
                    break;
                case KvmExitReason.IrqWindowOpen:
                case KvmExitReason.Intr:
                case KvmExitReason.SetTpr: // the new TPR was taken from kvm_run.cr8 above
                    break;
                case KvmExitReason.IoapicEoi:
                    chip?.KernelLapicEoi(Id, run->EoiVector);
                    break;
                case KvmExitReason.Shutdown:
                    return new VcpuExit(VcpuExitKind.Shutdown, "triple fault (KVM_EXIT_SHUTDOWN)");
                case KvmExitReason.SystemEvent:
                    return run->SystemEventType switch
                    {
                        1 => new VcpuExit(VcpuExitKind.PowerOff, "KVM system event: shutdown"),
                        2 => new VcpuExit(VcpuExitKind.Reset, "KVM system event: reset"),
                        var t => new VcpuExit(VcpuExitKind.Error, $"KVM system event {t}"),
                    };
                case KvmExitReason.FailEntry:
                    return new VcpuExit(VcpuExitKind.Error, $"KVM_EXIT_FAIL_ENTRY: hardware entry failure reason 0x{run->FailEntryHardwareEntryFailureReason:x} on CPU {*(uint*)((byte*)run + KvmRun.FailEntryCpuOffset)}");
                case KvmExitReason.InternalError:
                    return new VcpuExit(VcpuExitKind.Error, InternalErrorDetail(run));
                case KvmExitReason.Debug:
                    return new VcpuExit(VcpuExitKind.Debug, "KVM_EXIT_DEBUG");
                default:
                    return new VcpuExit(VcpuExitKind.Error, $"unhandled KVM exit {run->ExitReason} ({(uint)run->ExitReason})");
            }
        }
    }

    /// <summary>KVM_EXIT_INTERNAL_ERROR with its suberror named, KVM's data words and where the guest was.</summary>
    private string InternalErrorDetail(KvmRun* run)
    {
        uint sub = run->InternalSuberror;
        string name = sub switch
        {
            1 => "emulation failure",
            2 => "exception while delivering an exception",
            3 => "failed event delivery",
            4 => "unexpected exit reason",
            _ => "unknown",
        };
        int n = (int)Math.Min(run->InternalNdata, 16u);
        var words = new string[n];
        ulong* data = (ulong*)((byte*)run + KvmRun.InternalDataOffset);
        for (int i = 0; i < n; i++) words[i] = $"0x{data[i]:x}";
        string where;
        try
        {
            var regs = GetRegisters();
            where = $"rip 0x{regs.Rip:x}";
        }
        catch (KernelCallException e)
        {
            where = $"registers unreadable ({e.Message})";
        }
        return $"KVM_EXIT_INTERNAL_ERROR: suberror {sub} ({name}), {where}, data [{string.Join(", ", words)}]";
    }

    private void PortIo(KvmRun* run, IExitHandler handler)
    {
        int size = run->IoSize;
        if (size is not (1 or 2 or 4)) return;
        byte* data = (byte*)run + run->IoDataOffset;
        for (uint i = 0; i < run->IoCount; i++, data += size)
        {
            var span = new Span<byte>(data, size);
            if (run->IoDirection == KvmRun.IoOut) handler.PortWrite(run->IoPort, span);
            else handler.PortRead(run->IoPort, span);
        }
    }

    private bool HasQueued()
    {
        lock (_eventLock) return _nmi || _intrRequest || _interrupts.Count > 0;
    }

    /// <summary>Off: the guest's CR8 and IA32_APIC_BASE as KVM left them in kvm_run, handed to the userspace LAPIC when they changed.</summary>
    private void SyncApicState(KvmRun* run, IUserspaceIrqchip chip)
    {
        ulong cr8 = run->Cr8 & 0xf;
        if (cr8 != _lastCr8)
        {
            _lastCr8 = cr8;
            chip.WriteTaskPriority(Id, (uint)cr8 << 4);
        }
        if (run->ApicBase != _lastApicBase)
        {
            _lastApicBase = run->ApicBase;
            chip.ApicBaseChanged(Id, run->ApicBase);
        }
    }

    /// <summary>
    /// Before KVM_RUN: a pending NMI, then one external interrupt if the vCPU can take it now (the platform's INTA
    /// runs here, outside the event lock, as the lock order wants), else an interrupt-window request. Null, or the
    /// exit that ends the run when KVM refused an injection.
    /// </summary>
    private VcpuExit? InjectPending(KvmRun* run, IUserspaceIrqchip? chip)
    {
        bool request;
        lock (_eventLock)
        {
            if (_nmi)
            {
                _kernel.Ioctl(_fd, KvmIoctls.KVM_NMI, null);
                _nmi = false;
            }
            request = _intrRequest && chip is not null;
        }
        bool ready = run->ReadyForInterruptInjection != 0 && (_vm.Spec.Irqchip == IrqchipMode.Split || run->IfFlag != 0);
        if (request && ready)
        {
            if (chip!.TryAcknowledge(Id, out byte vector))
            {
                var irq = new KvmInterrupt { Irq = vector };
                int r = _kernel.TryIoctl(_fd, KvmIoctls.KVM_INTERRUPT, &irq);
                if (r < 0) return new VcpuExit(VcpuExitKind.Error, $"ioctl {KvmIoctls.KVM_INTERRUPT} (vector 0x{vector:x2}) on vCPU {Id}: {Errno.Describe(-r, _kernel.Os)}");
                ready = false; // KVM holds one interrupt until the next entry delivers it
            }
        }
        lock (_eventLock)
        {
            if (ready && _interrupts.Count > 0)
            {
                var irq = new KvmInterrupt { Irq = _interrupts.Dequeue() };
                _kernel.Ioctl(_fd, KvmIoctls.KVM_INTERRUPT, ref irq);
            }
            run->RequestInterruptWindow = (byte)(_interrupts.Count > 0 || (_intrRequest && chip is not null) ? 1 : 0);
        }
        return null;
    }

    /// <summary>
    /// split/off: the platform's interrupt request line of this vCPU (the 8259's INTR, or in off the userspace LAPIC's
    /// "deliverable interrupt"). While it is high the vCPU acknowledges and injects at its next interrupt window.
    /// </summary>
    public void SetInterruptRequest(bool level)
    {
        if (_vm.Spec.Irqchip == IrqchipMode.On) throw new InvalidOperationException("SetInterruptRequest is for kernel-irqchip=split and off");
        lock (_eventLock) _intrRequest = level;
        if (level) Nudge();
    }

    /// <summary>Waits until a STARTUP or INIT is pending (true) or a kick comes (false).</summary>
    private bool WaitForStartup()
    {
        while (true)
        {
            if (Volatile.Read(ref _kick) != 0) return false;
            lock (_eventLock)
            {
                if (_pendingStartup >= 0 || _pendingInit) return true;
            }
            _wake.Wait(TimeSpan.FromMilliseconds(50));
        }
    }

    private bool WaitForEvent()
    {
        while (true)
        {
            if (Volatile.Read(ref _kick) != 0) return false;
            if (HasQueued()) return true;
            lock (_eventLock)
            {
                if (_pendingInit) return true;
            }
            _wake.Wait(TimeSpan.FromMilliseconds(50));
        }
    }

    public void Kick()
    {
        if (Volatile.Read(ref _disposed) != 0) return;
        // immediate_exit before the flag: the vCPU thread clears immediate_exit when it takes the flag, so setting it
        // after the flag could leave it at 1 once the kick was taken, and every later KVM_RUN would return EINTR
        // without running the guest (found with the KVM stand-in: the guest starved after its first interrupt).
        Run_->ImmediateExit = 1;
        Interlocked.Exchange(ref _kick, 1);
        if (_threadReady) _kernel.KickThread(_thread);
        Wake();
    }

    /// <summary>
    /// Wakes a vCPU waiting in WaitForEvent. The semaphore is an event: a release only when none is pending, since
    /// wakes come at timer rate while nobody waits (an unbounded count ends in SemaphoreFullException on the timer thread).
    /// </summary>
    private void Wake()
    {
        try
        {
            if (_wake.CurrentCount == 0) _wake.Release();
        }
        catch (Exception e) when (e is ObjectDisposedException or SemaphoreFullException)
        {
        }
    }

    public void QueueInterrupt(byte vector)
    {
        if (_vm.Spec.Irqchip != IrqchipMode.Off) throw new InvalidOperationException("QueueInterrupt is for kernel-irqchip=off");
        lock (_eventLock)
        {
            if (_interrupts.Count < 256) _interrupts.Enqueue(vector);
        }
        Nudge();
    }

    /// <summary>Makes a running vCPU exit so the interrupt is considered, without reporting Kicked.</summary>
    private void Nudge()
    {
        Wake();
        if (_threadReady) _kernel.KickThread(_thread);
    }

    internal void QueueNmi()
    {
        lock (_eventLock) _nmi = true;
        Nudge();
    }

    // ---- registers ----

    public CpuRegisters GetRegisters()
    {
        var k = new KvmRegs();
        _kernel.Ioctl(_fd, KvmIoctls.KVM_GET_REGS, ref k);
        return new CpuRegisters
        {
            Rax = k.Rax, Rbx = k.Rbx, Rcx = k.Rcx, Rdx = k.Rdx, Rsi = k.Rsi, Rdi = k.Rdi, Rsp = k.Rsp, Rbp = k.Rbp,
            R8 = k.R8, R9 = k.R9, R10 = k.R10, R11 = k.R11, R12 = k.R12, R13 = k.R13, R14 = k.R14, R15 = k.R15,
            Rip = k.Rip, Rflags = k.Rflags,
        };
    }

    public void SetRegisters(in CpuRegisters registers)
    {
        var r = registers;
        var k = new KvmRegs
        {
            Rax = r.Rax, Rbx = r.Rbx, Rcx = r.Rcx, Rdx = r.Rdx, Rsi = r.Rsi, Rdi = r.Rdi, Rsp = r.Rsp, Rbp = r.Rbp,
            R8 = r.R8, R9 = r.R9, R10 = r.R10, R11 = r.R11, R12 = r.R12, R13 = r.R13, R14 = r.R14, R15 = r.R15,
            Rip = r.Rip, Rflags = r.Rflags | 2,
        };
        _kernel.Ioctl(_fd, KvmIoctls.KVM_SET_REGS, ref k);
    }

    internal static KvmSegment ToKvm(in SegmentRegister s) => new()
    {
        Base = s.Base,
        Limit = s.Limit,
        Selector = s.Selector,
        Type = (byte)(s.Attributes & 0xf),
        S = (byte)((s.Attributes >> 4) & 1),
        Dpl = (byte)((s.Attributes >> 5) & 3),
        Present = (byte)((s.Attributes >> 7) & 1),
        Avl = (byte)((s.Attributes >> 12) & 1),
        L = (byte)((s.Attributes >> 13) & 1),
        Db = (byte)((s.Attributes >> 14) & 1),
        G = (byte)((s.Attributes >> 15) & 1),
        Unusable = (byte)(((s.Attributes >> 7) & 1) ^ 1),
    };

    internal static SegmentRegister FromKvm(in KvmSegment k) => new()
    {
        Base = k.Base,
        Limit = k.Limit,
        Selector = k.Selector,
        Attributes = (ushort)((k.Type & 0xf) | ((k.S & 1) << 4) | ((k.Dpl & 3) << 5) | ((k.Unusable != 0 ? 0 : k.Present & 1) << 7)
            | ((k.Avl & 1) << 12) | ((k.L & 1) << 13) | ((k.Db & 1) << 14) | ((k.G & 1) << 15)),
    };

    public SystemRegisters GetSystemRegisters()
    {
        var k = new KvmSregs();
        _kernel.Ioctl(_fd, KvmIoctls.KVM_GET_SREGS, ref k);
        return new SystemRegisters
        {
            Cs = FromKvm(k.Cs), Ds = FromKvm(k.Ds), Es = FromKvm(k.Es), Fs = FromKvm(k.Fs), Gs = FromKvm(k.Gs), Ss = FromKvm(k.Ss),
            Tr = FromKvm(k.Tr), Ldtr = FromKvm(k.Ldt),
            Gdtr = new DescriptorTableRegister { Base = k.Gdt.Base, Limit = k.Gdt.Limit },
            Idtr = new DescriptorTableRegister { Base = k.Idt.Base, Limit = k.Idt.Limit },
            Cr0 = k.Cr0, Cr2 = k.Cr2, Cr3 = k.Cr3, Cr4 = k.Cr4, Cr8 = k.Cr8, Efer = k.Efer, ApicBase = k.ApicBase,
        };
    }

    public void SetSystemRegisters(in SystemRegisters registers)
    {
        var s = registers;
        // Read first so the pending-interrupt bitmap KVM keeps is written back unchanged.
        var k = new KvmSregs();
        _kernel.Ioctl(_fd, KvmIoctls.KVM_GET_SREGS, ref k);
        k.Cs = ToKvm(s.Cs); k.Ds = ToKvm(s.Ds); k.Es = ToKvm(s.Es); k.Fs = ToKvm(s.Fs); k.Gs = ToKvm(s.Gs); k.Ss = ToKvm(s.Ss);
        k.Tr = ToKvm(s.Tr); k.Ldt = ToKvm(s.Ldtr);
        k.Gdt = new KvmDtable { Base = s.Gdtr.Base, Limit = s.Gdtr.Limit };
        k.Idt = new KvmDtable { Base = s.Idtr.Base, Limit = s.Idtr.Limit };
        k.Cr0 = s.Cr0; k.Cr2 = s.Cr2; k.Cr3 = s.Cr3; k.Cr4 = s.Cr4; k.Cr8 = s.Cr8; k.Efer = s.Efer;
        if (s.ApicBase != 0) k.ApicBase = s.ApicBase;
        _kernel.Ioctl(_fd, KvmIoctls.KVM_SET_SREGS, ref k);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _runPage.Dispose();
        _fd.Dispose();
        _wake.Dispose();
    }
}
