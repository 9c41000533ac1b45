// DropFault's Skip: the next Skip work messages pass, then the drop applies (Count, or Fraction from the seeded
// generator), as the irqchip fault matrix uses it to lose one chosen message of a guest's program.
namespace ActorVmm.Actors.Tests.Supervision;

public sealed class DropSkipTests
{
    private static bool[] Drops(FaultState state, int messages) => [.. Enumerable.Range(0, messages).Select(_ => state.BeforeMessage())];

    [Fact]
    public void Skip_lets_that_many_messages_pass_then_the_count_is_dropped_then_nothing()
    {
        var state = new FaultState("pit");
        state.Inject(new DropFault(Count: 2, Skip: 4));
        Assert.Equal([false, false, false, false, true, true, false, false], Drops(state, 8));
        Assert.Equal(2, state.Dropped);
        Assert.Empty(state.Report().Active);
    }

    [Fact]
    public void Without_skip_the_first_message_is_dropped()
    {
        var state = new FaultState("pic");
        state.Inject(new DropFault(Count: 1));
        Assert.Equal([true, false], Drops(state, 2));
    }

    [Fact]
    public void A_fraction_drop_after_a_skip_is_the_same_seeded_sequence_shifted()
    {
        var plain = new FaultState("a");
        plain.Inject(new DropFault(Fraction: 0.5, Seed: 7));
        var skipped = new FaultState("b");
        skipped.Inject(new DropFault(Fraction: 0.5, Seed: 7, Skip: 3));
        var first = Drops(plain, 20);
        var second = Drops(skipped, 23);
        Assert.Equal([false, false, false], second[..3]);
        Assert.Equal(first, second[3..]);
        Assert.Contains(true, first);
    }

    [Fact]
    public void A_negative_skip_is_refused_and_the_description_says_what_passes()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new DropFault(Count: 1, Skip: -1));
        Assert.Equal("drop the next 1 messages after 4 passed", new DropFault(Count: 1, Skip: 4).ToString());
        Assert.Equal("drop the next 3 messages", new DropFault(Count: 3).ToString());
    }
}
