using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Bureau.Manifests;
using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary>The support-desk sample: its manifest, its scripted rules against the README's ticket, and its Python tools run directly.</summary>
public sealed class SupportDeskSampleTests
{
    private const string RefundTicket = "Ticket from ada@example.com: I was charged twice for order 1042, please refund 30 EUR";
    private static readonly string s_sample = Path.Combine(RepoRoot, "samples", "support-desk");

    private static BureauDefinitions LoadSample(IReadOnlyDictionary<string, string?>? env = null)
    {
        var result = ManifestLoader.LoadFile(Path.Combine(s_sample, "bureau.yaml"), env ?? NoEnvironment);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        return result.Definitions!;
    }

    [Fact]
    public void Manifest_Defaults_TriageOnTheScriptedModel()
    {
        var d = LoadSample();
        var triage = d.Agents["triage"];
        Assert.Equal("scripted", triage.Model);
        Assert.Equal(["lookup_customer", "update_ticket", "file_refund", "escalate"], triage.Tools);
        Assert.Equal("ticket.escalated", Assert.IsType<EmitToolDefinition>(d.Tools["escalate"]).Topic);
        Assert.True(triage.RollbackOnFailure);
        Assert.Equal("restore_ticket", d.Tools["update_ticket"].Compensate);
        Assert.True(d.Policies.Rules.Single(r => r.Name == "big-refunds").Approval.FailRunOnReject);
        Assert.Equal(ToolEffect.Read, d.Tools["lookup_customer"].Effect);
        var refund = Assert.IsType<ProcessToolDefinition>(d.Tools["file_refund"]);
        Assert.Equal(ToolEffect.Write, refund.Effect);
        Assert.Equal(["python3", "tools/file_refund.py"], refund.Command);
        Assert.Equal(s_sample, refund.WorkingDirectory);
        Assert.True(refund.Environment.ContainsKey("SUPPORT_DESK_DATA"));
        var openai = Assert.IsType<OpenAIModelDefinition>(d.Models["openai"]);
        Assert.Equal(new Uri("https://api.openai.com/v1"), openai.Endpoint);
        Assert.Equal("gpt-4.1-mini", openai.Model);
        Assert.Null(openai.ApiKey);
    }

    [Fact]
    public void Manifest_OneVariable_SwitchesToARealEndpoint()
    {
        var d = LoadSample(Env(("SUPPORT_DESK_MODEL", "openai"), ("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1"), ("OPENAI_MODEL", "llama3.1"), ("OPENAI_API_KEY", "k")));
        Assert.Equal("openai", d.Agents["triage"].Model);
        var openai = (OpenAIModelDefinition)d.Models["openai"];
        Assert.Equal(new Uri("http://127.0.0.1:11434/v1"), openai.Endpoint);
        Assert.Equal("llama3.1", openai.Model);
        Assert.Equal("k", openai.ApiKey);
    }

    [Fact]
    public void ScriptedRules_RefundTicket_ChainLookupRefundReply()
    {
        var rules = ((ScriptedModelDefinition)LoadSample().Models["scripted"]).Rules;
        var dataDir = Directory.CreateTempSubdirectory("support-desk-");
        try
        {
            // Turn 1: the first rule for turn 1 whose regexes match calls lookup_customer with the captured email.
            var turn1 = First(rules, 1, RefundTicket, latest: RefundTicket, tool: null);
            var lookup = Assert.Single(turn1.Calls);
            Assert.Equal("lookup_customer", lookup.Tool);
            Assert.Equal("ada@example.com", Captures(turn1, RefundTicket, RefundTicket)["email"]);

            var customer = RunTool("lookup_customer.py", """{"email":"ada@example.com"}""", null, dataDir.FullName);
            Assert.Equal(0, customer.ExitCode);

            // Turn 2: a found customer asking for a refund: file_refund with order, amount and email.
            var turn2 = First(rules, 2, RefundTicket, customer.Stdout, "lookup_customer");
            var call = Assert.Single(turn2.Calls);
            Assert.Equal("file_refund", call.Tool);
            Assert.Equal("""{"order":"{{order}}","amount":"{{amount}}","email":"{{email}}"}""", call.Arguments.ToJsonString());
            var caps = Captures(turn2, RefundTicket, customer.Stdout);
            Assert.Equal(("1042", "30", "ada@example.com"), (caps["order"], caps["amount"], caps["email"]));

            var refund = RunTool("file_refund.py", """{"order":1042,"amount":30,"email":"ada@example.com"}""", "run1:3", dataDir.FullName);
            Assert.Equal(0, refund.ExitCode);

            // Turn 3: the refund is quoted in the final reply.
            var turn3 = First(rules, 3, RefundTicket, refund.Stdout, "file_refund");
            Assert.Empty(turn3.Calls);
            Assert.Contains("{{refund}}", turn3.Reply);
            Assert.Matches("^RF-[0-9A-F]{8}$", Captures(turn3, RefundTicket, refund.Stdout)["refund"]);
        }
        finally
        {
            dataDir.Delete(recursive: true);
        }
    }

