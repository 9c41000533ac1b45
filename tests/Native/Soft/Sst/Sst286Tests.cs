// SingleStepTests 80286 real-mode vectors (captured from a real Harris 80C286) run on the soft CPU's 286 model.
// Data: ../shared/testdata/sst-80286 beside the repository root (README.md there describes the format and rules).
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using ActorVmm.Core.Accel;
using ActorVmm.Core.Bus;
using ActorVmm.Core.Memory;
using ActorVmm.Native.Soft;
using Xunit.Abstractions;

namespace ActorVmm.Native.Tests.Soft.Sst;

[Trait("Category", "Slow")]
public sealed unsafe class Sst286Tests(ITestOutputHelper output)
{
    private const int RamSize = 16 << 20;
    private static readonly string[] RegNames = ["ax", "bx", "cx", "dx", "cs", "ss", "ds", "es", "sp", "bp", "si", "di", "ip", "flags"];

    private static string? FindData()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ActorVmm.sln")))
                return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "testdata", "sst-80286"));
        }
        return null;
    }

    [Fact]
    public void AllVectorsMatchTheRealCpu()
    {
        string? dir = FindData();
        if (dir is null || !Directory.Exists(dir))
        {
            if (Environment.GetEnvironmentVariable("ACTORVMM_NO_SHARED") == "1") return;
            Assert.Fail($"SingleStepTests 80286 data not found (looked for {dir ?? "<no ActorVmm.sln above " + AppContext.BaseDirectory + ">"}); set ACTORVMM_NO_SHARED=1 to skip");
        }
        using var meta = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "metadata.json")));
        var opcodes = meta.RootElement.GetProperty("opcodes");

        byte* ram = (byte*)NativeMemory.AllocZeroed(RamSize);
        try
        {
            var memory = new GuestMemory([new GuestRegion("ram", 0, RamSize, ram)]);
            var cpu = new SoftCpu(memory, new ExitDispatcher(new BusBuilder().Build())) { Model286 = true };
            var files = Directory.GetFiles(dir, "*.json.gz").OrderBy(f => f, StringComparer.Ordinal).ToArray();
            Assert.NotEmpty(files);
            int total = 0, passed = 0;
            var failures = new List<string>();
            var perFile = new StringBuilder();
            foreach (string file in files)
            {
                string stem = Path.GetFileName(file)[..^".json.gz".Length];
                uint mask = FlagsMask(opcodes, stem);
                using var gz = new GZipStream(File.OpenRead(file), CompressionMode.Decompress);
                using var doc = JsonDocument.Parse(gz);
                int filePassed = 0, fileTotal = 0;
                foreach (var test in doc.RootElement.EnumerateArray())
                {
                    fileTotal++;
                    string? why = RunOne(cpu, ram, test, mask);
                    if (why is null) filePassed++;
                    else if (failures.Count < 60)
                        failures.Add($"{stem} \"{test.GetProperty("name").GetString()}\" [{string.Join(" ", test.GetProperty("bytes").EnumerateArray().Select(b => b.GetInt32().ToString("x2", System.Globalization.CultureInfo.InvariantCulture)))}]: {why}");
                }
                total += fileTotal;
                passed += filePassed;
                perFile.Append(System.Globalization.CultureInfo.InvariantCulture, $"{stem}:{filePassed}/{fileTotal} ");
            }
            output.WriteLine($"passed {passed}/{total} in {files.Length} files");
            output.WriteLine(perFile.ToString());
            Assert.True(passed == total, $"{total - passed} of {total} vectors mismatch; first {failures.Count}:\n{string.Join("\n", failures)}");
        }
        finally
        {
            NativeMemory.Free(ram);
        }
    }

    private static uint FlagsMask(JsonElement opcodes, string stem)
    {
        string[] parts = stem.Split('.');
        if (!opcodes.TryGetProperty(parts[0], out var op)) return 0xffff;
        if (parts.Length > 1 && op.TryGetProperty("reg", out var regs) && regs.TryGetProperty(parts[1], out var r)) op = r;
        return op.TryGetProperty("flags-mask", out var m) ? m.GetUInt32() & 0xffff : 0xffff;
    }

    private static string? RunOne(SoftCpu cpu, byte* ram, JsonElement test, uint mask)
    {
        var init = test.GetProperty("initial");
        var fin = test.GetProperty("final");
        var initRegs = new Dictionary<string, uint>();
        foreach (var p in init.GetProperty("regs").EnumerateObject()) initRegs[p.Name] = p.Value.GetUInt32();
        initRegs["flags"] &= 0x0fff;
        var expected = new Dictionary<string, uint>(initRegs);
        foreach (var p in fin.GetProperty("regs").EnumerateObject()) expected[p.Name] = p.Value.GetUInt32();
        expected["flags"] &= 0x0fff;

        var touched = new List<uint>();
        foreach (var pair in init.GetProperty("ram").EnumerateArray())
        {
            uint a = pair[0].GetUInt32();
            ram[a] = (byte)pair[1].GetUInt32();
            touched.Add(a);
        }

        SegmentRegister Seg(string n, bool code = false) => SegmentRegister.RealMode((ushort)initRegs[n], code);
        var sys = SystemRegisters.PowerOn();
        sys.Cs = Seg("cs", code: true);
        sys.Ss = Seg("ss");
        sys.Ds = Seg("ds");
        sys.Es = Seg("es");
        sys.Cr0 = 0x10;
        sys.Idtr = new DescriptorTableRegister { Base = 0, Limit = 0x3ff };
        cpu.SetSystemRegisters(sys);
        var r = new CpuRegisters
        {
            Rax = initRegs["ax"], Rbx = initRegs["bx"], Rcx = initRegs["cx"], Rdx = initRegs["dx"],
            Rsp = initRegs["sp"], Rbp = initRegs["bp"], Rsi = initRegs["si"], Rdi = initRegs["di"],
            Rip = initRegs["ip"], Rflags = initRegs["flags"],
        };
        cpu.SetRegisters(r);
        cpu.ClearLastException();

        string? why = null;
        int steps = 0;
        while (!cpu.IsHalted && !cpu.IsShutdown && steps++ < 100_000) cpu.Step();
        if (!cpu.IsHalted) why = cpu.IsShutdown ? "shutdown" : "never reached HLT";

        var got = cpu.GetRegisters();
        var gs = cpu.GetSystemRegisters();
        var actual = new Dictionary<string, uint>
        {
            ["ax"] = (uint)got.Rax, ["bx"] = (uint)got.Rbx, ["cx"] = (uint)got.Rcx, ["dx"] = (uint)got.Rdx,
            ["cs"] = gs.Cs.Selector, ["ss"] = gs.Ss.Selector, ["ds"] = gs.Ds.Selector, ["es"] = gs.Es.Selector,
            ["sp"] = (uint)got.Rsp, ["bp"] = (uint)got.Rbp, ["si"] = (uint)got.Rsi, ["di"] = (uint)got.Rdi,
            ["ip"] = (uint)got.Rip, ["flags"] = (uint)got.Rflags,
        };
        if (why is null)
        {
            foreach (string n in RegNames)
            {
                uint m = n == "flags" ? mask : 0xffffffff;
                if ((expected[n] & m) != (actual[n] & m))
                {
                    why = $"{n} expected {expected[n]:x4} got {actual[n]:x4}";
                    break;
                }
            }
        }
        if (why is null)
        {
            uint flagsAt = uint.MaxValue;
            if (test.TryGetProperty("exception", out _))
                flagsAt = (expected["ss"] << 4) + ((expected["sp"] + 4) & 0xffff);
            foreach (var pair in fin.GetProperty("ram").EnumerateArray())
            {
                uint a = pair[0].GetUInt32();
                uint m = a == flagsAt ? mask & 0xff : a == flagsAt + 1 ? mask >> 8 : 0xff;
                if ((ram[a] & m) != (pair[1].GetUInt32() & m))
                {
                    why = $"ram[{a:x6}] expected {pair[1].GetUInt32():x2} got {ram[a]:x2}";
                    break;
                }
            }
        }
        if (why is not null)
            why += $" (cs:ip {expected["cs"]:x4}:{expected["ip"]:x4} flags exp {expected["flags"]:x4} got {actual["flags"]:x4}, last exception {cpu.LastException?.Vector.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"})";

        // Leave RAM zeroed for the next vector: clear every byte the test or the CPU may have written.
        foreach (uint a in touched) ram[a] = 0;
        foreach (var pair in fin.GetProperty("ram").EnumerateArray()) ram[pair[0].GetUInt32()] = 0;
        if (why is not null) NativeMemory.Clear(ram, RamSize); // a wrong run may have written anywhere
        return why;
    }
}
