// Local APIC tests: registers driven through the xAPIC page and the x2APIC MSRs as Intel SDM vol. 3 ch. 11
// describes them, with a hand-wound clock and recording CPU and IPI sinks.
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

internal sealed class RecordingApicCpu : IApicCpu
{
    public int Interrupts, Nmis, Smis, Inits;
    public List<byte> Startups { get; } = [];

    public void SignalInterrupt() => Interrupts++;
    public void SignalNmi() => Nmis++;
    public void SignalSmi() => Smis++;
    public void SignalInit() => Inits++;
    public void SignalStartup(byte vector) => Startups.Add(vector);
}

public sealed class LocalApicTests
{
    private const long TscHz = 2_500_000_000;

    private readonly ManualClock _clock = new();
    private readonly RecordingApicCpu _cpu = new();
    private readonly RecordingInterruptSink _ipis = new();
    private readonly List<byte> _eois = [];

    private LocalApic Make(uint id = 0, bool bsp = true, long tscHz = TscHz, bool offerSuppression = false)
        => new(id, bsp, tscHz, _clock, _cpu, _ipis, _eois.Add, offerSuppression);

    private static LocalApic Enabled(LocalApic apic)
    {
        apic.Write32(0xf0, 0x1ff); // SVR: software enable, spurious vector 0xff
        return apic;
    }

    private static uint Reg(LocalApic apic, int offset) => apic.Read32((ulong)offset);

    private static bool IrrHas(LocalApic apic, int vector) => (Reg(apic, 0x200 + (vector >> 5) * 0x10) & (1u << (vector & 31))) != 0;

    private static bool IsrHas(LocalApic apic, int vector) => (Reg(apic, 0x100 + (vector >> 5) * 0x10) & (1u << (vector & 31))) != 0;

    private static bool TmrHas(LocalApic apic, int vector) => (Reg(apic, 0x180 + (vector >> 5) * 0x10) & (1u << (vector & 31))) != 0;

    private static uint ReadEsr(LocalApic apic)
    {
        apic.Write32(0x280, 0);
        return Reg(apic, 0x280);
    }

    [Fact]
    public void Power_on_state_matches_the_sdm_with_virtual_wire_on_the_bsp()
    {
        var bsp = Make(id: 0, bsp: true);
        Assert.Equal(0xfee0_0900UL, bsp.ApicBaseMsr);
        Assert.Equal(0x0005_0014u, Reg(bsp, 0x30));
        Assert.Equal(0u, Reg(bsp, 0x20));
        Assert.Equal(0xffu, Reg(bsp, 0xf0));
        Assert.Equal(0xffff_ffffu, Reg(bsp, 0xe0));
        Assert.Equal(0x0001_0000u, Reg(bsp, 0x320));
        Assert.Equal(0x0000_0700u, Reg(bsp, 0x350));
        Assert.Equal(0x0001_0000u, Reg(bsp, 0x360));

        var ap = Make(id: 3, bsp: false);
        Assert.Equal(0xfee0_0800UL, ap.ApicBaseMsr);
        Assert.Equal(0x0300_0000u, Reg(ap, 0x20));
        Assert.Equal(0x0001_0000u, Reg(ap, 0x350));
    }

    [Fact]
    public void Only_a_vector_in_a_class_above_ppr_is_delivered()
    {
        var apic = Enabled(Make());
        apic.AcceptInterrupt(0x51, false);
        apic.AcceptInterrupt(0x61, false);
        apic.Write32(0x80, 0x55);
        Assert.Equal(0x55u, Reg(apic, 0xa0));
        Assert.True(apic.HasInterrupt(out byte v));
        Assert.Equal(0x61, v);

        apic.Write32(0x80, 0x65);
        Assert.False(apic.HasInterrupt(out _));
        Assert.Equal(0xff, apic.Acknowledge()); // spurious vector, ISR untouched
        Assert.False(IsrHas(apic, 0x61));

        apic.Write32(0x80, 0);
        Assert.Equal(0x61, apic.Acknowledge());
        Assert.True(IsrHas(apic, 0x61));
        Assert.False(IrrHas(apic, 0x61));
        Assert.Equal(0x60u, Reg(apic, 0xa0)); // PPR = ISRV class
        Assert.False(apic.HasInterrupt(out _)); // 0x51 is below the in-service class

        apic.AcceptInterrupt(0x62, false);
        Assert.False(apic.HasInterrupt(out _)); // same class as in service
        apic.AcceptInterrupt(0x71, false);
        Assert.True(apic.HasInterrupt(out v));
        Assert.Equal(0x71, v);
    }

