using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Bureau.Hosting.A2A;

/// <summary>
/// Runs as A2A tasks (protobuf JSON of A2A 1.0): task id = run id; the context and the client's message id live
/// in the run's idempotency key (<c>a2a:CONTEXT:AGENT:MESSAGEID</c>), so a message sent twice starts one run and
/// a context's tasks are found by key prefix, with no table of Bureau's own. Decision 0033.
/// </summary>
internal static class A2AMapping
{
    public const string KeyPrefix = "a2a:";
    public const int MaxIdLength = 200;

    public const string Submitted = "TASK_STATE_SUBMITTED";
    public const string Working = "TASK_STATE_WORKING";
    public const string Completed = "TASK_STATE_COMPLETED";
    public const string Failed = "TASK_STATE_FAILED";
    public const string Canceled = "TASK_STATE_CANCELED";
    public const string InputRequired = "TASK_STATE_INPUT_REQUIRED";

    /// <summary>The idempotency key of a message to <paramref name="agent"/> in <paramref name="contextId"/>.</summary>
    public static string Key(string agent, string contextId, string messageId) => $"{ContextPrefix(contextId)}{Escape(agent)}:{messageId}";

    /// <summary>The key prefix of every task of a context (of every agent).</summary>
    public static string ContextPrefix(string contextId) => $"{KeyPrefix}{Escape(contextId)}:";

    private static string Escape(string s) => s.Replace("%", "%25", StringComparison.Ordinal).Replace(":", "%3A", StringComparison.Ordinal);

    private static string Unescape(string s) => s.Replace("%3A", ":", StringComparison.Ordinal).Replace("%25", "%", StringComparison.Ordinal);

