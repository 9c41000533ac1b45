// What every kernel format the host can boot has in common, so the host and the VM actor can carry "a
// kernel" without knowing its format; LinuxBoot.Load and MultibootLoader.Load do the format-specific work.
namespace ActorVmm.Core.Boot;

/// <summary>A parsed, validated kernel image.</summary>
public interface IKernelImage
{
    /// <summary>The file name, as errors and logs name it.</summary>
    string Name { get; }

    /// <summary>The format in words ("Multiboot v1 ELF32", "Linux bzImage (boot protocol 2.15)", ...).</summary>
    string Format { get; }
}
