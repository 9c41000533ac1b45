// Every KVM structure ActorVmm binds (size and each field's offset) and every ioctl request number, against the
// independent truth: this machine's linux/kvm.h (Debian's linux-libc-dev) compiled by gcc. The test writes a C
// program that prints sizeof/offsetof/request values, builds it with gcc and compares line by line. It runs
// wherever gcc and the header exist (scripts/setup.sh installs both), with or without /dev/kvm.
using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using ActorVmm.Native.Kvm;
using ActorVmm.Native.Sys;

namespace ActorVmm.Native.Tests.Kvm;

/// <summary>A fact that needs gcc and linux/kvm.h; skipped, saying why, without them.</summary>
public sealed class GccKvmFactAttribute : FactAttribute
{
    public static string? Problem =>
        !File.Exists("/usr/include/linux/kvm.h") ? "/usr/include/linux/kvm.h is not installed (Debian: linux-libc-dev)"
        : !(File.Exists("/usr/bin/gcc") || File.Exists("/usr/local/bin/gcc")) ? "gcc is not installed (Debian: build-essential)"
        : !HostPlatform.IsX64 ? "the host is not x86-64" : null;

    public GccKvmFactAttribute()
    {
        if (Problem is { } p) Skip = p;
    }
}

public sealed class KvmAbiLayoutTests
{
    private static readonly (string C, Type Cs)[] Structs =
    [
        ("kvm_regs", typeof(KvmRegs)), ("kvm_segment", typeof(KvmSegment)), ("kvm_dtable", typeof(KvmDtable)),
        ("kvm_sregs", typeof(KvmSregs)), ("kvm_userspace_memory_region", typeof(KvmUserspaceMemoryRegion)),
        ("kvm_cpuid_entry2", typeof(KvmCpuidEntry2)), ("kvm_cpuid2", typeof(KvmCpuid2)), ("kvm_msr_entry", typeof(KvmMsrEntry)),
        ("kvm_msrs", typeof(KvmMsrs)), ("kvm_irq_level", typeof(KvmIrqLevel)), ("kvm_msi", typeof(KvmMsi)),
        ("kvm_enable_cap", typeof(KvmEnableCap)), ("kvm_interrupt", typeof(KvmInterrupt)), ("kvm_pit_config", typeof(KvmPitConfig)),
        ("kvm_irq_routing", typeof(KvmIrqRouting)), ("kvm_irq_routing_entry", typeof(KvmIrqRoutingEntry)),
    ];

    /// <summary>kvm_run fields by their C path (union members named through their exit's member).</summary>
    private static readonly (string C, string Cs)[] RunFields =
    [
        ("request_interrupt_window", "RequestInterruptWindow"), ("immediate_exit", "ImmediateExit"), ("exit_reason", "ExitReason"),
        ("ready_for_interrupt_injection", "ReadyForInterruptInjection"), ("if_flag", "IfFlag"), ("flags", "Flags"), ("cr8", "Cr8"),
        ("apic_base", "ApicBase"), ("io.direction", "IoDirection"), ("io.size", "IoSize"), ("io.port", "IoPort"), ("io.count", "IoCount"),
        ("io.data_offset", "IoDataOffset"), ("mmio.phys_addr", "MmioPhysAddr"), ("mmio.data", "MmioData"),
        ("fail_entry.hardware_entry_failure_reason", "FailEntryHardwareEntryFailureReason"), ("internal.suberror", "InternalSuberror"),
        ("internal.ndata", "InternalNdata"), ("ex.exception", "ExException"), ("ex.error_code", "ExErrorCode"), ("system_event.type", "SystemEventType"), ("eoi.vector", "EoiVector"),
    ];

