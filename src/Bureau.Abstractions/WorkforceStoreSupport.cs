namespace Bureau;

/// <summary>What the workforce stores share (SQLite and PostgreSQL): the stored name of a task's status and the checks of ids and skills.</summary>
internal static class WorkforceStoreSupport
{
    /// <summary>The status as stored: <c>queued</c>, <c>assigned</c>, <c>running</c>, <c>succeeded</c>, <c>failed</c>, <c>canceled</c>.</summary>
    internal static string Name(WorkforceTaskStatus status) => status switch
    {
        WorkforceTaskStatus.Queued => "queued",
        WorkforceTaskStatus.Assigned => "assigned",
        WorkforceTaskStatus.Running => "running",
        WorkforceTaskStatus.Succeeded => "succeeded",
        WorkforceTaskStatus.Failed => "failed",
        _ => "canceled",
    };

    /// <summary>The status of its stored name (<see cref="Name"/>).</summary>
    internal static WorkforceTaskStatus Parse(string status) => status switch
    {
        "queued" => WorkforceTaskStatus.Queued,
        "assigned" => WorkforceTaskStatus.Assigned,
        "running" => WorkforceTaskStatus.Running,
        "succeeded" => WorkforceTaskStatus.Succeeded,
        "failed" => WorkforceTaskStatus.Failed,
        _ => WorkforceTaskStatus.Canceled,
    };

    /// <summary>Refuses an empty <paramref name="value"/> or one longer than <paramref name="max"/> characters, naming <paramref name="what"/>.</summary>
    internal static void Check(string? value, string what, int max)
    {
        if (string.IsNullOrWhiteSpace(value)) throw new ArgumentException($"workforce: '{what}' must not be empty", what);
        if (value.Length > max) throw new ArgumentException($"workforce: '{what}' is longer than {max} characters", what);
    }

    /// <summary>The checks of a task to add: its id, skill and source named and not too long, an input given.</summary>
    internal static void CheckNewTask(string id, string skill, string source, string input)
    {
        Check(id, "id", 200);
        Check(skill, "skill", 200);
        Check(source, "source", 400);
        ArgumentNullException.ThrowIfNull(input);
    }
}
