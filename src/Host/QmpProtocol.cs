// The control socket's protocol, in QMP's style (QEMU's JSON machine protocol; facts from its documentation,
// our own code): the server greets with {"QMP": {"version": ..., "capabilities": []}}; a client sends JSON
// objects {"execute": NAME, "arguments": {...}, "id": ANY}; the first command must be qmp_capabilities; each
// command gets {"return": ..., "id": ...} or {"error": {"class": ..., "desc": ...}, "id": ...}; events arrive
// as {"event": NAME, "data": {...}, "timestamp": {"seconds": S, "microseconds": US}}.
// Commands: qmp_capabilities, query-status, stop, cont, system_reset, system_powerdown, quit, query-cpus-fast,
// query-stats (ActorVmm's own shape: exits and latency by device and route), inject-fault, query-commands.
// Error classes as QEMU uses them: CommandNotFound for unknown commands and commands before negotiation,
// GenericError for everything else (malformed JSON, a message that is not an object, bad or missing
// arguments, a command the VM's state refuses). Input is never trusted: sizes are bounded and nothing a
// client sends reaches the VM except through the commands above.
// One QmpSession per connection: it owns the negotiation state and turns one request into one reply; the
// VM is reached through IQmpBackend (messages to the VmActor in the product, a fake in unit tests).
using System.Text;
using System.Text.Json;
using ActorVmm.Actors;

namespace ActorVmm.Host;

/// <summary>What QMP commands do to the VM. Implemented over the VmActor by <see cref="QmpServer"/>.</summary>
public interface IQmpBackend
{
    Task<VmActor.Status> Status();

    Task<VmActor.Status> Stop();

    Task<VmActor.Status> Cont();

    Task SystemReset();

    /// <summary>Null when the button was pressed, else why not.</summary>
    Task<string?> SystemPowerdown();

    Task Quit();

    Task<VmActor.Cpus> Cpus();

    Task<VmActor.Stats> Stats();

    Task<VmActor.FaultReply> Fault(string target, Fault? fault);
}

/// <summary>A QMP error: its class and its description.</summary>
public sealed class QmpException(string errorClass, string description) : Exception(description)
{
    public string ErrorClass { get; } = errorClass;
}

public sealed class QmpSession(IQmpBackend backend)
{
    public const string GenericError = "GenericError";
    public const string CommandNotFound = "CommandNotFound";

    public static readonly string[] Commands =
        ["qmp_capabilities", "query-status", "stop", "cont", "system_reset", "system_powerdown", "quit", "query-cpus-fast", "query-stats", "inject-fault", "query-commands"];

    /// <summary>True once qmp_capabilities succeeded: commands are accepted and events are sent.</summary>
    public bool Negotiated { get; private set; }

    /// <summary>Set by quit (the connection stays open for the SHUTDOWN event; the server closes it as the host ends).</summary>
    public bool QuitRequested { get; private set; }

    public static string Greeting(string version)
    {
        var (major, minor, micro) = ParseVersion(version);
        return Json(w =>
        {
            w.WriteStartObject();
            w.WriteStartObject("QMP");
            w.WriteStartObject("version");
            w.WriteStartObject("qemu");
            w.WriteNumber("micro", micro);
            w.WriteNumber("minor", minor);
            w.WriteNumber("major", major);
            w.WriteEndObject();
            w.WriteString("package", $"actorvmm {version}");
            w.WriteEndObject();
            w.WriteStartArray("capabilities");
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        });
    }

    private static (int, int, int) ParseVersion(string version)
    {
        var parts = version.Split('+', '-')[0].Split('.');
        int Part(int i) => i < parts.Length && int.TryParse(parts[i], System.Globalization.CultureInfo.InvariantCulture, out int v) ? v : 0;
        return (Part(0), Part(1), Part(2));
    }

    /// <summary>The JSON text of an event.</summary>
    public static string Event(VmActor.VmEvent e) => Json(w =>
    {
        w.WriteStartObject();
        w.WriteStartObject("timestamp");
        long ticks = e.Timestamp.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks;
        w.WriteNumber("seconds", ticks / TimeSpan.TicksPerSecond);
        w.WriteNumber("microseconds", ticks % TimeSpan.TicksPerSecond / 10);
        w.WriteEndObject();
        w.WriteString("event", e.Name);
        if (e.Data is { } data)
        {
            w.WritePropertyName("data");
            WriteValue(w, data);
        }
        w.WriteEndObject();
    });