    private static string Snake(string pascal)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < pascal.Length; i++)
        {
            char c = pascal[i];
            if (char.IsUpper(c) && i > 0 && char.IsLower(pascal[i - 1])) sb.Append('_');
            sb.Append(char.ToLowerInvariant(c));
        }
        return sb.ToString();
    }

    private static IEnumerable<(string Key, long Value)> Expected()
    {
        foreach (var (c, cs) in Structs)
        {
            yield return ($"sizeof {c}", Marshal.SizeOf(cs));
            foreach (var f in cs.GetFields(BindingFlags.Public | BindingFlags.Instance))
                yield return ($"offsetof {c} {Snake(f.Name)}", (long)Marshal.OffsetOf(cs, f.Name));
        }
        foreach (var (c, cs) in RunFields) yield return ($"offsetof kvm_run {c}", (long)Marshal.OffsetOf<KvmRun>(cs));
        yield return ("offsetof kvm_run mmio.len", KvmRun.MmioLenOffset);
        yield return ("offsetof kvm_run mmio.is_write", KvmRun.MmioIsWriteOffset);
        yield return ("offsetof kvm_run fail_entry.cpu", KvmRun.FailEntryCpuOffset);
        yield return ("offsetof kvm_run internal.data", KvmRun.InternalDataOffset);
        foreach (var r in KvmIoctls.All) yield return ($"ioctl {r.Name}", (long)r.Value);
        foreach (var f in typeof(KvmCaps).GetFields().Where(f => f.Name.StartsWith("KVM_CAP_", StringComparison.Ordinal)))
            yield return ($"const {f.Name}", (int)f.GetValue(null)!);
        foreach (var (name, value) in new (string, KvmExitReason)[]
        {
            ("KVM_EXIT_IO", KvmExitReason.Io), ("KVM_EXIT_HLT", KvmExitReason.Hlt), ("KVM_EXIT_MMIO", KvmExitReason.Mmio),
            ("KVM_EXIT_IRQ_WINDOW_OPEN", KvmExitReason.IrqWindowOpen), ("KVM_EXIT_SHUTDOWN", KvmExitReason.Shutdown),
            ("KVM_EXIT_FAIL_ENTRY", KvmExitReason.FailEntry), ("KVM_EXIT_INTR", KvmExitReason.Intr),
            ("KVM_EXIT_INTERNAL_ERROR", KvmExitReason.InternalError), ("KVM_EXIT_SYSTEM_EVENT", KvmExitReason.SystemEvent),
            ("KVM_EXIT_DEBUG", KvmExitReason.Debug), ("KVM_EXIT_EXCEPTION", KvmExitReason.Exception),
        })
            yield return ($"const {name}", (long)value);
        yield return ("const KVM_API_VERSION", KvmCaps.ApiVersion);
        yield return ("offsetof kvm_irq_routing_entry u.irqchip.irqchip", (long)Marshal.OffsetOf<KvmIrqRoutingEntry>("U"));
        yield return ("offsetof kvm_irq_routing_entry u.irqchip.pin", (long)Marshal.OffsetOf<KvmIrqRoutingEntry>("U") + 4);
        yield return ("const KVM_IRQ_ROUTING_IRQCHIP", KvmIrqRoutingEntry.TypeIrqchip);
        yield return ("const KVM_IRQCHIP_PIC_MASTER", KvmIrqRoutingEntry.IrqchipPicMaster);
        yield return ("const KVM_IRQCHIP_PIC_SLAVE", KvmIrqRoutingEntry.IrqchipPicSlave);
        yield return ("const KVM_IRQCHIP_IOAPIC", KvmIrqRoutingEntry.IrqchipIoapic);
    }

    private static string Program(IEnumerable<string> keys)
    {
        var sb = new StringBuilder("#include <stdio.h>\n#include <stddef.h>\n#include <linux/kvm.h>\nint main(void) {\n");
        foreach (var key in keys)
        {
            var p = key.Split(' ');
            string expr = p[0] switch
            {
                "sizeof" => $"(long)sizeof(struct {p[1]})",
                "offsetof" => $"(long)offsetof(struct {p[1]}, {p[2]})",
                "ioctl" => $"(long)(unsigned long){p[1]}",
                _ => $"(long){p[1]}",
            };
            sb.Append("  printf(\"%s %ld\\n\", \"").Append(key).Append("\", ").Append(expr).Append(");\n");
        }
        return sb.Append("  return 0;\n}\n").ToString();
    }

    [GccKvmFact]
    public void Every_struct_offset_size_request_and_constant_matches_gcc_and_linux_kvm_h()
    {
        var expected = Expected().ToList();
        var dir = Directory.CreateTempSubdirectory("actorvmm-kvm-abi").FullName;
        try
        {
            string src = Path.Combine(dir, "abi.c"), exe = Path.Combine(dir, "abi");
            File.WriteAllText(src, Program(expected.Select(e => e.Key)));
            var (rc, output) = RunProcess("gcc", "-std=gnu11", "-o", exe, src);
            Assert.True(rc == 0, $"gcc failed:\n{output}");
            (rc, output) = RunProcess(exe);
            Assert.Equal(0, rc);
            var truth = output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => (Key: l[..l.LastIndexOf(' ')], Value: long.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture)))
                .ToList();
            Assert.Equal(expected.Count, truth.Count);
            var mismatches = expected.Zip(truth).Where(p => p.First.Value != p.Second.Value)
                .Select(p => $"{p.First.Key}: ours {p.First.Value:x}, gcc {p.Second.Value:x}").ToList();
            Assert.True(mismatches.Count == 0, string.Join("\n", mismatches));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static (int Rc, string Output) RunProcess(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd();
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout + stderr);
    }

    [Fact]
    public void Linux_request_encoding_matches_the_ioctl_h_formula()
    {
        // asm-generic/ioctl.h: dir << 30 | size << 16 | type << 8 | nr, dir WRITE = 1, READ = 2.
        Assert.Equal(0xAE80UL, KvmIoctls.KVM_RUN.Value);
        Assert.Equal((1UL << 30) | (32UL << 16) | (0xAEUL << 8) | 0xA5, KvmIoctls.KVM_SIGNAL_MSI.Value);
        Assert.Equal((2UL << 30) | (144UL << 16) | (0xAEUL << 8) | 0x81, KvmIoctls.KVM_GET_REGS.Value);
        Assert.Equal(KvmSregs.Size, Ioc.LinuxSize(KvmIoctls.KVM_SET_SREGS.Value));
    }
}
