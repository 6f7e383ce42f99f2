namespace Bureau;

/// <summary>
/// The A2A push notification configs of tasks (a task is a run), kept in the event store's database (table
/// <c>a2a_push_configs</c>): each config is the JSON the client sent (with its id), per task in the order they were
/// set. A task is <em>watched</em> from its first config until the host has sent its last notification, so a
/// restarted host resumes the notifications of the unfinished tasks. The SQLite and PostgreSQL event stores
/// implement it; a host whose event store does not has no push notifications.
/// </summary>
public interface IA2APushConfigStore
{
    /// <summary>The task's configs (JSON objects), oldest first; empty when it has none.</summary>
    Task<IReadOnlyList<string>> ListPushConfigsAsync(string taskId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Sets the config <paramref name="configId"/> of the task (a config of that id is replaced and becomes the newest)
    /// and watches the task. Returns false, changing nothing, when the task has <paramref name="max"/> other configs already.
    /// </summary>
    Task<bool> PutPushConfigAsync(string taskId, string configId, string config, int max, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Deletes one config; false when the task has none of that id.</summary>
    Task<bool> DeletePushConfigAsync(string taskId, string configId, CancellationToken cancellationToken = default);

    /// <summary>The watched tasks (some config was set and the task was not finished with).</summary>
    Task<IReadOnlyList<string>> ListWatchedPushTasksAsync(CancellationToken cancellationToken = default);

    /// <summary>Stops watching the task (its notifications are all sent); its configs stay readable.</summary>
    Task UnwatchPushTaskAsync(string taskId, CancellationToken cancellationToken = default);
}
