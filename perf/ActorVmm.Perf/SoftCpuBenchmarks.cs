// Software CPU throughput (DESIGN.md §10 budget: ≥ 100 MIPS interpreted) on integer loops in flat 32-bit
// protected mode. Each benchmark operation runs a fixed number of guest instructions, so BenchmarkDotNet's
// time per operation converts directly to instructions per second (MIPS = InstructionsPerOp / ns-per-op * 1000).
using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Memory;
using ActorVmm.Native.Soft;
using BenchmarkDotNet.Attributes;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace ActorVmm.Perf;

[MemoryDiagnoser]
public unsafe class SoftCpuBenchmarks
{
    /// <summary>Guest instructions per benchmark operation.</summary>
    public const int InstructionsPerOp = 1_000_000;

    private const ulong CodeAddress = 0x10_0000;
    private const ulong DataAddress = 0x20_0000;

    private NativeRam _ram = null!;
    private SoftCpu _cpu = null!;
    private int _stop;

    [Params("alu", "memory", "branchy")]
    public string Loop { get; set; } = "alu";

    [GlobalSetup]
    public void Setup()
    {
        _ram = new NativeRam(16 << 20);
        var memory = new GuestMemory([new GuestRegion("ram", 0, _ram.Size, _ram.Pointer)]);
        var a = new Assembler(32);
        var top = a.CreateLabel();
        a.Label(ref top);
        switch (Loop)
        {
            case "alu": // register arithmetic, the shape of a checksum loop
                a.add(eax, ebx);
                a.xor(ebx, ecx);
                a.shl(ecx, 1);
                a.adc(edx, eax);
                a.inc(esi);
                a.sub(edi, 3);
                a.jmp(top);
                break;
            case "memory": // loads and stores through the segment and RAM fast paths
                a.mov(eax, __dword_ptr[esi]);
                a.add(__dword_ptr[esi + 4], eax);
                a.mov(__dword_ptr[esi + 8], ebx);
                a.inc(ebx);
                a.and(esi, 0xfff);
                a.add(esi, (int)DataAddress);
                a.jmp(top);
                break;
            default: // compare and conditional branches
                var skip = a.CreateLabel();
                a.inc(eax);
                a.test(eax, 1);
                a.jz(skip);
                a.add(ebx, eax);
                a.Label(ref skip);
                a.cmp(eax, ecx);
                a.jne(top);
                a.xor(eax, eax);
                a.jmp(top);
                break;
        }
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), CodeAddress);
        memory.Write(CodeAddress, stream.ToArray());

        _cpu = new SoftCpu(memory, new ExitDispatcher(new BusBuilder().Build()));
        var code = SegmentRegister.Make(0x08, 0, 0xffff_ffff, type: 0xb, s: true, dpl: 0, l: false, db: true, g: true);
        var data = SegmentRegister.Make(0x10, 0, 0xffff_ffff, type: 0x3, s: true, dpl: 0, l: false, db: true, g: true);
        _cpu.SetSystemRegisters(new SystemRegisters { Cs = code, Ds = data, Es = data, Fs = data, Gs = data, Ss = data, Cr0 = 0x11 });
        _cpu.SetRegisters(new CpuRegisters { Rip = CodeAddress, Rflags = 2, Rsi = DataAddress, Rcx = 1000, Rsp = 0x8000 });
    }

    [GlobalCleanup]
    public void Cleanup() => _ram.Dispose();

    [Benchmark(OperationsPerInvoke = InstructionsPerOp, Description = "guest instruction (soft CPU)")]
    public ulong Run()
    {
        _cpu.Run(InstructionsPerOp, ref _stop);
        return _cpu.InstructionsRetired;
    }
}
