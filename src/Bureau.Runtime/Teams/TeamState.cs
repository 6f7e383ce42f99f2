namespace Bureau.Teams;

/// <summary>One child run of a team, as the team's journal tells it.</summary>
internal sealed class TeamChild(int index, string id, string target, string input, string label)
{
    public int Index { get; } = index;
    public string Id { get; } = id;
    public string Target { get; } = target;
    public string Input { get; } = input;
    public string Label { get; } = label;
    public RunStatus? Status { get; set; }
    public string? Output { get; set; }
    public string? Error { get; set; }
    public UsageRecord Usage { get; set; } = UsageRecord.Zero;
    public double Cost { get; set; }
    public int Steps { get; set; }
    public bool Finished => Status is not null;
    public bool Succeeded => Status == RunStatus.Succeeded;
}

/// <summary>
/// A team run's state: a pure fold of its journal (the children it started and how each ended).
/// The pattern's next move is a function of this state alone, so a resumed team decides exactly as
/// it did before the crash.
/// </summary>
internal sealed class TeamState
{
    private readonly List<TeamChild> _children = [];
    private readonly Dictionary<string, TeamChild> _byId = new(StringComparer.Ordinal);

    public TeamState(string input) => Input = input;

    public string Input { get; }
    public IReadOnlyList<TeamChild> Children => _children;
    public DateTimeOffset? FirstChildAt { get; private set; }
    public long Version { get; private set; }

    public UsageRecord Usage
    {
        get
        {
            var total = UsageRecord.Zero;
            foreach (var c in _children) total += c.Usage;
            return total;
        }
    }

    /// <summary>What the finished children cost, summed (kept to 9 decimals, as each run's cost is).</summary>
    public double Cost
    {
        get
        {
            var total = 0d;
            foreach (var c in _children) total += c.Cost;
            return Math.Round(total, 9);
        }
    }

    /// <summary>The steps the finished children (and their subtrees) took, where counted (<see cref="ChildRunFinished.Steps"/>).</summary>
    public int Steps
    {
        get
        {
            var total = 0;
            foreach (var c in _children) total += c.Steps;
            return total;
        }
    }

    public IEnumerable<TeamChild> Unfinished => _children.Where(c => !c.Finished);

    /// <summary>The latest attempt of <paramref name="label"/>, or null.</summary>
    public TeamChild? Latest(string label)
    {
        for (var i = _children.Count - 1; i >= 0; i--)
        {
            if (_children[i].Label == label) return _children[i];
        }
        return null;
    }

    /// <summary>How many children ran <paramref name="label"/>.</summary>
    public int Attempts(string label) => _children.Count(c => c.Label == label);

    public void Apply(JournalRecord record)
    {
        Version = record.N;
        switch (record.Entry)
        {
            case ChildRunStarted s:
                var child = new TeamChild(_children.Count, s.ChildRunId, s.Target, s.Input, s.Label ?? s.Target);
                _children.Add(child);
                _byId[s.ChildRunId] = child;
                FirstChildAt ??= record.At;
                break;
            case ChildRunFinished f when _byId.TryGetValue(f.ChildRunId, out var done):
                done.Status = f.Status;
                done.Output = f.Output;
                done.Error = f.Error;
                done.Usage = f.Usage ?? UsageRecord.Zero;
                done.Cost = f.Cost ?? 0;
                done.Steps = f.Steps ?? 0;
                break;
        }
    }
}
