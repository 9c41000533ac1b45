// SoftCpu.EmulateOne, the single-instruction emulator behind the vmm backend's INST_EMUL exits: it runs exactly
// one instruction in the given state, sends accesses outside RAM to the exit handler, returns the new state, and
// reports a fault instead of delivering it. The truth is the x86 semantics of each instruction (SDM vol. 2).
using ActorVmm.Core.Accel;
using ActorVmm.Core.Memory;
using ActorVmm.Native.Soft;

namespace ActorVmm.Native.Tests.Vmm;

public sealed unsafe class EmulateOneTests : IDisposable
{
    private readonly NativeRam _ram = new(0x10000);
    private readonly GuestMemory _memory;
    private readonly Mmio _mmio = new();

    public EmulateOneTests() => _memory = new GuestMemory([new GuestRegion("ram", 0, 0x10000, _ram.Pointer)]);

    public void Dispose() => _ram.Dispose();

    private sealed class Mmio : IExitHandler
    {
        public readonly List<string> Log = [];
        public void PortRead(ushort port, Span<byte> data) => data.Fill(0xff);
        public void PortWrite(ushort port, ReadOnlySpan<byte> data) { }
        public void MmioRead(ulong gpa, Span<byte> data)
        {
            Log.Add($"read {gpa:x} {data.Length}");
            for (int i = 0; i < data.Length; i++) data[i] = (byte)(0x10 + i);
        }
        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data) => Log.Add($"write {gpa:x} {Convert.ToHexString(data)}");
        public bool MsrRead(uint msr, out ulong value) { value = 0; return false; }
        public bool MsrWrite(uint msr, ulong value) => false;
    }

    /// <summary>32-bit flat protected mode, no paging, code at 0x1000.</summary>
    private static (CpuRegisters, SystemRegisters) Flat32()
    {
        var s = SystemRegisters.PowerOn();
        s.Cr0 = 0x11;
        s.Cs = SegmentRegister.Make(0x08, 0, 0xffff_ffff, 0xb, s: true, dpl: 0, l: false, db: true, g: true);
        var data = SegmentRegister.Make(0x10, 0, 0xffff_ffff, 0x3, s: true, dpl: 0, l: false, db: true, g: true);
        s.Ds = data; s.Es = data; s.Ss = data; s.Fs = data; s.Gs = data;
        return (new CpuRegisters { Rip = 0x1000, Rflags = 2 }, s);
    }

    [Fact]
    public void A_load_from_mmio_reads_the_device_and_advances_rip_past_the_one_instruction()
    {
        _memory.Write(0x1000, [0x8B, 0x05, 0x00, 0x00, 0xD0, 0xFE, 0x90]); // mov eax, [0xfed00000]; nop
        var (r, s) = Flat32();
        r.Rax = 0xffff_ffff_0000_0000;
        var cpu = new SoftCpu(_memory, _mmio);
        var result = cpu.EmulateOne(ref r, ref s);
        Assert.Equal(EmulationOutcome.Retired, result.Outcome);
        Assert.Equal(0x13121110UL, r.Rax); // a 32-bit load zero-extends
        Assert.Equal(0x1006UL, r.Rip);
        Assert.Equal(["read fed00000 4"], _mmio.Log);
    }

    [Fact]
    public void A_read_modify_write_reads_then_writes_and_sets_flags()
    {
        _memory.Write(0x1000, [0x80, 0x35, 0x00, 0x00, 0xD0, 0xFE, 0x10]); // xor byte [0xfed00000], 0x10
        var (r, s) = Flat32();
        var result = new SoftCpu(_memory, _mmio).EmulateOne(ref r, ref s);
        Assert.Equal(EmulationOutcome.Retired, result.Outcome);
        Assert.Equal(["read fed00000 1", "write fed00000 00"], _mmio.Log);
        Assert.NotEqual(0UL, r.Rflags & 0x40); // ZF: 0x10 ^ 0x10 = 0
    }

    [Fact]
    public void A_fault_is_reported_not_delivered_and_leaves_rip_on_the_instruction()
    {
        _memory.Write(0x1000, [0x8B, 0x00]); // mov eax, [eax]
        var (r, s) = Flat32();
        s.Ds = SegmentRegister.Make(0x10, 0, 0xfff, 0x3, s: true, dpl: 0, l: false, db: true, g: false); // 4 KiB limit
        r.Rax = 0x2000;
        var result = new SoftCpu(_memory, _mmio).EmulateOne(ref r, ref s);
        Assert.Equal(new EmulationResult(EmulationOutcome.Fault, 13, 0), result);
        Assert.Equal(0x1000UL, r.Rip);
        Assert.Empty(_mmio.Log);
    }

    [Fact]
    public void A_page_fault_reports_the_error_code_and_sets_cr2()
    {
        // 32-bit paging with an empty page directory at 0x4000: every linear address is not present.
        _memory.Write(0x1000, [0x8B, 0x00]); // mov eax, [eax]
        var (r, s) = Flat32();
        // Identity-map the code page through a page table so the fetch works; leave 0x00400000+ unmapped.
        _memory.WriteObject<uint>(0x4000, 0x5003);          // PDE 0 -> page table at 0x5000, present, writable
        _memory.WriteObject<uint>(0x5000 + 1 * 4, 0x1003);  // PTE 1 -> page 0x1000
        s.Cr3 = 0x4000;
        s.Cr0 = 0x8000_0011;
        r.Rax = 0x0040_0000;
        var result = new SoftCpu(_memory, _mmio).EmulateOne(ref r, ref s);
        Assert.Equal(new EmulationResult(EmulationOutcome.Fault, 14, 0), result); // not present, read, supervisor
        Assert.Equal(0x0040_0000UL, s.Cr2);
    }
}
