using ActorVmm.Core.Accel;
using ActorVmm.Native.Soft;
using static Iced.Intel.AssemblerRegisters;

namespace ActorVmm.Native.Tests.Soft;

/// <summary>
/// Several soft vCPUs on several host threads over one guest RAM: locked instructions are atomic across them, code
/// one vCPU writes reaches another's decode cache, and the INIT/SIPI start-up follows the SDM.
/// </summary>
public sealed class SoftSmpTests
{
    private const uint D = SoftCpuHarness.Data;

    /// <summary>A VM of <paramref name="vcpus"/> vCPUs, each started in the harness's flat protected mode at <paramref name="entry"/>.</summary>
    private static (IVm Vm, SoftVcpu[] Vcpus) Make(int vcpus, Action<SoftCpuHarness> program, Func<int, uint> entry)
    {
        var vm = new SoftAccelerator().CreateVm(new VmSpec(1 << 20, vcpus, IrqchipMode.On));
        using var h = new SoftCpuHarness();
        program(h);
        var bytes = new byte[SoftCpuHarness.RamSize];
        h.Memory.Read(0, bytes);
        vm.Memory.Write(0, bytes);
        var all = new SoftVcpu[vcpus];
        for (int i = 0; i < vcpus; i++)
        {
            all[i] = (SoftVcpu)vm.CreateVcpu(i);
            all[i].SetSystemRegisters(h.Cpu.GetSystemRegisters());
            var r = h.Regs;
            r.Rip = entry(i);
            r.Rsp = SoftCpuHarness.Stack - (ulong)i * 0x1000;
            all[i].SetRegisters(r);
            if (i != 0) all[i].MakeRunnable();
        }
        return (vm, all);
    }

    /// <summary>Runs every vCPU on its own thread until it halts with interrupts disabled (or the VM reports all halted).</summary>
    private static void RunAll(SoftVcpu[] vcpus, TimeSpan timeout)
    {
        var threads = vcpus.Select(v => new Thread(() =>
        {
            var exits = new FakeExits();
            var deadline = DateTime.UtcNow + timeout;
            try
            {
                while (DateTime.UtcNow < deadline)
                {
                    var exit = v.Run(exits);
                    if (exit.Kind is VcpuExitKind.Halted or VcpuExitKind.Shutdown or VcpuExitKind.Error) return;
                    if (v.Cpu is { IsHalted: true, InterruptWindowOpen: false }) return;
                }
            }
            finally
            {
                foreach (var other in vcpus) other.Kick(); // parked or still running: let them see the end
            }
        }) { IsBackground = true }).ToList();
        threads.ForEach(t => t.Start());
        foreach (var t in threads) Assert.True(t.Join(timeout + TimeSpan.FromSeconds(10)), "a vCPU thread did not finish");
    }

    [Fact]
    public void Locked_instructions_are_atomic_across_two_vcpus()
    {
        // Both vCPUs add 1 to four counters 200000 times: LOCK XADD, LOCK INC, a LOCK CMPXCHG loop, and a plain INC
        // under a spinlock taken with XCHG (implicitly locked) and released with a plain store. Lost updates would
        // make the sums short.
        const int n = 200_000;
        var (vm, vcpus) = Make(2, h => h.Program(a =>
        {
            var loop = a.CreateLabel();
            var cas = a.CreateLabel();
            var spin = a.CreateLabel();
            var wait = a.CreateLabel();
            var got = a.CreateLabel();
            a.cli();
            a.mov(ecx, n);
            a.Label(ref loop);
            a.mov(eax, 1);
            a.@lock.xadd(__dword_ptr[D], eax);
            a.@lock.inc(__dword_ptr[D + 64]);
            a.mov(eax, __dword_ptr[D + 128]);
            a.Label(ref cas);
            a.lea(edx, __[eax + 1]);
            a.@lock.cmpxchg(__dword_ptr[D + 128], edx);
            a.jne(cas);
            a.Label(ref spin);
            a.mov(eax, 1);
            a.xchg(__dword_ptr[D + 192], eax);
            a.test(eax, eax);
            a.jz(got);
            a.Label(ref wait);
            a.pause();
            a.cmp(__dword_ptr[D + 192], 0);
            a.jne(wait);
            a.jmp(spin);
            a.Label(ref got);
            a.inc(__dword_ptr[D + 256]);
            a.mov(__dword_ptr[D + 192], 0);
            a.dec(ecx);
            a.jnz(loop);
        }), _ => SoftCpuHarness.Code);
        using var _ = vm;
        RunAll(vcpus, TimeSpan.FromSeconds(120));
        uint Read(uint at) => vm.Memory.ReadObject<uint>(at);
        Assert.Equal(2u * n, Read(D));
        Assert.Equal(2u * n, Read(D + 64));
        Assert.Equal(2u * n, Read(D + 128));
        Assert.Equal(0u, Read(D + 192));
        Assert.Equal(2u * n, Read(D + 256));
        Assert.All(vcpus, v => Assert.Equal(0UL, v.GetRegisters().Rcx));
    }

    [Fact]
    public void Code_written_by_one_vcpu_reaches_the_other_after_it_serializes()
    {
        // vCPU 1 calls a function that returns 1 until it returns 2, executing CPUID (serializing) between calls, as
        // the SDM's cross-modifying-code protocol asks. vCPU 0 waits until vCPU 1 has called it a few times (so the
        // old code is in vCPU 1's decode cache), then rewrites the function's immediate and halts.
        const uint f = SoftCpuHarness.Code + 0x800, calls = D + 0x1000;
        var (vm, vcpus) = Make(2, h =>
        {
            h.Load(f, a => { a.mov(eax, 1); a.ret(); });
            h.Program(a =>
            {
                var wait = a.CreateLabel();
                var loop = a.CreateLabel();
                a.cli();
                a.cmp(esp, SoftCpuHarness.Stack);
                a.je(wait);
                a.Label(ref loop);
                a.@lock.inc(__dword_ptr[calls]);
                a.xor(eax, eax);
                a.cpuid();
                a.call(f);
                a.cmp(eax, 2);
                a.jne(loop);
                a.hlt();
                a.Label(ref wait); // vCPU 0: the writer
                a.pause();
                a.cmp(__dword_ptr[calls], 1000);
                a.jb(wait);
                a.mov(__dword_ptr[f + 1], 2); // mov eax, imm32: the immediate follows the opcode byte
            });
        }, _ => SoftCpuHarness.Code);
        using var _ = vm;
        RunAll(vcpus, TimeSpan.FromSeconds(60));
        Assert.Equal(2UL, vcpus[1].GetRegisters().Rax & 0xffff_ffff);
        Assert.True(vcpus[1].Cpu!.IsHalted);
    }
}
