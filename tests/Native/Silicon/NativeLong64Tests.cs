// The 64-bit native runner on its own, against values computed from the SDM's definitions (no soft CPU involved).
namespace ActorVmm.Native.Tests.Silicon;

// Shares the one mapping with SiliconLong64Tests, so the two never run at the same time.
[Collection(NativeLong64.Collection)]
public sealed unsafe class NativeLong64Tests
{
    [NativeLong64Fact]
    public void Runs_64_bit_code_natively_and_returns_all_sixteen_registers_and_flags()
    {
        ulong at = NativeLong64.Base + NativeLong64.CodeOffset;
        byte[] prologue = NativeLong64.Prologue(at);
        byte[] insn = [0x4d, 0x01, 0xc7]; // add r15, r8
        byte[] epilogue = NativeLong64.Epilogue(at + (ulong)prologue.Length + (ulong)insn.Length, 7);
        var code = new Span<byte>(NativeLong64.Pointer + NativeLong64.CodeOffset, (int)NativeLong64.CodeSize);
        prologue.CopyTo(code);
        insn.CopyTo(code[prologue.Length..]);
        epilogue.CopyTo(code[(prologue.Length + insn.Length)..]);
        ulong* s = NativeLong64.State;
        for (int r = 0; r < 16; r++) s[r] = 0x0101_0101_0101_0101UL * (ulong)r;
        s[4] = NativeLong64.Base + NativeLong64.StackTop - 0x200;
        s[8] = 0x8000_0000_0000_0000; // r8
        s[15] = 0x8000_0000_0000_0001; // r15
        s[NativeLong64.InFlags] = 0x202;
        NativeLong64.Run(at);
        // 0x8000...0001 + 0x8000...0000 = 1 with a carry out and a signed overflow (two negatives give a positive).
        Assert.Equal(1UL, s[NativeLong64.OutRegs + 15]);
        Assert.Equal(0x0d0d_0d0d_0d0d_0d0dUL, s[NativeLong64.OutRegs + 13]);
        Assert.Equal(s[4], s[NativeLong64.OutRegs + 4]);
        Assert.Equal(7UL, s[NativeLong64.Marker]);
        Assert.Equal(0x801UL, s[NativeLong64.OutFlags] & 0x8c5); // OF and CF; ZF, SF, PF clear
    }

    [NativeLong64Fact]
    public void Loads_and_returns_xmm_registers_and_mxcsr_and_gives_the_host_its_mxcsr_back()
    {
        ulong at = NativeLong64.Base + NativeLong64.CodeOffset;
        byte[] prologue = NativeLong64.Prologue(at);
        byte[] insn = [0x41, 0x0f, 0x58, 0xdc]; // addps xmm3, xmm12
        byte[] epilogue = NativeLong64.Epilogue(at + (ulong)prologue.Length + (ulong)insn.Length, 0);
        var code = new Span<byte>(NativeLong64.Pointer + NativeLong64.CodeOffset, (int)NativeLong64.CodeSize);
        prologue.CopyTo(code);
        insn.CopyTo(code[prologue.Length..]);
        epilogue.CopyTo(code[(prologue.Length + insn.Length)..]);
        ulong* s = NativeLong64.State;
        s[4] = NativeLong64.Base + NativeLong64.StackTop - 0x200;
        s[NativeLong64.InFlags] = 0x202;
        for (int r = 0; r < 16; r++) NativeLong64.XmmIn[r] = new UInt128(0x1111_1111_1111_1111UL * (ulong)r, ~(ulong)r);
        // 1 + 2^-24 in each lane: a tie, which rounding down (RC = 01) takes to 1 with PE; DAZ, FTZ and ZE's flag set.
        NativeLong64.XmmIn[3] = new UInt128(0x3f80_0000_3f80_0000, 0x3f80_0000_3f80_0000);
        NativeLong64.XmmIn[12] = new UInt128(0x3380_0000_3380_0000, 0x3380_0000_3380_0000);
        NativeLong64.MxcsrIn = 0x1f80 | 0x2000 | 0x8000 | 0x40 | 0x4;
        NativeLong64.Run(at);
        uint host = NativeLong64.HostMxcsr;
        Assert.Equal(new UInt128(0x3f80_0000_3f80_0000, 0x3f80_0000_3f80_0000), NativeLong64.XmmOut[3]);
        for (int r = 0; r < 16; r++)
        {
            if (r != 3) Assert.Equal(NativeLong64.XmmIn[r], NativeLong64.XmmOut[r]);
        }
        Assert.Equal(0x1f80u | 0x2000 | 0x8000 | 0x40 | 0x4 | 0x20, NativeLong64.MxcsrOut);
        // The next run finds the MXCSR the runtime had before the first: the exit restored it.
        NativeLong64.MxcsrIn = 0x1f80;
        NativeLong64.Run(at);
        Assert.Equal(host, NativeLong64.HostMxcsr);
        Assert.Equal(0x1f80u, host & 0xffc0); // the runtime's own: round to nearest, all masked, no DAZ or FTZ
    }
}
