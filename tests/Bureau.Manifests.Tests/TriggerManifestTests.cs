using Xunit;
using static Bureau.Manifests.Tests.TestSupport;

namespace Bureau.Manifests.Tests;

/// <summary>The <c>triggers:</c> section: webhooks, schedules and topics, and the errors, each at its line and column.</summary>
public sealed class TriggerManifestTests
{
    private const string Agents = """
        models:
          m: { provider: scripted }
        agents:
          triage: { model: m }
          summarizer: { model: m }
        teams:
          desk: { pattern: sequential, members: [triage, summarizer] }

        """;

    [Fact]
    public void Triggers_EveryKind_ReadsIntoDefinitions()
    {
        var result = Load(Agents + """
            triggers:
              new-issue:
                kind: webhook
                source: github
                secret: ${GH_SECRET:-dev}
                events: [issues.opened, pull_request.*]
                agent: triage
                input: "New issue {{$.issue.title}}: {{$.issue.body}}"
              slack: { kind: webhook, source: slack, secret: s3, agent: desk, events: [app_mention], tolerance: 2m }
              crm: { kind: webhook, source: standard, secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, agent: triage }
              plain: { kind: webhook, source: hmac, secret: k, agent: triage, signatureHeader: X-Sig, idHeader: X-Id }
              nightly: { kind: schedule, cron: "0 2 * * *", timeZone: Europe/Paris, agent: summarizer, catchUp: all, maxCatchUp: 3, overlap: allow }
              often: { kind: schedule, every: 10m, agent: summarizer, input: "tick {{$.tick}}" }
              escalated: { kind: topic, topic: ticket.escalated, agent: triage }
            """, Env(("GH_SECRET", "from-env")));
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var t = result.Definitions!.Triggers;
        Assert.Equal(7, t.Count);
        var gh = Assert.IsType<WebhookTriggerDefinition>(t["new-issue"]);
        Assert.Equal((WebhookSource.GitHub, "from-env", "triage"), (gh.Source, gh.Secret, gh.Agent));
        Assert.Equal(["issues.opened", "pull_request.*"], gh.Events);
        Assert.Equal("New issue {{$.issue.title}}: {{$.issue.body}}", gh.Input);
        Assert.Equal("trigger:new-issue", gh.Actor);
        var slack = Assert.IsType<WebhookTriggerDefinition>(t["slack"]);
        Assert.Equal((WebhookSource.Slack, "desk", TimeSpan.FromMinutes(2)), (slack.Source, slack.Agent, slack.Tolerance));
        Assert.Equal(WebhookSource.Standard, ((WebhookTriggerDefinition)t["crm"]).Source);
        var plain = Assert.IsType<WebhookTriggerDefinition>(t["plain"]);
        Assert.Equal(("X-Sig", "X-Id"), (plain.SignatureHeader, plain.IdHeader));
        var nightly = Assert.IsType<ScheduleTriggerDefinition>(t["nightly"]);
        Assert.Equal(("0 2 * * *", "Europe/Paris", CatchUpPolicy.All, 3, OverlapPolicy.Allow),
            (nightly.Cron, nightly.TimeZone, nightly.CatchUp, nightly.MaxCatchUp, nightly.Overlap));
        var often = Assert.IsType<ScheduleTriggerDefinition>(t["often"]);
        Assert.Equal((TimeSpan.FromMinutes(10), CatchUpPolicy.Skip, OverlapPolicy.Skip), (often.Every, often.CatchUp, often.Overlap));
        Assert.Equal("ticket.escalated", Assert.IsType<TopicTriggerDefinition>(t["escalated"]).Topic);
    }

