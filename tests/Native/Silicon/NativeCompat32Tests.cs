// The native runner on its own, against values computed from the SDM's definitions (no soft CPU involved).
namespace ActorVmm.Native.Tests.Silicon;

// Shares the one low mapping with SiliconTests, so the two never run at the same time.
[Collection(NativeCompat32.Collection)]
public sealed unsafe class NativeCompat32Tests
{
    [NativeCompatFact]
    public void Runs_daa_in_compatibility_mode_and_returns_registers_and_flags()
    {
        uint at = NativeCompat32.Base + NativeCompat32.CodeOffset;
        byte[] prologue = NativeCompat32.Prologue(at);
        byte[] insn = [0x27]; // DAA, invalid in 64-bit mode
        byte[] epilogue = NativeCompat32.Epilogue(at + (uint)prologue.Length + 1, 0);
        var code = new Span<byte>(NativeCompat32.Pointer + NativeCompat32.CodeOffset, 0x1000);
        prologue.CopyTo(code);
        insn.CopyTo(code[prologue.Length..]);
        epilogue.CopyTo(code[(prologue.Length + 1)..]);
        uint* s = NativeCompat32.State;
        // 0x19 + 0x09 in binary gives AL = 0x22 with AF set (carry out of the low nibble); DAA then adds 6: 0x28.
        s[0] = 0x1122_3322;
        s[4] = NativeCompat32.Base + NativeCompat32.StackTop - 0x200;
        s[NativeCompat32.InFlags] = 0x212; // IF, AF
        NativeCompat32.Run(at);
        Assert.Equal(0x1122_3328u, s[NativeCompat32.OutRegs]);
        Assert.Equal(0u, s[NativeCompat32.OutFlags] & 1); // CF clear: no decimal carry
        Assert.Equal(0x10u, s[NativeCompat32.OutFlags] & 0x10); // AF set: low nibble adjusted
    }
}

/// <summary>A fact that is skipped, with the reason, where the host cannot run compatibility-mode code natively.</summary>
public sealed class NativeCompatFactAttribute : FactAttribute
{
    public NativeCompatFactAttribute()
    {
        if (!NativeCompat32.Available) Skip = $"not run on this host: {NativeCompat32.UnavailableReason}";
    }
}
