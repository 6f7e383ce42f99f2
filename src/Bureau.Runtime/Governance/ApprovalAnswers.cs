using System.Text.Json;
using System.Text.Json.Nodes;
using Bureau.Engine;

namespace Bureau.Governance;

/// <summary>A decision on an approval.</summary>
/// <param name="Approve">Approve (true) or reject (false).</param>
/// <param name="Reason">Why (a rejection's reason goes back to the model).</param>
/// <param name="Arguments">Edited arguments (JSON object), when the policy lets the approver edit them.</param>
public sealed record ApprovalDecision(bool Approve, string? Reason = null, string? Arguments = null);

/// <summary>How a decision is written in the journal (<see cref="WaitAnswered.Answer"/>): <c>{"decision":"approve"|"reject","reason":...,"arguments":{...}}</c>.</summary>
internal static class ApprovalAnswers
{
    public static string Format(ApprovalDecision decision)
    {
        var o = new JsonObject { ["decision"] = decision.Approve ? "approve" : "reject" };
        if (decision.Reason is not null) o["reason"] = decision.Reason;
        if (decision.Arguments is not null) o["arguments"] = JsonNode.Parse(decision.Arguments);
        return o.ToJsonString();
    }

    public static ApprovalVote Parse(string? answer, string? actor)
    {
        var who = actor ?? "unknown";
        try
        {
            if (answer is not null && JsonNode.Parse(answer) is JsonObject o)
            {
                return new ApprovalVote(who, (string?)o["decision"] == "approve", o["arguments"]?.ToJsonString(), (string?)o["reason"]);
            }
        }
        catch (JsonException)
        {
        }
        return new ApprovalVote(who, false, null, "the answer could not be read: " + answer);
    }
}
