using System.CommandLine;
using System.Text.Json.Nodes;
using Bureau.Governance;
using Microsoft.Extensions.DependencyInjection;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau approvals list|approve|reject</c> and <c>bureau policy test</c>.</summary>
internal static class ApprovalsCommand
{
    public static Command Create()
    {
        var cmd = new Command("approvals", "The approvals runs wait for: list them, approve or reject one.");
        cmd.Subcommands.Add(List());
        cmd.Subcommands.Add(Decide(approve: true));
        cmd.Subcommands.Add(Decide(approve: false));
        return cmd;
    }

    private static Task<T> WithEngineAsync<T>(string dbPath, Func<BureauEngine, Task<T>> action, CancellationToken ct) =>
        CliShared.WithEngineCommandsAsync(dbPath, action, ct);

    private static Command List()
    {
        var db = CliShared.DbOption();
        var json = CliShared.JsonOption("Print {\"items\":[...]} on stdout.");
        var cmd = new Command("list", "Approvals open now, oldest first: the run, the proposed tool call, who may answer, the deadline.") { db, json };
        cmd.SetAction(async (parse, ct) =>
        {
            var approvals = await WithEngineAsync(parse.GetValue(db)!, e => e.ListApprovalsAsync(cancellationToken: ct), ct);
            if (parse.GetValue(json))
            {
                var items = new JsonArray();
                foreach (var a in approvals)
                {
                    items.Add(new JsonObject
                    {
                        ["id"] = a.Id, ["runId"] = a.Run.Id, ["agent"] = a.Run.Agent, ["tool"] = a.Wait.Tool,
                        ["arguments"] = a.Wait.Arguments is null ? null : JsonNode.Parse(a.Wait.Arguments),
                        ["rule"] = a.Wait.Rule, ["level"] = a.Wait.Level, ["approvers"] = new JsonArray([.. a.Wait.Approvers.Select(x => (JsonNode?)x)]),
                        ["required"] = a.Wait.Required, ["approvedBy"] = new JsonArray([.. a.Votes.Select(x => (JsonNode?)x)]), ["deadline"] = a.Wait.Deadline,
                    });
                }
                Console.Out.WriteLine(RunDocuments.ToJson(new JsonObject { ["items"] = items }, indented: true));
                return 0;
            }
            if (approvals.Count == 0)
            {
                Console.Out.WriteLine("no open approvals");
                return 0;
            }
            foreach (var a in approvals)
            {
                Console.Out.WriteLine($"{a.Id}  agent {a.Run.Agent}  {a.Wait.Tool} {a.Wait.Arguments}");
                Console.Out.WriteLine($"    {a.Wait.Question}");
                Console.Out.WriteLine($"    level {a.Wait.Level + 1}, approvers: {(a.Wait.Approvers.Count == 0 ? "any approver" : string.Join(", ", a.Wait.Approvers))}"
                    + (a.Wait.Required > 1 ? $", {a.Votes.Count} of {a.Wait.Required} approvals" : "")
                    + (a.Wait.Deadline is { } d ? $", until {d:u}" : ""));
            }
            return 0;
        });
        return cmd;
    }

    private static Command Decide(bool approve)
    {
        var id = new Argument<string>("id") { Description = "The approval (RUN:STEP, as approvals list shows it)." };
        var reason = new Option<string?>("--reason") { Description = approve ? "Why (journaled)." : "Why (the model is told).", HelpName = "TEXT", Required = !approve };
        var args = new Option<string?>("--args") { Description = "Edited arguments, a JSON object (when the policy allows editing).", HelpName = "JSON" };
        var actorOption = new Option<string?>("--as-user") { Description = "Who answers (default: cli:$USER); matched against the level's approvers.", HelpName = "NAME" };
        var db = CliShared.DbOption();
        var cmd = new Command(approve ? "approve" : "reject", approve ? "Approve a waiting tool call (optionally with edited arguments)." : "Reject a waiting tool call; the reason goes back to the model.")
        {
            id, reason, db, actorOption,
        };
        if (approve) cmd.Options.Add(args);
        cmd.SetAction(async (parse, ct) =>
        {
            var text = parse.GetValue(id)!;
            var colon = text.LastIndexOf(':');
            if (colon <= 0 || !long.TryParse(text[(colon + 1)..], out var step)) throw new CliUsageException($"'{text}' is not an approval id (RUN:STEP, as bureau approvals list shows it)");
            string? edited = null;
            if (approve && parse.GetValue(args) is { } json)
            {
                try
                {
                    if (JsonNode.Parse(json) is not JsonObject) throw new CliUsageException("--args must be a JSON object");
                }
                catch (System.Text.Json.JsonException ex)
                {
                    throw new CliUsageException($"--args is not JSON: {ex.Message}");
                }
                edited = json;
            }
            var actor = parse.GetValue(actorOption) ?? "cli:" + Environment.UserName;
            try
            {
                var run = await WithEngineAsync(parse.GetValue(db)!, e => e.DecideApprovalAsync(text[..colon], step,
                    new ApprovalDecision(approve, parse.GetValue(reason), edited), actor, [actor], ct), ct);
                Console.Out.WriteLine(run.Status == RunStatus.Waiting
                    ? $"approval {text}: approved by {actor}; it needs more approvers, the run goes on waiting"
                    : $"approval {text}: {(approve ? "approved" : "rejected")} by {actor}; run {run.Id} continues when Bureau next runs on {parse.GetValue(db)} (a host serving it picks it up within a minute)");
                return 0;
            }
            catch (ApprovalForbiddenException ex)
            {
                Console.Error.WriteLine("bureau: " + ex.Message);
                return 1;
            }
            catch (ArgumentException ex)
            {
                throw new CliUsageException(ex.Message.Split(" (Parameter")[0]);
            }
        });
        return cmd;
    }

