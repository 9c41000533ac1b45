using ActorVmm.Core.Accel;
using ActorVmm.Core.Boot;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Machine;
using Serilog.Events;

namespace ActorVmm.Host.Tests;

public sealed class CommandLineTests
{
    private static MachineConfig Parse(params string[] args)
    {
        var cmd = CommandLine.Parse(args);
        Assert.Equal(CommandKind.Run, cmd.Kind);
        return cmd.Config!;
    }

    private static string Reject(params string[] args) => Assert.Throws<UsageException>(() => CommandLine.Parse(args)).Message;

    [Fact]
    public void The_README_command_line_parses_to_the_expected_machine()
    {
        var c = Parse("-accel", "soft", "-kernel", "hello.bin", "-nographic", "-device", "isa-debug-exit,iobase=0xf4,iosize=4");
        Assert.Equal("soft", c.Accelerator);
        Assert.Equal("hello.bin", c.KernelPath);
        Assert.Equal(new DebugExitConfig(0xf4, 4), c.DebugExit);
        Assert.Equal([CharBackend.Stdio], c.SerialPorts);
        Assert.Equal(IrqchipMode.On, c.Irqchip);
        Assert.Equal(128 * MachineConfig.MiB, c.RamBytes);
        Assert.Equal(1, c.VcpuCount);
        Assert.False(c.NoReboot);
    }

    [Fact]
    public void A_bios_boot_parses_qemus_spelling()
    {
        var c = Parse("-bios", "/usr/share/seabios/bios.bin", "-nographic", "-debugcon", "file:d.txt", "-global", "isa-debugcon.iobase=0x402",
            "-boot", "reboot-timeout=0", "-no-reboot");
        Assert.Equal("/usr/share/seabios/bios.bin", c.BiosPath);
        Assert.Null(c.KernelPath);
        Assert.Equal((ushort)0x402, c.DebugConPort);
        Assert.Equal(CharBackend.ToFile("d.txt"), c.DebugCon);
        Assert.Equal(0, c.RebootTimeoutMs);
        Assert.Equal(-1, Parse("-bios", "b").RebootTimeoutMs); // QEMU's default: wait for ever
        Assert.Equal((ushort)0xe9, Parse("-bios", "b").DebugConPort);
    }

    [Fact]
    public void Route_overrides_name_the_devices_the_named_accelerators_kernel_leaves_to_userspace()
    {
        // In kernel-irqchip=on, KVM's kernel has no RTC, HPET or ACPI PM (they are platform devices), vmm's no PM1
        // block; the soft accelerator's kernel has them all (docs/kvm.md, docs/freebsd.md).
        Assert.Equal(Route.Mailbox, Parse("-accel", "kvm", "-kernel", "k", "-device", "rtc,route=mailbox").RouteOverrides["rtc"]);
        Assert.Equal(Route.Mailbox, Parse("-accel", "kvm", "-kernel", "k", "-device", "hpet,route=mailbox").RouteOverrides["hpet"]);
        Assert.Equal(Route.Direct, Parse("-accel", "vmm", "-kernel", "k", "-device", "acpi-pm,route=direct").RouteOverrides["acpi-pm"]);
        Assert.StartsWith("route override for \"rtc\": no such device", Reject("-accel", "vmm", "-kernel", "k", "-device", "rtc,route=mailbox"), StringComparison.Ordinal);
        Assert.StartsWith("route override for \"rtc\": no such device", Reject("-accel", "soft", "-kernel", "k", "-device", "rtc,route=mailbox"), StringComparison.Ordinal);
        // auto is checked against the widest set here, and again once the accelerator is chosen (HostMain).
        Assert.Equal(Route.Mailbox, Parse("-accel", "auto", "-kernel", "k", "-device", "rtc,route=mailbox").RouteOverrides["rtc"]);
    }