    [Fact]
    public void ScriptedRules_TicketWithoutRefund_LooksUpThenAnswers()
    {
        const string ticket = "Ticket from grace@example.com: how do I change my delivery address?";
        var rules = ((ScriptedModelDefinition)LoadSample().Models["scripted"]).Rules;
        Assert.Equal("lookup_customer", Assert.Single(First(rules, 1, ticket, ticket, null).Calls).Tool);
        var customer = RunTool("lookup_customer.py", """{"email":"grace@example.com"}""", null, null);
        var turn2 = First(rules, 2, ticket, customer.Stdout, "lookup_customer");
        Assert.Empty(turn2.Calls);
        Assert.StartsWith("Hello {{name}}", turn2.Reply);
        Assert.Equal("Grace Hopper", Captures(turn2, ticket, customer.Stdout)["name"]);
    }

    [Fact]
    public void LookupCustomer_KnownEmail_ReturnsTheCustomerAndOrders()
    {
        var r = RunTool("lookup_customer.py", """{"email":"Ada@Example.com"}""", null, null);
        Assert.Equal(0, r.ExitCode);
        var json = JsonNode.Parse(r.Stdout)!;
        Assert.True(json["found"]!.GetValue<bool>());
        Assert.Equal("Ada Lovelace", json["name"]!.GetValue<string>());
        Assert.Contains(json["orders"]!.AsArray(), o => o!["order"]!.GetValue<int>() == 1042);
    }

    [Fact]
    public void LookupCustomer_UnknownEmail_ReturnsNotFound()
    {
        var r = RunTool("lookup_customer.py", """{"email":"nobody@example.com"}""", null, null);
        Assert.Equal(0, r.ExitCode);
        Assert.False(JsonNode.Parse(r.Stdout)!["found"]!.GetValue<bool>());
    }

    [Fact]
    public void LookupCustomer_BadArguments_FailsWithAMessage()
    {
        var r = RunTool("lookup_customer.py", "not json", null, null);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("not JSON", r.Stderr);
    }

    [Fact]
    public void FileRefund_SameKeyTwice_WritesOnceAndAnswersTheSameRefund()
    {
        var dataDir = Directory.CreateTempSubdirectory("support-desk-");
        try
        {
            const string args = """{"order":1042,"amount":30,"email":"ada@example.com"}""";
            var first = RunTool("file_refund.py", args, "run-a:3", dataDir.FullName);
            var second = RunTool("file_refund.py", args, "run-a:3", dataDir.FullName);
            var other = RunTool("file_refund.py", args, "run-b:3", dataDir.FullName);
            Assert.Equal((0, 0, 0), (first.ExitCode, second.ExitCode, other.ExitCode));

            var firstJson = JsonNode.Parse(first.Stdout)!;
            var secondJson = JsonNode.Parse(second.Stdout)!;
            Assert.Equal("filed", firstJson["status"]!.GetValue<string>());
            Assert.Equal(firstJson["refund_id"]!.GetValue<string>(), secondJson["refund_id"]!.GetValue<string>());
            Assert.True(secondJson["duplicate"]!.GetValue<bool>());
            Assert.NotEqual(firstJson["refund_id"]!.GetValue<string>(), JsonNode.Parse(other.Stdout)!["refund_id"]!.GetValue<string>());

            var lines = File.ReadAllLines(Path.Combine(dataDir.FullName, "refunds.log"));
            Assert.Equal(2, lines.Length);
            var record = JsonNode.Parse(lines[0])!;
            Assert.Equal("run-a:3", record["key"]!.GetValue<string>());
            Assert.Equal(1042, record["args"]!["order"]!.GetValue<int>());
        }
        finally
        {
            dataDir.Delete(recursive: true);
        }
    }

