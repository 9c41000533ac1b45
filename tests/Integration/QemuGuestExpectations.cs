// The exact serial output and exit status of each test guest under QEMU (qemu-system-x86_64 7.2, TCG,
// -m 64), recorded from QemuRunner runs. Tests for ActorVmm compare against the same lines; where the two
// legitimately differ (the firmware-dependent memory map tail, the command line QEMU builds), that is noted.
namespace ActorVmm.Integration.Tests;

public static class QemuGuestExpectations
{
    /// <summary>isa-debug-exit with 0x10: status (0x10 &lt;&lt; 1) | 1.</summary>
    public const int HelloExitStatus = 33;
    /// <summary>isa-debug-exit with 0x11.</summary>
    public const int FaultsExitStatus = 35;
    /// <summary>Triple fault with -no-reboot: QEMU shuts down and exits 0.</summary>
    public const int TripleExitStatus = 0;

    /// <summary>The hello guest's integer checksum (same for hello.bin and hello.elf, any load address).</summary>
    public const string HelloChecksum = "68088e54";

    public static readonly string[] HelloHead =
    [
        "ActorVmm hello guest",
        "multiboot: magic ok",
    ];

    /// <summary>
    /// QEMU's memory lines for -m 64. The first four lines are the PC layout that MultibootLoader reports too;
    /// the rest are SeaBIOS reservations (top 128 KiB, BIOS flash, the 0xFD00000000 hole) that ActorVmm does
    /// not add, so its mem_upper is 0xfc00 where QEMU's is 0xfb80.
    /// </summary>
    public static readonly string[] HelloQemuMemory64 =
    [
        "mem: lower=0000027f upper=0000fb80",
        "mmap: 0000000000000000 000000000009fc00 type 01",
        "mmap: 000000000009fc00 0000000000000400 type 02",
        "mmap: 00000000000f0000 0000000000010000 type 02",
        "mmap: 0000000000100000 0000000003ee0000 type 01",
        "mmap: 0000000003fe0000 0000000000020000 type 02",
        "mmap: 00000000fffc0000 0000000000040000 type 02",
        "mmap: 000000fd00000000 0000000300000000 type 02",
    ];

    /// <summary>The hello guest's tail for a given multiboot command line (QEMU passes "kernel-path append").</summary>
    public static string[] HelloTail(string multibootCmdline) =>
    [
        $"checksum: {HelloChecksum}",
        $"cmdline: |{multibootCmdline}|",
        "hello: done",
    ];

    public static readonly string[] Faults =
    [
        "ActorVmm faults guest",
        "exception vector=00 error=none eip=+00",
        "exception vector=06 error=none eip=+00",
        "exception vector=03 error=none eip=+01",
        "exception vector=0d error=00000018 eip=+00",
        "exception vector=0d error=00000000 eip=+00",
        "faults: done",
    ];

    public static readonly string[] Triple =
    [
        "ActorVmm triple guest: about to triple fault",
    ];
}