    [Fact]
    public void Pvpanic_is_added_at_QEMUs_port_or_where_ioport_says()
    {
        Assert.Null(Parse("-kernel", "k").PvPanicPort);
        Assert.Equal((ushort)0x505, Parse("-kernel", "k", "-device", "pvpanic").PvPanicPort);
        var c = Parse("-kernel", "k", "-device", "pvpanic,ioport=0x600,route=mailbox");
        Assert.Equal((ushort)0x600, c.PvPanicPort);
        Assert.Equal(Route.Mailbox, c.RouteOverrides["pvpanic"]);
        Assert.Equal("-device pvpanic,events=3: pvpanic has no property 'events' (it has ioport and route)", Reject("-kernel", "k", "-device", "pvpanic,events=3"));
        Assert.Equal("-device pvpanic,ioport=0x10000: ioport 0x10000 is outside the port space 0-0xffff", Reject("-kernel", "k", "-device", "pvpanic,ioport=0x10000"));
        Assert.Equal("-device pvpanic: pvpanic given twice", Reject("-kernel", "k", "-device", "pvpanic", "-device", "pvpanic"));
    }

    [Fact]
    public void The_chardev_spelling_of_a_debug_console_parses_too()
    {
        var c = Parse("-bios", "b", "-device", "isa-debugcon,iobase=0x402,chardev=dbg", "-chardev", "file,id=dbg,path=/tmp/d.txt");
        Assert.Equal(CharBackend.ToFile("/tmp/d.txt"), c.DebugCon);
        Assert.Equal((ushort)0x402, c.DebugConPort);
        c = Parse("-bios", "b", "-chardev", "stdio,id=x", "-device", "isa-debugcon,chardev=x");
        Assert.Equal(CharBackend.Stdio, c.DebugCon);
        Assert.Equal((ushort)0xe9, c.DebugConPort);
        Assert.Equal("-device isa-debugcon,chardev=nope: no -chardev with id 'nope'", Reject("-bios", "b", "-device", "isa-debugcon,chardev=nope"));
        Assert.Equal("-device isa-debugcon: isa-debugcon needs chardev=ID (a -chardev)", Reject("-bios", "b", "-device", "isa-debugcon"));
        Assert.Equal("-chardev socket,id=s: unsupported chardev backend 'socket' (use stdio, file or null)", Reject("-bios", "b", "-chardev", "socket,id=s"));
        Assert.Equal("-chardev file,id=f: a file chardev needs path=", Reject("-bios", "b", "-chardev", "file,id=f"));
        Assert.Equal("-chardev null,id=a: chardev id 'a' is already in use", Reject("-bios", "b", "-chardev", "null,id=a", "-chardev", "null,id=a"));
        Assert.Equal("-chardev stdio: a chardev needs an id=", Reject("-bios", "b", "-chardev", "stdio"));
    }

