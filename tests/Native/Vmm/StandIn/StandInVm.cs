// Test code, NOT a kernel: one VM of the vmm(4) stand-in (VmmStandIn.cs has the overview). Ioctl arguments are
// read and written as raw bytes at the offsets of the ABI reference (section b.3), independently of the
// backend's struct declarations, and requests are matched by their numeric values (section b.2).
using System.Runtime.CompilerServices;
using ActorVmm.Core.Accel;
using ActorVmm.Native.Soft;
using ActorVmm.Native.Sys;
using Iced.Intel;

namespace ActorVmm.Native.Tests.Vmm.StandIn;

public sealed unsafe class StandInVm
{
    private readonly VmmStandIn _host;
    private readonly Dictionary<int, ulong> _segments = [];
    private readonly List<(ulong Gpa, int SegId, ulong SegOff, ulong Len, int Prot)> _maps = [];
    private readonly Lock _lock = new();
    private StandInVcpu? _vcpu;
    private int _suspendHow;

    internal StandInVm(VmmStandIn host, string name)
    {
        _host = host;
        Name = name;
    }

    public string Name { get; }

    /// <summary>The software VM standing in for the kernel's (created when system memory is first mapped).</summary>
    public SoftVm? Soft { get; private set; }

    public int Flags { get; private set; }

    public (ushort Sockets, ushort Cores, ushort Threads) Topology { get; private set; }

    /// <summary>Interrupt-controller ioctls received: "isa-assert 4", "ioapic-pulse 17", "msi fee00000 0031", "nmi 0".</summary>
    public List<string> IrqLog { get; } = [];

    public int SuspendHow => Volatile.Read(ref _suspendHow);

    public bool Destroyed { get; private set; }

    public StandInVcpu? Vcpu => _vcpu;

    private static T R<T>(void* arg, int offset) where T : unmanaged => Unsafe.ReadUnaligned<T>((byte*)arg + offset);

    private static void W<T>(void* arg, int offset, T value) where T : unmanaged => Unsafe.WriteUnaligned((byte*)arg + offset, value);

    private static VmmStandIn.StandInError Fail(int errno) => new(errno);

    internal void* MapSysmem(ulong gpa, ulong length)
    {
        lock (_lock)
        {
            foreach (var m in _maps)
            {
                if (!IsSysmem(m.SegId) || gpa < m.Gpa || gpa + length > m.Gpa + m.Len) continue;
                if (Soft is null) return null;
                return Soft.Memory.TryGetHostPointer(gpa, length, out byte* p) ? p : null;
            }
            return null;
        }
    }

    private bool IsSysmem(int segid) => _host.Generation == Native.Vmm.VmmGeneration.FreeBsd14 ? segid == 0 : segid is >= 0 and < 8;

    internal void Destroy()
    {
        Destroyed = true;
        Suspend(_host.Generation == Native.Vmm.VmmGeneration.FreeBsd15 ? 5 : 2);
        _vcpu?.WaitIdle();
        _vcpu?.Dispose();
        Soft?.Dispose();
    }

    internal int Suspend(int how)
    {
        if (Interlocked.CompareExchange(ref _suspendHow, how, 0) != 0) return -37; // FreeBSD EALREADY
        _vcpu?.KickSoft();
        return 0;
    }

    private StandInVcpu VcpuFor(int id)
    {
        if (id is < 0 or >= 16) throw Fail(Errno.EINVAL);
        if (id != 0) throw Fail(Errno.EINVAL); // this stand-in has one vCPU (the soft accelerator's limit)
        if (Soft is null) throw Fail(Errno.EINVAL); // system memory first (the stand-in builds its CPU with it)
        lock (_lock) return _vcpu ??= new StandInVcpu(this, _host, Soft);
    }

