// Boot timer: Firecracker's idea of a one-register device the guest writes when it reaches a milestone, so the
// VMM can say how long the boot took without trusting the guest's clock.
//
// Register (one I/O port or MMIO byte, chosen by the host; offset 0): an 8-bit write reports (value, ns since
// the device started) to an injected callback; the value 123 is Firecracker's "boot complete" magic and its
// first arrival is also kept in BootCompleteElapsedNs. Reads return 0.
// Emulated: the start time is the clock at construction (or at Restart, for a machine reset); time comes from
// the injected IClock only. Every write is reported (the host rate-limits its own logging if it must).
// Not emulated: anything else; wider or misplaced accesses are counted and ignored (reads all-ones).
using ActorVmm.Core.Bus;

namespace ActorVmm.Core.Devices;

public sealed record BootTimerState(long StartNs, long Writes, long? BootCompleteElapsedNs);

public sealed class BootTimer : IBusDevice
{
    /// <summary>Firecracker's MAGIC_VALUE_SIGNAL_GUEST_BOOT_COMPLETE.</summary>
    public const byte BootCompleteMagic = 123;

    private readonly IClock _clock;
    private readonly Action<byte, long> _report;
    private long _startNs;
    private long _writes;
    private long? _bootComplete;

    /// <param name="report">Called with (value written, ns elapsed since start) for every guest write.</param>
    public BootTimer(IClock clock, Action<byte, long> report)
    {
        _clock = clock;
        _report = report;
        _startNs = clock.NowNanoseconds;
    }

    public string Name => "boot-timer";

    public long BadAccesses { get; private set; }

    public long StartNs => _startNs;

    /// <summary>Guest writes reported so far.</summary>
    public long Writes => _writes;

    /// <summary>ns from start to the first write of <see cref="BootCompleteMagic"/>, or null.</summary>
    public long? BootCompleteElapsedNs => _bootComplete;

    /// <summary>Starts timing again (a machine reset); <paramref name="nowNs"/> defaults to the clock.</summary>
    public void Restart(long? nowNs = null)
    {
        _startNs = nowNs ?? _clock.NowNanoseconds;
        _writes = 0;
        _bootComplete = null;
    }

    public void Read(ulong offset, Span<byte> data)
    {
        if (offset == 0 && data.Length == 1)
        {
            data[0] = 0;
            return;
        }
        BadAccesses++;
        data.Fill(0xff);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset != 0 || data.Length != 1)
        {
            BadAccesses++;
            return;
        }
        long elapsed = _clock.NowNanoseconds - _startNs;
        _writes++;
        if (data[0] == BootCompleteMagic && _bootComplete is null) _bootComplete = elapsed;
        _report(data[0], elapsed);
    }

    public BootTimerState GetState() => new(_startNs, _writes, _bootComplete);

    public void FromState(BootTimerState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Writes < 0) throw new ArgumentException($"boot timer write count {state.Writes} is negative", nameof(state));
        if (state.BootCompleteElapsedNs < 0)
            throw new ArgumentException($"boot timer completion {state.BootCompleteElapsedNs} ns is negative", nameof(state));
        if (state.BootCompleteElapsedNs is not null && state.Writes == 0)
            throw new ArgumentException("boot timer completion recorded without any write", nameof(state));
        _startNs = state.StartNs;
        _writes = state.Writes;
        _bootComplete = state.BootCompleteElapsedNs;
    }
}
