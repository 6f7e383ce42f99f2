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
};

try
{
    return await root.Parse(args).InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
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