    internal int Ioctl(ulong request, void* a)
    {
        switch (request)
        {
            case 0x80207601: // VM_RUN
                return VcpuFor(R<int>(a, 0)).Run(R<nint>(a, 24), R<nint>(a, 8), R<ulong>(a, 16));
            case 0x80107602: // VM_SET_CAPABILITY
                {
                    int cap = R<int>(a, 4);
                    if (cap is < 0 or > 10) return -Errno.EINVAL;
                    if (cap is 6 or 7 or 10) return -Errno.ENOENT; // query-only / AMD-only on VMX
                    VcpuFor(R<int>(a, 0)).Capabilities[cap] = R<int>(a, 8);
                    return 0;
                }
            case 0xC0107603: // VM_GET_CAPABILITY
                {
                    int cap = R<int>(a, 4);
                    if (cap is < 0 or > 10) return -Errno.EINVAL;
                    W(a, 8, VcpuFor(R<int>(a, 0)).Capabilities[cap]);
                    return 0;
                }
            case 0x80047604: // VM_SUSPEND
                {
                    int how = R<int>(a, 0);
                    int last = _host.Generation == Native.Vmm.VmmGeneration.FreeBsd14 ? 5 : 6;
                    if (how <= 0 || how >= last) return -Errno.EINVAL;
                    return Suspend(how);
                }
            case 0x8020760E when true: // VM_ALLOC_MEMSEG, 14.x layout (accepted by 15.x as COMPAT_FREEBSD14)
                return AllocMemseg(R<int>(a, 0), R<ulong>(a, 8), (byte*)a + 16, compat14: _host.Generation == Native.Vmm.VmmGeneration.FreeBsd15);
            case 0x8038760E when _host.Generation == Native.Vmm.VmmGeneration.FreeBsd15: // VM_ALLOC_MEMSEG, 15.x layout
                if (R<nint>(a, 32) != 0 || R<ulong>(a, 40) != 0 || R<int>(a, 48) != 0) return -Errno.EINVAL; // no NUMA domains here
                return AllocMemseg(R<int>(a, 0), R<ulong>(a, 8), (byte*)a + 16, compat14: false);
            case 0xC020760F:
            case 0xC038760F when _host.Generation == Native.Vmm.VmmGeneration.FreeBsd15: // VM_GET_MEMSEG
                lock (_lock)
                {
                    if (!_segments.TryGetValue(R<int>(a, 0), out ulong len)) len = 0;
                    W(a, 8, len);
                }
                return 0;
            case 0x80287610: // VM_MMAP_MEMSEG
                return MmapMemseg(R<ulong>(a, 0), R<int>(a, 8), R<ulong>(a, 16), R<ulong>(a, 24), R<int>(a, 32));
            case 0x80107614: // VM_SET_REGISTER
                return VcpuFor(R<int>(a, 0)).SetRegister(R<int>(a, 4), R<ulong>(a, 8));
            case 0xC0107615: // VM_GET_REGISTER
                {
                    int r = VcpuFor(R<int>(a, 0)).GetRegister(R<int>(a, 4), out ulong v);
                    W(a, 8, v);
                    return r;
                }
            case 0x80187616: // VM_SET_SEGMENT_DESCRIPTOR
                return VcpuFor(R<int>(a, 0)).SetDescriptor(R<int>(a, 4), R<ulong>(a, 8), R<uint>(a, 16), R<uint>(a, 20));
            case 0xC0187617: // VM_GET_SEGMENT_DESCRIPTOR
                {
                    int r = VcpuFor(R<int>(a, 0)).GetDescriptor(R<int>(a, 4), out ulong b, out uint limit, out uint access);
                    W(a, 8, b);
                    W(a, 16, limit);
                    W(a, 20, access);
                    return r;
                }
            case 0x80187618: // VM_SET_REGISTER_SET
            case 0xC0187619: // VM_GET_REGISTER_SET
                {
                    var v = VcpuFor(R<int>(a, 0));
                    int count = R<int>(a, 4);
                    if (count < 0 || count > 49) return -Errno.EINVAL;
                    int* nums = (int*)R<nint>(a, 8);
                    ulong* vals = (ulong*)R<nint>(a, 16);
                    for (int i = 0; i < count; i++)
                    {
                        int r = request == 0x80187618 ? v.SetRegister(nums[i], vals[i]) : v.GetRegister(nums[i], out vals[i]);
                        if (r != 0) return r;
                    }
                    return 0;
                }
            case 0xC038760D: // VM_GLA2GPA
                {
                    var v = VcpuFor(R<int>(a, 0));
                    bool ok = v.Translate(R<ulong>(a, 8), R<ulong>(a, 16), R<int>(a, 24), (R<int>(a, 4) & 2) != 0, out ulong gpa);
                    W(a, 40, ok ? 0 : 1);
                    W(a, 48, gpa);
                    return 0;
                }
            case 0x8014761E: // VM_INJECT_EXCEPTION
                return VcpuFor(R<int>(a, 0)).InjectException(R<int>(a, 4), R<uint>(a, 8), R<int>(a, 12) != 0, R<int>(a, 16) != 0);
            case 0x80047620: // VM_INJECT_NMI
                VcpuFor(R<int>(a, 0));
                Log($"nmi {R<int>(a, 0)}");
                Soft!.InjectNmi(R<int>(a, 0));
                return 0;
            case 0x80047621 or 0x80047622 or 0x80047623: // VM_IOAPIC_ASSERT/DEASSERT/PULSE_IRQ
                {
                    int pin = R<int>(a, 0);
                    if (pin is < 0 or >= 32) return -Errno.EINVAL;
                    if (Soft is null || pin >= 24) return -Errno.EINVAL; // the soft IOAPIC has 24 pins, vmm's 32
                    string op = request == 0x80047621 ? "assert" : request == 0x80047622 ? "deassert" : "pulse";
                    Log($"ioapic-{op} {pin}");
                    if (request == 0x80047623) ((IVm)Soft).PulseIrq(pin);
                    else Soft.SetIrqLine(pin, request == 0x80047621);
                    return 0;
                }
            case 0x80087650 or 0x80087651 or 0x80087652: // VM_ISA_ASSERT/DEASSERT/PULSE_IRQ
                {
                    int irq = R<int>(a, 0), pin = R<int>(a, 4);
                    if (irq is < 0 or >= 16 || pin is < -1 or >= 32) return -Errno.EINVAL;
                    if (Soft is null) return -Errno.EINVAL;
                    string op = request == 0x80087650 ? "assert" : request == 0x80087651 ? "deassert" : "pulse";
                    Log($"isa-{op} {irq} pin {pin}");
                    // The soft kernel wires ISA IRQ n to PIC input n and IOAPIC pin n (IRQ0 to pin 2) as one line.
                    if (request == 0x80087652) ((IVm)Soft).PulseIrq(irq);
                    else Soft.SetIrqLine(irq, request == 0x80087650);
                    return 0;
                }
            case 0x80107624: // VM_LAPIC_MSI
                if (Soft is null) return -Errno.EINVAL;
                Log($"msi {R<ulong>(a, 8):x} {R<ulong>(a, 0):x4}");
                Soft.SendMsi(R<ulong>(a, 8), (uint)R<ulong>(a, 0));
                return 0;
            case 0x80047627: // VM_RESTART_INSTRUCTION
                VcpuFor(R<int>(a, 0)).Restart();
                return 0;
            case 0x8008763C: // VM_SET_X2APIC_STATE
                {
                    int state = R<int>(a, 4);
                    if (state is < 0 or > 1) return -Errno.EINVAL;
                    VcpuFor(R<int>(a, 0)).X2apic = state;
                    return 0;
                }
            case 0x8008763F: // VM_SET_TOPOLOGY
                Topology = (R<ushort>(a, 0), R<ushort>(a, 2), R<ushort>(a, 4));
                if (Topology.Sockets == 0 || Topology.Cores == 0 || Topology.Threads == 0) return -Errno.EINVAL;
                return 0;
            case 0x8004765A: // VM_ACTIVATE_CPU
                return VcpuFor(R<int>(a, 0)).Activate();
            case 0x8004765C: // VM_SUSPEND_CPU (-1: all)
            case 0x8004765D: // VM_RESUME_CPU
                {
                    int id = R<int>(a, 0);
                    var v = id == -1 ? _vcpu : VcpuFor(id);
                    if (v is null) return 0;
                    if (request == 0x8004765C) v.EnterDebug();
                    else v.LeaveDebug();
                    return 0;
                }
            case 0x4004767A when _host.SeedExtensions: // VM_GET_FLAGS (seed fork)
                W(a, 0, Flags);
                return 0;
            case 0x80047679 when _host.SeedExtensions: // VM_SET_FLAGS (seed fork)
                Flags = R<int>(a, 0);
                return 0;
            default:
                return -Errno.ENOTTY;
        }
    }

