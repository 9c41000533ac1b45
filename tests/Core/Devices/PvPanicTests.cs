// QEMU's ISA pvpanic device (hw/misc/pvpanic-isa.c, docs/specs/pvpanic.rst in QEMU's tree): one byte at port 0x505.
// A read gives the supported events (bit 0 PANICKED, bit 1 CRASH_LOADED; QEMU 7.2 answers 0x03, checked with
// tests/Guests/pvpanic.asm); a write reports PANICKED if bit 0 is set, else CRASH_LOADED if bit 1 is set.
using ActorVmm.Core.Bus;
using ActorVmm.Core.Devices;

namespace ActorVmm.Core.Tests.Devices;

public sealed class PvPanicTests
{
    private sealed class Reports : IGuestPanicReport
    {
        public readonly List<string> Seen = [];

        public void GuestPanicked() => Seen.Add("panicked");

        public void GuestCrashLoaded() => Seen.Add("crash-loaded");
    }

    [Fact]
    public void A_read_gives_the_supported_events()
    {
        var dev = new PvPanic(new Reports());
        var b = new byte[1];
        dev.Read(0, b);
        Assert.Equal(0x03, b[0]);
        Assert.Equal(new PortRange(0x505, 1), dev.Ports);
    }

    [Theory]
    [InlineData(0x01, "panicked")]
    [InlineData(0x03, "panicked")]      // both bits: the panic alone is reported
    [InlineData(0x02, "crash-loaded")]
    [InlineData(0x81, "panicked")]      // an unknown bit beside a known one: counted, the known one reported
    public void A_write_reports_the_event_its_bits_name(byte value, string expected)
    {
        var reports = new Reports();
        var dev = new PvPanic(reports);
        dev.Write(0, [value]);
        Assert.Equal([expected], reports.Seen);
        Assert.Equal((value & 0xfc) != 0 ? 1 : 0, dev.UnknownEvents);
    }

    [Theory]
    [InlineData(0x00)]
    [InlineData(0x04)]
    [InlineData(0xfc)]
    public void A_write_without_a_known_event_reports_nothing(byte value)
    {
        var reports = new Reports();
        var dev = new PvPanic(reports);
        dev.Write(0, [value]);
        Assert.Empty(reports.Seen);
        Assert.Equal(new PvPanicState(0x505, 0, 0, value == 0 ? 0 : 1), dev.GetState());
    }

    [Fact]
    public void Wider_accesses_are_bad_accesses_and_report_nothing()
    {
        var reports = new Reports();
        var dev = new PvPanic(reports, port: 0x600);
        var w = new byte[2];
        dev.Read(0, w);
        Assert.Equal([0xff, 0xff], w);
        dev.Write(0, [0x01, 0x00]);
        Assert.Empty(reports.Seen);
        Assert.Equal(2, dev.BadAccesses);
        Assert.Equal(new PortRange(0x600, 1), dev.Ports);
    }
}
