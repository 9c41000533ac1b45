using ActorVmm.Core.Accel;
using ActorVmm.Core.Memory;
using ActorVmm.Native.Soft;
using Iced.Intel;

namespace ActorVmm.Native.Tests.Soft;

/// <summary>Records every port and MMIO exit; answers reads from a fixed byte pattern.</summary>
internal sealed class FakeExits : IExitHandler
{
    public readonly List<(ushort Port, int Width, uint Data)> PortWrites = [];
    public readonly List<(ushort Port, int Width)> PortReads = [];
    public readonly List<(ulong Gpa, int Width, ulong Data)> MmioWrites = [];
    public readonly List<(ulong Gpa, int Width)> MmioReads = [];
    public uint PortReadValue = 0x12345678;
    public ulong MmioReadValue = 0x1122334455667788;

    private static ulong Pack(ReadOnlySpan<byte> d) { ulong v = 0; for (int i = d.Length - 1; i >= 0; i--) v = (v << 8) | d[i]; return v; }
    private static void Fill(Span<byte> d, ulong v) { for (int i = 0; i < d.Length; i++) d[i] = (byte)(v >> (8 * i)); }

    public void PortRead(ushort port, Span<byte> data) { PortReads.Add((port, data.Length)); Fill(data, PortReadValue); }
    public void PortWrite(ushort port, ReadOnlySpan<byte> data) => PortWrites.Add((port, data.Length, (uint)Pack(data)));
    public void MmioRead(ulong gpa, Span<byte> data) { MmioReads.Add((gpa, data.Length)); Fill(data, MmioReadValue); }
    public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data) => MmioWrites.Add((gpa, data.Length, Pack(data)));
    public bool MsrRead(uint msr, out ulong value) { value = 0; return false; }
    public bool MsrWrite(uint msr, ulong value) => false;
}

/// <summary>A soft CPU in flat 32-bit protected mode over 1 MiB of RAM at 0.</summary>
internal sealed unsafe class SoftCpuHarness : IDisposable
{
    public const uint Code = 0x1000, Idt = 0x800, Gdt = 0x400, Data = 0x10000, Stack = 0x80000, Handler = 0x3000;
    public const ulong RamSize = 1 << 20;

    private readonly NativeRam _ram = new(RamSize);
    public readonly GuestMemory Memory;
    public readonly FakeExits Exits = new();
    public readonly SoftCpu Cpu;

    public SoftCpuHarness()
    {
        Memory = new GuestMemory([new GuestRegion("ram", 0, RamSize, _ram.Pointer)]);
        Cpu = new SoftCpu(Memory, Exits);
        var code = SegmentRegister.Make(0x08, 0, 0xffffffff, 0xb, s: true, dpl: 0, l: false, db: true, g: true);
        var data = SegmentRegister.Make(0x10, 0, 0xffffffff, 0x3, s: true, dpl: 0, l: false, db: true, g: true);
        // GDT: null, flat code 0x08, flat data 0x10, not-present data 0x18.
        Memory.WriteObject(Gdt + 0x08, 0x00cf9b000000ffffUL);
        Memory.WriteObject(Gdt + 0x10, 0x00cf93000000ffffUL);
        Memory.WriteObject(Gdt + 0x18, 0x00cf13000000ffffUL);
        var sys = SystemRegisters.PowerOn();
        sys.Cs = code; sys.Ds = data; sys.Es = data; sys.Ss = data; sys.Fs = data; sys.Gs = data;
        sys.Cr0 = 0x11;
        sys.Gdtr = new DescriptorTableRegister { Base = Gdt, Limit = 0x1f };
        sys.Idtr = new DescriptorTableRegister { Base = Idt, Limit = 0xff * 8 + 7 };
        Cpu.SetSystemRegisters(sys);
        var regs = new CpuRegisters { Rip = Code, Rsp = Stack, Rflags = 0x2 };
        Cpu.SetRegisters(regs);
    }

    /// <summary>Writes a 32-bit gate (interrupt 0xE or trap 0xF) for a vector.</summary>
    public void SetGate(int vector, uint target, bool trap = false, bool present = true)
    {
        ulong type = trap ? 0xfUL : 0xeUL;
        ulong d = (target & 0xffffUL) | (0x08UL << 16) | ((type | (present ? 0x80UL : 0)) << 40) | ((ulong)(target >> 16) << 48);
        Memory.WriteObject(Idt + (ulong)vector * 8, d);
    }

    public void Load(uint at, Action<Assembler> build)
    {
        var a = new Assembler(32);
        build(a);
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), at);
        Memory.Write(at, ms.ToArray());
    }

    /// <summary>Assembles the program at <see cref="Code"/> followed by HLT.</summary>
    public void Program(Action<Assembler> build) => Load(Code, a => { build(a); a.hlt(); });

    public CpuRegisters Regs { get => Cpu.GetRegisters(); set => Cpu.SetRegisters(value); }

    public void Set(Func<CpuRegisters, CpuRegisters> f) => Regs = f(Regs);

    /// <summary>Steps until HLT (or a step budget). Returns the last outcome.</summary>
    public StepOutcome RunToHalt(int maxSteps = 100_000)
    {
        for (int i = 0; i < maxSteps; i++)
        {
            var o = Cpu.Step();
            if (o is StepOutcome.Halted or StepOutcome.Shutdown) return o;
        }
        throw new Xunit.Sdk.XunitException("program did not halt");
    }

    public uint Read32(ulong gpa) => Memory.ReadObject<uint>(gpa);

    public void Dispose() => _ram.Dispose();
}
