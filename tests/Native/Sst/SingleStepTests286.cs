// The SingleStepTests 80286 real-mode vectors (captured from a real 80286; MIT; ../shared/testdata/sst-80286,
// README there): each test loads registers and RAM, runs one instruction and the HLT after it (or the HLT at
// the jump target or interrupt handler), and lists the registers and bytes that changed. The soft CPU runs each
// one in real mode with its 286 model and must end in the same state, undefined flags masked as metadata.json
// says.
using System.IO.Compression;
using System.Text.Json;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Memory;
using ActorVmm.Native.Soft;
using Xunit.Abstractions;

namespace ActorVmm.Native.Tests.Sst;

[Trait("Category", "Slow")]
public sealed unsafe class SingleStepTests286(ITestOutputHelper output)
{
    /// <summary>
    /// The vectors live in the project's shared folder beside the checkout (../shared), or wherever
    /// ACTORVMM_SHARED points; the nearest ancestor of the repository holding shared/testdata/sst-80286 wins.
    /// </summary>
    private static string? DataDirectory()
    {
        if (Environment.GetEnvironmentVariable("ACTORVMM_SHARED") is { Length: > 0 } env)
        {
            string d = Path.Combine(env, "testdata", "sst-80286");
            return Directory.Exists(d) ? d : null;
        }
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "shared", "testdata", "sst-80286");
            if (Directory.Exists(candidate)) return candidate;
        }
        return null;
    }

    [Fact]
    public void Real_mode_instructions_end_in_the_state_a_real_80286_reached()
    {
        string? dir = DataDirectory();
        if (dir is null)
        {
            Assert.True(Environment.GetEnvironmentVariable("ACTORVMM_NO_SHARED") == "1",
                "the SingleStepTests data (shared/testdata/sst-80286 beside the repository, or $ACTORVMM_SHARED) is missing; set ACTORVMM_NO_SHARED=1 to run without it");
            return;
        }
        using var meta = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "metadata.json")));
        var opcodes = meta.RootElement.GetProperty("opcodes");
        using var ram = new NativeRam(16 << 20 + 0x10000);
        var memory = new GuestMemory([new GuestRegion("ram", 0, ram.Size, ram.Pointer)]);
        var io = new AllOnesIo();
        var failures = new List<string>();
        var perFile = new List<string>();
        int total = 0, passed = 0, knownSeen = 0;
        foreach (var file in Directory.GetFiles(dir, "*.json.gz").OrderBy(f => f, StringComparer.Ordinal))
        {
            string name = Path.GetFileName(file)[..^".json.gz".Length];
            ushort mask = FlagsMask(opcodes, name);
            using var gz = new GZipStream(File.OpenRead(file), CompressionMode.Decompress);
            using var doc = JsonDocument.Parse(gz);
            int filePassed = 0, fileTotal = 0;
            foreach (var test in doc.RootElement.EnumerateArray())
            {
                fileTotal++;
                string? error = RunOne(test, memory, ram, io, mask);
                string hash = test.GetProperty("hash").GetString()!;
                bool known = Known.ContainsKey(hash);
                if (error is null && !known) filePassed++;
                else if (error is not null && known) knownSeen++;
                else if (failures.Count < 60)
                    failures.Add(error is null
                        ? $"{name} \"{test.GetProperty("name").GetString()}\" ({hash}) now passes: remove it from KnownDivergences.txt"
                        : $"{name} \"{test.GetProperty("name").GetString()}\" ({hash}): {error}");
            }
            total += fileTotal;
            passed += filePassed;
            int fileKnown = doc.RootElement.EnumerateArray().Count(t => Known.ContainsKey(t.GetProperty("hash").GetString()!));
            if (filePassed + fileKnown != fileTotal) perFile.Add($"{name}: {filePassed}/{fileTotal}");
        }
        output.WriteLine($"SingleStepTests 80286 real mode: {passed}/{total} match the 80286; {knownSeen} known divergences (KnownDivergences.txt)");
        foreach (var f in perFile) output.WriteLine("  " + f);
        foreach (var f in failures) output.WriteLine("  " + f);
        Assert.True(failures.Count == 0, $"{failures.Count} unexpected results against the 80286:\n" + string.Join("\n", failures.Take(20)));
        Assert.Equal(total, passed + knownSeen);
    }

    /// <summary>
    /// Tests the model knowingly does not match yet, by hash, with the reason (KnownDivergences.txt beside this
    /// file). The test fails if one of them starts to pass, so the list cannot go stale.
    /// </summary>
    private static readonly Dictionary<string, string> Known = File.ReadAllLines(Path.Combine(AppContext.BaseDirectory, "Sst", "KnownDivergences.txt"))
        .Where(l => l.Length > 0 && l[0] != '#')
        .Select(l => l.Split(' ', 2))
        .ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : "");

    private static ushort FlagsMask(JsonElement opcodes, string name)
    {
        string op = name.Split('.')[0];
        if (!opcodes.TryGetProperty(op, out var entry)) return 0xffff;
        if (name.Contains('.') && entry.TryGetProperty("reg", out var regs) && regs.TryGetProperty(name.Split('.')[1], out var r))
            entry = r;
        return entry.TryGetProperty("flags-mask", out var m) ? (ushort)m.GetInt32() : (ushort)0xffff;
    }

    private static readonly string[] RegNames = ["ax", "bx", "cx", "dx", "cs", "ss", "ds", "es", "sp", "bp", "si", "di", "ip", "flags"];

    private static string? RunOne(JsonElement test, GuestMemory memory, NativeRam ram, IExitHandler io, ushort mask)
    {
        var initial = test.GetProperty("initial");
        var final = test.GetProperty("final");
        var regs = new Dictionary<string, int>();
        foreach (var n in RegNames) regs[n] = initial.GetProperty("regs").GetProperty(n).GetInt32();
        regs["flags"] &= 0x0fff;
        var touched = new List<int>();
        foreach (var pair in initial.GetProperty("ram").EnumerateArray())
        {
            int addr = pair[0].GetInt32();
            ram.Pointer[addr] = (byte)pair[1].GetInt32();
            touched.Add(addr);
        }

        var cpu = new SoftCpu(memory, io) { Model = CpuModel.I286 };
        var sys = SystemRegisters.PowerOn();
        sys.Cr0 = 0x10;
        sys.Cs = SegmentRegister.RealMode((ushort)regs["cs"], code: true);
        sys.Ss = SegmentRegister.RealMode((ushort)regs["ss"]);
        sys.Ds = SegmentRegister.RealMode((ushort)regs["ds"]);
        sys.Es = SegmentRegister.RealMode((ushort)regs["es"]);
        sys.Idtr = new DescriptorTableRegister { Base = 0, Limit = 0x3ff };
        cpu.SetSystemRegisters(sys);
        cpu.SetRegisters(new CpuRegisters
        {
            Rax = (ulong)regs["ax"], Rbx = (ulong)regs["bx"], Rcx = (ulong)regs["cx"], Rdx = (ulong)regs["dx"],
            Rsp = (ulong)regs["sp"], Rbp = (ulong)regs["bp"], Rsi = (ulong)regs["si"], Rdi = (ulong)regs["di"],
            Rip = (ulong)regs["ip"], Rflags = (ulong)regs["flags"] | 2,
        });
        string? error = null;
        try
        {
            bool halted = false;
            for (int step = 0; step < 8 && !halted; step++)
            {
                var outcome = cpu.Step();
                if (outcome == StepOutcome.Shutdown) return "shutdown";
                halted = outcome == StepOutcome.Halted;
            }
            if (!halted) error = "did not reach the HLT";
            else error = Compare(test, final, regs, cpu, ram, mask);
        }
        finally
        {
            foreach (int a in touched) ram.Pointer[a] = 0;
            foreach (var pair in final.GetProperty("ram").EnumerateArray()) ram.Pointer[pair[0].GetInt32()] = 0;
        }
        return error;
    }

    private static string? Compare(JsonElement test, JsonElement final, Dictionary<string, int> initialRegs, SoftCpu cpu, NativeRam ram, ushort mask)
    {
        var expected = new Dictionary<string, int>(initialRegs);
        foreach (var p in final.GetProperty("regs").EnumerateObject()) expected[p.Name] = p.Value.GetInt32();
        expected["flags"] &= 0x0fff;
        var r = cpu.GetRegisters();
        var s = cpu.GetSystemRegisters();
        var actual = new Dictionary<string, int>
        {
            ["ax"] = (int)(r.Rax & 0xffff), ["bx"] = (int)(r.Rbx & 0xffff), ["cx"] = (int)(r.Rcx & 0xffff), ["dx"] = (int)(r.Rdx & 0xffff),
            ["cs"] = s.Cs.Selector, ["ss"] = s.Ss.Selector, ["ds"] = s.Ds.Selector, ["es"] = s.Es.Selector,
            ["sp"] = (int)(r.Rsp & 0xffff), ["bp"] = (int)(r.Rbp & 0xffff), ["si"] = (int)(r.Rsi & 0xffff), ["di"] = (int)(r.Rdi & 0xffff),
            ["ip"] = (int)(r.Rip & 0xffff), ["flags"] = (int)(r.Rflags & 0x0fff),
        };
        foreach (var n in RegNames)
        {
            int e = expected[n], a = actual[n];
            if (n == "flags")
            {
                e &= mask | 2;
                a &= mask | 2;
            }
            if (e != a) return $"{n} expected {e:x4} got {a:x4}";
        }
        // Memory: every byte the 286 changed, with the pushed FLAGS word masked on an exception.
        int flagsAt = -1;
        if (test.TryGetProperty("exception", out _))
            flagsAt = expected["ss"] * 16 + ((expected["sp"] + 4) & 0xffff);
        foreach (var pair in final.GetProperty("ram").EnumerateArray())
        {
            int addr = pair[0].GetInt32();
            int e = pair[1].GetInt32(), a = ram.Pointer[addr];
            if (addr == flagsAt)
            {
                e &= mask & 0xff;
                a &= mask & 0xff;
            }
            else if (addr == flagsAt + 1)
            {
                e &= (mask >> 8) & 0x0f;
                a &= (mask >> 8) & 0x0f;
            }
            if (e != a) return $"ram[{addr:x6}] expected {e:x2} got {a:x2}";
        }
        return null;
    }

    private sealed class AllOnesIo : IExitHandler
    {
        public void PortRead(ushort port, Span<byte> data) => data.Fill(0xff);

        public void PortWrite(ushort port, ReadOnlySpan<byte> data)
        {
        }

        public void MmioRead(ulong gpa, Span<byte> data) => data.Fill(0xff);

        public void MmioWrite(ulong gpa, ReadOnlySpan<byte> data)
        {
        }

        public bool MsrRead(uint msr, out ulong value)
        {
            value = 0;
            return false;
        }

        public bool MsrWrite(uint msr, ulong value) => false;
    }
}
