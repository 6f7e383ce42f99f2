using System.Text.Json.Serialization;

namespace Bureau;

/// <summary>Whether a sandboxed process tool may use the network.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<SandboxNetwork>))]
public enum SandboxNetwork
{
    /// <summary>No network: the tool gets a network namespace of its own with nothing in it (the default).</summary>
    [JsonStringEnumMemberName("deny")] Deny,
    /// <summary>The host's network.</summary>
    [JsonStringEnumMemberName("allow")] Allow,
}

/// <summary>
/// How a process tool is confined (docs/tools.md, docs/decisions/0029): bubblewrap (<c>bwrap</c>) with a read-only
/// view of the host's root, a private <c>/tmp</c>, only <see cref="Writable"/> writable, no network unless
/// <see cref="Network"/> allows it, a new PID namespace (the host's processes and their <c>/proc</c> are not visible),
/// and <c>--die-with-parent</c>; limits on CPU time, memory (address space) and process count are rlimits set by
/// <c>prlimit</c>. When Bureau runs as root the tool runs as the unprivileged user <see cref="User"/>. What cannot
/// be applied on the machine is reported when the host starts; a sandboxed tool never runs unsandboxed: when
/// bubblewrap cannot run, its calls fail with the reason.
/// </summary>
public sealed class SandboxSettings
{
    /// <summary>Paths the tool may write (absolute, or relative to the tool's working directory); everything else is read-only.</summary>
    public IReadOnlyList<string> Writable { get; init; } = [];

    /// <summary>Network access; default <see cref="SandboxNetwork.Deny"/>.</summary>
    public SandboxNetwork Network { get; init; } = SandboxNetwork.Deny;

    /// <summary>CPU time one call may use (RLIMIT_CPU, whole seconds); null: <see cref="DefaultMaxCpuTime"/>.</summary>
    public TimeSpan? MaxCpuTime { get; init; }

    /// <summary>The CPU time limit used when none is set: 60 seconds.</summary>
    public static readonly TimeSpan DefaultMaxCpuTime = TimeSpan.FromSeconds(60);

    /// <summary>Address space of each process, in MiB (RLIMIT_AS); null: <see cref="DefaultMaxMemoryMB"/>; 0: not limited (runtimes that reserve much virtual memory, such as .NET, need that).</summary>
    public int? MaxMemoryMB { get; init; }

    /// <summary>The memory limit used when none is set: 1024 MiB.</summary>
    public const int DefaultMaxMemoryMB = 1024;

    /// <summary>Most processes (and threads) the tool's user may have (RLIMIT_NPROC); null: <see cref="DefaultMaxProcesses"/>.</summary>
    public int? MaxProcesses { get; init; }

    /// <summary>The process limit used when none is set: 128.</summary>
    public const int DefaultMaxProcesses = 128;

    /// <summary>The numeric user (and group) id the tool runs as when Bureau runs as root; default 65534 (nobody).</summary>
    public int User { get; init; } = 65534;
}