    [Theory]
    [InlineData(0, "empty")]
    [InlineData(65536, "at least 128 KiB")]
    [InlineData(100, "multiple of 64 KiB")]
    [InlineData(131073, "multiple of 64 KiB")]
    [InlineData(17 * 1024 * 1024, "larger than the 16 MiB")]
    public void Bad_bios_files_are_refused_before_the_vm_starts(int size, string why)
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, new byte[size]);
            var e = Assert.Throws<UsageException>(() => HostMain.LoadImages(Parse("-bios", path)));
            Assert.StartsWith($"-bios {path}: ", e.Message, StringComparison.Ordinal);
            Assert.Contains(why, e.Message, StringComparison.Ordinal);
            e = Assert.Throws<UsageException>(() => HostMain.LoadImages(Parse("-bios", path + ".missing")));
            Assert.Contains(path + ".missing", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("run")]
    [InlineData("run", "--no-reboot")]
    public void Run_is_the_default_command_and_may_be_named(params string[] prefix)
    {
        var c = Parse([.. prefix, "-kernel", "k"]);
        Assert.Equal("k", c.KernelPath);
    }

    [Theory]
    [InlineData("--help", CommandKind.Help)]
    [InlineData("-h", CommandKind.Help)]
    [InlineData("-help", CommandKind.Help)]
    [InlineData("--version", CommandKind.Version)]
    [InlineData("-version", CommandKind.Version)]
    public void Help_and_version(string arg, CommandKind kind) => Assert.Equal(kind, CommandLine.Parse([arg]).Kind);

    [Theory]
    [InlineData("soft")]
    [InlineData("tcg")]
    [InlineData("accel=soft")]
    [InlineData("accel=tcg")]
    public void Accel_spellings(string value) => Assert.Equal("soft", Parse("-accel", value, "-kernel", "k").Accelerator);

    [Theory]
    [InlineData("vmm", "vmm")]
    [InlineData("bhyve", "vmm")]
    [InlineData("kvm", "kvm")]
    [InlineData("auto", "auto")]
    [InlineData("accel=kvm", "kvm")]
    public void Hypervisor_accelerators_are_named_and_chosen_at_start(string value, string expected)
        => Assert.Equal(expected, Parse("-accel", value, "-kernel", "k").Accelerator);

    [Theory]
    [InlineData("pc")]
    [InlineData("pc,kernel-irqchip=on")]
    [InlineData("type=pc,kernel-irqchip=on")]
    [InlineData("kernel-irqchip=on")]
    [InlineData("pc,accel=tcg")]
    public void Machine_spellings(string value)
    {
        Assert.Equal(IrqchipMode.On, Parse("-machine", value, "-kernel", "k").Irqchip);
        Assert.Equal(IrqchipMode.On, Parse("-M", value, "-kernel", "k").Irqchip);
    }

    [Theory]
    [InlineData("pc,kernel-irqchip=split", IrqchipMode.Split)]
    [InlineData("kernel-irqchip=off", IrqchipMode.Off)]
    [InlineData("type=pc,kernel-irqchip=on", IrqchipMode.On)]
    public void Irqchip_modes(string value, IrqchipMode mode) => Assert.Equal(mode, Parse("-machine", value, "-kernel", "k").Irqchip);

    [Fact]
    public void Device_routes_name_the_platform_devices_of_the_mode()
    {
        var c = Parse("-machine", "kernel-irqchip=off", "-device", "pit,route=mailbox", "-device", "lapic0,route=direct",
            "-device", "isa-debug-exit,iobase=0xf4,route=mailbox", "-kernel", "k");
        Assert.Equal(Route.Mailbox, c.RouteFor("pit"));
        Assert.Equal(Route.Direct, c.RouteFor("lapic0"));
        Assert.Equal(Route.Mailbox, c.RouteFor("isa-debug-exit"));
        Assert.Equal(Route.Direct, c.RouteFor("hpet")); // the measured default
    }

    [Theory]
    [InlineData("128", 128UL << 20)]
    [InlineData("64M", 64UL << 20)]
    [InlineData("64m", 64UL << 20)]
    [InlineData("1G", 1UL << 30)]
    [InlineData("3G", 3UL << 30)]
    [InlineData("2048K", 2UL << 20)]
    [InlineData("size=256M", 256UL << 20)]
    [InlineData("size=512", 512UL << 20)]
    [InlineData("1.5G", 3UL << 29)]
    [InlineData("1048577B", (1UL << 20) + 4096)]
    public void Memory_sizes(string value, ulong bytes) => Assert.Equal(bytes, Parse("-m", value, "-kernel", "k").RamBytes);

    [Theory]
    [InlineData("1")]
    [InlineData("cpus=1")]
    [InlineData("1,sockets=1,cores=1,threads=1")]
    public void Smp_one(string value) => Assert.Equal(1, Parse("-smp", value, "-kernel", "k").VcpuCount);

    [Theory]
    [InlineData("4", 4)]
    [InlineData("cpus=8", 8)]
    [InlineData("cpus=4,sockets=2,cores=2,threads=1,maxcpus=4", 4)]
    [InlineData("sockets=2,cores=2", 4)]
    [InlineData("4,sockets=2", 4)]
    [InlineData("8,threads=2", 8)]
    [InlineData("maxcpus=6", 6)]
    public void Smp_counts_and_topologies_qemu_accepts(string value, int vcpus) => Assert.Equal(vcpus, Parse("-smp", value, "-kernel", "k").VcpuCount);

    [Fact]
    public void Serial_backends_in_COM_order()
    {
        var c = Parse("-serial", "file:/tmp/com1.txt", "-serial", "none", "-serial", "null", "-serial", "mon:stdio", "-kernel", "k");
        Assert.Equal([CharBackend.ToFile("/tmp/com1.txt"), null, CharBackend.None, CharBackend.Stdio], c.SerialPorts);
        Assert.Equal([CharBackend.Stdio], Parse("-serial", "stdio", "-kernel", "k").SerialPorts);
    }

    [Fact]
    public void Accepted_no_op_options_and_flags()
    {
        var c = Parse("-display", "none", "-monitor", "none", "-nographic", "-no-reboot", "--deterministic", "-kernel", "k");
        Assert.True(c.NoReboot);
        Assert.True(c.Deterministic);
        Assert.True(Parse("--no-reboot", "--kernel", "k").NoReboot);
    }

    [Theory]
    [InlineData("isa-debug-exit", 0x501, 2)]
    [InlineData("isa-debug-exit,iobase=0xf4,iosize=4", 0xf4, 4)]
    [InlineData("isa-debug-exit,iobase=244,iosize=0x4", 0xf4, 4)]
    [InlineData("driver=isa-debug-exit,iobase=0xFFFF,iosize=1", 0xffff, 1)]
    public void Debug_exit_device(string value, int ioBase, int ioSize)
        => Assert.Equal(new DebugExitConfig(ioBase, ioSize), Parse("-device", value, "-kernel", "k").DebugExit);

    [Fact]
    public void Kernel_append_initrd_and_debugcon()
    {
        var c = Parse("-kernel", "k", "-append", "console=ttyS0 quiet", "-initrd", "mod1 arg1 arg2,mod2,,x", "-debugcon", "file:dbg.txt");
        Assert.Equal("console=ttyS0 quiet", c.Append);
        Assert.Equal(["mod1 arg1 arg2", "mod2,x"], c.Modules);
        Assert.Equal("mod1", MachineConfig.ModulePath(c.Modules[0]));
        Assert.Equal(CharBackend.ToFile("dbg.txt"), c.DebugCon);
        Assert.Equal(CharBackend.Stdio, Parse("-debugcon", "stdio", "-kernel", "k").DebugCon);
        Assert.Null(Parse("-debugcon", "none", "-kernel", "k").DebugCon);
    }

    [Theory]
    [InlineData("auto", LinuxBootMode.Auto)]
    [InlineData("pvh", LinuxBootMode.Pvh)]
    [InlineData("bzimage", LinuxBootMode.BzImage)]
    public void Linux_boot_mode(string value, LinuxBootMode expected)
    {
        Assert.Equal(expected, Parse("--linux-boot", value, "-kernel", "k").LinuxBoot);
        Assert.Equal(LinuxBootMode.Auto, Parse("-kernel", "k").LinuxBoot);
        Assert.Contains("auto, pvh or bzimage", Reject("--linux-boot", "elf", "-kernel", "k"), StringComparison.Ordinal);
    }

    [Fact]
    public void A_file_that_is_no_kernel_and_an_initrd_list_for_linux_fail_before_the_vm_starts()
    {
        var dir = Directory.CreateTempSubdirectory("actorvmm-kernel");
        try
        {
            string junk = Path.Combine(dir.FullName, "junk");
            File.WriteAllBytes(junk, new byte[4096]);
            var e = Assert.Throws<UsageException>(() => HostMain.LoadImages(Parse("-kernel", junk)));
            Assert.Contains("bzImage", e.Message, StringComparison.Ordinal);
            Assert.Contains("Multiboot", e.Message, StringComparison.Ordinal);

            // A minimal bzImage: header only, protocol 2.15, 64-bit entry, an uncompressed (ELF-less) payload.
            var bz = new byte[0x1000];
            bz[0x1f1] = 4;
            BitConverter.TryWriteBytes(bz.AsSpan(0x1f4), 0x10u);
            BitConverter.TryWriteBytes(bz.AsSpan(0x1fe), (ushort)0xaa55);
            bz[0x201] = 0x6a;
            "HdrS"u8.CopyTo(bz.AsSpan(0x202));
            BitConverter.TryWriteBytes(bz.AsSpan(0x206), (ushort)0x020f);
            bz[0x211] = 1;
            BitConverter.TryWriteBytes(bz.AsSpan(0x236), (ushort)1);
            BitConverter.TryWriteBytes(bz.AsSpan(0x24c), 0x100u);
            BitConverter.TryWriteBytes(bz.AsSpan(0x258), 0x1000000UL);
            BitConverter.TryWriteBytes(bz.AsSpan(0x260), 0x1000u);
            string kernel = Path.Combine(dir.FullName, "bzImage");
            File.WriteAllBytes(kernel, bz);
            e = Assert.Throws<UsageException>(() => HostMain.LoadImages(Parse("-kernel", kernel, "-initrd", "a,b")));
            Assert.Contains("one initrd", e.Message, StringComparison.Ordinal);
            var images = HostMain.LoadImages(Parse("-kernel", kernel));
            Assert.IsType<LinuxBzImage>(images.Kernel);       // auto: no vmlinux inside, so the 64-bit entry
            Assert.NotNull(images.Note);
            e = Assert.Throws<UsageException>(() => HostMain.LoadImages(Parse("-kernel", kernel, "--linux-boot", "pvh")));
            Assert.StartsWith($"-kernel {kernel}: ", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void Own_long_options()
    {
        var cmd = CommandLine.Parse(["--log-level", "debug", "--log-file=/tmp/x.log", "--route", "COM1=mailbox", "-kernel", "k"]);
        Assert.Equal(LogEventLevel.Debug, cmd.Host!.LogLevel);
        Assert.True(cmd.Host.LogLevelExplicit);
        Assert.Equal("/tmp/x.log", cmd.Host.LogFile);
        Assert.Equal(Route.Mailbox, cmd.Config!.RouteFor("COM1"));
        Assert.Equal(LogEventLevel.Warning, CommandLine.Parse(["-kernel", "k"]).Host!.LogLevel);
    }

    [Theory]
    [InlineData("-m 0: memory size must be at least 1 MiB", "-m", "0")]
    [InlineData("-m 512K: memory size must be at least 1 MiB", "-m", "512K")]
    [InlineData("-m 5T: memory size is more than the 3 GiB this machine supports", "-m", "5T")]
    [InlineData("-m 4G: memory size is more than the 3 GiB this machine supports", "-m", "4G")]
    [InlineData("-m 99999999999999999999999E: memory size is more than the 3 GiB this machine supports", "-m", "99999999999999999999999E")]
    [InlineData("-m lots: not a size (use e.g. 512, 512M or 2G)", "-m", "lots")]
    [InlineData("-m -1: not a size (use e.g. 512, 512M or 2G)", "-m", "-1")]
    [InlineData("-m 128,slots=2: unsupported memory property 'slots' (only size=)", "-m", "128,slots=2")]
    // QEMU 7.2 refuses the inconsistent topologies with "product of the hierarchy must match maxcpus"; it accepts
    // maxcpus above cpus (hot-plug, which does not exist here) and warns about 0 (deprecated).
    [InlineData("-smp 4,sockets=3: inconsistent CPU topology: sockets (3) * dies (1) * clusters (1) * cores (1) * threads (1) = 3, but maxcpus is 4", "-smp", "4,sockets=3")]
    [InlineData("-smp 4,cores=3: inconsistent CPU topology: sockets (1) * dies (1) * clusters (1) * cores (3) * threads (1) = 3, but maxcpus is 4", "-smp", "4,cores=3")]
    [InlineData("-smp 4,sockets=2,cores=2,threads=2: inconsistent CPU topology: sockets (2) * dies (1) * clusters (1) * cores (2) * threads (2) = 8, but maxcpus is 4", "-smp", "4,sockets=2,cores=2,threads=2")]
    [InlineData("-smp 2,maxcpus=4: maxcpus 4 is more than the 2 CPUs: CPU hot-plug is not supported, so maxcpus must equal cpus", "-smp", "2,maxcpus=4")]
    [InlineData("-smp 0: cpus=0: CPU topology values must be greater than zero", "-smp", "0")]
    [InlineData("-smp 300: 300 vCPUs is more than the 255 this machine supports", "-smp", "300")]
    [InlineData("-smp 2,books=2: unknown -smp property 'books' (cpus, sockets, dies, clusters, cores, threads, maxcpus)", "-smp", "2,books=2")]
    [InlineData("-smp two: 'two' is not a number", "-smp", "two")]
    [InlineData("-accel hvf: unknown accelerator 'hvf' (available: soft, vmm, kvm, auto; tcg and bhyve as aliases)", "-accel", "hvf")]
    [InlineData("-accel tcg,thread=multi: unknown property 'thread'", "-accel", "tcg,thread=multi")]
    [InlineData("-machine q35: machine type 'q35' is not supported (supported: pc)", "-machine", "q35")]
    [InlineData("-machine pc,kernel-irqchip=maybe: kernel-irqchip must be on, split or off", "-machine", "pc,kernel-irqchip=maybe")]
    [InlineData("-machine pc,usb=on: unknown machine property 'usb'", "-machine", "pc,usb=on")]
    [InlineData("-serial tcp:localhost:4444: unsupported serial backend (use stdio, file:PATH, null or none)", "-serial", "tcp:localhost:4444")]
    [InlineData("-serial file:: file: needs a path", "-serial", "file:")]
    [InlineData("-display gtk: no graphical display in this VMM (use -display none)", "-display", "gtk")]
    [InlineData("-monitor stdio: the QEMU monitor is not supported (use -monitor none)", "-monitor", "stdio")]
    [InlineData("-device e1000: device 'e1000' cannot be added; only its route= can be set (supported devices to add: isa-debug-exit, isa-debugcon, pvpanic)", "-device", "e1000")]
    [InlineData("-device hpet,route=fast: route must be direct or mailbox", "-device", "hpet,route=fast")]
    [InlineData("-device hpet,timers=4: device 'hpet' has no property 'timers' (only route= can be set on it)", "-device", "hpet,timers=4")]
    [InlineData("-device isa-debug-exit,iobase=0x10000: iobase 0x10000 is outside the port space 0-0xffff", "-device", "isa-debug-exit,iobase=0x10000")]
    [InlineData("-device isa-debug-exit,iobase=70000: iobase 0x11170 is outside the port space 0-0xffff", "-device", "isa-debug-exit,iobase=70000")]
    [InlineData("-device isa-debug-exit,iobase=0xzz: iobase '0xzz' is not a number (decimal or 0x-hex)", "-device", "isa-debug-exit,iobase=0xzz")]
    [InlineData("-device isa-debug-exit,iobase=0xffff,iosize=4: iosize 4 at iobase 0xffff does not fit the port space 0-0xffff", "-device", "isa-debug-exit,iobase=0xffff,iosize=4")]
    [InlineData("-device isa-debug-exit,iosize=0: iosize 0 at iobase 0x501 does not fit the port space 0-0xffff", "-device", "isa-debug-exit,iosize=0")]
    [InlineData("-device isa-debug-exit,colour=red: isa-debug-exit has no property 'colour' (it has iobase, iosize and route)", "-device", "isa-debug-exit,colour=red")]
    [InlineData("-debugcon vc: unsupported debugcon backend (use stdio, file:PATH, null or none)", "-debugcon", "vc")]
    [InlineData("--log-level loud: unknown log level (use verbose, debug, info, warning, error or fatal)", "--log-level", "loud")]
    [InlineData("--route COM1=fast: route must be direct or mailbox", "--route", "COM1=fast")]
    [InlineData("-initrd a,,,: empty module name in the list", "-initrd", "a,,,")]
    public void Rejections_name_the_option_and_the_problem(string message, string option, string value)
        => Assert.Equal(message, Reject(option, value, "-kernel", "k"));

    [Theory]
    [InlineData("no kernel given (use -kernel PATH, or -bios FILE to boot firmware)")]
    [InlineData("-bios with -kernel: handing a kernel to the BIOS (QEMU's linuxboot option ROM) is not implemented; boot the kernel directly (without -bios) or the BIOS alone", "-bios", "b.bin", "-kernel", "k")]
    [InlineData("-boot reboot-timeout=70000: reboot-timeout must be -1 (never) or 0-65535 ms", "-bios", "b", "-boot", "reboot-timeout=70000")]
    [InlineData("-boot reboot-timeout=-2: reboot-timeout must be -1 (never) or 0-65535 ms", "-bios", "b", "-boot", "reboot-timeout=-2")]
    [InlineData("-boot order=n: unsupported -boot property 'order' (supported: reboot-timeout=MS, menu=off)", "-bios", "b", "-boot", "order=n")]
    [InlineData("-global e1000.mac=x: unsupported -global (supported: isa-debugcon.iobase=PORT)", "-bios", "b", "-global", "e1000.mac=x")]
    [InlineData("-global isa-debugcon.iobase=0x10000: iobase 0x10000 is outside the port space 0-0xffff", "-bios", "b", "-global", "isa-debugcon.iobase=0x10000")]
    [InlineData("-hda: unknown option (see --help)", "-hda", "disk.img")]
    [InlineData("--frobnicate: unknown option (see --help)", "--frobnicate")]
    [InlineData("disk.img: unexpected argument (options start with '-'; see --help)", "disk.img")]
    [InlineData("-kernel: missing argument", "-kernel")]
    [InlineData("-m: missing argument", "-kernel", "k", "-m")]
    [InlineData("--no-reboot: takes no value", "--no-reboot=yes", "-kernel", "k")]
    [InlineData("-serial stdio: too many serial ports (at most 4, COM1-COM4)", "-kernel", "k", "-serial", "none", "-serial", "none", "-serial", "none", "-serial", "none", "-serial", "stdio")]
    [InlineData("-device isa-debug-exit: isa-debug-exit given twice", "-kernel", "k", "-device", "isa-debug-exit", "-device", "isa-debug-exit")]
    [InlineData("route override for \"COM2\": no such device (devices: COM1, i8042, port92, reset-control, pci-host, fw_cfg, boot-timer)", "-kernel", "k", "--route", "COM2=mailbox")]
    [InlineData("route override for \"pit\": no such device (devices: COM1, i8042, port92, reset-control, pci-host, fw_cfg, boot-timer)", "-kernel", "k", "-device", "pit,route=mailbox")]
    [InlineData("route override for \"lapic0\": no such device (devices: COM1, i8042, port92, reset-control, pci-host, fw_cfg, boot-timer, pic, pit, rtc, acpi-pm, ioapic, hpet)", "-kernel", "k", "-machine", "kernel-irqchip=split", "-device", "lapic0,route=mailbox")]
    public void Other_rejections(string message, params string[] args) => Assert.Equal(message, Reject(args));
}
