using System.CommandLine;
using Bureau.Cli.Commands;

namespace Bureau.Cli;

/// <summary>The <c>bureau</c> command line. Test hosts call <see cref="RunAsync"/> after setting <see cref="CliComposition.ConfigureServices"/>.</summary>
internal static class BureauCli
{
    public static async Task<int> RunAsync(string[] args)
    {
        var root = new RootCommand("bureau: run AI agents as durable, observable, governed work.")
        {
            ValidateCommand.Create(),
            RunCommand.Create(),
            RunsCommand.Create(),
            CostsCommand.Create(),
            StatsCommand.Create(),
            ReplayCommand.Create(),
            BenchCommand.Create(),
            ServeCommand.Create(),
            KeysCommand.Create(),
            HealthCommand.Create(),
            ApprovalsCommand.Create(),
            ApprovalsCommand.PolicyCommand(),
            AuditCommand.Create(),
            SchedulesCommand.Create(),
            EventsCommand.Create(),
            MemoryCommand.Create(),
            BoardCommand.Create(),
            ClusterCommand.Create(),
            WorkforceCommand.Create(),
        };

        try
        {
            var parse = root.Parse(args);
            var code = await parse.InvokeAsync(new InvocationConfiguration
            {
                EnableDefaultExceptionHandler = false,
                // serve stops gracefully on SIGTERM/Ctrl+C: in-flight steps reach the journal (up to Bureau:ShutdownGrace).
                ProcessTerminationTimeout = TimeSpan.FromSeconds(60),
            });
            // A mistyped command, a missing argument or an option that does not parse is bad usage (exit 2, docs/cli.md),
            // not 1, which scripts read as "the run failed".
            return parse.Errors.Count > 0 && code == 1 ? 2 : code;
        }
        catch (CliUsageException ex)
        {
            Console.Error.WriteLine("bureau: " + ex.Message);
            return 2;
        }
        catch (EmptyInputException ex)
        {
            // Bad usage (--input ""), not a failed run; without ArgumentException's " (Parameter 'input')".
            Console.Error.WriteLine("bureau: " + ex.Message.Split(" (Parameter")[0]);
            return 2;
        }
        catch (Exception ex) when (ex is RunNotFoundException or RunStateConflictException or UnknownAgentException)
        {
            Console.Error.WriteLine("bureau: " + ex.Message);
            return 1;
        }
        catch (StorageUnavailableException ex)
        {
            Console.Error.WriteLine("bureau: " + ex.Message + "; nothing was stored");
            return 2;
        }
    }
}
