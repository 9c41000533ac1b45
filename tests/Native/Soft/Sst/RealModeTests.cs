// Real-mode behaviour of the default (386+) soft CPU model, against the SDM (Vol. 3, 20.1.4 "Interrupt and
// Exception Handling" in real-address mode; Vol. 2 JMP/Jcc operation with 16-bit operand size).
using System.Runtime.InteropServices;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Memory;
using ActorVmm.Native.Soft;

namespace ActorVmm.Native.Tests.Soft.Sst;

public sealed unsafe class RealModeTests : IDisposable
{
    private const int RamSize = 2 << 20;
    private readonly byte* _ram = (byte*)NativeMemory.AllocZeroed(RamSize);
    private readonly SoftCpu _cpu;

    public RealModeTests() => _cpu = new SoftCpu(new GuestMemory([new GuestRegion("ram", 0, RamSize, _ram)]), new ExitDispatcher(new BusBuilder().Build()));

    public void Dispose() => NativeMemory.Free(_ram);

    private void Start(ushort cs, ushort ip, ushort ss, ushort sp, ulong flags)
    {
        var sys = SystemRegisters.PowerOn();
        sys.Cs = SegmentRegister.RealMode(cs, code: true);
        sys.Ss = SegmentRegister.RealMode(ss);
        sys.Cr0 = 0x10;
        sys.Idtr = new DescriptorTableRegister { Base = 0, Limit = 0x3ff };
        _cpu.SetSystemRegisters(sys);
        _cpu.SetRegisters(new CpuRegisters { Rip = ip, Rsp = sp, Rflags = flags });
    }

    private void Put(uint at, params byte[] bytes)
    {
        for (int k = 0; k < bytes.Length; k++) _ram[at + k] = bytes[k];
    }

    private ushort Word(uint at) => (ushort)(_ram[at] | _ram[at + 1] << 8);

    private void RunToHalt()
    {
        for (int n = 0; n < 100 && !_cpu.IsHalted; n++) _cpu.Step();
        Assert.True(_cpu.IsHalted);
    }

    [Fact]
    public void SoftwareInterruptPushesFlagsCsIpAndClearsOnlyIfTfAc()
    {
        const uint Cf = 1, Af = 0x10, If = 0x200, Ac = 0x40000;
        Put(0x21 * 4, 0x78, 0x56, 0x00, 0x20);        // IVT[0x21] = 2000:5678
        Put(0x25678, 0xf4);                           // handler: HLT
        Put(0x12340 + 0x10, 0xcd, 0x21);              // 1234:0010 INT 21h
        Start(0x1234, 0x10, 0x3000, 0x100, 0x2 | Cf | Af | If | Ac);
        RunToHalt();
        var r = _cpu.GetRegisters();
        Assert.Equal(0x2000, _cpu.GetSystemRegisters().Cs.Selector);
        Assert.Equal(0x5679UL, r.Rip);
        Assert.Equal(0xfaUL, r.Rsp);
        Assert.Equal((ulong)(0x2 | Cf | Af), r.Rflags & 0xffff_ffff); // IF, TF, AC cleared; arithmetic flags kept
        Assert.Equal(0x12, Word(0x300fa));            // IP of the next instruction
        Assert.Equal(0x1234, Word(0x300fc));          // CS
        Assert.Equal((ushort)(0x2 | Cf | Af | If), Word(0x300fe)); // FLAGS low 16 bits
    }

    [Fact]
    public void DivideErrorPushesTheFaultingInstruction()
    {
        Put(0 * 4, 0x00, 0x01, 0x00, 0x00);           // IVT[0] = 0000:0100
        Put(0x100, 0xf4);
        Put(0x10010 + 0x20, 0x26, 0xf6, 0xf3);        // 1001:0020 ES: DIV BL (BL = 0)
        Start(0x1001, 0x20, 0x3000, 0x100, 0x2);
        RunToHalt();
        Assert.Equal(0x20, Word(0x300fa));            // first prefix byte of the faulting DIV
        Assert.Equal(0x1001, Word(0x300fc));
    }

    [Fact]
    public void NearBranchWrapsWithinTheSegmentWhateverTheBase()
    {
        // CS base 0x10010 is not 64 KiB aligned: JMP short from FFF0 lands at offset 0012, base + 0x12.
        Put(0x10010 + 0xfff0, 0xeb, 0x20);            // JMP short +0x20 -> (FFF2 + 20) & FFFF = 0012
        Put(0x10010 + 0x12, 0xf4);
        Start(0x1001, 0xfff0, 0x3000, 0x100, 0x2);
        RunToHalt();
        Assert.Equal(0x13UL, _cpu.GetRegisters().Rip);
        Assert.Null(_cpu.LastException);
    }

    [Theory]
    [InlineData(new byte[] { 0x66, 0x40 })]             // INC EAX: operand-size prefix
    [InlineData(new byte[] { 0x64, 0x8b, 0x07 })]       // MOV AX,FS:[BX]
    [InlineData(new byte[] { 0x67, 0x8b, 0x03 })]       // MOV AX,[EBX]: address-size prefix
    [InlineData(new byte[] { 0x0f, 0xb6, 0xc3 })]       // MOVZX AX,BL (386)
    public void Model286RaisesUdForInstructionsItDoesNotHave(byte[] code)
    {
        // 80286 Programmer's Reference: undefined opcodes raise interrupt 6; the 386+ executes the same bytes.
        foreach (bool is286 in new[] { false, true })
        {
            _cpu.Model286 = is286;
            Put(6 * 4, 0x00, 0x02, 0x00, 0x00);       // IVT[6] = 0000:0200
            Put(0x200, 0xf4);
            Put(0x10000, code);
            Put(0x10000 + (uint)code.Length, 0xf4);
            Start(0x1000, 0, 0x3000, 0x100, 0x2);
            _cpu.ClearLastException();
            RunToHalt();
            Assert.Equal(is286 ? (byte?)6 : null, _cpu.LastException?.Vector);
        }
    }
}
