using System.Text.Json;
using Xunit;

namespace Bureau.Manifests.Tests;

/// <summary>What a trigger makes of an event: the run's input from <c>{{$.path}}</c> templates, and which events pass its filters.</summary>
public sealed class TriggerTemplateTests
{
    private static readonly JsonElement Issue = JsonDocument.Parse("""
        {"action":"opened","issue":{"number":7,"title":"Login fails","body":"Since today","labels":[{"name":"bug"}],"draft":false,"closed_at":null},
         "odd key":"x"}
        """).RootElement.Clone();

    [Theory]
    [InlineData("New issue {{$.issue.title}}: {{$.issue.body}}", "New issue Login fails: Since today")]
    [InlineData("#{{$.issue.number}} {{ $.issue.labels[0].name }}", "#7 bug")]
    [InlineData("{{$.issue.draft}}|{{$.issue.closed_at}}|{{$.issue.missing}}|{{$.issue.labels[5].name}}", "false|||")]
    [InlineData("{{$['odd key']}}", "x")]
    [InlineData("{{$.issue.labels}}", """[{"name":"bug"}]""")]
    [InlineData("no placeholders", "no placeholders")]
    public void Render_PathsFromTheEvent_AreReplaced(string template, string expected)
    {
        Assert.Null(TriggerTemplate.Check(template));
        Assert.Equal(expected, TriggerTemplate.Render(template, Issue));
    }

    [Theory]
    [InlineData("{{issue.title}}")]
    [InlineData("{{$.issue..title}}")]
    [InlineData("{{$.issue[x]}}")]
    public void Check_NotAPath_NamesThePlaceholder(string template)
    {
        Assert.Contains(template, TriggerTemplate.Check(template));
    }

    [Fact]
    public void InputFor_NoTemplate_IsTheEventAsJson()
    {
        var trigger = new TopicTriggerDefinition { Name = "t", Agent = "a", Topic = "x" };
        Assert.Equal(Issue.GetRawText(), TriggerTemplate.InputFor(trigger, Issue));
    }

    [Theory]
    [InlineData("issues", "opened", true)]
    [InlineData("issues", "closed", false)]
    [InlineData("pull_request", "synchronize", true)]
    [InlineData("push", null, true)]
    [InlineData("pull_request_review", "submitted", false)]
    [InlineData("issue_comment", "created", false)]
    public void Accepts_GitHubEventAndActionFilters(string ev, string? action, bool accepted)
    {
        var hook = new WebhookTriggerDefinition { Name = "h", Agent = "a", Source = WebhookSource.GitHub, Secret = "s", Events = ["issues.opened", "pull_request.*", "push"] };
        Assert.Equal(accepted, hook.Accepts(ev, action));
    }

    [Fact]
    public void Accepts_NoFilters_AcceptsEverything()
    {
        var hook = new WebhookTriggerDefinition { Name = "h", Agent = "a", Source = WebhookSource.Slack, Secret = "s" };
        Assert.True(hook.Accepts("app_mention", null));
    }

    [Fact]
    public void Accepts_TypeFiltersOfOtherSources_MatchTheTypeOrAPrefix()
    {
        var hook = new WebhookTriggerDefinition { Name = "h", Agent = "a", Source = WebhookSource.Standard, Secret = "whsec_eA==", Events = ["invoice.paid", "ticket.*"] };
        Assert.True(hook.Accepts("invoice.paid", null));
        Assert.True(hook.Accepts("ticket.created", null));
        Assert.False(hook.Accepts("invoice.failed", null));
    }
}
