// One run of a test guest under TestKit, for the fault matrices (FaultMatrixTests, IrqchipFaultMatrixTests): the VM
// actor built on the soft accelerator with tests/Guests/NAME.bin, the given faults injected before Run (so they meet
// the first machine's first messages), then what the run left: how it ended, the serial and debugcon text, the VM's
// status and statistics, and the events a subscriber saw.
using Akka.Actor;
using Akka.TestKit;
using ActorVmm.Core.Machine;
using ActorVmm.Native.Soft;

namespace ActorVmm.Actors.Tests.Supervision;

public sealed record GuestRun(
    VmActor.VmFinished Finished,
    string Serial,
    string DebugCon,
    VmActor.Status Status,
    VmActor.Stats Stats,
    IReadOnlyList<VmActor.VmEvent> Events)
{
    /// <summary>Runs <paramref name="guest"/> to its end (at most <paramref name="wait"/>) on the test thread of <paramref name="kit"/>.</summary>
    public static GuestRun Run(TestKitBase kit, MachineConfig config, string guest, TimeSpan wait, params (string Target, Fault Fault)[] faults)
    {
        var serial = new RecordingSink();
        var debugcon = new RecordingSink();
        var vm = kit.Sys.ActorOf(VmActor.Props(config, new SoftAccelerator(), TestGuests.Images(guest),
            (name, _) => name == PcMachineBuilder.DebugConName ? debugcon : serial));
        var events = kit.CreateTestProbe();
        vm.Tell(new VmActor.Subscribe(events.Ref), kit.TestActor);
        foreach (var (target, fault) in faults)
        {
            vm.Tell(new VmActor.FaultCommand(target, fault), kit.TestActor);
            Assert.Null(kit.ExpectMsg<VmActor.FaultReply>().Error);
        }
        vm.Tell(VmActor.Run.Instance, kit.TestActor);
        var finished = kit.ExpectMsg<VmActor.VmFinished>(wait);
        vm.Tell(VmActor.GetStatus.Instance, kit.TestActor);
        var status = kit.ExpectMsg<VmActor.Status>();
        vm.Tell(VmActor.GetStats.Instance, kit.TestActor);
        var stats = kit.ExpectMsg<VmActor.Stats>();
        var received = events.ReceiveWhile<VmActor.VmEvent>(TimeSpan.FromMilliseconds(200), x => (x as VmActor.VmEvent)!).ToList();
        kit.Sys.Stop(vm);
        return new GuestRun(finished, serial.Text, debugcon.Text, status, stats, received);
    }
}