    [Fact]
    public void PollTrigger_PriorityOrderingKey_QueueOne_AndEmitTool_Read()
    {
        var result = Load("""
            models:
              m: { provider: scripted }
            tools:
              escalate: { kind: emit, topic: ticket.escalated, description: Escalate a ticket. }
            agents:
              triage: { model: m, tools: [escalate] }
            triggers:
              tickets:
                kind: poll
                provider: Microsoft.Data.Sqlite
                connectionString: "Data Source=tickets.db"
                query: SELECT id, title FROM tickets WHERE id > @cursor ORDER BY id LIMIT 50
                cursorColumn: id
                every: 15s
                agent: triage
                input: "{{$.data.title}}"
                priority: 5
                orderingKey: "{{$.data.customer}}"
              nightly: { kind: schedule, every: 1h, agent: triage, overlap: queue-one, priority: -1 }
            """);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        var t = result.Definitions!.Triggers;
        var poll = Assert.IsType<PollTriggerDefinition>(t["tickets"]);
        Assert.Equal(("Microsoft.Data.Sqlite", "Data Source=tickets.db", "id", TimeSpan.FromSeconds(15), "0", 5, "{{$.data.customer}}"),
            (poll.Provider, poll.ConnectionString, poll.CursorColumn, poll.Every, poll.InitialCursor, poll.Priority, poll.OrderingKey));
        var nightly = Assert.IsType<ScheduleTriggerDefinition>(t["nightly"]);
        Assert.Equal((OverlapPolicy.QueueOne, -1), (nightly.Overlap, nightly.Priority));
        var emit = Assert.IsType<EmitToolDefinition>(result.Definitions.Tools["escalate"]);
        Assert.Equal(("ticket.escalated", ToolEffect.Idempotent), (emit.Topic, emit.Effect));
    }

