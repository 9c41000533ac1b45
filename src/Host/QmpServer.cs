// The control socket (DESIGN.md §9): `-qmp unix:PATH,server[,wait=off]` or `-qmp tcp:HOST:PORT,server[,wait=off]`,
// speaking QmpProtocol to any number of clients at once. The server listens before the VM is built; with
// wait=on (QEMU's default for a server) the host starts the VM only once the first client has connected.
// Each connection: the greeting, then a loop that frames JSON values out of the byte stream (values may be
// split across reads or several in one; whitespace between them is skipped), at most MaxMessageBytes each.
// Input that is not JSON gets a GenericError and the bytes up to the next newline are discarded; nothing a
// client sends can stop the server or the VM except the commands stop and quit. Events from the VmActor
// (a relay actor subscribed to it) go to every client that has negotiated capabilities. Commands reach the
// VmActor by Ask with a timeout; a VM that does not answer is a GenericError, never a hang of the socket.
// A unix socket file left by an earlier run is replaced when nothing listens on it; the file is removed
// when the server stops.
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using ActorVmm.Actors;
using Akka.Actor;

namespace ActorVmm.Host;

/// <summary>Where the control socket listens, as -qmp gives it.</summary>
public sealed record QmpEndpoint(string? UnixPath, string? Host, int Port, bool Wait)
{
    public override string ToString() => UnixPath is not null ? $"unix:{UnixPath}" : $"tcp:{Host}:{Port}";
}

public sealed class QmpServer : IAsyncDisposable
{
    public const int MaxMessageBytes = 64 * 1024;
    public static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(10);

    private readonly QmpEndpoint _endpoint;
    private readonly IActorRef _vm;
    private readonly string _version;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Client> _clients = [];
    private readonly TaskCompletionSource _firstClient = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly IActorRef _relay;
    private Task? _acceptLoop;

    private QmpServer(QmpEndpoint endpoint, ActorSystem system, IActorRef vm, string version, Socket listener)
    {
        _endpoint = endpoint;
        _vm = vm;
        _version = version;
        _listener = listener;
        _relay = system.ActorOf(Props.Create(() => new EventRelay(this)), "qmp-events");
        vm.Tell(new VmActor.Subscribe(_relay));
    }

    /// <summary>Binds and listens (errors name the socket), then accepts clients in the background.</summary>
    /// <exception cref="UsageException">The socket cannot be bound.</exception>
    public static QmpServer Start(QmpEndpoint endpoint, ActorSystem system, IActorRef vm, string version)
    {
        var listener = Bind(endpoint);
        var server = new QmpServer(endpoint, system, vm, version, listener);
        server._acceptLoop = Task.Run(server.AcceptLoop);
        return server;
    }

    /// <summary>Completes when the first client has connected (for wait=on).</summary>
    public Task FirstClient => _firstClient.Task;

    /// <summary>The TCP port actually bound (useful with port 0).</summary>
    public int BoundPort => (_listener.LocalEndPoint as IPEndPoint)?.Port ?? 0;

    private static Socket Bind(QmpEndpoint endpoint)
    {
        Socket socket;
        try
        {
            if (endpoint.UnixPath is { } path)
            {
                if (File.Exists(path)) RemoveStaleSocket(path);
                socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                socket.Bind(new UnixDomainSocketEndPoint(path));
            }
            else
            {
                var address = endpoint.Host is null or "" or "0.0.0.0" ? IPAddress.Any
                    : endpoint.Host == "localhost" ? IPAddress.Loopback
                    : IPAddress.TryParse(endpoint.Host, out var a) ? a
                    : throw new UsageException($"-qmp {endpoint}: '{endpoint.Host}' is not an IP address (or localhost)");
                socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                socket.Bind(new IPEndPoint(address, endpoint.Port));
            }
            socket.Listen(8);
            return socket;
        }
        catch (SocketException e)
        {
            throw new UsageException($"-qmp {endpoint}: cannot listen: {e.Message}");
        }
    }