    [Fact]
    public void A_lower_class_waits_for_the_eoi_of_the_vector_in_service()
    {
        var apic = Enabled(Make());
        apic.AcceptInterrupt(0x40, levelTriggered: true);
        apic.AcceptInterrupt(0x80, levelTriggered: false);
        Assert.True(TmrHas(apic, 0x40));
        Assert.False(TmrHas(apic, 0x80));
        Assert.Equal(0x80, apic.Acknowledge());
        Assert.Equal(0xff, apic.Acknowledge()); // 0x40 is below the in-service class: spurious
        Assert.True(IrrHas(apic, 0x40));
        apic.Write32(0xb0, 0);
        Assert.Empty(_eois); // 0x80 was edge-triggered
        Assert.Equal(0x40, apic.Acknowledge());
    }

    [Fact]
    public void Eoi_of_a_level_vector_is_broadcast_and_edge_is_not()
    {
        var apic = Enabled(Make());
        apic.AcceptInterrupt(0x40, levelTriggered: true);
        Assert.Equal(0x40, apic.Acknowledge());
        apic.AcceptInterrupt(0x80, levelTriggered: false);
        Assert.Equal(0x80, apic.Acknowledge()); // higher class nests over 0x40
        apic.Write32(0xb0, 0);
        Assert.False(IsrHas(apic, 0x80));
        Assert.True(IsrHas(apic, 0x40));
        Assert.Empty(_eois);
        apic.Write32(0xb0, 0);
        Assert.False(IsrHas(apic, 0x40));
        Assert.Equal([(byte)0x40], _eois);
    }

    [Fact]
    public void Eoi_broadcast_suppression_needs_the_version_bit()
    {
        var plain = Enabled(Make());
        plain.Write32(0xf0, 0x11ff);
        Assert.Equal(0x1ffu, Reg(plain, 0xf0)); // bit 12 not writable when not offered
        Assert.Equal(0u, Reg(plain, 0x30) >> 24);

        var offered = Make(offerSuppression: true);
        Assert.Equal(0x0105_0014u, Reg(offered, 0x30));
        offered.Write32(0xf0, 0x11ff);
        Assert.Equal(0x11ffu, Reg(offered, 0xf0));
        offered.AcceptInterrupt(0x40, levelTriggered: true);
        offered.Acknowledge();
        offered.Write32(0xb0, 0);
        Assert.Empty(_eois);
        Assert.False(IsrHas(offered, 0x40));
    }

    [Fact]
    public void Esr_latches_on_write_and_reports_illegal_vectors()
    {
        var apic = Enabled(Make());
        apic.Write32(0x310, 1u << 24);
        apic.Write32(0x300, 0x0000_4005); // fixed IPI with vector 5
        Assert.Empty(_ipis.Messages);
        Assert.Equal(0u, Reg(apic, 0x280)); // not visible until ESR is written
        Assert.Equal(LocalApic.EsrSendIllegalVector, ReadEsr(apic));
        Assert.Equal(0u, ReadEsr(apic));

        apic.AcceptInterrupt(3, false);
        Assert.False(IrrHas(apic, 3));
        Assert.Equal(LocalApic.EsrReceivedIllegalVector, ReadEsr(apic));
    }

    [Fact]
    public void A_new_error_raises_the_error_lvt()
    {
        var apic = Enabled(Make());
        apic.Write32(0x370, 0xee);
        apic.AcceptInterrupt(2, false);
        Assert.True(IrrHas(apic, 0xee));
    }

    [Fact]
    public void Reserved_register_offsets_are_illegal_register_addresses()
    {
        var apic = Enabled(Make());
        Assert.Equal(0u, Reg(apic, 0x40));
        Assert.Equal(1, apic.BadAccesses);
        Assert.Equal(LocalApic.EsrIllegalRegisterAddress, ReadEsr(apic));
        Assert.Equal(0xffff_ffffu, apic.Read32(0x24)); // unaligned: not a register access at all
        Assert.Equal(0xffffu, apic.Read16(0x80));
        Assert.Equal(3, apic.BadAccesses);
    }

