namespace ActorVmm.Host;

internal static class HostMain
{
    public static int Run(string[] args)
    {
        Console.Error.WriteLine("actorvmm: the run command is not built yet");
        return 2;
    }
}