    /// <summary>A context for a message that names none: the same for the same message id, so sending it again finds its task.</summary>
    public static string NewContextId(string agent, string messageId)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(agent + "\n" + messageId));
        hash[6] = (byte)((hash[6] & 0x0F) | 0x50); // shaped as a name-based UUID
        hash[8] = (byte)((hash[8] & 0x3F) | 0x80);
        return new Guid(hash.AsSpan(0, 16), bigEndian: true).ToString();
    }

    /// <summary>The context and message id of a run the A2A API started; (run id, null) for any other run.</summary>
    public static (string ContextId, string? MessageId) ContextOf(RunRecord run)
    {
        var key = run.IdempotencyKey;
        if (key is null || !key.StartsWith(KeyPrefix, StringComparison.Ordinal)) return (run.Id, null);
        var parts = key[KeyPrefix.Length..].Split(':', 3);
        if (parts.Length != 3 || Unescape(parts[1]) != run.Agent) return (run.Id, null);
        return (Unescape(parts[0]), parts[2]);
    }

    /// <summary>True when the run waits for a person (an approval, an in-doubt step, an outside event): INPUT_REQUIRED, an interrupted state.</summary>
    public static bool IsInterrupted(RunRecord run) =>
        run.Status == RunStatus.Waiting && run.WaitingFor is ApprovalWait or InDoubtWait or ExternalEventWait;

    /// <summary>Terminal or interrupted: where a blocking send and a stream stop.</summary>
    public static bool IsSettled(RunRecord run) => run.Status.IsTerminal() || IsInterrupted(run);

    public static string State(RunRecord run) => run.Status switch
    {
        RunStatus.Queued => Submitted,
        RunStatus.Running => Working,
        RunStatus.Waiting => IsInterrupted(run) ? InputRequired : Working, // a team waiting for its members, a timer: still working
        RunStatus.Succeeded => Completed,
        RunStatus.Failed => Failed,
        RunStatus.Canceled => Canceled,
        _ => Working,
    };

    /// <summary>The run status a <c>TASK_STATE_*</c> filter means, or null for an unknown name.</summary>
    public static RunStatus? StatusOf(string state) => state switch
    {
        Submitted => RunStatus.Queued,
        Working => RunStatus.Running,
        InputRequired => RunStatus.Waiting,
        Completed => RunStatus.Succeeded,
        Failed => RunStatus.Failed,
        Canceled => RunStatus.Canceled,
        _ => null,
    };

    public static string Timestamp(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    public static JsonObject TextPart(string text) => new() { ["text"] = text };

    public static JsonObject AgentMessage(RunRecord run, string contextId, string messageId, string text) => new()
    {
        ["messageId"] = messageId,
        ["contextId"] = contextId,
        ["taskId"] = run.Id,
        ["role"] = "ROLE_AGENT",
        ["parts"] = new JsonArray(TextPart(text)),
    };

    /// <summary>The status: its state, when it was reached, and a message saying why for a failed, canceled or interrupted task.</summary>
    public static JsonObject Status(RunRecord run, string contextId)
    {
        var status = new JsonObject { ["state"] = State(run), ["timestamp"] = Timestamp(run.UpdatedAt) };
        var why = run.Status switch
        {
            RunStatus.Failed or RunStatus.Canceled => run.Error ?? run.Outcome,
            RunStatus.Waiting when IsInterrupted(run) => WaitText(run),
            _ => null,
        };
        if (why is not null) status["message"] = AgentMessage(run, contextId, $"{run.Id}:status:{run.Version}", why);
        return status;
    }

    private static string WaitText(RunRecord run) => run.WaitingFor switch
    {
        ApprovalWait a => $"waiting for an approval of step {a.Step}{(a.Tool is null ? "" : $" (tool {a.Tool})")}: {a.Question ?? "approve or reject it"}"
                          + $" (POST /v1/approvals/{run.Id}:{a.Step}/decision, or bureau approvals)",
        InDoubtWait d => $"step {d.Step}{(d.Tool is null ? "" : $" (tool {d.Tool})")} is in doubt after a crash: an operator resolves it (POST /v1/runs/{run.Id}/resolve)",
        ExternalEventWait e => $"waiting for the event '{e.EventName}': send a message with this taskId to answer it",
        _ => "waiting",
    };

    /// <summary>The output as the task's one artifact (<c>output</c>).</summary>
    public static JsonObject OutputArtifact(string output) => new()
    {
        ["artifactId"] = "output",
        ["name"] = "output",
        ["parts"] = new JsonArray(TextPart(output)),
    };

    /// <summary>The task of a run.</summary>
    /// <param name="run">The run.</param>
    /// <param name="historyLength">At most this many messages of history (the input, the answer); null: all.</param>
    /// <param name="artifacts">Whether to include the output artifact.</param>
    public static JsonObject Task(RunRecord run, int? historyLength = null, bool artifacts = true)
    {
        var (contextId, messageId) = ContextOf(run);
        var task = new JsonObject
        {
            ["id"] = run.Id,
            ["contextId"] = contextId,
            ["status"] = Status(run, contextId),
        };
        if (artifacts && run.Status == RunStatus.Succeeded && run.Output is not null)
            task["artifacts"] = new JsonArray(OutputArtifact(run.Output));
        var history = new List<JsonObject>
        {
            new()
            {
                ["messageId"] = messageId ?? run.Id + ":input",
                ["contextId"] = contextId,
                ["taskId"] = run.Id,
                ["role"] = "ROLE_USER",
                ["parts"] = new JsonArray(TextPart(run.Input)),
            },
        };
        if (run.Status == RunStatus.Succeeded && run.Output is not null) history.Add(AgentMessage(run, contextId, run.Id + ":output", run.Output));
        var keep = historyLength is { } n ? Math.Min(n, history.Count) : history.Count;
        if (keep > 0)
        {
            var array = new JsonArray();
            foreach (var m in history.Skip(history.Count - keep)) array.Add(m);
            task["history"] = array;
        }
        task["metadata"] = new JsonObject { ["agent"] = run.Agent, ["runStatus"] = run.Status.ToWireName() };
        return task;
    }

    /// <summary>The run's input from a message's parts: text as is, data as its JSON, one part per line; files are refused.</summary>
    public static string Input(JsonArray parts)
    {
        var text = new StringBuilder();
        for (var i = 0; i < parts.Count; i++)
        {
            var field = $"message.parts[{i.ToString(CultureInfo.InvariantCulture)}]";
            if (parts[i] is not JsonObject part) throw A2AException.BadParam(field, $"'{field}' must be an object (a Part)");
            if (text.Length > 0) text.Append('\n');
            if (part.TryGetPropertyValue("text", out var t) && t is not null)
            {
                if (t is not JsonValue v || v.GetValueKind() != JsonValueKind.String) throw A2AException.BadParam(field + ".text", $"'{field}.text' must be a string");
                text.Append(v.GetValue<string>());
            }
            else if (part.TryGetPropertyValue("data", out var d))
            {
                text.Append(d?.ToJsonString() ?? "null");
            }
            else if (part.ContainsKey("url") || part.ContainsKey("raw"))
            {
                throw new A2AException(A2AErrorKind.ContentTypeNotSupported,
                    $"'{field}' is a file; Bureau agents take text and data parts (text/plain, application/json)", field);
            }
            else
            {
                throw A2AException.BadParam(field, $"'{field}' has no content: give 'text' or 'data'");
            }
        }
        return text.ToString();
    }
}
