// Host-side character I/O for the guest's serial ports and debug console: byte sinks over stdout and files
// (written and flushed at once, so the console shows the guest's output as it comes), and a stdin pump that
// pushes the bytes it reads into COM1's input. The terminal is left in its normal (cooked) mode for now:
// the guest receives whole lines and the terminal echoes them; raw mode is a later step.
using ActorVmm.Core.Devices;
using ActorVmm.Core.Machine;
using Akka.Actor;
using ActorVmm.Actors;

namespace ActorVmm.Host;

/// <summary>Writes a device's output to a stream and flushes after each write. Thread-safe.</summary>
public sealed class StreamSink(Stream stream) : IByteSink, IDisposable
{
    private readonly Lock _lock = new();
    private bool _broken;

    public void Write(ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            if (_broken) return;
            try
            {
                stream.Write(data);
                stream.Flush();
            }
            catch (IOException)
            {
                // The reader went away (closed pipe); the guest keeps running, its output is dropped.
                _broken = true;
            }
        }
    }

    public void Dispose() => stream.Dispose();
}

/// <summary>Discards output (QEMU's null backend).</summary>
public sealed class NullSink : IByteSink
{
    public static readonly NullSink Instance = new();

    public void Write(ReadOnlySpan<byte> data)
    {
    }
}

/// <summary>Opens each backend once (files before the VM starts, so a bad path is a configuration error) and hands out its sink.</summary>
public sealed class CharBackends : IDisposable
{
    private readonly Dictionary<string, StreamSink> _files = [];
    private StreamSink? _stdout;

    /// <exception cref="UsageException">A file cannot be opened.</exception>
    public CharBackends(MachineConfig config, string serialOption = "-serial", string debugconOption = "-debugcon")
    {
        foreach (var b in config.SerialPorts) Open(b, serialOption);
        Open(config.DebugCon, debugconOption);
    }

    private void Open(CharBackend? backend, string option)
    {
        if (backend is not { Kind: CharBackendKind.File, Path: { } path } || _files.ContainsKey(path)) return;
        try
        {
            _files[path] = new StreamSink(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new UsageException($"{option} file:{path}: cannot open for writing: {e.Message}");
        }
    }

    public IByteSink SinkFor(string deviceName, CharBackend backend) => backend.Kind switch
    {
        CharBackendKind.Stdio => _stdout ??= new StreamSink(Console.OpenStandardOutput()),
        CharBackendKind.File => _files[backend.Path!],
        _ => NullSink.Instance,
    };

    public void Dispose()
    {
        foreach (var f in _files.Values) f.Dispose();
    }
}

/// <summary>Reads stdin on a background thread and sends what it reads to the VM actor as COM port input.</summary>
public static class StdinPump
{
    public static void Start(IActorRef vm, int port)
    {
        var thread = new Thread(() =>
        {
            try
            {
                using var stdin = Console.OpenStandardInput();
                var buffer = new byte[256];
                int n;
                while ((n = stdin.Read(buffer, 0, buffer.Length)) > 0)
                    vm.Tell(new VmActor.SerialInput(port, buffer.AsSpan(0, n).ToArray()), ActorRefs.NoSender);
            }
            catch (IOException)
            {
                // stdin closed or unreadable: no more input.
            }
        })
        {
            IsBackground = true,
            Name = "stdin",
        };
        thread.Start();
    }
}