    [Fact]
    public void Software_disable_masks_every_lvt_and_drops_fixed_interrupts()
    {
        var apic = Enabled(Make());
        apic.Write32(0x320, 0x30);
        Assert.Equal(0x30u, Reg(apic, 0x320));
        apic.Write32(0xf0, 0xff); // software disable
        Assert.Equal(0x1_0030u, Reg(apic, 0x320));
        Assert.Equal(0x1_0700u, Reg(apic, 0x350));
        apic.Write32(0x320, 0x31); // the mask cannot be cleared while disabled
        Assert.Equal(0x1_0031u, Reg(apic, 0x320));
        apic.AcceptInterrupt(0x40, false);
        Assert.False(IrrHas(apic, 0x40));
        Assert.Equal(1, apic.DroppedInterrupts);
    }

    [Fact]
    public void One_shot_timer_counts_down_by_the_divider_and_fires_once()
    {
        var apic = Enabled(Make());
        apic.Write32(0x3e0, 0x0); // divide by 2
        apic.Write32(0x320, 0x30);
        apic.Write32(0x380, 1000);
        Assert.Equal(2000L, apic.NextDeadlineNs);
        _clock.NowNanoseconds = 500;
        Assert.Equal(750u, Reg(apic, 0x390));
        apic.Advance(1999);
        Assert.False(IrrHas(apic, 0x30));
        _clock.NowNanoseconds = 2000;
        apic.Advance(2000);
        Assert.True(IrrHas(apic, 0x30));
        Assert.Null(apic.NextDeadlineNs);
        Assert.Equal(0u, Reg(apic, 0x390));
        Assert.Equal(1000u, Reg(apic, 0x380));
    }

    [Theory]
    [InlineData(0x0u, 2)]
    [InlineData(0x1u, 4)]
    [InlineData(0x2u, 8)]
    [InlineData(0x3u, 16)]
    [InlineData(0x8u, 32)]
    [InlineData(0x9u, 64)]
    [InlineData(0xau, 128)]
    [InlineData(0xbu, 1)]
    public void Divide_configuration_follows_the_sdm_table(uint dcr, long divisor)
    {
        var apic = Enabled(Make());
        apic.Write32(0x3e0, dcr);
        Assert.Equal(dcr, Reg(apic, 0x3e0));
        apic.Write32(0x320, 0x30);
        apic.Write32(0x380, 10);
        Assert.Equal(10 * divisor, apic.NextDeadlineNs);
    }

    [Fact]
    public void Periodic_timer_reloads_and_collapses_missed_periods()
    {
        var apic = Enabled(Make());
        apic.Write32(0x3e0, 0xb); // divide by 1
        apic.Write32(0x320, 0x2_0031); // periodic
        apic.Write32(0x380, 100);
        apic.Advance(100);
        Assert.Equal(0x31, apic.Acknowledge());
        apic.Write32(0xb0, 0);
        Assert.Equal(200L, apic.NextDeadlineNs);
        apic.Advance(350);
        Assert.Equal(0x31, apic.Acknowledge());
        Assert.False(apic.HasInterrupt(out _));
        Assert.Equal(400L, apic.NextDeadlineNs);
        _clock.NowNanoseconds = 350;
        Assert.Equal(50u, Reg(apic, 0x390));
    }

    [Fact]
    public void Masked_timer_expiry_is_not_held_for_a_later_unmask()
    {
        var apic = Enabled(Make());
        apic.Write32(0x3e0, 0xb);
        apic.Write32(0x320, 0x1_0030);
        apic.Write32(0x380, 100);
        Assert.Null(apic.NextDeadlineNs);
        _clock.NowNanoseconds = 150;
        apic.Write32(0x320, 0x30);
        apic.Advance(150);
        Assert.False(IrrHas(apic, 0x30));
        Assert.Null(apic.NextDeadlineNs);
    }