    /// <summary>A reply for a message that is not valid JSON (the session state does not change).</summary>
    public static string ParseError(string what) => ErrorReply(GenericError, $"JSON parse error, {what}", null);

    /// <summary>Handles one parsed message; returns the reply's JSON text.</summary>
    public async Task<string> HandleAsync(JsonElement message)
    {
        JsonElement? id = null;
        try
        {
            if (message.ValueKind != JsonValueKind.Object) throw new QmpException(GenericError, "QMP input must be a JSON object");
            string? command = null;
            JsonElement? arguments = null;
            foreach (var p in message.EnumerateObject())
            {
                switch (p.Name)
                {
                    case "execute":
                        if (p.Value.ValueKind != JsonValueKind.String) throw new QmpException(GenericError, "QMP input member 'execute' must be a string");
                        command = p.Value.GetString();
                        break;
                    case "arguments":
                        if (p.Value.ValueKind != JsonValueKind.Object) throw new QmpException(GenericError, "QMP input member 'arguments' must be an object");
                        arguments = p.Value;
                        break;
                    case "id":
                        id = p.Value.Clone();
                        break;
                    case "exec-oob":
                        throw new QmpException(GenericError, "out-of-band execution is not supported (no 'oob' capability)");
                    default:
                        throw new QmpException(GenericError, $"QMP input member '{p.Name}' is unexpected");
                }
            }
            if (command is null) throw new QmpException(GenericError, "QMP input lacks member 'execute'");
            var result = await Execute(command, new Args(arguments)).ConfigureAwait(false);
            return Json(w =>
            {
                w.WriteStartObject();
                w.WritePropertyName("return");
                WriteValue(w, result);
                if (id is { } i)
                {
                    w.WritePropertyName("id");
                    i.WriteTo(w);
                }
                w.WriteEndObject();
            });
        }
        catch (QmpException e)
        {
            return ErrorReply(e.ErrorClass, e.Message, id);
        }
        catch (Exception e) when (e is TimeoutException or Akka.Actor.AskTimeoutException or TaskCanceledException)
        {
            return ErrorReply(GenericError, "the VM did not answer in time", id);
        }
    }

    private async Task<object?> Execute(string command, Args args)
    {
        if (!Negotiated && command != "qmp_capabilities")
            throw new QmpException(CommandNotFound, "Expecting capabilities negotiation with 'qmp_capabilities'");
        switch (command)
        {
            case "qmp_capabilities":
                if (Negotiated) throw new QmpException(CommandNotFound, "Capabilities negotiation is already complete, command ignored");
                foreach (var cap in args.OptionalStringArray("enable") ?? [])
                    throw new QmpException(GenericError, $"Capability '{cap}' not available");
                args.EnsureNoOthers();
                Negotiated = true;
                return Empty;
            case "query-commands":
                args.EnsureNoOthers();
                return Commands.Select(c => new Dictionary<string, object?> { ["name"] = c }).ToList();
            case "query-status":
                args.EnsureNoOthers();
                return StatusObject(await backend.Status().ConfigureAwait(false));
            case "stop":
                args.EnsureNoOthers();
                await backend.Stop().ConfigureAwait(false);
                return Empty;
            case "cont":
            {
                args.EnsureNoOthers();
                var s = await backend.Status().ConfigureAwait(false);
                if (s.State is VmRunState.Shutdown) throw new QmpException(GenericError, "Resetting the Virtual Machine is required");
                if (s.State is VmRunState.Finished) throw new QmpException(GenericError, "the VM has finished");
                await backend.Cont().ConfigureAwait(false);
                return Empty;
            }
            case "system_reset":
                args.EnsureNoOthers();
                await backend.SystemReset().ConfigureAwait(false);
                return Empty;
            case "system_powerdown":
            {
                args.EnsureNoOthers();
                if (await backend.SystemPowerdown().ConfigureAwait(false) is { } error) throw new QmpException(GenericError, error);
                return Empty;
            }
            case "quit":
                args.EnsureNoOthers();
                QuitRequested = true;
                await backend.Quit().ConfigureAwait(false);
                return Empty;
            case "query-cpus-fast":
            {
                args.EnsureNoOthers();
                var cpus = await backend.Cpus().ConfigureAwait(false);
                return cpus.List.Select(c => new Dictionary<string, object?>
                {
                    ["cpu-index"] = c.Index,
                    ["qom-path"] = $"/machine/vcpu[{c.Index}]",
                    ["thread-id"] = c.ThreadId,
                    ["target"] = "x86_64",
                    ["props"] = new Dictionary<string, object?> { ["socket-id"] = 0, ["core-id"] = c.Index, ["thread-id"] = 0 },
                    ["state"] = c.State.ToString().ToLowerInvariant(),
                }).ToList();
            }
            case "query-stats":
            {
                string? target = args.OptionalString("target");
                if (target is not (null or "vm")) throw new QmpException(GenericError, $"Parameter 'target' does not accept value '{target}' (only 'vm')");
                args.EnsureNoOthers();
                return StatsObject(await backend.Stats().ConfigureAwait(false));
            }
            case "inject-fault":
            {
                string target = args.RequiredString("target");
                var fault = ParseFault(args);
                args.EnsureNoOthers();
                var reply = await backend.Fault(target, fault).ConfigureAwait(false);
                if (reply.Error is { } error) throw new QmpException(GenericError, error);
                return reply.Report is { } r ? ReportObject(r) : new Dictionary<string, object?> { ["pending"] = true };
            }
            default:
                throw new QmpException(CommandNotFound, $"The command {command} has not been found");
        }
    }

