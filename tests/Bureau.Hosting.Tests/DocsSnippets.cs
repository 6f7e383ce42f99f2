using System.Text.RegularExpressions;

namespace Bureau.Hosting.Tests;

/// <summary>
/// Reads the <c>```csharp</c> blocks of the docs and the code that compiles them. Code shown by <c>docs/page.md</c> sits in a
/// test (or a sample) between the lines <c>// docs/page.md begin</c> and <c>// docs/page.md end</c> (<c>// README.md begin</c>
/// for the README); text after <c>begin</c> is a note. Regions may nest or overlap (one code shown by two pages): marker
/// lines are never part of a region. Lines compare trimmed, blank lines aside.
/// </summary>
internal static partial class DocsSnippets
{
    /// <summary>A <c>```csharp</c> block: its page (<c>docs/x.md</c> or <c>README.md</c>), the line of its fence, the heading above it, its code.</summary>
    public sealed record Block(string Page, int Line, string Heading, IReadOnlyList<string> Usings, IReadOnlyList<string> Lines)
    {
        public override string ToString() => $"{Page}:{Line} ({Heading}), starting \"{(Lines.Count > 0 ? Lines[0] : "")}\"";
    }

    /// <summary>Code between a page's markers in <see cref="Source"/> (relative to the repository root).</summary>
    public sealed record Region(string Page, string Source, int Line, IReadOnlyList<string> Lines);

    /// <summary>The pages whose C# must be compiled: README.md and docs/*.md.</summary>
    public static IEnumerable<string> Pages() =>
        new[] { "README.md" }.Concat(Directory.GetFiles(Path.Combine(NodeTool.RepoRoot, "docs"), "*.md")
            .Select(f => "docs/" + Path.GetFileName(f)).Order(StringComparer.Ordinal));

    /// <summary>
    /// The page's <c>```csharp</c> blocks. Using directives at a block's top (<c>using Bureau;</c>) are kept apart: a
    /// method cannot hold them, so the file holding the block's code must have them.
    /// </summary>
    public static IReadOnlyList<Block> CSharpBlocks(string page)
    {
        var lines = File.ReadAllText(Path.Combine(NodeTool.RepoRoot, page)).ReplaceLineEndings("\n").Split('\n');
        var blocks = new List<Block>();
        var heading = "";
        for (var i = 0; i < lines.Length; i++)
        {
            if (lines[i].StartsWith('#')) heading = lines[i];
            if (!lines[i].StartsWith("```", StringComparison.Ordinal)) continue;
            var csharp = lines[i] == "```csharp";
            var start = i;
            var body = new List<string>();
            for (i++; i < lines.Length && !lines[i].StartsWith("```", StringComparison.Ordinal); i++) body.Add(lines[i]);
            if (!csharp) continue;
            var code = Trimmed(body);
            var usings = code.TakeWhile(l => UsingDirective().IsMatch(l)).ToArray();
            blocks.Add(new Block(page, start + 1, heading, usings, code.Skip(usings.Length).ToArray()));
        }
        return blocks;
    }

    /// <summary>The regions of one source file (relative to the repository root).</summary>
    public static IReadOnlyList<Region> Regions(string source)
    {
        var lines = File.ReadAllText(Path.Combine(NodeTool.RepoRoot, source)).ReplaceLineEndings("\n").Split('\n');
        var regions = new List<Region>();
        for (var i = 0; i < lines.Length; i++)
        {
            var begin = Marker().Match(lines[i]);
            if (!begin.Success || begin.Groups["what"].Value != "begin") continue;
            var page = begin.Groups["page"].Value;
            var body = new List<string>();
            var j = i + 1;
            for (; j < lines.Length; j++)
            {
                var marker = Marker().Match(lines[j]);
                if (!marker.Success) body.Add(lines[j]);
                else if (marker.Groups["page"].Value == page && marker.Groups["what"].Value == "end") break;
            }
            if (j == lines.Length) throw new InvalidOperationException($"{source}:{i + 1}: // {page} begin has no // {page} end");
            regions.Add(new Region(page, source, i + 1, Trimmed(body)));
        }
        return regions;
    }

    /// <summary>Every region of the C# files under tests/ and samples/.</summary>
    public static IReadOnlyList<Region> AllRegions() =>
        new[] { "tests", "samples" }
            .SelectMany(d => Directory.EnumerateFiles(Path.Combine(NodeTool.RepoRoot, d), "*.cs", SearchOption.AllDirectories))
            .Select(f => Path.GetRelativePath(NodeTool.RepoRoot, f).Replace('\\', '/'))
            .Where(f => !f.Split('/').Any(part => part is "bin" or "obj" or "node_modules"))
            .SelectMany(Regions)
            .ToArray();

    /// <summary>Whether <paramref name="region"/> is <paramref name="block"/>'s code, its usings included.</summary>
    public static bool Shows(Block block, Region region)
    {
        if (region.Page != block.Page || !region.Lines.SequenceEqual(block.Lines)) return false;
        if (block.Usings.Count == 0) return true;
        var sourceUsings = Trimmed(File.ReadAllText(Path.Combine(NodeTool.RepoRoot, region.Source)).ReplaceLineEndings("\n").Split('\n'))
            .Where(l => UsingDirective().IsMatch(l)).ToHashSet(StringComparer.Ordinal);
        return block.Usings.All(sourceUsings.Contains);
    }

    private static string[] Trimmed(IEnumerable<string> lines) => lines.Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();

    [GeneratedRegex(@"^using [A-Za-z_][\w.]*;$")]
    private static partial Regex UsingDirective();

    [GeneratedRegex(@"^\s*// (?<page>(?:docs/[\w.-]+|README)\.md) (?<what>begin|end)\b")]
    private static partial Regex Marker();
}
