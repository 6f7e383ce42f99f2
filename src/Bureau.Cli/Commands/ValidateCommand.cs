using System.CommandLine;
using Bureau.Manifests;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau validate FILE</c>: checks a manifest and lists its agents, or prints every problem at once.</summary>
internal static class ValidateCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("file") { Description = "The manifest (bureau.yaml)." };
        var cmd = new Command("validate", "Check a manifest: exit 0 and a summary when valid; otherwise exit 2 and one line per problem on stderr (FILE:LINE:COL: error: MESSAGE).")
        {
            file,
        };
        cmd.SetAction(parse => Validate(parse.GetValue(file)!, Console.Out, Console.Error));
        return cmd;
    }

    public static int Validate(string file, TextWriter stdout, TextWriter stderr)
    {
        if (!File.Exists(file) && !Directory.Exists(file)) // a directory: the loader's diagnostic says so
        {
            stderr.WriteLine($"bureau: no such file '{file}'");
            return 2;
        }
        var result = ManifestLoader.LoadFile(file);
        if (!result.Success)
        {
            foreach (var d in result.Diagnostics) stderr.WriteLine(d.ToString());
            stderr.WriteLine($"{result.Diagnostics.Count} error(s)");
            return 2;
        }
        var definitions = result.Definitions!;
        stdout.WriteLine($"{file}: valid ({Count(definitions.Models.Count, "model")}, {Count(definitions.Tools.Count, "tool")}, {Count(definitions.Agents.Count, "agent")}"
            + (definitions.Teams.Count > 0 ? $", {Count(definitions.Teams.Count, "team")}" : "")
            + (definitions.Triggers.Count > 0 ? $", {Count(definitions.Triggers.Count, "trigger")})" : ")"));
        foreach (var agent in definitions.Agents.Values)
            stdout.WriteLine($"  agent {agent.Name}  model={agent.Model}  tools={string.Join(",", agent.Tools)}");
        foreach (var tool in definitions.Tools.Values.OfType<ProcessToolDefinition>().Where(t => t.Sandbox is not null))
        {
            // What this machine cannot apply of a tool's sandbox (bubblewrap missing, limits not enforceable, paths).
            var directory = Path.GetFullPath(tool.WorkingDirectory ?? Directory.GetCurrentDirectory());
            stdout.WriteLine($"  tool {tool.Name}  {Bureau.Tools.ToolSandbox.Describe(tool.Sandbox!, directory)}");
            foreach (var line in Bureau.Tools.ToolSandbox.NotApplied(tool.Sandbox!, directory)) stdout.WriteLine($"    not applied here: {line}");
        }
        foreach (var tool in definitions.Tools.Values.OfType<ProcessToolDefinition>().Where(t => t.SandboxOptedOut))
            stdout.WriteLine($"  tool {tool.Name}  warning: a write tool that runs unsandboxed (sandbox: false)");
        foreach (var team in definitions.Teams.Values)
            stdout.WriteLine($"  team {team.Name}  pattern={WireNames.Of(team.Pattern)}  uses={string.Join(",", team.Uses().Distinct(StringComparer.Ordinal))}");
        foreach (var trigger in definitions.Triggers.Values)
        {
            var what = trigger switch
            {
                WebhookTriggerDefinition w => $"source={WireNames.Of(w.Source)}  POST /v1/hooks/{w.Name}" + (w.Events.Count > 0 ? $"  events={string.Join(",", w.Events)}" : ""),
                ScheduleTriggerDefinition s => s.Cron is not null ? $"cron='{s.Cron}'" + (s.TimeZone is null ? "" : $" ({s.TimeZone})") : $"every={s.Every}",
                TopicTriggerDefinition t => $"topic={t.Topic}",
                PollTriggerDefinition p => $"poll={p.Provider} every={p.Every} cursor={p.CursorColumn}",
                _ => "",
            };
            if (trigger.Priority != 0) what += $"  priority={trigger.Priority}";
            if (trigger.OrderingKey is { } orderingKey) what += $"  orderingKey={orderingKey}";
            stdout.WriteLine($"  trigger {trigger.Name}  kind={trigger.Kind}  starts={(trigger.Workforce is { } target ? "workforce:" + target.Skill : trigger.Agent)}  {what}");
        }
        return 0;
    }

    private static string Count(int n, string noun) => n == 1 ? $"1 {noun}" : $"{n} {noun}s";
}
