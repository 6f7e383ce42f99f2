using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace Bureau.Manifests;

/// <summary>
/// A parser that remembers where it last was, so that a failure YamlDotNet reports without a position
/// (some malformed flow collections) can still be placed.
/// </summary>
internal sealed class TrackingParser(IParser inner) : IParser
{
    public Mark LastPosition { get; private set; } = Mark.Empty;

    public ParsingEvent? Current => inner.Current;

    public bool MoveNext()
    {
        var moved = inner.MoveNext();
        if (inner.Current is { } e) LastPosition = e.End;
        return moved;
    }
}