    private static readonly Dictionary<string, object?> Empty = [];

    /// <summary>inject-fault's arguments: fault = throw [every] | hang duration-ms | slow duration-ms | drop count|fraction [seed] [skip] | clear.</summary>
    private static Fault? ParseFault(Args args)
    {
        string kind = args.RequiredString("fault");
        switch (kind)
        {
            case "throw":
                return new ThrowFault(args.OptionalBool("every") ?? false);
            case "hang":
            case "slow":
            {
                double ms = args.RequiredNumber("duration-ms");
                double max = kind == "hang" ? 600_000 : 1_000;
                if (ms is <= 0 || ms > max || double.IsNaN(ms)) throw new QmpException(GenericError, $"Parameter 'duration-ms' must be more than 0 and at most {max} for {kind}");
                var d = TimeSpan.FromMilliseconds(ms);
                return kind == "hang" ? new HangFault(d) : new SlowFault(d);
            }
            case "drop":
            {
                double? count = args.OptionalNumber("count");
                double? fraction = args.OptionalNumber("fraction");
                double? seed = args.OptionalNumber("seed");
                double? skip = args.OptionalNumber("skip");
                if (count is null == fraction is null) throw new QmpException(GenericError, "drop takes exactly one of 'count' and 'fraction'");
                if (count is { } c && (c < 1 || c > int.MaxValue || c != Math.Floor(c))) throw new QmpException(GenericError, "Parameter 'count' must be a whole number of at least 1");
                if (fraction is { } f && (f <= 0 || f > 1 || double.IsNaN(f))) throw new QmpException(GenericError, "Parameter 'fraction' must be more than 0 and at most 1");
                if (seed is { } s && (s < int.MinValue || s > int.MaxValue || s != Math.Floor(s))) throw new QmpException(GenericError, "Parameter 'seed' must be a 32-bit whole number");
                if (skip is { } k && (k < 0 || k > int.MaxValue || k != Math.Floor(k))) throw new QmpException(GenericError, "Parameter 'skip' must be a whole number of at least 0");
                return new DropFault((int)(count ?? 0), fraction ?? 0, (int)(seed ?? 1), (int)(skip ?? 0));
            }
            case "clear":
                return null;
            default:
                throw new QmpException(GenericError, $"Parameter 'fault' does not accept value '{kind}' (throw, hang, slow, drop or clear)");
        }
    }

    private static Dictionary<string, object?> StatusObject(VmActor.Status s)
    {
        string status = s.State switch
        {
            VmRunState.Created => "prelaunch",
            VmRunState.Running or VmRunState.TearingDown or VmRunState.Rebooting => "running",
            VmRunState.Paused => "paused",
            VmRunState.GuestPanicked => "guest-panicked",
            _ => "shutdown",
        };
        return new() { ["status"] = status, ["singlestep"] = false, ["running"] = status == "running" };
    }

    private static Dictionary<string, object?> StatsObject(VmActor.Stats s) => new()
    {
        ["generation"] = s.Generation,
        ["unclaimed-port-exits"] = s.UnclaimedPortAccesses,
        ["unclaimed-mmio-exits"] = s.UnclaimedMmioAccesses,
        ["devices"] = s.Devices.Select(d => new Dictionary<string, object?>
        {
            ["name"] = d.Device,
            ["route"] = d.Route.ToString().ToLowerInvariant(),
            ["exits"] = d.Accesses,
            ["reads"] = d.Reads,
            ["writes"] = d.Accesses - d.Reads,
            ["mean-latency-ns"] = d.MeanLatencyNs is { } ns ? Math.Round(ns, 1) : null,
            ["latency-samples"] = d.LatencySamples,
            ["timed-out-reads"] = d.TimedOutReads,
            ["restarts"] = d.Restarts,
            ["faults-fired"] = d.FaultsFired,
        }).ToList(),
    };

