// Zeroed host memory for guest RAM when the accelerator does not supply its own mapping (the soft CPU, tests).
// calloc hands out large blocks as fresh anonymous mappings, so untouched guest pages cost no host memory.
using System.Runtime.InteropServices;

namespace ActorVmm.Core.Memory;

/// <summary>Owns one zeroed block of native memory; free it by disposing.</summary>
public sealed unsafe class NativeRam : IDisposable
{
    private byte* _ptr;

    public NativeRam(ulong size)
    {
        if (size == 0) throw new ArgumentOutOfRangeException(nameof(size));
        Size = size;
        _ptr = (byte*)NativeMemory.AllocZeroed((nuint)size);
    }

    public ulong Size { get; }

    public byte* Pointer => _ptr != null ? _ptr : throw new ObjectDisposedException(nameof(NativeRam));

    public void Dispose()
    {
        if (_ptr != null)
        {
            NativeMemory.Free(_ptr);
            _ptr = null;
        }
    }
}
