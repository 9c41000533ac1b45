// The KVM backend. Tests that need /dev/kvm run only where it is usable and are reported as skipped, with the
// probe's reason, elsewhere; the probe, the segment conversion and the layout tests (KvmAbiLayoutTests) always run.
using System.Text;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Machine;
using ActorVmm.Native.Kvm;
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Tests.Kvm;

/// <summary>A fact that needs a usable /dev/kvm; skipped with the probe's reason otherwise.</summary>
public sealed class KvmFactAttribute : FactAttribute
{
    public KvmFactAttribute()
    {
        var a = KvmAccelerator.Probe(HostKernel.Instance);
        if (!a.Usable) Skip = $"KVM not usable here: {a.Detail}";
    }
}

public sealed class KvmBackendTests
{
    private sealed class Recorder : IExitHandler
    {
        public readonly List<string> Events = [];
        public readonly List<byte> Outs = [];
        public readonly Queue<byte> Ins = new("xyz"u8.ToArray());

        public void PortRead(ushort port, Span<byte> data)
        {
            if (port == 0xe1) data[0] = Ins.Dequeue();
            else
            {
                Events.Add($"in {port:x} {data.Length}");
                data.Fill(0x7f);
            }
        }

        public void PortWrite(ushort port, ReadOnlySpan<byte> data)
        {
            if (port == 0xe0) Outs.AddRange(data.ToArray());
            else Events.Add($"out {port:x} {Convert.ToHexString(data)}");
        }

        public void MmioRead(ulong gpa, Span<byte> data)
        {
            Events.Add($"mmio-read {gpa:x} {data.Length}");
            BitConverter.TryWriteBytes(data, 0xCAFEBABEu);
        }

        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data) => Events.Add($"mmio-write {gpa:x} {Convert.ToHexString(data)}");

        public bool MsrRead(uint msr, out ulong value)
        {
            value = 0;
            return false;
        }

        public bool MsrWrite(uint msr, ulong value) => false;
    }

    [Fact]
    public void The_probe_says_whether_kvm_is_usable_and_why_not()
    {
        var a = KvmAccelerator.Probe(HostKernel.Instance);
        if (OperatingSystem.IsLinux() && !File.Exists(KvmAccelerator.Device))
        {
            Assert.False(a.Usable);
            Assert.Contains("no /dev/kvm", a.Detail);
        }
        if (a.Usable) Assert.Contains(IrqchipMode.Off, a.Modes);
        else Assert.Empty(a.Modes);
    }

    [Fact]
    public void Segments_convert_to_kvm_segment_fields_and_back()
    {
        var code64 = SegmentRegister.Make(0x08, 0, 0xffff_ffff, 0xb, s: true, dpl: 0, l: true, db: false, g: true);
        var k = KvmVcpu.ToKvm(code64);
        Assert.Equal((11, 1, 0, 1, 1, 0, 1, 0), (k.Type, k.S, k.Dpl, k.Present, k.L, k.Db, k.G, k.Unusable));
        Assert.Equal(code64, KvmVcpu.FromKvm(k));
        var nul = KvmVcpu.ToKvm(default);
        Assert.Equal(1, nul.Unusable);
        Assert.False(KvmVcpu.FromKvm(nul).Present);
    }

    [KvmFact]
    public void Port_string_and_mmio_exits_complete_in_real_mode()
    {
        byte[] program =
        [
            0xBA, 0x80, 0x00, 0xB0, 0x41, 0xEE, 0xEC, 0x66, 0x89, 0xC5,       // mov dx,0x80; mov al,0x41; out dx,al; in al,dx; mov ebp,eax
            0xBA, 0xE0, 0x00, 0xBE, 0x00, 0x20, 0xB9, 0x14, 0x00, 0xFC, 0xF3, 0x6E, // rep outsb (20 bytes) to 0xe0
            0xBA, 0xE1, 0x00, 0xBF, 0x00, 0x30, 0xB9, 0x03, 0x00, 0xF3, 0x6C, // rep insb (3 bytes) from 0xe1
            0xB8, 0x00, 0x90, 0x8E, 0xD8, 0x66, 0x8B, 0x1E, 0x10, 0x00,       // ds = 0x9000; mov ebx, [0x10]
            0xFA, 0xF4,                                                       // cli; hlt
        ];
        using var vm = new KvmAccelerator(HostKernel.Instance).CreateVm(new VmSpec(0x80000, 1, IrqchipMode.Off));
        vm.Memory.Write(0x1000, program);
        vm.Memory.Write(0x2000, "ABCDEFGHIJKLMNOPQRST"u8);
        var vcpu = vm.CreateVcpu(0);
        var sys = vcpu.GetSystemRegisters();
        sys.Cs = SegmentRegister.RealMode(0, code: true);
        vcpu.SetSystemRegisters(sys);
        vcpu.SetRegisters(new CpuRegisters { Rip = 0x1000, Rflags = 2, Rax = 0xAABBCC00 });
        var h = new Recorder();
        Assert.Equal(VcpuExitKind.Halted, vcpu.Run(h).Kind);
        Assert.Equal(["out 80 41", "in 80 1", "mmio-read 90010 4"], h.Events);
        Assert.Equal("ABCDEFGHIJKLMNOPQRST", Encoding.ASCII.GetString([.. h.Outs]));
        var mem = new byte[3];
        vm.Memory.Read(0x3000, mem);
        Assert.Equal("xyz", Encoding.ASCII.GetString(mem));
        Assert.Equal(0xAABBCC7FUL, vcpu.GetRegisters().Rbp);
        Assert.Equal(0xCAFEBABEUL, vcpu.GetRegisters().Rbx);
    }

    [KvmFact]
    public void A_kick_from_another_thread_ends_run()
    {
        using var vm = new KvmAccelerator(HostKernel.Instance).CreateVm(new VmSpec(0x80000, 1, IrqchipMode.On));
        vm.Memory.Write(0x1000, [0xEB, 0xFE]);
        var vcpu = vm.CreateVcpu(0);
        var sys = vcpu.GetSystemRegisters();
        sys.Cs = SegmentRegister.RealMode(0, code: true);
        vcpu.SetSystemRegisters(sys);
        vcpu.SetRegisters(new CpuRegisters { Rip = 0x1000, Rflags = 2 });
        using var kicker = new Timer(_ => vcpu.Kick(), null, 50, Timeout.Infinite);
        Assert.Equal(VcpuExitKind.Kicked, vcpu.Run(new Recorder()).Kind);
    }
}
