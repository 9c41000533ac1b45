// The single-instruction emulator the vmm(4) backend uses for MMIO exits (INST_EMUL): load a vCPU's state into
// this CPU, execute exactly the one instruction at RIP with the software CPU's decoder and handlers, and hand
// back the new state. Memory operands go through the CPU's own paging and segmentation into guest RAM; an
// address outside RAM becomes an MmioRead/MmioWrite call on the exit handler the CPU was built with, which is
// the emulated device. Faults are not delivered: the result reports the exception so the caller can inject it
// into the real vCPU (CR2 is already in the returned state for #PF). No event (interrupt, NMI, single-step trap)
// is taken here; those belong to the hypervisor. What the instruction may change is what a hypervisor's
// instruction emulator may change: general registers, RIP, RFLAGS and memory. Instructions on x87/SSE registers
// run against this CPU's own (scratch) FPU state, so a caller must not feed them (vmm's kernel emulator refuses
// them as well).
using ActorVmm.Core.Accel;

namespace ActorVmm.Native.Soft;

public enum EmulationOutcome
{
    /// <summary>The instruction completed; the state holds its results.</summary>
    Retired,
    /// <summary>The instruction raised an exception (not delivered): Vector and ErrorCode say which.</summary>
    Fault,
}

public readonly record struct EmulationResult(EmulationOutcome Outcome, byte Vector = 0, uint? ErrorCode = null);

public sealed partial class SoftCpu
{
    /// <summary>
    /// Executes the one instruction at <paramref name="registers"/>.Rip in the given state and writes the state after
    /// it back. On a fault the state is the one the fault left (RIP unchanged; CR2 set for #PF).
    /// </summary>
    public EmulationResult EmulateOne(ref CpuRegisters registers, ref SystemRegisters system)
    {
        SetSystemRegisters(system);
        SetRegisters(registers);
        _pendingVector = -1;
        _pendingNmi = false;
        _interruptShadow = false;
        EmulationResult result;
        try
        {
            ref readonly var d = ref Fetch();
            _nextRip = (Rip + (ulong)d.Insn.Length) & _fetchIpMask;
            ExecuteDecoded(in d);
            Rip = _nextRip;
            _retired++;
            result = new EmulationResult(EmulationOutcome.Retired);
        }
        catch (CpuFault fault)
        {
            result = new EmulationResult(EmulationOutcome.Fault, fault.Vector, fault.ErrorCode);
        }
        registers = GetRegisters();
        system = GetSystemRegisters();
        return result;
    }
}
