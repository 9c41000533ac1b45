// The fault matrix's second half (issue 5): the interrupt controllers and timers that kernel-irqchip=split and
// off host in device actors (PIC, PIT, RTC, ACPI PM, IOAPIC, HPET, and in off the local APIC) × {throw once,
// throw on every message, hang, slow, drop} × {split, off}. Each device is put on the Mailbox route, so its actor is
// on the guest's path, and each runs under a test guest that programs it and takes its interrupts: timer.bin
// (8259A pair, 8254 and port 0x61, RTC periodic interrupts, the PM timer), apic.bin (IOAPIC, local APIC) and
// hpet.bin (HPET). The expected output is the same guest's run without faults on the default routes, which
// QemuComparisonTests checks line for line against QEMU in every mode; a run without faults on the Mailbox
// route must print the same. Outcomes, as in FaultMatrixTests:
//   throw once   the actor restarts once (its model as it was, the failed message retried): output complete
//   throw always more than 3 restarts in 10 s stop the actor; the VM restarts (RESET, reason host-error) and
//                the next machine runs the guest to the end
//   hang 300 ms  accesses and deadlines wait out the hang: output complete (deterministic time: the guest cannot
//                tell)
//   slow 1 ms    every message 1 ms late: output complete
//   drop 1       one message of the device's, chosen in the guest's program, is lost (a read answered all-ones,
//                a write not made): per device, stated and reasoned in DropOf below, the same in split and off
//                (the guests' messages to these devices are the same in both; lapic0 exists in off only).
// A device's messages here are the register reads and writes that reach its actor: the guest's port and MMIO
// accesses, and what the vCPU sends for it (the INTA cycle, a read; in split a kernel LAPIC's level EOI to the IOAPIC;
// in off the CPU's IA32_APIC_BASE at reset and the TPR). Interrupt lines between the devices are calls, not messages,
// and in deterministic mode the vCPU runs the timer deadlines itself, so no TimerExpired is sent.
// Which message: the first one (DropFault Count 1), as in FaultMatrixTests, where its loss has an outcome the
// datasheet states; otherwise a later one, picked with DropFault's Skip. Not picked: losses after which the guest
// waits in HLT for an interrupt that can no longer come (the first PIT message, the control word: the counter keeps
// the model's power-on mode 0, which the 8254 datasheet leaves undefined, and raises IRQ0 once; an EOI of the 8259
// or the IOAPIC, or the RTC's register C read in an IRQ8 handler while IRQ8 is up, each of which leaves the line's
// next interrupt blocked for good; tried, each run stops printing there) — the guests have no timeout and the VM no
// run limit, so such a row would end only at the test's wait. (The C read in timer.bin's first IRQ8 handler is not
// one of them: that interrupt is the edge the 8259 latched while IRQ8 was masked, and the guest's own read of C
// before unmasking had already released the line, so losing it changes nothing.) Every drop
// row asserts the exit status, the whole serial text, no VM restart and exactly one dropped message.
using Akka.TestKit.Xunit2;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Machine;
using ActorVmm.Native.Soft;

namespace ActorVmm.Actors.Tests.Supervision;

