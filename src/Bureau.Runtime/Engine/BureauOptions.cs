namespace Bureau;

/// <summary>
/// Options of Bureau's runtime, bound from the configuration section <c>Bureau</c>
/// (<c>appsettings.json</c>, environment variables such as <c>Bureau__MaxConcurrentRuns</c>) and
/// validated when the host starts; an invalid value stops the start with an error naming its key.
/// </summary>
public sealed class BureauOptions
{
    /// <summary>The configuration section the options are bound from.</summary>
    public const string SectionName = "Bureau";

    /// <summary>Manifest files (YAML) whose models, tools and agents are deployed, besides those added in code. Key <c>Bureau:Manifests:0</c>, ...</summary>
    public List<string> Manifests { get; set; } = [];

    /// <summary>Most runs executing at once in this process; more wait in the queue. Default 64.</summary>
    public int MaxConcurrentRuns { get; set; } = 64;

    /// <summary>On shutdown, how long in-flight steps get to reach the journal. Default 10 s.</summary>
    public TimeSpan ShutdownGrace { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// This scheduler's name in the store's claims. Default <c>local</c>: one engine per database (the
    /// embedded default) takes its own claims back at start. Nodes of a cluster need distinct names.
    /// </summary>
    public string NodeId { get; set; } = "local";

    /// <summary>How long a scheduler's claim on unfinished runs holds without renewal; another node picks them up after it. Default 30 s.</summary>
    public TimeSpan ClaimLease { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Makes run ids; default: time-ordered, 18 characters (<see cref="RunIds.New"/>). Not bound from configuration.</summary>
    public Func<string>? RunIdGenerator { get; set; }

    internal IEnumerable<string> Problems()
    {
        if (MaxConcurrentRuns < 1) yield return $"Bureau:MaxConcurrentRuns must be at least 1 (is {MaxConcurrentRuns})";
        if (ShutdownGrace < TimeSpan.Zero) yield return $"Bureau:ShutdownGrace must not be negative (is {ShutdownGrace})";
        if (string.IsNullOrWhiteSpace(NodeId)) yield return "Bureau:NodeId must not be empty";
        if (ClaimLease < TimeSpan.FromSeconds(1)) yield return $"Bureau:ClaimLease must be at least 1 second (is {ClaimLease})";
        for (var i = 0; i < Manifests.Count; i++)
        {
            if (string.IsNullOrWhiteSpace(Manifests[i])) yield return $"Bureau:Manifests:{i} must name a manifest file";
        }
    }
}
