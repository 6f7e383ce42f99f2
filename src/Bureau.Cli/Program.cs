using System.CommandLine;
using Bureau;
using Bureau.Cli;
using Bureau.Cli.Commands;

var root = new RootCommand("bureau: run AI agents as durable, observable, governed work.")
{
    ValidateCommand.Create(),
    RunCommand.Create(),
    RunsCommand.Create(),
    BenchCommand.Create(),
    ServeCommand.Create(),
    KeysCommand.Create(),
};

try
{
    return await root.Parse(args).InvokeAsync(new InvocationConfiguration
    {
        EnableDefaultExceptionHandler = false,
        // serve stops gracefully on SIGTERM/Ctrl+C: in-flight steps reach the journal (up to Bureau:ShutdownGrace).
        ProcessTerminationTimeout = TimeSpan.FromSeconds(60),
    });
}
catch (CliUsageException ex)
{
    Console.Error.WriteLine("bureau: " + ex.Message);
    return 2;
}
catch (Exception ex) when (ex is RunNotFoundException or RunStateConflictException or UnknownAgentException)
{
    Console.Error.WriteLine("bureau: " + ex.Message);
    return 1;
}