    [Fact]
    public void Tsc_deadline_mode_fires_when_the_tsc_reaches_the_deadline()
    {
        var apic = Enabled(Make());
        apic.Write32(0x320, 0x4_0040);
        Assert.True(apic.WriteMsr(LocalApic.IA32_TSC_DEADLINE, 5000)); // 5000 ticks at 2.5 GHz = 2000 ns
        Assert.Equal(2000L, apic.NextDeadlineNs);
        apic.Write32(0x380, 77); // ignored in TSC-deadline mode
        Assert.Equal(0u, Reg(apic, 0x380));
        Assert.Equal(0u, Reg(apic, 0x390));
        apic.Advance(1999);
        Assert.False(IrrHas(apic, 0x40));
        apic.Advance(2000);
        Assert.True(IrrHas(apic, 0x40));
        Assert.True(apic.ReadMsr(LocalApic.IA32_TSC_DEADLINE, out ulong after));
        Assert.Equal(0UL, after);
        Assert.Equal(5000UL, LocalApic.TscAt(2000, TscHz));
    }

    [Fact]
    public void Tsc_deadline_in_the_past_fires_at_once_and_mode_switch_disarms()
    {
        var apic = Enabled(Make());
        apic.Write32(0x320, 0x4_0040);
        _clock.NowNanoseconds = 10_000;
        apic.WriteMsr(LocalApic.IA32_TSC_DEADLINE, 1);
        Assert.True(IrrHas(apic, 0x40));

        apic.WriteMsr(LocalApic.IA32_TSC_DEADLINE, ulong.MaxValue / 2);
        Assert.NotNull(apic.NextDeadlineNs);
        apic.Write32(0x320, 0x40); // to one-shot: disarmed
        Assert.Null(apic.NextDeadlineNs);
        Assert.True(apic.ReadMsr(LocalApic.IA32_TSC_DEADLINE, out ulong v));
        Assert.Equal(0UL, v);
    }

    [Fact]
    public void Without_a_tsc_frequency_there_is_no_tsc_deadline_mode()
    {
        var apic = Enabled(Make(tscHz: 0));
        apic.Write32(0x320, 0x4_0040);
        Assert.Equal(0x40u, Reg(apic, 0x320));
        Assert.False(apic.WriteMsr(LocalApic.IA32_TSC_DEADLINE, 5));
        Assert.False(apic.ReadMsr(LocalApic.IA32_TSC_DEADLINE, out _));
    }

    [Fact]
    public void Apic_base_transitions_follow_the_sdm()
    {
        var apic = Make(id: 0x23, bsp: false);
        const ulong b = 0xfee0_0000;
        Assert.False(apic.ReadMsr(0x802, out _)); // x2APIC MSRs #GP in xAPIC mode
        Assert.False(apic.WriteMsr(LocalApic.IA32_APIC_BASE, b | LocalApic.BaseExtd)); // EXTD without EN
        Assert.False(apic.WriteMsr(LocalApic.IA32_APIC_BASE, b | LocalApic.BaseEnable | 1)); // reserved bit 0

        Assert.True(apic.WriteMsr(LocalApic.IA32_APIC_BASE, b | LocalApic.BaseEnable | LocalApic.BaseExtd));
        Assert.True(apic.X2ApicMode);
        Assert.False(apic.WriteMsr(LocalApic.IA32_APIC_BASE, b | LocalApic.BaseEnable)); // x2APIC -> xAPIC
        Assert.True(apic.ReadMsr(0x802, out ulong id));
        Assert.Equal(0x23UL, id);
        Assert.True(apic.ReadMsr(0x80d, out ulong ldr));
        Assert.Equal(0x0002_0008UL, ldr); // cluster 2, member bit 3
        Assert.Equal(0xffff_ffffu, apic.Read32(0x20)); // the page does not decode in x2APIC mode

        Assert.True(apic.WriteMsr(LocalApic.IA32_APIC_BASE, b)); // to disabled
        Assert.False(apic.HardwareEnabled);
        Assert.False(apic.WriteMsr(LocalApic.IA32_APIC_BASE, b | LocalApic.BaseEnable | LocalApic.BaseExtd)); // disabled -> x2APIC
        Assert.True(apic.WriteMsr(LocalApic.IA32_APIC_BASE, 0xfeb0_0000 | LocalApic.BaseEnable | LocalApic.BaseBsp));
        Assert.Equal(0xfeb0_0000UL, apic.BaseAddress);
        Assert.Equal(0xfeb0_0800UL, apic.ApicBaseMsr); // BSP is read-only
        Assert.True(apic.MmioEnabled);
    }

