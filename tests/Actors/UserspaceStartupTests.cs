using System.Buffers.Binary;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Devices;
using ActorVmm.Core.Machine;

namespace ActorVmm.Actors.Tests;

/// <summary>
/// kernel-irqchip=off with two vCPUs: the BSP's userspace local APIC sends the MP start-up sequence through its ICR
/// (Intel SDM vol. 3 §9.4.4: INIT level assert, INIT level de-assert, STARTUP) and the target vCPU gets INIT and
/// STARTUP with the vector through IVcpu.SignalInit/SignalStartup; the de-assert reaches no CPU (it only synchronises
/// arbitration IDs, §10.6.1), and the sender gets nothing. A backend without those entries has them counted.
/// </summary>
public sealed class UserspaceStartupTests
{
    private static void Write(HostedLapic lapic, uint offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        lapic.Write(offset, b);
    }

    /// <summary>ICR high (destination APIC ID 1), then ICR low: the write of the low half sends.</summary>
    private static void SendToApic1(HostedLapic lapic, uint icrLow)
    {
        Write(lapic, 0x310, 1u << 24);
        Write(lapic, 0x300, icrLow);
    }

    private static (PlatformIrqchip Chip, SignalRecorder Bsp, SignalRecorder Ap) Machine(bool apTakesStartup)
    {
        var vm = new FakeVm(new VmSpec(1 << 20, 2, IrqchipMode.Off), (_, _, _) => VcpuExit.SliceEnd);
        var chip = new PlatformIrqchip(IrqchipMode.Off, vm, new HostClock(), new NoMachineStop(), 1 << 20, 2, new DateTime(2026, 1, 1));
        var bsp = new SignalRecorder(0, true);
        var ap = new SignalRecorder(1, apTakesStartup);
        chip.AttachVcpus([bsp, ap]);
        Write(chip.LocalApics[0], 0xf0, 0x1ff); // SVR: the BSP's APIC software-enabled
        return (chip, bsp, ap);
    }

    [Fact]
    public void Init_assert_and_startup_reach_the_target_vcpu_and_the_deassert_does_not()
    {
        var (chip, bsp, ap) = Machine(apTakesStartup: true);
        var sender = chip.LocalApics[0];

        SendToApic1(sender, 0x0000c500); // INIT, level-triggered, assert
        SendToApic1(sender, 0x00008500); // INIT, level-triggered, de-assert
        SendToApic1(sender, 0x00000608); // STARTUP, vector 08 (start at 0800:0000)
        SendToApic1(sender, 0x00000608); // the second STARTUP of the protocol reaches the vCPU too (which ignores it if running)

        Assert.Equal(["INIT", "STARTUP 08", "STARTUP 08"], ap.Signals);
        Assert.Empty(bsp.Signals);
        Assert.Equal(0, chip.LocalApics[1].UnsupportedSignals);
    }

    [Fact]
    public void A_backend_without_startup_entries_has_the_signals_counted()
    {
        var (chip, _, ap) = Machine(apTakesStartup: false);
        var sender = chip.LocalApics[0];

        SendToApic1(sender, 0x0000c500);
        SendToApic1(sender, 0x00000608);

        Assert.Empty(ap.Signals);
        Assert.Equal(2, chip.LocalApics[1].UnsupportedSignals);
    }
}