    /// <summary><c>bureau policy test FILE --agent A --tool T --args JSON [--confidence X] [--tokens N] [--cost AMOUNT] [--trigger NAME]</c>.</summary>
    public static Command PolicyCommand()
    {
        var file = new Argument<string>("file") { Description = "The manifest with the policies." };
        var agent = new Option<string>("--agent") { Description = "The agent that would call.", Required = true, HelpName = "NAME" };
        var tool = new Option<string>("--tool") { Description = "The tool it would call.", Required = true, HelpName = "NAME" };
        var args = new Option<string>("--args") { Description = "The call's arguments, a JSON object.", DefaultValueFactory = _ => "{}", HelpName = "JSON" };
        var confidence = new Option<double?>("--confidence") { Description = "The model's stated confidence (0 to 1).", HelpName = "X" };
        var tokens = new Option<long>("--tokens") { Description = "The run's tokens so far.", DefaultValueFactory = _ => 0 };
        var cost = new Option<decimal?>("--cost") { Description = "The run's cost so far, in the models' price unit (default: unknown, as for models without prices).", HelpName = "AMOUNT" };
        var trigger = new Option<string?>("--trigger") { Description = "The trigger that started the run.", HelpName = "NAME" };
        var test = new Command("test", "Explain which policy rule decides a tool call, and why the rules before it do not.") { file, agent, tool, args, confidence, tokens, cost, trigger };
        test.SetAction((parse, _) =>
        {
            var definitions = CliShared.LoadManifest(parse.GetValue(file)!, Console.Error);
            if (definitions is null) return Task.FromResult(2);
            var toolName = parse.GetValue(tool)!;
            if (!definitions.Tools.TryGetValue(toolName, out var toolDef))
                throw new CliUsageException($"tool '{toolName}' is not defined in {parse.GetValue(file)}; tools: {string.Join(", ", definitions.Tools.Keys.Order(StringComparer.Ordinal))}");
            var agentName = parse.GetValue(agent)!;
            if (!definitions.Agents.TryGetValue(agentName, out var agentDef))
                throw new CliUsageException($"agent '{agentName}' is not defined in {parse.GetValue(file)}; agents: {string.Join(", ", definitions.Agents.Keys.Order(StringComparer.Ordinal))}");
            if (!agentDef.Tools.Contains(toolName))
                Console.Error.WriteLine($"bureau: note: agent '{agentName}' does not list tool '{toolName}'; its calls would be refused before any policy");
            if (parse.GetValue(cost) is < 0) throw new CliUsageException("--cost must be 0 or more: the run's spend so far");
            var decision = PolicyEvaluator.Evaluate(definitions.Policies, new PolicyContext(agentName, toolName, toolDef.Effect, parse.GetValue(args)!,
                parse.GetValue(confidence), parse.GetValue(tokens), parse.GetValue(cost), parse.GetValue(trigger) is { } t ? "trigger:" + t : null, DateTimeOffset.UtcNow));
            foreach (var line in decision.Explanation) Console.Out.WriteLine("  " + line);
            Console.Out.WriteLine($"{WireNames.Of(decision.Action)} (rule {decision.Rule}){(decision.Reason is null ? "" : ": " + decision.Reason)}");
            if (decision.Approval is { } spec)
            {
                for (var i = 0; i < spec.Levels.Count; i++)
                {
                    var level = spec.Levels[i];
                    Console.Out.WriteLine($"  level {i + 1}: {(level.Approvers.Count == 0 ? "any approver" : string.Join(", ", level.Approvers))}{(level.Timeout is { } to ? $", {to}" : ", no deadline")}");
                }
                Console.Out.WriteLine($"  then: {WireNames.Of(spec.OnTimeout)}{(spec.Required > 1 ? $"; {spec.Required} distinct approvers" : "")}{(spec.EditableArguments ? "; arguments editable" : "")}");
            }
            return Task.FromResult(0);
        });
        return new Command("policy", "Tool-call policies.") { test };
    }
}