    [Fact]
    public void Disabling_the_apic_loses_its_programming()
    {
        var apic = Enabled(Make(id: 1, bsp: false));
        apic.Write32(0x80, 0x40);
        apic.Write32(0x20, 0x0700_0000);
        apic.AcceptInterrupt(0x50, false);
        Assert.True(apic.WriteMsr(LocalApic.IA32_APIC_BASE, 0xfee0_0000));
        apic.AcceptInterrupt(0x60, false);
        Assert.Equal(1, apic.DroppedInterrupts);
        Assert.True(apic.WriteMsr(LocalApic.IA32_APIC_BASE, 0xfee0_0000 | LocalApic.BaseEnable));
        Assert.Equal(0u, Reg(apic, 0x80));
        Assert.Equal(0xffu, Reg(apic, 0xf0));
        Assert.Equal(0x0100_0000u, Reg(apic, 0x20));
        Assert.False(IrrHas(apic, 0x50));
    }

    [Fact]
    public void X2apic_registers_enforce_their_access_rules()
    {
        var apic = Make(id: 5, bsp: false);
        apic.WriteMsr(LocalApic.IA32_APIC_BASE, 0xfee0_0000 | LocalApic.BaseEnable | LocalApic.BaseExtd);
        Assert.True(apic.WriteMsr(0x80f, 0x1ff));
        Assert.False(apic.WriteMsr(0x802, 9)); // ID read-only
        Assert.False(apic.WriteMsr(0x80b, 1)); // EOI must be 0
        Assert.True(apic.WriteMsr(0x80b, 0));
        Assert.False(apic.ReadMsr(0x80b, out _)); // EOI write-only
        Assert.False(apic.ReadMsr(0x80e, out _)); // no DFR
        Assert.False(apic.ReadMsr(0x809, out _)); // no APR
        Assert.False(apic.ReadMsr(0x831, out _)); // no ICR high
        Assert.False(apic.WriteMsr(0x808, 0x1_0000_0000)); // TPR upper bits
        Assert.False(apic.WriteMsr(0x828, 1)); // ESR must be written with 0
        Assert.False(apic.WriteMsr(0x830, 1u << 13)); // ICR reserved bit

        Assert.True(apic.WriteMsr(0x83f, 0x45));
        Assert.True(apic.HasInterrupt(out byte v));
        Assert.Equal(0x45, v);
        Assert.True(apic.WriteMsr(0x83f, 0x05));
        Assert.True(apic.WriteMsr(0x828, 0));
        Assert.True(apic.ReadMsr(0x828, out ulong esr));
        Assert.Equal(LocalApic.EsrSendIllegalVector, (uint)esr);

        Assert.True(apic.WriteMsr(0x830, (0x1234UL << 32) | 0x4000 | 0x0800 | 0x61));
        var m = Assert.Single(_ipis.Messages);
        Assert.Equal(0x1234u, m.Destination);
        Assert.True(m.X2ApicDestination);
        Assert.True(m.LogicalDestination);
        Assert.Equal(0x61, m.Vector);
        Assert.Equal(5u, m.SourceApicId);
        Assert.True(apic.ReadMsr(0x830, out ulong icr));
        Assert.Equal((0x1234UL << 32) | 0x4861, icr);
    }

    [Fact]
    public void Xapic_icr_sends_fixed_init_and_startup_ipis()
    {
        var apic = Enabled(Make(id: 0));
        apic.Write32(0x310, 0x0300_0000);
        apic.Write32(0x300, 0x0000_4041);
        apic.Write32(0x300, 0x0000_4500);
        apic.Write32(0x300, 0x0000_4608);
        Assert.Equal(3, _ipis.Messages.Count);
        Assert.Equal(new ApicMessage(0x41, ApicDeliveryMode.Fixed, false, 3), _ipis.Messages[0]);
        Assert.Equal(ApicDeliveryMode.Init, _ipis.Messages[1].DeliveryMode);
        Assert.Equal(ApicDeliveryMode.StartUp, _ipis.Messages[2].DeliveryMode);
        Assert.Equal(0x08, _ipis.Messages[2].Vector);
        Assert.Equal(0x0000_4608u, Reg(apic, 0x300)); // delivery status idle
        Assert.Equal(0x0300_0000u, Reg(apic, 0x310));
    }

