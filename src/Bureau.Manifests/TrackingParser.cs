using System.Runtime.InteropServices;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace Bureau.Manifests;

/// <summary>
/// The parser the manifest reader loads YAML through. It remembers where it last was, so that a failure
/// YamlDotNet reports without a position (some malformed flow collections) can still be placed, and it
/// enforces <see cref="ManifestLimits"/> event by event, before YamlDotNet builds the node: nesting depth,
/// the number of aliases, and the size of the manifest as if every alias were expanded (nodes and characters).
/// A limit passed throws <see cref="ManifestLimitException"/> at the offending event.
/// </summary>
/// <remarks>
/// Nothing is expanded here: each anchor's cost (nodes, characters, levels, aliases included) is recorded when
/// the anchored node ends, and an alias adds its anchor's cost. An alias must follow the end of its anchor, as
/// YAML requires: YamlDotNet would otherwise resolve one to an anchor defined later or to a node that contains
/// it, which builds a cycle that the reader would walk forever.
/// </remarks>
internal sealed class TrackingParser(IParser inner, ManifestLimits limits) : IParser
{
    /// <summary>What an anchored node costs once expanded.</summary>
    private readonly record struct Cost(long Nodes, long Chars, int Height);

    /// <summary>An open mapping or list: its anchor, the totals when it started, and the height of its tallest child.</summary>
    private struct Frame
    {
        public string? Anchor;
        public long NodesAtStart;
        public long CharsAtStart;
        public int ChildHeight;
    }

    private readonly Dictionary<string, Cost> _anchors = new(StringComparer.Ordinal);
    private readonly List<Frame> _open = [];
    private long _nodes;
    private long _chars;
    private int _aliases;

    public Mark LastPosition { get; private set; } = Mark.Empty;

    /// <summary>The characters of every key and scalar value, each alias counted as a copy of its anchor.</summary>
    public long ExpandedChars => _chars;

    public ParsingEvent? Current => inner.Current;

    public bool MoveNext()
    {
        var moved = inner.MoveNext();
        if (inner.Current is { } e)
        {
            LastPosition = e.End;
            if (moved) Check(e);
        }
        return moved;
    }

    // The tags plain YAML may carry (YAML 1.2's core schema, and '!', the non-specific tag): any other is an application's
    // (CloudFormation's !Ref, a custom constructor) and means something Bureau would not do.
    private static readonly HashSet<string> s_plainTags = new(StringComparer.Ordinal)
    {
        "!", "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:null", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq",
    };

    private void Check(ParsingEvent e)
    {
        if (e is NodeEvent { Tag.IsEmpty: false } tagged && !s_plainTags.Contains(tagged.Tag.Value))
            throw new ManifestLimitException(tagged.Start,
                $"YAML tag '{tagged.Tag.Value}': a manifest is plain YAML and gives no tag a meaning; remove it (or quote the value if it is text starting with '!')");
        switch (e)
        {
            case DocumentStart:
                _anchors.Clear(); // anchors belong to their document
                break;
            case Scalar scalar:
                Add(1, scalar.Value.Length, scalar, null);
                if (!scalar.Anchor.IsEmpty) _anchors[scalar.Anchor.Value] = new Cost(1, scalar.Value.Length, 0);
                NoteChild(0);
                break;
            case SequenceStart or MappingStart:
            {
                var start = (NodeEvent)e;
                Add(1, 0, start, null);
                if (_open.Count >= limits.MaxDepth)
                    throw new ManifestLimitException(start.Start,
                        $"nesting deeper than {limits.MaxDepth} levels of mappings and lists; a manifest may nest at most {limits.MaxDepth}");
                string? anchor = null;
                if (!start.Anchor.IsEmpty)
                {
                    anchor = start.Anchor.Value;
                    _anchors.Remove(anchor); // from here on the name is this (open) node
                }
                _open.Add(new Frame { Anchor = anchor, NodesAtStart = _nodes - 1, CharsAtStart = _chars });
                break;
            }
            case SequenceEnd or MappingEnd when _open.Count > 0:
            {
                var frame = _open[^1];
                _open.RemoveAt(_open.Count - 1);
                var height = frame.ChildHeight + 1;
                if (frame.Anchor is { } name) _anchors[name] = new Cost(_nodes - frame.NodesAtStart, _chars - frame.CharsAtStart, height);
                NoteChild(height);
                break;
            }
            case AnchorAlias alias:
            {
                var name = alias.Value.Value;
                if (++_aliases > limits.MaxAliases)
                    throw new ManifestLimitException(alias.Start, limits.MaxAliases == 0
                        ? $"alias '*{name}': aliases are not allowed (the limit is 0)"
                        : $"more than {limits.MaxAliases} aliases (*name); a manifest may use at most {limits.MaxAliases}");
                if (!_anchors.TryGetValue(name, out var cost))
                {
                    throw new ManifestLimitException(alias.Start, _open.Exists(f => f.Anchor == name)
                        ? $"alias '*{name}' refers to '&{name}', which contains it; a manifest cannot be recursive"
                        : $"alias '*{name}' refers to no anchor '&{name}' before it");
                }
                if (_open.Count + cost.Height > limits.MaxDepth)
                    throw new ManifestLimitException(alias.Start,
                        $"alias '*{name}' nests deeper than {limits.MaxDepth} levels of mappings and lists once expanded; a manifest may nest at most {limits.MaxDepth}");
                Add(cost.Nodes, cost.Chars, alias, name);
                NoteChild(cost.Height);
                break;
            }
        }
    }

    private void Add(long nodes, long chars, ParsingEvent at, string? alias)
    {
        _nodes += nodes;
        _chars += chars;
        if (_nodes > limits.MaxExpandedNodes)
            throw new ManifestLimitException(at.Start, alias is null
                ? $"the manifest has more than {limits.MaxExpandedNodes} nodes (mappings, lists, keys and values)"
                : $"alias '*{alias}' expands the manifest past {limits.MaxExpandedNodes} nodes (mappings, lists, keys and values); aliases that multiply like this are refused");
        if (_chars > limits.MaxFileBytes)
            throw new ManifestLimitException(at.Start, alias is null
                ? $"the manifest's keys and values exceed {limits.MaxFileBytes} characters"
                : $"alias '*{alias}' expands the manifest's keys and values past {limits.MaxFileBytes} characters; aliases that multiply like this are refused");
    }

    private void NoteChild(int height)
    {
        if (_open.Count == 0) return;
        var span = CollectionsMarshal.AsSpan(_open);
        ref var parent = ref span[^1];
        if (height > parent.ChildHeight) parent.ChildHeight = height;
    }
}

/// <summary>A <see cref="ManifestLimits"/> limit passed at <see cref="At"/>; the reader turns it into one diagnostic.</summary>
internal sealed class ManifestLimitException(Mark at, string message, string? path = null) : Exception(message)
{
    public Mark At { get; } = at;

    public string? Path { get; } = path;
}
