// Recognises what -kernel names, in this order: a bzImage (boot flag 0xaa55 and "HdrS" at 0x202), a
// Multiboot v1 kernel (a valid header in the first 8 KiB), an ELF with a PVH note; anything else is refused
// with the reasons each format gave. For a bzImage the Linux boot mode decides how it will be entered:
//   Pvh      the vmlinux is taken out of the payload on the host (LinuxPayload) and entered through PVH;
//            failing that is an error;
//   BzImage  the 64-bit entry: the kernel decompresses itself in the guest;
//   Auto     (the default) Pvh when the payload yields a vmlinux with a PVH note, else BzImage, with a note
//            saying why. On the soft accelerator PVH skips the kernel's own decompressor, which is most of
//            the boot's instructions (4.5 G of 6.5 G for Debian's XZ kernel; guests.md §0).
namespace ActorVmm.Core.Boot;

/// <summary>How a bzImage is entered.</summary>
public enum LinuxBootMode
{
    Auto,
    Pvh,
    BzImage,
}

/// <summary>A kernel chosen for booting, with a note for the log when the choice was not the obvious one.</summary>
public sealed record KernelChoice(IKernelImage Image, string? Note = null);

public static class KernelImages
{
    /// <exception cref="BootImageException">The file is not a kernel this VMM can boot; the message names it and why.</exception>
    public static KernelChoice Parse(ReadOnlyMemory<byte> file, string name, LinuxBootMode mode)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var span = file.Span;
        if (LinuxBzImage.IsBzImage(span))
        {
            var bz = LinuxBzImage.Parse(file, name);
            if (mode == LinuxBootMode.BzImage) return new KernelChoice(bz);
            try
            {
                var pvh = LinuxPayload.ExtractPvh(bz);
                return new KernelChoice(pvh, $"{name}: {bz.Format}, {bz.Compression.ToString().ToLowerInvariant()} payload extracted on the host; booting the vmlinux through PVH (entry 0x{pvh.Entry:x})");
            }
            catch (BootImageException e) when (mode == LinuxBootMode.Auto)
            {
                return new KernelChoice(bz, $"{e.Message}; booting through the 64-bit entry instead (the kernel decompresses itself)");
            }
        }
        if (MultibootImage.HasHeader(span)) return new KernelChoice(MultibootImage.Parse(file, name));
        if (PvhImage.IsElf(span))
        {
            try
            {
                return new KernelChoice(PvhImage.Parse(file, name));
            }
            catch (BootImageException e)
            {
                throw new BootImageException($"{e.Message}; and it has no Multiboot v1 header either");
            }
        }
        try
        {
            MultibootImage.Parse(file, name);
        }
        catch (BootImageException e)
        {
            throw new BootImageException($"{e.Message}; and it is not a Linux bzImage (no \"HdrS\" setup header) nor an ELF with a PVH note");
        }
        throw new BootImageException($"{name}: not a recognised kernel");
    }
}