    [Fact]
    public void Shorthands_self_and_all_excluding_self()
    {
        var apic = Enabled(Make(id: 2, bsp: false));
        apic.Write32(0x300, 0x0004_4051); // self
        Assert.Empty(_ipis.Messages);
        Assert.True(IrrHas(apic, 0x51));
        apic.Write32(0x300, 0x000c_4052); // all excluding self
        var m = Assert.Single(_ipis.Messages);
        Assert.Equal(ApicShorthand.AllExcludingSelf, m.Shorthand);
        Assert.Equal(2u, m.SourceApicId);
        Assert.False(apic.Matches(m));
        Assert.True(LocalApic.MatchesDestination(m, new ApicDestinationInfo(1, false, 0, 0xffff_ffff, true)));
        apic.Write32(0x300, 0x0008_4053); // all including self
        Assert.True(apic.Matches(_ipis.Messages[1]));
    }

    [Fact]
    public void Destination_matching_physical_flat_cluster_and_x2apic()
    {
        static ApicDestinationInfo X(uint id, uint ldr = 0, uint dfr = 0xffff_ffff) => new(id, false, ldr, dfr, true);
        static ApicMessage Phys(uint dest) => new(0x40, ApicDeliveryMode.Fixed, false, dest);
        static ApicMessage Logical(uint dest, bool x2 = false) => new(0x40, ApicDeliveryMode.Fixed, true, dest, X2ApicDestination: x2);

        Assert.True(LocalApic.MatchesDestination(Phys(3), X(3)));
        Assert.False(LocalApic.MatchesDestination(Phys(4), X(3)));
        Assert.True(LocalApic.MatchesDestination(Phys(0xff), X(3)));
        Assert.False(LocalApic.MatchesDestination(Phys(3), X(3) with { HardwareEnabled = false }));

        // Flat: LDR bits 31:24 are a bit mask.
        Assert.True(LocalApic.MatchesDestination(Logical(0x03), X(0, 0x0100_0000)));
        Assert.False(LocalApic.MatchesDestination(Logical(0x02), X(0, 0x0100_0000)));
        // Cluster: cluster in bits 7:4, members in 3:0.
        var cluster = X(0, 0x2100_0000, 0x0fff_ffff);
        Assert.True(LocalApic.MatchesDestination(Logical(0x21), cluster));
        Assert.True(LocalApic.MatchesDestination(Logical(0x23), cluster));
        Assert.False(LocalApic.MatchesDestination(Logical(0x31), cluster));
        Assert.False(LocalApic.MatchesDestination(Logical(0x22), cluster));
        // x2APIC: ID 0x23 is cluster 2, member bit 3; physical IDs are 32 bits.
        var x2 = new ApicDestinationInfo(0x23, true, 0x0002_0008, 0, true);
        Assert.True(LocalApic.MatchesDestination(Logical(0x0002_0008, x2: true), x2));
        Assert.False(LocalApic.MatchesDestination(Logical(0x0002_0001, x2: true), x2));
        Assert.False(LocalApic.MatchesDestination(Logical(0x0003_0008, x2: true), x2));
        Assert.True(LocalApic.MatchesDestination(Logical(0xffff_ffff, x2: true), x2));
        Assert.True(LocalApic.MatchesDestination(new ApicMessage(1, ApicDeliveryMode.Fixed, false, 0x23, X2ApicDestination: true), x2));
        Assert.False(LocalApic.MatchesDestination(new ApicMessage(1, ApicDeliveryMode.Fixed, false, 0x123, X2ApicDestination: true), x2));
    }

    [Fact]
    public void Xapic_ldr_and_dfr_feed_the_apic_own_matching()
    {
        var apic = Enabled(Make(id: 1, bsp: false));
        apic.Write32(0xd0, 0x04ff_ffff);
        apic.Write32(0xe0, 0x0);
        Assert.Equal(0x0400_0000u, Reg(apic, 0xd0));
        Assert.Equal(0x0fff_ffffu, Reg(apic, 0xe0));
        Assert.True(apic.Matches(new ApicMessage(0x40, ApicDeliveryMode.Fixed, true, 0x04)));
        Assert.False(apic.Matches(new ApicMessage(0x40, ApicDeliveryMode.Fixed, true, 0x14)));
    }

