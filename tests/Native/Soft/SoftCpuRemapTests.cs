using ActorVmm.Core.Accel;
using ActorVmm.Core.Memory;
using ActorVmm.Native.Soft;
using Iced.Intel;

namespace ActorVmm.Native.Tests.Soft;

/// <summary>
/// The guest memory map changes under a running CPU (ROM shadowing through PAM): the very next instruction after the
/// port write that remapped must fetch and store through the new map, not through cached code or a cached region.
/// </summary>
public sealed unsafe class SoftCpuRemapTests : IDisposable
{
    private readonly NativeRam _low = new(0x2000);
    private readonly NativeRam _ram = new(0x1000);
    private readonly NativeRam _rom = new(0x1000);

    public void Dispose()
    {
        _low.Dispose();
        _ram.Dispose();
        _rom.Dispose();
    }

    /// <summary>Port 0x99 swaps the window at 0x2000 from RAM to ROM, as a PAM write does.</summary>
    private sealed class RemapOnPort(GuestMemory memory, GuestRegion from, GuestRegion to) : IExitHandler
    {
        public void PortRead(ushort port, Span<byte> data) => data.Fill(0xff);
        public void PortWrite(ushort port, ReadOnlySpan<byte> data)
        {
            if (port == 0x99) memory.Remap([from], [to]);
        }
        public void MmioRead(ulong gpa, Span<byte> data) => data.Fill(0xff);
        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data) { }
        public bool MsrRead(uint msr, out ulong value) { value = 0; return false; }
        public bool MsrWrite(uint msr, ulong value) => false;
    }

    private static byte[] Assemble(ulong at, Action<Assembler> build)
    {
        var a = new Assembler(16);
        build(a);
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), at);
        return ms.ToArray();
    }

    [Fact]
    public void After_a_remap_the_next_store_and_fetch_use_the_new_map()
    {
        var ramWindow = new GuestRegion("win-ram", 0x2000, 0x1000, _ram.Pointer);
        var romWindow = new GuestRegion("win-rom", 0x2000, 0x1000, _rom.Pointer, readOnly: true);
        var memory = new GuestMemory([new GuestRegion("low", 0, 0x2000, _low.Pointer), ramWindow]);
        // The same address holds different code in the two blocks: mov ax,1 / mov ax,2, then ret.
        Assemble(0x2000, a => { a.mov(AssemblerRegisters.ax, 1); a.ret(); }).CopyTo(new Span<byte>(_ram.Pointer, 16));
        Assemble(0x2000, a => { a.mov(AssemblerRegisters.ax, 2); a.ret(); }).CopyTo(new Span<byte>(_rom.Pointer, 16));
        var program = Assemble(0x1000, a =>
        {
            a.call(0x2000);
            a.mov(AssemblerRegisters.cx, AssemblerRegisters.ax);
            a.mov(AssemblerRegisters.__byte_ptr[0x2100], 0x55); // RAM window: lands in the RAM block
            a.@out(0x99, AssemblerRegisters.al);                // now the ROM block answers at 0x2000
            a.mov(AssemblerRegisters.__byte_ptr[0x2100], 0x66); // ROM: dropped
            a.call(0x2000);
            a.hlt();
        });
        memory.Write(0x1000, program);
        var cpu = new SoftCpu(memory, new RemapOnPort(memory, ramWindow, romWindow));
        var sys = SystemRegisters.PowerOn();
        sys.Cs = SegmentRegister.RealMode(0, code: true);
        cpu.SetSystemRegisters(sys);
        cpu.SetRegisters(new CpuRegisters { Rip = 0x1000, Rsp = 0x1f00, Rflags = 2 });
        for (int i = 0; i < 100 && cpu.Step() != StepOutcome.Halted; i++) { }
        var regs = cpu.GetRegisters();
        Assert.Equal(1UL, regs.Rcx & 0xffff);  // the first call ran the RAM block's code
        Assert.Equal(2UL, regs.Rax & 0xffff);  // the second the ROM block's: no stale decoded instruction
        Assert.Equal(0x55, _ram.Pointer[0x100]);
        Assert.Equal(0, _rom.Pointer[0x100]);  // the store after the remap did not reach either block
    }
}
