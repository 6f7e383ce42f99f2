using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Bureau.Replay;

/// <summary>
/// What "the same step" means for a replay (decision 0013): two journal entries are the same when
/// their stored JSON is equal after leaving out what measures time rather than behaviour: durations
/// (<c>durationMs</c>), deadlines (<c>waitingFor.deadline</c>, <c>wait.expired</c>'s <c>deadline</c>),
/// the seconds used by a <c>time</c> budget, the numbers in the error text of a time stop, and what
/// happened to be in flight when a cancellation landed (<c>run.canceled</c>'s <c>inFlight</c>).
/// Everything else is compared: kinds, tool names, arguments, call ids, idempotency keys, results,
/// errors, usage, statuses, outcomes. Entry times (<c>at</c>) are not part of an entry. A field the
/// recorded entry does not have at all (one added to that entry kind since the recording, such as
/// <c>run.finished</c>'s <c>failure</c>) is not compared, so recordings stay valid across additive
/// changes of the journal format.
/// </summary>
public static partial class StepComparison
{
    /// <summary>True when <paramref name="expected"/> and <paramref name="actual"/> are the same step.</summary>
    public static bool Same(JournalEntry expected, JournalEntry actual)
    {
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(actual);
        var want = Comparable(expected);
        var got = Comparable(actual);
        if (expected.Kind == actual.Kind)
        {
            foreach (var name in got.Select(p => p.Key).Where(k => !want.ContainsKey(k)).ToList()) got.Remove(name);
        }
        return JsonNode.DeepEquals(want, got);
    }

    /// <summary>The entry as compared: its stored JSON without the fields a replay ignores.</summary>
    public static JsonObject Comparable(JournalEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        var json = (JsonObject)JsonNode.Parse(BureauJson.SerializeEntry(entry))!;
        switch (entry)
        {
            case ModelResponded or ToolCompleted or ConversationSummarized:
                json.Remove("durationMs");
                break;
            case RunWaiting:
                (json["waitingFor"] as JsonObject)?.Remove("deadline");
                break;
            case WaitExpired:
                json.Remove("deadline");
                break;
            case BudgetExceeded { Budget: "time" }:
                json.Remove("used");
                break;
            case RunCanceled:
                json.Remove("inFlight");
                break;
            case RunFinished { Error: { } error } f when f.Outcome == "expired" || error.StartsWith("budget exceeded: time", StringComparison.Ordinal):
                json["error"] = Numbers().Replace(error, "#");
                break;
        }
        return json;
    }

    /// <summary>The entry as one line of JSON, for a divergence report.</summary>
    public static string Describe(JournalEntry? entry) =>
        entry is null ? "(nothing)" : System.Text.Encoding.UTF8.GetString(BureauJson.SerializeEntry(entry));

    [GeneratedRegex(@"\d+(\.\d+)?")]
    private static partial Regex Numbers();
}