    private void Log(string s)
    {
        lock (IrqLog) IrqLog.Add(s);
    }

    private int AllocMemseg(int segid, ulong len, byte* name, bool compat14)
    {
        if (compat14 && segid != 0) segid += 7; // COMPAT_FREEBSD14: non-sysmem ids move up by 7
        int max = _host.Generation == Native.Vmm.VmmGeneration.FreeBsd14 ? 4 : 11;
        if (segid < 0 || segid >= max || len == 0 || (len & 0xfff) != 0) return -Errno.EINVAL;
        if (name[15] != 0 && new ReadOnlySpan<byte>(name, 16).IndexOf((byte)0) < 0) return -Errno.EINVAL;
        lock (_lock)
        {
            if (_segments.TryGetValue(segid, out ulong existing)) return existing == len ? 0 : -Errno.EEXIST;
            _segments[segid] = len;
        }
        return 0;
    }

    private int MmapMemseg(ulong gpa, int segid, ulong segoff, ulong len, int prot)
    {
        lock (_lock)
        {
            if (!_segments.TryGetValue(segid, out ulong seglen) || segoff + len > seglen || len == 0 || ((gpa | segoff | len) & 0xfff) != 0) return -Errno.EINVAL;
            if (_maps.Count >= (_host.Generation == Native.Vmm.VmmGeneration.FreeBsd14 ? 8 : 22)) return -Errno.ENOMEM;
            // The stand-in's RAM is the soft VM's one region at GPA 0: system memory must be mapped identically.
            if (IsSysmem(segid) && (gpa != segoff || segid != 0)) return -Errno.EINVAL;
            _maps.Add((gpa, segid, segoff, len, prot));
            if (IsSysmem(segid) && Soft is null)
                Soft = (SoftVm)new SoftAccelerator(KernelPlatform.Vmm).CreateVm(new VmSpec(seglen, 1, IrqchipMode.On));
        }
        return 0;
    }
}