    private static Dictionary<string, object?> ReportObject(FaultReport r) => new()
    {
        ["target"] = r.Actor,
        ["active"] = r.Active.Select(f => f.ToString()).ToList(),
        ["thrown"] = r.Thrown,
        ["hangs"] = r.Hangs,
        ["slowed"] = r.Slowed,
        ["dropped"] = r.Dropped,
        ["restarts"] = r.Restarts,
    };

    private static string ErrorReply(string errorClass, string description, JsonElement? id) => Json(w =>
    {
        w.WriteStartObject();
        w.WriteStartObject("error");
        w.WriteString("class", errorClass);
        w.WriteString("desc", description);
        w.WriteEndObject();
        if (id is { } i)
        {
            w.WritePropertyName("id");
            i.WriteTo(w);
        }
        w.WriteEndObject();
    });

    private static void WriteValue(Utf8JsonWriter w, object? value)
    {
        switch (value)
        {
            case null: w.WriteNullValue(); break;
            case string s: w.WriteStringValue(s); break;
            case bool b: w.WriteBooleanValue(b); break;
            case int i: w.WriteNumberValue(i); break;
            case long l: w.WriteNumberValue(l); break;
            case double d: w.WriteNumberValue(d); break;
            case IReadOnlyDictionary<string, object?> map:
                w.WriteStartObject();
                foreach (var (k, v) in map)
                {
                    w.WritePropertyName(k);
                    WriteValue(w, v);
                }
                w.WriteEndObject();
                break;
            case System.Collections.IEnumerable list:
                w.WriteStartArray();
                foreach (var item in list) WriteValue(w, item);
                w.WriteEndArray();
                break;
            default: w.WriteStringValue(value.ToString()); break;
        }
    }

    // Quotes and '+' as they are (the default encoder writes \u0027 for '); JSON stays valid, output stays readable.
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static string Json(Action<Utf8JsonWriter> write)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, WriterOptions)) write(w);
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>A command's arguments, checked by name and type; members nobody asked for are refused.</summary>
    private sealed class Args(JsonElement? arguments)
    {
        private readonly HashSet<string> _taken = [];

        private JsonElement? Get(string name)
        {
            _taken.Add(name);
            return arguments is { } a && a.TryGetProperty(name, out var v) ? v : null;
        }

        public string RequiredString(string name) => OptionalString(name) ?? throw new QmpException(GenericError, $"Parameter '{name}' is missing");

        public string? OptionalString(string name) => Get(name) switch
        {
            null => null,
            { ValueKind: JsonValueKind.String } v => v.GetString(),
            _ => throw new QmpException(GenericError, $"Invalid parameter type for '{name}', expected: string"),
        };

        public bool? OptionalBool(string name) => Get(name) switch
        {
            null => null,
            { ValueKind: JsonValueKind.True } => true,
            { ValueKind: JsonValueKind.False } => false,
            _ => throw new QmpException(GenericError, $"Invalid parameter type for '{name}', expected: boolean"),
        };

        public double RequiredNumber(string name) => OptionalNumber(name) ?? throw new QmpException(GenericError, $"Parameter '{name}' is missing");

        public double? OptionalNumber(string name) => Get(name) switch
        {
            null => null,
            { ValueKind: JsonValueKind.Number } v => v.GetDouble(),
            _ => throw new QmpException(GenericError, $"Invalid parameter type for '{name}', expected: number"),
        };

        public List<string>? OptionalStringArray(string name)
        {
            if (Get(name) is not { } v) return null;
            if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.String))
                throw new QmpException(GenericError, $"Invalid parameter type for '{name}', expected: array of strings");
            return [.. v.EnumerateArray().Select(x => x.GetString()!)];
        }

        public void EnsureNoOthers()
        {
            if (arguments is not { } a) return;
            foreach (var p in a.EnumerateObject())
            {
                if (!_taken.Contains(p.Name)) throw new QmpException(GenericError, $"Parameter '{p.Name}' is unexpected");
            }
        }
    }
}
