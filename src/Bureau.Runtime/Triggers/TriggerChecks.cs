using Bureau.Manifests;

namespace Bureau.Triggers;

/// <summary>What a manifest's reader checks, for triggers defined in C#: refused when the deployment is built, not at the first event.</summary>
internal static class TriggerChecks
{
    public static void Check(BureauDefinitions definitions)
    {
        foreach (var trigger in definitions.Triggers.Values)
        {
            void Problem(string message) => throw new ArgumentException($"trigger '{trigger.Name}': {message}", nameof(definitions));
            if (trigger.Workforce is { } target)
            {
                if (trigger.Agent.Length > 0) Problem($"it names both an agent ('{trigger.Agent}') and the workforce; keep one");
                if (string.IsNullOrWhiteSpace(target.Skill)) Problem("Workforce.Skill is empty");
                if (TriggerTemplate.Check(target.Skill) is { } badSkill) Problem("Workforce.Skill: " + badSkill);
                if (!target.Skill.Contains("{{", StringComparison.Ordinal) && !definitions.Workforce.WithSkill(target.Skill).Any())
                    Problem(new UnknownSkillException(target.Skill, definitions.Workforce.Skills).Message.Split(" (Parameter")[0]);
                if (trigger.Priority != 0 || trigger.OrderingKey is not null)
                    Problem("Priority and OrderingKey apply to runs a trigger starts; a workforce task is routed by skill and load");
                if (trigger is ScheduleTriggerDefinition { Overlap: not OverlapPolicy.Skip })
                    Problem("Overlap applies to a schedule's runs; a workforce task waits in the inbox until a member has room");
            }
            else if (!definitions.Agents.ContainsKey(trigger.Agent) && !definitions.Teams.ContainsKey(trigger.Agent))
                Problem(trigger.Agent.Length == 0 ? "it names no agent or team (Agent) and no Workforce target" : $"'{trigger.Agent}' is neither an agent nor a team");
            if (trigger.Input is { } input && TriggerTemplate.Check(input) is { } bad) Problem("Input: " + bad);
            if (trigger.OrderingKey is { } ordering && TriggerTemplate.Check(ordering) is { } badKey) Problem("OrderingKey: " + badKey);
            switch (trigger)
            {
                case WebhookTriggerDefinition { Secret.Length: 0 }:
                    Problem("the Secret is empty (an unsigned webhook would accept anyone's requests)");
                    break;
                case WebhookTriggerDefinition { Source: WebhookSource.Standard } w when !IsStandardSecret(w.Secret):
                    Problem("a Standard Webhooks Secret is 'whsec_' followed by base64");
                    break;
                case WebhookTriggerDefinition { Source: WebhookSource.Hmac } w when !ManifestReader.IsHeaderName(w.SignatureHeader) || (w.IdHeader is { } id && !ManifestReader.IsHeaderName(id)):
                    Problem($"SignatureHeader '{w.SignatureHeader}' or IdHeader '{w.IdHeader}' is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)");
                    break;
                case ScheduleTriggerDefinition s:
                    try
                    {
                        _ = ScheduleClock.For(s);
                    }
                    catch (ArgumentException ex)
                    {
                        Problem(ex.Message);
                    }
                    break;
                case TopicTriggerDefinition { Topic.Length: 0 }:
                    Problem("the Topic is empty");
                    break;
                case PollTriggerDefinition p:
                    if (string.IsNullOrWhiteSpace(p.Query)) Problem("the Query is empty");
                    if (string.IsNullOrWhiteSpace(p.ConnectionString)) Problem("the ConnectionString is empty");
                    if (string.IsNullOrWhiteSpace(p.CursorColumn)) Problem("the CursorColumn is empty");
                    if (p.Every < TimeSpan.FromSeconds(1)) Problem($"Every must be at least 1 second (is {p.Every})");
                    if (!System.Data.Common.DbProviderFactories.TryGetFactory(p.Provider, out _))
                        Problem($"no ADO.NET provider '{p.Provider}' is registered (Microsoft.Data.Sqlite comes with UseSqliteStorage; register others with DbProviderFactories.RegisterFactory)");
                    break;
            }
        }
    }

    private static bool IsStandardSecret(string secret) =>
        secret.StartsWith("whsec_", StringComparison.Ordinal) && secret.Length > 6
        && Convert.TryFromBase64String(secret[6..], new byte[secret.Length], out _);
}