    private static void RemoveStaleSocket(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException)
        {
            File.Delete(path); // nothing listens: a leftover of an earlier run
            return;
        }
        throw new UsageException($"-qmp unix:{path}: another process is listening on this socket");
    }

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket s;
            try
            {
                s = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            var client = new Client(s, new QmpSession(new Backend(_vm)));
            lock (_clients) _clients.Add(client);
            _firstClient.TrySetResult();
            _ = Task.Run(() => Serve(client));
        }
    }

    private async Task Serve(Client client)
    {
        try
        {
            await client.Send(QmpSession.Greeting(_version)).ConfigureAwait(false);
            var buffer = new byte[MaxMessageBytes];
            int filled = 0;
            bool skipLine = false; // the rest of a line already answered with an error
            while (!_stop.IsCancellationRequested)
            {
                int n = await client.Socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, _stop.Token).ConfigureAwait(false);
                if (n == 0) return;
                filled += n;
                int consumed = 0;
                while (consumed < filled)
                {
                    if (skipLine)
                    {
                        int nl = buffer.AsSpan(consumed, filled - consumed).IndexOf((byte)'\n');
                        consumed = nl < 0 ? filled : consumed + nl + 1;
                        skipLine = nl < 0;
                        continue;
                    }
                    var (status, length, error) = Frame(buffer.AsSpan(consumed, filled - consumed), consumed == 0 && filled == buffer.Length);
                    if (status == FrameStatus.Incomplete) break;
                    if (status == FrameStatus.Error)
                    {
                        await client.Send(QmpSession.ParseError(error!)).ConfigureAwait(false);
                        // Discarded through a newline, or everything there was: then the rest of the line follows later.
                        skipLine = buffer[consumed + length - 1] != (byte)'\n';
                        consumed += length;
                        continue;
                    }
                    if (status == FrameStatus.Whitespace)
                    {
                        consumed += length;
                        continue;
                    }
                    string reply;
                    using (var doc = JsonDocument.Parse(buffer.AsMemory(consumed, length)))
                        reply = await client.Session.HandleAsync(doc.RootElement).ConfigureAwait(false);
                    consumed += length;
                    await client.Send(reply).ConfigureAwait(false);
                }
                Buffer.BlockCopy(buffer, consumed, buffer, 0, filled - consumed);
                filled -= consumed;
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException or IOException)
        {
            // The client went away or the server stops.
        }
        finally
        {
            lock (_clients) _clients.Remove(client);
            client.Dispose();
        }
    }

    private enum FrameStatus
    {
        Value,
        Whitespace,
        Incomplete,
        Error,
    }

    /// <summary>Finds the first JSON value in <paramref name="data"/>: its length, or how many bytes to discard with an error.</summary>
    private static (FrameStatus, int Length, string? Error) Frame(ReadOnlySpan<byte> data, bool bufferFull)
    {
        int start = 0;
        while (start < data.Length && data[start] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n') start++;
        if (start == data.Length) return (FrameStatus.Whitespace, start, null);
        if (start > 0) return (FrameStatus.Whitespace, start, null);
        var reader = new Utf8JsonReader(data, isFinalBlock: false, state: default);
        try
        {
            if (reader.Read() && reader.TrySkip())
                return (FrameStatus.Value, (int)reader.BytesConsumed, null);
        }
        catch (JsonException e)
        {
            return (FrameStatus.Error, DiscardLength(data), e.Message.Split(" LineNumber", 2)[0]);
        }
        if (bufferFull) return (FrameStatus.Error, data.Length, $"a message longer than {MaxMessageBytes} bytes");
        // A bare number or literal at the end of the data may still be growing: wait for more.
        return (FrameStatus.Incomplete, 0, null);
    }

    /// <summary>Bytes to drop after malformed input: through the next newline, or all there is.</summary>
    private static int DiscardLength(ReadOnlySpan<byte> data)
    {
        int nl = data.IndexOf((byte)'\n');
        return nl < 0 ? data.Length : nl + 1;
    }

    private void Broadcast(VmActor.VmEvent e)
    {
        string text = QmpSession.Event(e);
        Client[] clients;
        lock (_clients) clients = [.. _clients];
        foreach (var c in clients)
        {
            if (c.Session.Negotiated) _ = c.Send(text);
        }
    }

    /// <summary>Waits until the events already received have been written (at most a second), then closes every connection.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await _relay.Ask<EventRelay.Flushed>(EventRelay.Flush.Instance, TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
        {
        }
        Client[] clients;
        lock (_clients) clients = [.. _clients];
        foreach (var c in clients) await c.Drain().ConfigureAwait(false);
        _stop.Cancel();
        _listener.Dispose();
        if (_acceptLoop is not null) await _acceptLoop.ConfigureAwait(false);
        foreach (var c in clients) c.Dispose();
        if (_endpoint.UnixPath is { } path)
        {
            try
            {
                File.Delete(path);
            }
            catch (IOException)
            {
            }
        }
        _stop.Dispose();
    }

    private sealed class Client(Socket socket, QmpSession session) : IDisposable
    {
        private readonly SemaphoreSlim _write = new(1, 1);
        public Socket Socket { get; } = socket;
        public QmpSession Session { get; } = session;

        public async Task Send(string json)
        {
            var bytes = Encoding.UTF8.GetBytes(json + "\r\n");
            await _write.WaitAsync().ConfigureAwait(false);
            try
            {
                await Socket.SendAsync(bytes, SocketFlags.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // The client is gone; its Serve loop cleans up.
            }
            finally
            {
                _write.Release();
            }
        }

        public async Task Drain()
        {
            await _write.WaitAsync().ConfigureAwait(false);
            _write.Release();
        }

        public void Dispose() => Socket.Dispose();
    }

    /// <summary>Subscribed to the VmActor: hands its events to the server.</summary>
    private sealed class EventRelay : ReceiveActor
    {
        public sealed record Flush
        {
            public static readonly Flush Instance = new();
        }

        public sealed record Flushed;

        public EventRelay(QmpServer server)
        {
            Receive<VmActor.VmEvent>(server.Broadcast);
            Receive<Flush>(_ => Sender.Tell(new Flushed()));
        }
    }

    /// <summary>The QMP commands as messages to the VmActor.</summary>
    private sealed class Backend(IActorRef vm) : IQmpBackend
    {
        public Task<VmActor.Status> Status() => vm.Ask<VmActor.Status>(VmActor.GetStatus.Instance, CommandTimeout);

        public Task<VmActor.Status> Stop() => vm.Ask<VmActor.Status>(VmActor.Pause.Instance, CommandTimeout);

        public Task<VmActor.Status> Cont() => vm.Ask<VmActor.Status>(VmActor.Resume.Instance, CommandTimeout);

        public Task SystemReset()
        {
            vm.Tell(VmActor.SystemReset.Instance);
            return Task.CompletedTask;
        }

        public async Task<string?> SystemPowerdown()
            => (await vm.Ask<VmActor.CommandResult>(VmActor.SystemPowerdown.Instance, CommandTimeout).ConfigureAwait(false)).Error;

        public Task Quit()
        {
            vm.Tell(VmActor.Quit.Instance);
            return Task.CompletedTask;
        }

        public Task<VmActor.Cpus> Cpus() => vm.Ask<VmActor.Cpus>(VmActor.GetCpus.Instance, CommandTimeout);

        public Task<VmActor.Stats> Stats() => vm.Ask<VmActor.Stats>(VmActor.GetStats.Instance, CommandTimeout);

        public Task<VmActor.FaultReply> Fault(string target, Fault? fault)
            => vm.Ask<VmActor.FaultReply>(new VmActor.FaultCommand(target, fault), CommandTimeout);
    }
}