    [Fact]
    public void FileRefund_WithoutIdempotencyKey_Refuses()
    {
        var dataDir = Directory.CreateTempSubdirectory("support-desk-");
        try
        {
            var r = RunTool("file_refund.py", """{"order":1042,"amount":30,"email":"ada@example.com"}""", null, dataDir.FullName);
            Assert.NotEqual(0, r.ExitCode);
            Assert.Contains("BUREAU_IDEMPOTENCY_KEY", r.Stderr);
            Assert.False(File.Exists(Path.Combine(dataDir.FullName, "refunds.log")));
        }
        finally
        {
            dataDir.Delete(recursive: true);
        }
    }

    [Fact]
    public void FileRefund_InvalidAmount_Refuses()
    {
        var dataDir = Directory.CreateTempSubdirectory("support-desk-");
        try
        {
            var r = RunTool("file_refund.py", """{"order":1042,"amount":-5,"email":"ada@example.com"}""", "k", dataDir.FullName);
            Assert.NotEqual(0, r.ExitCode);
            Assert.Contains("'amount'", r.Stderr);
        }
        finally
        {
            dataDir.Delete(recursive: true);
        }
    }

    // ---- helpers: a minimal reading of the scripted format, enough to check the sample's rules ----

    private static ScriptRule First(IReadOnlyList<ScriptRule> rules, int turn, string input, string latest, string? tool) =>
        rules.First(r => Matches(r, turn, input, latest, tool));

    private static bool Matches(ScriptRule rule, int turn, string input, string latest, string? tool)
    {
        var w = rule.When;
        if (w is null) return true;
        if (w.TurnFrom is { } from && turn < from) return false;
        if (w.TurnTo is { } to && turn > to) return false;
        if (w.Tool is not null && w.Tool != tool) return false;
        if (w.Input is not null && !Regex.IsMatch(input, w.Input)) return false;
        if (w.Match is not null && !Regex.IsMatch(latest, w.Match)) return false;
        return true;
    }

    private static Dictionary<string, string> Captures(ScriptRule rule, string input, string latest)
    {
        var captures = new Dictionary<string, string>();
        foreach (var (pattern, text) in new[] { (rule.When?.Input, input), (rule.When?.Match, latest) })
        {
            if (pattern is null) continue;
            var regex = new Regex(pattern);
            var m = regex.Match(text);
            foreach (var name in regex.GetGroupNames())
                if (m.Groups[name].Success) captures[name] = m.Groups[name].Value;
        }
        return captures;
    }

    private sealed record ToolRun(int ExitCode, string Stdout, string Stderr);

    private static ToolRun RunTool(string script, string stdin, string? idempotencyKey, string? dataDir)
    {
        var psi = new ProcessStartInfo("python3")
        {
            WorkingDirectory = s_sample,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.ArgumentList.Add(Path.Combine("tools", script));
        psi.Environment.Remove("BUREAU_IDEMPOTENCY_KEY");
        psi.Environment.Remove("SUPPORT_DESK_DATA");
        if (idempotencyKey is not null) psi.Environment["BUREAU_IDEMPOTENCY_KEY"] = idempotencyKey;
        if (dataDir is not null) psi.Environment["SUPPORT_DESK_DATA"] = dataDir;
        using var process = Process.Start(psi) ?? throw new InvalidOperationException("python3 did not start");
        process.StandardInput.Write(stdin);
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        if (!process.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"python3 tools/{script} did not finish within 30 s");
        }
        return new ToolRun(process.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
    }
}
