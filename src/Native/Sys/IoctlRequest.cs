// ioctl request numbers, computed the way each kernel's headers do. One helper for both encodings:
//   FreeBSD (sys/sys/ioccom.h): dir | (len & 0x1fff) << 16 | group << 8 | nr, with dir IOC_VOID 0x20000000,
//     IOC_OUT 0x40000000 (kernel copies out), IOC_IN 0x80000000 (kernel copies in), IOC_INOUT 0xc0000000.
//   Linux (asm-generic/ioctl.h): dir << 30 | (size & 0x3fff) << 16 | type << 8 | nr, with dir _IOC_NONE 0,
//     _IOC_WRITE 1 (userland writes, kernel reads), _IOC_READ 2.
// The request carries its name, so a failed call says which ioctl failed.
namespace ActorVmm.Native.Sys;

/// <summary>An ioctl request: its number and the name of the macro that defines it (for errors).</summary>
public readonly record struct IoctlRequest(string Name, ulong Value)
{
    public override string ToString() => $"{Name} (0x{Value:x8})";
}

/// <summary>The _IO/_IOR/_IOW/_IOWR macros of FreeBSD and Linux.</summary>
public static class Ioc
{
    private const uint BsdVoid = 0x2000_0000, BsdOut = 0x4000_0000, BsdIn = 0x8000_0000;
    private const uint BsdParmMask = 0x1fff;
    private const uint LinuxWrite = 1, LinuxRead = 2, LinuxSizeMask = 0x3fff;

    private static uint CheckNr(int nr) => nr is >= 0 and <= 0xff ? (uint)nr : throw new ArgumentOutOfRangeException(nameof(nr), $"ioctl number {nr} does not fit 8 bits");

    private static uint Bsd(string name, uint dir, char group, int nr, int size)
    {
        if ((uint)size > BsdParmMask) throw new ArgumentOutOfRangeException(nameof(size), $"{name}: argument of {size} bytes exceeds IOCPARM_MAX");
        return dir | (((uint)size & BsdParmMask) << 16) | ((uint)group << 8) | CheckNr(nr);
    }

    private static uint Linux(string name, uint dir, int type, int nr, int size)
    {
        if ((uint)size > LinuxSizeMask) throw new ArgumentOutOfRangeException(nameof(size), $"{name}: argument of {size} bytes exceeds _IOC_SIZEMASK");
        return (dir << 30) | (((uint)size & LinuxSizeMask) << 16) | ((uint)type << 8) | CheckNr(nr);
    }

    /// <summary>FreeBSD _IO(group, nr).</summary>
    public static IoctlRequest BsdIo(string name, char group, int nr) => new(name, Bsd(name, BsdVoid, group, nr, 0));

    /// <summary>FreeBSD _IOR(group, nr, type): the kernel copies <paramref name="size"/> bytes out.</summary>
    public static IoctlRequest BsdIor(string name, char group, int nr, int size) => new(name, Bsd(name, BsdOut, group, nr, size));

    /// <summary>FreeBSD _IOW(group, nr, type): the kernel copies <paramref name="size"/> bytes in.</summary>
    public static IoctlRequest BsdIow(string name, char group, int nr, int size) => new(name, Bsd(name, BsdIn, group, nr, size));

    /// <summary>FreeBSD _IOWR(group, nr, type).</summary>
    public static IoctlRequest BsdIowr(string name, char group, int nr, int size) => new(name, Bsd(name, BsdIn | BsdOut, group, nr, size));

    /// <summary>Linux _IO(type, nr).</summary>
    public static IoctlRequest LinuxIo(string name, int type, int nr) => new(name, Linux(name, 0, type, nr, 0));

    /// <summary>Linux _IOR(type, nr, size).</summary>
    public static IoctlRequest LinuxIor(string name, int type, int nr, int size) => new(name, Linux(name, LinuxRead, type, nr, size));

    /// <summary>Linux _IOW(type, nr, size).</summary>
    public static IoctlRequest LinuxIow(string name, int type, int nr, int size) => new(name, Linux(name, LinuxWrite, type, nr, size));

    /// <summary>Linux _IOWR(type, nr, size).</summary>
    public static IoctlRequest LinuxIowr(string name, int type, int nr, int size) => new(name, Linux(name, LinuxRead | LinuxWrite, type, nr, size));

    /// <summary>The argument size encoded in a FreeBSD request (what the kernel copies in or out).</summary>
    public static int BsdSize(ulong request) => (int)((request >> 16) & BsdParmMask);

    /// <summary>The argument size encoded in a Linux request.</summary>
    public static int LinuxSize(ulong request) => (int)((request >> 16) & LinuxSizeMask);
}