    [Fact]
    public void PollTrigger_QueryWithoutCursorParameter_IsRefusedAtItsLine()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: poll, provider: p, connectionString: c, query: SELECT id FROM t, cursorColumn: id, agent: triage }\n"), 9, 61,
            "trigger 't': 'query' must use the parameter @cursor");
    }

    [Fact]
    public void Trigger_OrderingKeyNotAPath_IsRefused()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: topic, topic: x, agent: triage, orderingKey: '{{issue}}' }\n"), 9, 59,
            "trigger 't': 'orderingKey' placeholder '{{issue}}' is not a path");
    }

    [Fact]
    public void Trigger_AgentMisspelled_SuggestsTheClosestAgentOrTeam()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: topic, topic: x, agent: traige }\n"), 9, 38,
            "trigger 't' starts 'traige', which is neither an agent nor a team; did you mean 'triage'?");
        Single(Load(Agents + "triggers:\n  t: { kind: topic, topic: x, agent: dsek }\n"), 9, 38, "did you mean 'desk'?");
    }

    [Fact]
    public void Trigger_UnknownKind_SuggestsTheClosest()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: webhok, agent: triage }\n"), 9, 14, "'kind' must be one of webhook, schedule, topic, poll, not 'webhok'; did you mean 'webhook'?");
    }

    [Fact]
    public void Webhook_EmptySecret_IsRefused()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: webhook, source: github, secret: '${NOPE:-}', agent: triage }\n"), 9, 47,
            "trigger 't': 'secret' is empty (an unsigned webhook would accept anyone's requests)");
    }

    [Fact]
    public void Webhook_MissingSecret_NamesTheKey()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: webhook, source: slack, agent: triage }\n"), 9, 3, "trigger 't' is missing required key 'secret'");
    }

    [Fact]
    public void Webhook_UnknownSource_SuggestsTheClosest()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: webhook, source: githb, secret: s, agent: triage }\n"), 9, 31,
            "'source' must be one of github, slack, standard, hmac, not 'githb'; did you mean 'github'?");
    }

    [Fact]
    public void Webhook_StandardSecretNotWhsec_IsRefused()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: webhook, source: standard, secret: plain, agent: triage }\n"), 9, 49,
            "a Standard Webhooks secret is 'whsec_' followed by base64");
    }

    [Fact]
    public void Webhook_SignatureHeaderOnGitHub_SaysItIsForHmac()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: webhook, source: github, secret: s, agent: triage, signatureHeader: X }\n"), 9, 65,
            "trigger 't': 'signatureHeader' applies to source hmac only");
    }

    [Fact]
    public void Webhook_KeyOfASchedule_SaysWhereItBelongs()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: webhook, source: github, secret: s, agent: triage, cron: '* * * * *' }\n"), 9, 65,
            "key 'cron' does not apply to trigger 't' (it belongs to kind schedule)");
    }

    [Fact]
    public void Webhook_BadGitHubFilter_IsRefused()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: webhook, source: github, secret: s, agent: triage, events: [issues.opened.now] }\n"), 9, 74,
            "GitHub event filter 'issues.opened.now' must be EVENT, EVENT.ACTION or EVENT.*");
    }

    [Fact]
    public void Input_PlaceholderThatIsNotAPath_IsRefused()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: topic, topic: x, agent: triage, input: 'hi {{issue.title}}' }\n"), 9, 53,
            "trigger 't': 'input' placeholder '{{issue.title}}' is not a path such as {{$.issue.title}}");
    }

    [Fact]
    public void Schedule_BadCron_NamesTheExpression()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: schedule, cron: '61 * * * *', agent: triage }\n"), 9, 30,
            "trigger 't': 'cron' '61 * * * *' is not a valid cron expression");
        Single(Load(Agents + "triggers:\n  t: { kind: schedule, cron: '* * *', agent: triage }\n"), 9, 30, "'* * *' has 3 fields; expected 5");
    }

    [Fact]
    public void Schedule_CronThatNeverFires_IsRefused_ButFebruary29IsNot()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: schedule, cron: '0 0 31 2 *', agent: triage }\n"), 9, 30,
            "trigger 't': 'cron' '0 0 31 2 *' never fires: no month has the day it names");
        var leap = Load(Agents + "triggers:\n  t: { kind: schedule, cron: '0 0 29 2 *', agent: triage }\n");
        Assert.True(leap.Success, string.Join("\n", leap.Diagnostics));
    }

    [Fact]
    public void Hmac_HeaderNamesThatNoRequestCanCarry_AreRefused()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: webhook, source: hmac, secret: k, agent: triage, signatureHeader: 'X Sig' }\n"), 9, 80,
            "trigger 't': 'signatureHeader' 'X Sig' is not an HTTP header name");
        Single(Load(Agents + "triggers:\n  t: { kind: webhook, source: hmac, secret: k, agent: triage, idHeader: 'X-Id:' }\n"), 9, 73,
            "trigger 't': 'idHeader' 'X-Id:' is not an HTTP header name");
    }

    [Fact]
    public void Schedule_CronWithSecondsAndZone_IsAccepted()
    {
        var result = Load(Agents + "triggers:\n  t: { kind: schedule, cron: '*/30 * * * * *', timeZone: America/New_York, agent: triage }\n");
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
    }

    [Fact]
    public void Schedule_UnknownTimeZone_IsRefused()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: schedule, cron: '0 * * * *', timeZone: Mars/Olympus, agent: triage }\n"), 9, 53,
            "trigger 't': unknown time zone 'Mars/Olympus'");
    }

    [Fact]
    public void Schedule_NeitherCronNorEvery_IsRefused()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: schedule, agent: triage }\n"), 9, 3, "trigger 't' needs 'cron' (a cron expression) or 'every'");
    }

    [Fact]
    public void Schedule_BothCronAndEvery_IsRefused()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: schedule, cron: '* * * * *', every: 1m, agent: triage }\n"), 9, 43, "has both 'cron' and 'every'");
    }

    [Fact]
    public void Schedule_EveryNotWholeSeconds_IsRefused()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: schedule, every: 1500ms, agent: triage }\n"), 9, 31, "'every' must be whole seconds");
    }

    [Fact]
    public void Schedule_MaxCatchUpWithoutAll_SaysItNeedsAll()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: schedule, every: 1m, catchUp: once, maxCatchUp: 5, agent: triage }\n"), 9, 50,
            "'maxCatchUp' applies to catchUp: all (catchUp is once)");
    }

    [Fact]
    public void Topic_MissingTopic_NamesTheKey()
    {
        Single(Load(Agents + "triggers:\n  t: { kind: topic, agent: triage }\n"), 9, 3, "trigger 't' is missing required key 'topic'");
    }
}