public sealed class IrqchipFaultMatrixTests() : TestKit(ActorVmmConfig.Config)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(90);

    /// <summary>The guest that exercises each actor-hosted irqchip device, and its isa-debug-exit status.</summary>
    private static (string Guest, int Status) GuestFor(string device) => device switch
    {
        PlatformIrqchip.PicName or PlatformIrqchip.PitName or PlatformIrqchip.RtcName or PlatformIrqchip.PmName => ("timer", 37),
        PlatformIrqchip.IoApicName => ("apic", 39),
        PlatformIrqchip.HpetName => ("hpet", 41),
        _ when device.StartsWith("lapic", StringComparison.Ordinal) => ("apic", 39),
        _ => throw new InvalidOperationException($"no guest exercises '{device}': add it to the irqchip fault matrix"),
    };

    private static Fault FaultFor(string device, string fault) => fault switch
    {
        "drop" => new DropFault(Count: 1, Skip: DropOf(device).Skip),
        "throw-once" => new ThrowFault(),
        "throw-always" => new ThrowFault(EveryMessage: true),
        "hang" => new HangFault(TimeSpan.FromMilliseconds(300)),
        "slow" => new SlowFault(TimeSpan.FromMilliseconds(1)),
        _ => throw new ArgumentException(fault),
    };

    /// <summary>What a drop row does to its guest: nothing visible, one line changed, or an early end.</summary>
    public enum DropOutcome
    {
        /// <summary>The guest's exit status and serial text as without the fault.</summary>
        Complete,
        /// <summary>The same exit status; one serial line (Line) reads Changed instead.</summary>
        LineChanged,
        /// <summary>The serial text up to and including Line, then "unexpected exception", and the exit 0x7f (status 255).</summary>
        UnexpectedException,
    }

    /// <summary>The guests' exit through their unexpected-exception gate: isa-debug-exit with 0x7f.</summary>
    public const int UnexpectedExitStatus = (0x7f << 1) | 1;

    /// <summary>
    /// The message each device loses in its guest (after Skip messages of the device's have passed), and so what the
    /// guest prints. The messages are what the guest's program sends the device on the Mailbox route, in order.
    /// </summary>
    public static (int Skip, DropOutcome Outcome, string? Line, string? Changed) DropOf(string device) => device switch
    {
        // timer.bin. The first pic message is ICW1 (0x11) to the master's port 0x20. 8259A datasheet: a write with A0=0
        // and D4=1 is ICW1 and starts the initialisation sequence; without it the master is never waiting for ICW2-4,
        // so the guest's writes to port 0x21 (0x20, 0x04, 0x01, then 0xfa) are all OCW1, the mask: the IMR read back is
        // still fa. The slave is initialised normally. The master's vector base stays what it is before any ICW2 (the
        // datasheet defines none; the model, like QEMU's i8259, starts at 0), so IRQ0 from the PIT is taken as vector
        // 0x00, the guest's divide-error gate: it prints "unexpected exception" and exits 0x7f.
        PlatformIrqchip.PicName => (0, DropOutcome.UnexpectedException, "pic: imr=fa", "unexpected exception"),
        // timer.bin, Skip 4: the pit's messages are the control word 0x34, the divisor's LSB and MSB, the latch command
        // for counter 0, then the two reads of the latched count (LSB, MSB). The first of those reads is lost: the guest
        // gets 0xff and keeps it as the high byte. 8254 datasheet: a latched two-byte count is read LSB first, then MSB,
        // by a read flip-flop only reads move; the lost read never reached the counter, so the guest's second read gets
        // the LSB. The count it assembles is 0xff00 + LSB, above 1193: "out of range"; the MSB is left latched, and
        // nothing reads counter 0 again.
        PlatformIrqchip.PitName => (4, DropOutcome.LineChanged, "pit: latched count in range", "pit: latched count out of range"),
        // timer.bin, Skip 21: the rtc's messages are index/data pairs: register A and B read back (4), the eight CMOS
        // bytes (16), then the index 0x0a and the write of 0x26 to register A (DV=010, the divider running; RS=0110,
        // 1024 Hz periodic rate) that starts the periodic-interrupt test. That write is lost. MC146818 datasheet: RESET
        // does not touch register A; it holds what was put there, here 0x26, the value the guest printed on its
        // "rtc: a/b=26 02" line. The lost write would have left it as it is: the periodic interrupts come at the rate
        // the guest asked for, output complete.
        PlatformIrqchip.RtcName => (21, DropOutcome.Complete, null, null),
        // timer.bin. The first acpi-pm message is the guest's first read of the PM timer (port 0x608): all-ones, so its
        // first sample is 0xffffff. ACPI spec, PM_TMR: a 24-bit counter running at 3.579545 MHz; read again it is not
        // 0xffffff (it first gets there 2^24 counts, 4.7 s of VM time, after reset, and the guest is well before that
        // in deterministic mode), so the guest sees it move: "pmtimer: advancing", output complete.
        PlatformIrqchip.PmName => (0, DropOutcome.Complete, null, null),
        // apic.bin. The first ioapic message is the write of 1 (IOAPICVER) to IOREGSEL. 82093AA datasheet: IOREGSEL is
        // 00h after reset, so the IOWIN read that follows returns register 0, IOAPICID: this IOAPIC's ID, 0 (the one the
        // machine's MADT states), in bits 27:24, and nothing else. The next IOREGSEL write (0x15) arrives, and the rest
        // is as before.
        PlatformIrqchip.IoApicName => (0, DropOutcome.LineChanged, "ioapic: version=00170020", "ioapic: version=00000000"),
        // hpet.bin. The first hpet message is the read of GCAP_ID's low dword (0xfed00000): all-ones. HPET spec: reads
        // of the capabilities register have no side effect, and the period (the high dword) is the next read, which
        // arrives: "hpet: capabilities=ffffffff", the period as before.
        PlatformIrqchip.HpetName => (0, DropOutcome.LineChanged,
            "hpet: capabilities=8086a201 period(fs)=00989680", "hpet: capabilities=ffffffff period(fs)=00989680"),
        // apic.bin, off. The first lapic0 message is not the guest's: it is the CPU's report of IA32_APIC_BASE at reset
        // (0xfee00900: base FEE00000h, EN, BSP), before the first instruction. SDM vol. 3 §11.4.4 and §11.4.7.1: after
        // power-up or reset the APIC base is FEE00000H with the APIC enabled, and the BSP flag set on the bootstrap
        // processor: lapic0 already holds exactly that, so the lost write changes nothing, output complete.
        _ when device.StartsWith("lapic", StringComparison.Ordinal) => (0, DropOutcome.Complete, null, null),
        _ => throw new InvalidOperationException($"no stated outcome for dropping a message of '{device}': add it to the irqchip fault matrix"),
    };

    private static MachineConfig ConfigFor(IrqchipMode mode, string guest, string? mailboxDevice) => new()
    {
        KernelPath = guest + ".bin",
        Irqchip = mode,
        RamBytes = 16 * MachineConfig.MiB,
        DebugExit = new DebugExitConfig(0xf4, 4),
        Deterministic = true,
        RouteOverrides = mailboxDevice is null ? new Dictionary<string, Route>() : new Dictionary<string, Route> { [mailboxDevice] = Route.Mailbox },
    };

    /// <summary>The devices split and off move out of the vCPU, per mode.</summary>
    private static IEnumerable<string> ActorHosted(IrqchipMode mode)
    {
        var on = PcMachineBuilder.DeviceNames(ConfigFor(IrqchipMode.On, "timer", null)).ToHashSet();
        return PcMachineBuilder.DeviceNames(ConfigFor(mode, "timer", null)).Where(d => !on.Contains(d));
    }

    public static TheoryData<IrqchipMode, string, string> Rows()
    {
        var rows = new TheoryData<IrqchipMode, string, string>();
        foreach (var mode in new SoftAccelerator().Capabilities.IrqchipModes.Where(m => m != IrqchipMode.On).Order())
        {
            foreach (var device in ActorHosted(mode))
            {
                foreach (var fault in new[] { "throw-once", "throw-always", "hang", "slow", "drop" }) rows.Add(mode, device, fault);
            }
        }
        return rows;
    }

    private GuestRun RunGuest(MachineConfig config, string guest, (string Target, Fault Fault)? fault = null)
        => GuestRun.Run(this, config, guest, Wait, fault is { } f ? [f] : []);

    private static readonly Dictionary<(IrqchipMode, string, string?), string> Baselines = [];

    [Theory]
    [Trait("Category", "Slow")]
    [MemberData(nameof(Rows))]
    public void Irqchip_fault_matrix(IrqchipMode mode, string device, string fault)
    {
        var (guest, exitStatus) = GuestFor(device);
        // The fault-free runs are deterministic, so each is made once per mode and guest (and device) and reused.
        string reference;
        lock (Baselines)
        {
            if (!Baselines.TryGetValue((mode, guest, null), out reference!))
            {
                var run0 = RunGuest(ConfigFor(mode, guest, null), guest);
                Assert.Equal(exitStatus, run0.Finished.ExitStatus);
                Baselines[(mode, guest, null)] = reference = run0.Serial;
            }
            if (!Baselines.ContainsKey((mode, guest, device)))
            {
                var mailbox = RunGuest(ConfigFor(mode, guest, device), guest);
                Assert.Equal(exitStatus, mailbox.Finished.ExitStatus);
                Assert.Equal(reference, mailbox.Serial);
                Assert.Equal(Route.Mailbox, mailbox.Stats.Devices.Single(d => d.Device == device).Route);
                Baselines[(mode, guest, device)] = mailbox.Serial;
            }
        }

        var run = RunGuest(ConfigFor(mode, guest, device), guest, (device, FaultFor(device, fault)));
        var deviceStats = run.Stats.Devices.Single(d => d.Device == device);
        if (fault == "drop")
        {
            var (_, outcome, line, changed) = DropOf(device);
            var lines = reference.Split('\n')[..^1];
            var (expectedStatus, expected) = outcome switch
            {
                DropOutcome.Complete => (exitStatus, lines),
                DropOutcome.LineChanged => (exitStatus, lines.Select(l => l == line ? changed! : l).ToArray()),
                DropOutcome.UnexpectedException => (UnexpectedExitStatus, [.. lines.TakeWhile(l => l != line), line!, changed!]),
                _ => throw new ArgumentOutOfRangeException(nameof(device)),
            };
            // The stated line is the guest's, so the expectation differs from the reference where the outcome says.
            if (outcome != DropOutcome.Complete) Assert.Contains(line, lines);
            Assert.Equal(expectedStatus, run.Finished.ExitStatus);
            Assert.Equal(string.Concat(expected.Select(l => l + "\n")), run.Serial);
            Assert.Equal(0, run.Status.Reboots);
            Assert.Equal(0, deviceStats.Restarts);
            Assert.True(deviceStats.FaultsFired == 1, $"{device}: {deviceStats.FaultsFired} messages dropped, expected 1");
            return;
        }
        Assert.Equal(exitStatus, run.Finished.ExitStatus);
        if (fault == "throw-always")
        {
            Assert.Equal(1, run.Status.Reboots);
            Assert.EndsWith(reference, run.Serial, StringComparison.Ordinal);
            var reset = Assert.Single(run.Events, e => e.Name == "RESET");
            Assert.Equal("host-error", reset.Data!["reason"]);
            Assert.Equal(2, run.Stats.Generation);
            Assert.Equal(0, deviceStats.Restarts); // the machine after the restart has no fault
        }
        else
        {
            Assert.Equal(reference, run.Serial);
            Assert.Equal(0, run.Status.Reboots);
            Assert.True(deviceStats.Accesses > 0 || deviceStats.FaultsFired > 0, $"{device}: nothing reached its actor");
            Assert.Equal(fault == "throw-once" ? 1 : 0, deviceStats.Restarts);
            Assert.True(deviceStats.FaultsFired > 0, $"{device}: the {fault} fault never fired");
        }
    }
}
