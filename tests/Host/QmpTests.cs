// The control socket over a real unix socket against a running VM: actorvmm runs in-process on the soft
// CPU with tests/Guests/powerbtn.asm (it waits in HLT for the ACPI power button, then powers off), and a
// client speaks QMP to it: negotiation, every command, the events with QMP's field names and timestamps,
// malformed input (answered with errors that leave the VM running). Plus the -qmp and -action options.
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace ActorVmm.Host.Tests;

// HostMain.Run sets Serilog's global logger, which Akka's logger writes to: runs in one process must not overlap.
[Collection(HostMainCollection.Name)]
public sealed class QmpTests : IDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);
    private const string Banner = "ActorVmm powerbtn guest\n";
    private readonly string _dir = Directory.CreateTempSubdirectory("avq").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Guest()
    {
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "ActorVmm.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("no ActorVmm.sln above the tests");
        string asm = Path.Combine(root, "tests", "Guests", "powerbtn.asm");
        string bin = Path.Combine(root, "artifacts", "guests", "powerbtn.bin");
        lock (typeof(QmpTests))
        {
            if (!File.Exists(bin) || File.GetLastWriteTimeUtc(bin) < File.GetLastWriteTimeUtc(asm))
            {
                Directory.CreateDirectory(Path.GetDirectoryName(bin)!);
                using var p = Process.Start(new ProcessStartInfo("nasm", ["-f", "bin", "-I" + Path.Combine(root, "tests", "Guests") + "/", "-o", bin, asm]))!;
                p.WaitForExit();
                Assert.Equal(0, p.ExitCode);
            }
        }
        return bin;
    }

    /// <summary>A QMP client: reads replies and events line by line, keeps events aside.</summary>
    private sealed class Client : IDisposable
    {
        private readonly Socket _socket;
        private readonly StreamReader _reader;
        public List<JsonElement> Events { get; } = [];

        public Client(string path)
        {
            _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            var deadline = DateTime.UtcNow + Wait;
            while (true)
            {
                try
                {
                    _socket.Connect(new UnixDomainSocketEndPoint(path));
                    break;
                }
                catch (SocketException) when (DateTime.UtcNow < deadline)
                {
                    Thread.Sleep(20);
                }
            }
            _socket.ReceiveTimeout = (int)Wait.TotalMilliseconds;
            _reader = new StreamReader(new NetworkStream(_socket), Encoding.UTF8);
        }

        public JsonElement Read()
        {
            string? line = _reader.ReadLine() ?? throw new IOException("the server closed the connection");
            return JsonDocument.Parse(line).RootElement.Clone();
        }

        public void SendRaw(string text) => _socket.Send(Encoding.UTF8.GetBytes(text));

        /// <summary>Sends a command and returns its reply (events that come first are kept in <see cref="Events"/>).</summary>
        public JsonElement Execute(string json)
        {
            SendRaw(json + "\n");
            return Reply();
        }

        public JsonElement Reply()
        {
            while (true)
            {
                var m = Read();
                if (m.TryGetProperty("event", out _)) Events.Add(m);
                else return m;
            }
        }

        public JsonElement AwaitEvent(string name)
        {
            var found = Events.FirstOrDefault(e => e.GetProperty("event").GetString() == name);
            if (found.ValueKind != JsonValueKind.Undefined)
            {
                Events.Remove(found);
                return found;
            }
            while (true)
            {
                var m = Read();
                if (m.TryGetProperty("event", out var e) && e.GetString() == name) return m;
                if (m.TryGetProperty("event", out _)) Events.Add(m);
            }
        }

        public void Dispose() => _socket.Dispose();
    }

    private (Task<int> Run, string Socket, string Serial) Start(params string[] extra)
    {
        string socket = Path.Combine(_dir, "q.sock");
        string serial = Path.Combine(_dir, "com1.txt");
        string[] args = ["-accel", "soft", "-m", "16", "-kernel", Guest(), "-serial", $"file:{serial}", "-qmp", $"unix:{socket},server,wait=off", .. extra];
        return (Task.Run(() => HostMain.Run(args)), socket, serial);
    }

    private static void Until(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Wait;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            Thread.Sleep(20);
        }
    }

    private static string SerialText(string path) => File.Exists(path) ? File.ReadAllText(path) : "";

    private static Client Negotiated(string socket)
    {
        var c = new Client(socket);
        c.Read();
        Assert.True(c.Execute("""{"execute":"qmp_capabilities"}""").TryGetProperty("return", out _));
        return c;
    }

    private static void AssertError(JsonElement reply, string errorClass, string descPart)
    {
        var error = reply.GetProperty("error");
        Assert.Equal(errorClass, error.GetProperty("class").GetString());
        Assert.Contains(descPart, error.GetProperty("desc").GetString(), StringComparison.Ordinal);
    }

    private static void AssertTimestamp(JsonElement e)
    {
        var ts = e.GetProperty("timestamp");
        long seconds = ts.GetProperty("seconds").GetInt64();
        long micro = ts.GetProperty("microseconds").GetInt64();
        Assert.InRange(micro, 0, 999_999);
        // The event happened during this test run, give or take a minute of clock difference.
        Assert.InRange(seconds, DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 600, DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 60);
    }

    [Fact]
    public void Negotiation_comes_first_and_only_once()
    {
        var (run, socket, _) = Start();
        using (var c = new Client(socket))
        {
            var greeting = c.Read().GetProperty("QMP");
            Assert.Equal(JsonValueKind.Number, greeting.GetProperty("version").GetProperty("qemu").GetProperty("major").ValueKind);
            Assert.StartsWith("actorvmm ", greeting.GetProperty("version").GetProperty("package").GetString(), StringComparison.Ordinal);
            Assert.Equal(0, greeting.GetProperty("capabilities").GetArrayLength());

            AssertError(c.Execute("""{"execute":"query-status","id":7}"""), "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'");
            AssertError(c.Execute("""{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"""), "GenericError", "Capability 'oob' not available");
            var ok = c.Execute("""{"execute":"qmp_capabilities","id":"neg"}""");
            Assert.Empty(ok.GetProperty("return").EnumerateObject());
            Assert.Equal("neg", ok.GetProperty("id").GetString());
            AssertError(c.Execute("""{"execute":"qmp_capabilities"}"""), "CommandNotFound", "already complete");
            Assert.Equal("running", c.Execute("""{"execute":"query-status"}""").GetProperty("return").GetProperty("status").GetString());
            c.Execute("""{"execute":"quit"}""");
            Assert.Equal("host-qmp-quit", c.AwaitEvent("SHUTDOWN").GetProperty("data").GetProperty("reason").GetString());
        }
        Assert.True(run.Wait(Wait));
        Assert.Equal(0, run.Result);
        Assert.False(File.Exists(socket));
    }

    [Fact]
    public void Stop_cont_reset_cpus_stats_and_faults_work_on_a_running_guest_and_send_their_events()
    {
        var (run, socket, serial) = Start();
        using (var c = Negotiated(socket))
        {
            Until(() => SerialText(serial).Contains("waiting for the power button", StringComparison.Ordinal));

            Assert.Equal(JsonValueKind.Object, c.Execute("""{"execute":"stop"}""").GetProperty("return").ValueKind);
            var stop = c.AwaitEvent("STOP");
            AssertTimestamp(stop);
            var status = c.Execute("""{"execute":"query-status"}""").GetProperty("return");
            Assert.Equal("paused", status.GetProperty("status").GetString());
            Assert.False(status.GetProperty("running").GetBoolean());
            c.Execute("""{"execute":"cont"}""");
            AssertTimestamp(c.AwaitEvent("RESUME"));
            Assert.Equal("running", c.Execute("""{"execute":"query-status"}""").GetProperty("return").GetProperty("status").GetString());

            var cpu = Assert.Single(c.Execute("""{"execute":"query-cpus-fast"}""").GetProperty("return").EnumerateArray());
            Assert.Equal(0, cpu.GetProperty("cpu-index").GetInt32());
            Assert.True(cpu.GetProperty("thread-id").GetInt32() > 0);
            Assert.Equal("x86_64", cpu.GetProperty("target").GetString());

            var stats = c.Execute("""{"execute":"query-stats","arguments":{"target":"vm"}}""").GetProperty("return");
            var com1 = stats.GetProperty("devices").EnumerateArray().Single(d => d.GetProperty("name").GetString() == "COM1");
            Assert.Equal("direct", com1.GetProperty("route").GetString());
            // The guest printed two lines through the polled driver: an LSR read and a THR write per byte at least.
            int bytes = Banner.Length + "waiting for the power button\n".Length;
            Assert.True(com1.GetProperty("writes").GetInt64() >= bytes);
            Assert.True(com1.GetProperty("reads").GetInt64() >= bytes);
            Assert.True(com1.GetProperty("latency-samples").GetInt64() >= 1);
            Assert.True(com1.GetProperty("mean-latency-ns").GetDouble() > 0);

            var report = c.Execute("""{"execute":"inject-fault","arguments":{"target":"COM1","fault":"drop","count":2}}""").GetProperty("return");
            Assert.Equal("COM1", report.GetProperty("target").GetString());
            Assert.Contains("drop the next 2 messages", report.GetProperty("active")[0].GetString(), StringComparison.Ordinal);
            Assert.Equal(0, c.Execute("""{"execute":"inject-fault","arguments":{"target":"COM1","fault":"clear"}}""").GetProperty("return").GetProperty("active").GetArrayLength());
            report = c.Execute("""{"execute":"inject-fault","arguments":{"target":"COM1","fault":"drop","count":1,"skip":3}}""").GetProperty("return");
            Assert.Contains("drop the next 1 messages after 3 passed", report.GetProperty("active")[0].GetString(), StringComparison.Ordinal);
            Assert.Equal(0, c.Execute("""{"execute":"inject-fault","arguments":{"target":"COM1","fault":"clear"}}""").GetProperty("return").GetProperty("active").GetArrayLength());
            AssertError(c.Execute("""{"execute":"inject-fault","arguments":{"target":"COM1","fault":"drop","count":1,"skip":-1}}"""), "GenericError", "Parameter 'skip'");
            AssertError(c.Execute("""{"execute":"inject-fault","arguments":{"target":"COM1","fault":"drop","count":1,"skip":1.5}}"""), "GenericError", "Parameter 'skip'");
            AssertError(c.Execute("""{"execute":"inject-fault","arguments":{"target":"COM7","fault":"throw"}}"""), "GenericError", "no device or vCPU named 'COM7'");
            AssertError(c.Execute("""{"execute":"inject-fault","arguments":{"target":"COM1","fault":"melt"}}"""), "GenericError", "Parameter 'fault'");
            AssertError(c.Execute("""{"execute":"inject-fault","arguments":{"target":"COM1","fault":"hang"}}"""), "GenericError", "Parameter 'duration-ms' is missing");
            AssertError(c.Execute("""{"execute":"inject-fault","arguments":{"target":"COM1","fault":"slow","duration-ms":-5}}"""), "GenericError", "duration-ms");
            AssertError(c.Execute("""{"execute":"inject-fault","arguments":{"target":"COM1","fault":"drop","count":1,"fraction":0.5}}"""), "GenericError", "exactly one");
            AssertError(c.Execute("""{"execute":"inject-fault","arguments":{"fault":"throw"}}"""), "GenericError", "Parameter 'target' is missing");
            AssertError(c.Execute("""{"execute":"inject-fault","arguments":{"target":5,"fault":"throw"}}"""), "GenericError", "Invalid parameter type for 'target'");

            c.Execute("""{"execute":"system_reset"}""");
            var reset = c.AwaitEvent("RESET").GetProperty("data");
            Assert.False(reset.GetProperty("guest").GetBoolean());
            Assert.Equal("host-qmp-system-reset", reset.GetProperty("reason").GetString());
            Until(() => SerialText(serial).Split(Banner).Length - 1 == 2);
            c.Execute("""{"execute":"quit"}""");
            c.AwaitEvent("SHUTDOWN");
        }
        Assert.True(run.Wait(Wait));
        Assert.Equal(0, run.Result);
    }

    [Theory]
    [InlineData("on")]
    [InlineData("split")]
    [InlineData("off")]
    public void System_powerdown_presses_the_ACPI_power_button_and_the_guest_powers_off(string irqchip)
    {
        var (run, socket, serial) = Start("-machine", $"kernel-irqchip={irqchip}");
        using (var c = Negotiated(socket))
        {
            Until(() => SerialText(serial).Contains("waiting for the power button", StringComparison.Ordinal));
            Assert.Equal(JsonValueKind.Object, c.Execute("""{"execute":"system_powerdown"}""").GetProperty("return").ValueKind);
            AssertTimestamp(c.AwaitEvent("POWERDOWN"));
            var shutdown = c.AwaitEvent("SHUTDOWN").GetProperty("data");
            Assert.True(shutdown.GetProperty("guest").GetBoolean());
            Assert.Equal("guest-shutdown", shutdown.GetProperty("reason").GetString());
        }
        Assert.True(run.Wait(Wait));
        Assert.Equal(0, run.Result);
        Assert.EndsWith("power button pressed: powering off\n", SerialText(serial), StringComparison.Ordinal);
    }

    [Fact]
    public void Malformed_input_gets_errors_and_leaves_the_VM_and_the_connection_working()
    {
        var (run, socket, serial) = Start();
        using (var c = Negotiated(socket))
        {
            Until(() => SerialText(serial).Contains("waiting for the power button", StringComparison.Ordinal));
            AssertError(c.Execute("this is not json"), "GenericError", "JSON parse error");
            AssertError(c.Execute("[1, 2, 3]"), "GenericError", "must be a JSON object");
            AssertError(c.Execute("""{"arguments":{}}"""), "GenericError", "lacks member 'execute'");
            AssertError(c.Execute("""{"execute":42}"""), "GenericError", "'execute' must be a string");
            AssertError(c.Execute("""{"execute":"stop","bogus":1}"""), "GenericError", "'bogus' is unexpected");
            AssertError(c.Execute("""{"execute":"stop","arguments":[]}"""), "GenericError", "'arguments' must be an object");
            AssertError(c.Execute("""{"execute":"stop","arguments":{"now":true}}"""), "GenericError", "Parameter 'now' is unexpected");
            AssertError(c.Execute("""{"execute":"format-disk","id":[1]}"""), "CommandNotFound", "The command format-disk has not been found");
            AssertError(c.Execute("""{"exec-oob":"stop"}"""), "GenericError", "out-of-band");
            AssertError(c.Execute("""{"execute":"query-stats","arguments":{"target":"vcpu"}}"""), "GenericError", "'target'");
            // A message larger than the server takes, then a command split across two writes, then two in one.
            AssertError(c.Execute("{\"execute\":\"" + new string('x', 70_000) + "\"}"), "GenericError", "longer than");
            c.SendRaw("""{"execute":"query""");
            Thread.Sleep(50);
            c.SendRaw("""-status","id":1}""" + "\n");
            Assert.Equal(1, c.Reply().GetProperty("id").GetInt32());
            c.SendRaw("""{"execute":"query-status","id":2}{"execute":"query-status","id":3}""" + "\n");
            Assert.Equal(2, c.Reply().GetProperty("id").GetInt32());
            Assert.Equal(3, c.Reply().GetProperty("id").GetInt32());
            Assert.Equal("running", c.Execute("""{"execute":"query-status"}""").GetProperty("return").GetProperty("status").GetString());
            Assert.Equal(Banner + "waiting for the power button\n", SerialText(serial));
            c.Execute("""{"execute":"quit"}""");
            c.AwaitEvent("SHUTDOWN");
        }
        Assert.True(run.Wait(Wait));
        Assert.Equal(0, run.Result);
    }

    [Fact]
    public void A_second_client_gets_its_own_session_and_the_events()
    {
        var (run, socket, _) = Start();
        using (var a = Negotiated(socket))
        using (var b = new Client(socket))
        {
            b.Read();
            AssertError(b.Execute("""{"execute":"stop"}"""), "CommandNotFound", "Expecting capabilities negotiation");
            b.Execute("""{"execute":"qmp_capabilities"}""");
            a.Execute("""{"execute":"stop"}""");
            a.AwaitEvent("STOP");
            b.AwaitEvent("STOP");
            b.Execute("""{"execute":"quit"}""");
            a.AwaitEvent("SHUTDOWN");
        }
        Assert.True(run.Wait(Wait));
    }

    [Fact]
    public void The_socket_can_be_TCP_and_wait_on_holds_the_guest_until_a_client_connects()
    {
        var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        probe.Start();
        int port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        string serial = Path.Combine(_dir, "com1.txt");
        var run = Task.Run(() => HostMain.Run(["-accel", "soft", "-m", "16", "-kernel", Guest(), "-serial", $"file:{serial}", "-qmp", $"tcp:127.0.0.1:{port},server"]));
        Thread.Sleep(500);
        Assert.Equal("", SerialText(serial)); // wait=on: nothing runs before a client is there
        using var tcp = new System.Net.Sockets.TcpClient();
        var deadline = DateTime.UtcNow + Wait;
        while (true)
        {
            try
            {
                tcp.Connect(System.Net.IPAddress.Loopback, port);
                break;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(20);
            }
        }
        var reader = new StreamReader(tcp.GetStream(), Encoding.UTF8);
        Assert.Contains("\"QMP\"", reader.ReadLine(), StringComparison.Ordinal);
        var stream = tcp.GetStream();
        stream.Write("{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"quit\"}\n"u8);
        Until(() => run.IsCompleted);
        Assert.Equal(0, run.Result);
    }

    [Theory]
    [InlineData("unix:/tmp/x.sock,server,wait=off", "/tmp/x.sock", false)]
    [InlineData("unix:/tmp/x.sock,server=on", "/tmp/x.sock", true)]
    [InlineData("unix:/tmp/x.sock,server,nowait", "/tmp/x.sock", false)]
    public void Qmp_option_takes_QEMUs_spelling(string value, string path, bool wait)
    {
        var e = CommandLine.ParseQmp("-qmp " + value, value);
        Assert.Equal(path, e.UnixPath);
        Assert.Equal(wait, e.Wait);
    }

    [Theory]
    [InlineData("unix:/tmp/x.sock", "only a listening socket")]
    [InlineData("unix:,server", "needs a path")]
    [InlineData("tcp:localhost:99999,server", "not a port number")]
    [InlineData("stdio", "unsupported address")]
    [InlineData("unix:/tmp/x.sock,server,wait=maybe", "wait must be on or off")]
    [InlineData("unix:/tmp/x.sock,server,telnet", "unknown property 'telnet'")]
    public void Bad_qmp_options_name_the_problem(string value, string message)
    {
        var e = Assert.Throws<UsageException>(() => CommandLine.Parse(["-kernel", "k.bin", "-qmp", value]));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Action_option_sets_the_reboot_shutdown_and_panic_actions()
    {
        var p = CommandLine.Parse(["-kernel", "k.bin", "-action", "reboot=shutdown,shutdown=pause,panic=none"]);
        Assert.True(p.Config!.NoReboot);
        Assert.True(p.Host!.Actions.PauseOnShutdown);
        Assert.Equal(Actors.PanicAction.None, p.Host.Actions.Panic);
        Assert.False(CommandLine.Parse(["-kernel", "k.bin", "-no-reboot", "-action", "reboot=reset"]).Config!.NoReboot);
        Assert.Contains("reboot must be reset or shutdown", Assert.Throws<UsageException>(() => CommandLine.Parse(["-kernel", "k.bin", "-action", "reboot=later"])).Message, StringComparison.Ordinal);
        Assert.Contains("unknown action 'bogus'", Assert.Throws<UsageException>(() => CommandLine.Parse(["-kernel", "k.bin", "-action", "bogus=1"])).Message, StringComparison.Ordinal);
        Assert.Contains("no watchdog", Assert.Throws<UsageException>(() => CommandLine.Parse(["-kernel", "k.bin", "-action", "watchdog=pause"])).Message, StringComparison.Ordinal);
    }
}

/// <summary>Test classes that call HostMain.Run in-process: xUnit runs them one after another.</summary>
[CollectionDefinition(Name)]
public sealed class HostMainCollection
{
    public const string Name = "HostMain.Run in-process";
}