    [Fact]
    public void Accepted_messages_reach_the_cpu()
    {
        var apic = Enabled(Make(id: 1, bsp: false));
        apic.AcceptMessage(new ApicMessage(0, ApicDeliveryMode.Nmi, false, 1));
        apic.AcceptMessage(new ApicMessage(0, ApicDeliveryMode.Smi, false, 1));
        apic.AcceptMessage(new ApicMessage(0x9a, ApicDeliveryMode.StartUp, false, 1));
        Assert.Equal(1, _cpu.Nmis);
        Assert.Equal(1, _cpu.Smis);
        Assert.Equal([(byte)0x9a], _cpu.Startups);

        apic.AcceptInterrupt(0x50, false);
        apic.AcceptMessage(new ApicMessage(0, ApicDeliveryMode.Init, false, 1, LevelTriggered: true, Level: false));
        Assert.Equal(0, _cpu.Inits); // INIT de-assert does nothing
        apic.AcceptMessage(new ApicMessage(0, ApicDeliveryMode.Init, false, 1));
        Assert.Equal(1, _cpu.Inits);
        Assert.False(IrrHas(apic, 0x50)); // INIT reset the APIC...
        Assert.Equal(0x0100_0000u, Reg(apic, 0x20)); // ...but kept its ID
        Assert.Equal(0xffu, Reg(apic, 0xf0));

        apic.AcceptMessage(new ApicMessage(0, ApicDeliveryMode.ExtInt, false, 1));
        Assert.True(apic.ExtIntPending);
        apic.AcknowledgeExtInt();
        Assert.False(apic.ExtIntPending);
    }

    [Fact]
    public void Lint0_virtual_wire_and_disabled_apic_pass_the_pic_through()
    {
        var bsp = Make(id: 0, bsp: true);
        bsp.SetLint(0, true);
        Assert.True(bsp.ExtIntPending);
        bsp.SetLint(0, false);
        Assert.False(bsp.ExtIntPending);

        var ap = Make(id: 1, bsp: false);
        ap.SetLint(0, true);
        Assert.False(ap.ExtIntPending); // LINT0 masked at power-up on an AP
        ap.WriteMsr(LocalApic.IA32_APIC_BASE, 0xfee0_0000);
        Assert.True(ap.ExtIntPending); // no APIC: LINT0 is INTR
        ap.SetLint(1, true);
        Assert.Equal(1, _cpu.Nmis); // and LINT1 is NMI
    }

    [Fact]
    public void Lint1_in_nmi_mode_signals_nmi_on_rising_edges()
    {
        var apic = Enabled(Make());
        apic.Write32(0x360, 0x400);
        apic.SetLint(1, true);
        apic.SetLint(1, true);
        apic.SetLint(1, false);
        apic.SetLint(1, true);
        Assert.Equal(2, _cpu.Nmis);
    }

    [Fact]
    public void Level_triggered_fixed_lint_uses_remote_irr()
    {
        var apic = Enabled(Make());
        apic.Write32(0x350, 0x8050); // fixed, level, vector 0x50
        apic.SetLint(0, true);
        Assert.True(IrrHas(apic, 0x50));
        Assert.True(TmrHas(apic, 0x50));
        Assert.NotEqual(0u, Reg(apic, 0x350) & LocalApic.LvtRemoteIrr);
        Assert.Equal(0x50, apic.Acknowledge());
        apic.Write32(0xb0, 0);
        Assert.True(IrrHas(apic, 0x50)); // still asserted: delivered again after EOI
        Assert.Equal([(byte)0x50], _eois);
    }

