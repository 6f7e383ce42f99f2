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
            if (!definitions.Agents.ContainsKey(trigger.Agent) && !definitions.Teams.ContainsKey(trigger.Agent))
                Problem($"'{trigger.Agent}' is neither an agent nor a team");
            if (trigger.Input is { } input && TriggerTemplate.Check(input) is { } bad) Problem("Input: " + bad);
            switch (trigger)
            {
                case WebhookTriggerDefinition { Secret.Length: 0 }:
                    Problem("the Secret is empty (an unsigned webhook would accept anyone's requests)");
                    break;
                case WebhookTriggerDefinition { Source: WebhookSource.Standard } w when !IsStandardSecret(w.Secret):
                    Problem("a Standard Webhooks Secret is 'whsec_' followed by base64");
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
            }
        }
    }

    private static bool IsStandardSecret(string secret) =>
        secret.StartsWith("whsec_", StringComparison.Ordinal) && secret.Length > 6
        && Convert.TryFromBase64String(secret[6..], new byte[secret.Length], out _);
}
