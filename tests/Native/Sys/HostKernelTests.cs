// The real kernel interface on this host (libc): ioctl request helper formulas, errors that name the call, and the
// kick signal the KVM backend uses to interrupt a blocking KVM_RUN (checked here with pause(2), which any Linux has).
using System.Runtime.InteropServices;
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Tests.Sys;

public sealed partial class HostKernelTests
{
    [LibraryImport("libc", EntryPoint = "pause", SetLastError = true)]
    private static partial int Pause();

    [Fact]
    public void A_kick_interrupts_a_blocking_system_call_with_eintr_and_does_not_kill_the_process()
    {
        if (!OperatingSystem.IsLinux()) return;
        var kernel = HostKernel.Instance;
        nint token = 0;
        int result = 0, errno = 0;
        using var ready = new ManualResetEventSlim();
        var thread = new Thread(() =>
        {
            token = kernel.PrepareKickableThread();
            ready.Set();
            result = Pause();
            errno = Marshal.GetLastPInvokeError();
        }) { IsBackground = true };
        thread.Start();
        ready.Wait();
        // The kick may land before the thread reaches pause(); kick until it has returned.
        for (int i = 0; i < 200 && thread.IsAlive; i++)
        {
            Assert.Equal(0, kernel.KickThread(token));
            thread.Join(50);
        }
        Assert.False(thread.IsAlive, "pause() was not interrupted by the kick signal");
        Assert.Equal(-1, result);
        Assert.Equal(Errno.EINTR, errno);
    }

    [Fact]
    public void A_kick_that_lands_while_the_thread_runs_managed_code_does_no_harm()
    {
        // A vCPU thread spends part of its time handling exits in managed code, and a kick (a pause, a stop) can land
        // then. With a managed signal handler the runtime ended the whole process ("attempted to call a
        // UnmanagedCallersOnly method from managed code", seen on /dev/kvm when the VM stopped); the handler is native.
        if (!OperatingSystem.IsLinux()) return;
        var kernel = HostKernel.Instance;
        nint token = 0;
        long spins = 0;
        using var ready = new ManualResetEventSlim();
        using var stop = new ManualResetEventSlim();
        var thread = new Thread(() =>
        {
            token = kernel.PrepareKickableThread();
            ready.Set();
            while (!stop.IsSet)
            {
                spins++;
                if ((spins & 0xff) == 0) GC.KeepAlive(new object()); // allocation: the thread is plainly in managed code
            }
        }) { IsBackground = true };
        thread.Start();
        ready.Wait();
        for (int i = 0; i < 2000; i++)
        {
            Assert.Equal(0, kernel.KickThread(token));
            if ((i & 0x3f) == 0) Thread.Sleep(1);
        }
        stop.Set();
        Assert.True(thread.Join(TimeSpan.FromSeconds(30)), "the kicked thread did not finish");
        Assert.True(spins > 0);
    }

    [Fact]
    public void A_failed_open_returns_errno_and_the_throwing_form_names_the_path()
    {
        var kernel = HostKernel.Instance;
        Assert.Equal(Errno.ENOENT, kernel.TryOpen("/nonexistent/actorvmm-device", out var fd));
        Assert.Null(fd);
        var e = Assert.Throws<KernelCallException>(() => kernel.Open("/nonexistent/actorvmm-device"));
        Assert.Equal("open /nonexistent/actorvmm-device: errno 2 ENOENT (no such file or directory)", e.Message);
        Assert.Equal(Errno.ENOENT, e.Errno);
    }

    [Fact]
    public void Bsd_and_linux_encodings_follow_their_headers()
    {
        // FreeBSD ioccom.h: IOC_IN | (len & 0x1fff) << 16 | group << 8 | nr (VM_SUSPEND, published as 0x80047604).
        Assert.Equal(0x80047604UL, Ioc.BsdIow("VM_SUSPEND", 'v', 4, 4).Value);
        Assert.Equal(0x20007605UL, Ioc.BsdIo("VM_REINIT", 'v', 5).Value);
        Assert.Equal(0x40087640UL, Ioc.BsdIor("VM_GET_TOPOLOGY", 'v', 64, 8).Value);
        Assert.Throws<ArgumentOutOfRangeException>(() => Ioc.BsdIow("too big", 'v', 1, 0x2000));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ioc.LinuxIow("too big", 0xAE, 1, 0x4000));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ioc.LinuxIo("bad nr", 0xAE, 256));
    }
}