    [Fact]
    public void State_round_trips_and_the_copy_behaves_the_same()
    {
        var apic = Enabled(Make(id: 4, bsp: false));
        apic.Write32(0x80, 0x20);
        apic.Write32(0xd0, 0x0800_0000);
        apic.AcceptInterrupt(0x90, true);
        apic.Acknowledge();
        apic.AcceptInterrupt(0xa1, false);
        apic.Write32(0x3e0, 0x3);
        apic.Write32(0x320, 0x2_0033);
        _clock.NowNanoseconds = 100;
        apic.Write32(0x380, 50);
        apic.AcceptInterrupt(1, false);
        apic.SetLint(1, true);
        var state = apic.GetState();

        var copy = new LocalApic(4, false, TscHz, _clock, _cpu, _ipis, _eois.Add);
        copy.FromState(state);
        var again = copy.GetState();
        Assert.Equal(state with { Isr = [], Tmr = [], Irr = [], Lvt = [] }, again with { Isr = [], Tmr = [], Irr = [], Lvt = [] });
        Assert.Equal(state.Isr, again.Isr);
        Assert.Equal(state.Irr, again.Irr);
        Assert.Equal(state.Tmr, again.Tmr);
        Assert.Equal(state.Lvt, again.Lvt);
        Assert.Equal(apic.NextDeadlineNs, copy.NextDeadlineNs);
        Assert.Equal(900L, copy.NextDeadlineNs);
        Assert.True(copy.HasInterrupt(out byte v));
        Assert.Equal(0xa1, v);
        copy.Write32(0xb0, 0);
        Assert.Equal([(byte)0x90], _eois);
    }

    [Fact]
    public void FromState_rejects_bad_records()
    {
        var apic = Make();
        var good = apic.GetState();
        Assert.Throws<ArgumentException>(() => apic.FromState(good with { Irr = new uint[7] }));
        Assert.Throws<ArgumentException>(() => apic.FromState(good with { Lvt = new uint[5] }));
        Assert.Throws<ArgumentException>(() => apic.FromState(good with { ApicBase = good.ApicBase | 1 }));
        Assert.Throws<ArgumentException>(() => apic.FromState(good with { ApicBase = 0xfee0_0000 | LocalApic.BaseExtd | LocalApic.BaseBsp }));
        Assert.Throws<ArgumentException>(() => apic.FromState(good with { ApicBase = good.ApicBase & ~LocalApic.BaseBsp }));
        Assert.Throws<ArgumentException>(() => apic.FromState(good with { DivideConfig = 0x4 }));
        Assert.Throws<ArgumentException>(() => apic.FromState(good with { Svr = 0x1000 }));
        Assert.Throws<ArgumentException>(() => apic.FromState(good with { Lvt = [0x8_0000, 0, 0, 0, 0, 0] }));
    }

    [Fact]
    public void Random_guest_never_throws_and_stays_consistent()
    {
        var rng = new Random(7);
        var apic = Make(id: 1, bsp: false);
        for (int i = 0; i < 100_000; i++)
        {
            _clock.Advance(rng.Next(0, 50));
            switch (rng.Next(7))
            {
                case 0:
                    apic.RandomAccess(rng, 0x1000);
                    break;
                case 1:
                    apic.Write32((ulong)rng.Next(0x40) << 4, rng.Next(3) == 0 ? (uint)rng.NextInt64() : (uint)rng.Next(0x400));
                    break;
                case 2:
                    apic.WriteMsr((uint)(0x800 + rng.Next(0x100)), rng.Next(2) == 0 ? (ulong)rng.Next(0x400) : (ulong)rng.NextInt64());
                    apic.ReadMsr((uint)(0x800 + rng.Next(0x100)), out _);
                    break;
                case 3:
                    uint[] bases = [0xfee00000, 0xfee00800, 0xfee00c00, 0xfee00400, (uint)rng.NextInt64()];
                    apic.WriteMsr(LocalApic.IA32_APIC_BASE, bases[rng.Next(bases.Length)]);
                    break;
                case 4:
                    apic.AcceptInterrupt((byte)rng.Next(256), rng.Next(2) == 0);
                    apic.SetLint(rng.Next(3), rng.Next(2) == 0);
                    break;
                case 5:
                    if (apic.HasInterrupt(out _)) apic.Acknowledge();
                    apic.WriteMsr(LocalApic.IA32_TSC_DEADLINE, (ulong)rng.Next(1_000_000));
                    break;
                default:
                    apic.Advance(_clock.NowNanoseconds);
                    break;
            }
            var d = apic.NextDeadlineNs;
            Assert.True(d is null || d >= 0);
        }
        var state = apic.GetState();
        Assert.Equal(0u, state.Irr[0] & 0xffff); // vectors 0-15 never enter IRR
        new LocalApic(1, false, TscHz, _clock, _cpu, _ipis, _eois.Add).FromState(state);
    }
}
