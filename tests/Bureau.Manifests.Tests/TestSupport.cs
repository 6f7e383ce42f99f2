using Bureau.Manifests;
using Xunit;

namespace Bureau.Manifests.Tests;

internal static class TestSupport
{
    public static readonly IReadOnlyDictionary<string, string?> NoEnvironment = new Dictionary<string, string?>();

    public static ManifestLoadResult Load(string yaml, IReadOnlyDictionary<string, string?>? environment = null) =>
        ManifestLoader.LoadText(yaml, "bureau.yaml", Path.GetTempPath(), environment ?? NoEnvironment);

    public static Dictionary<string, string?> Env(params (string Name, string? Value)[] vars) =>
        vars.ToDictionary(v => v.Name, v => v.Value);

    /// <summary>Asserts exactly one diagnostic, at this line and column, whose message contains <paramref name="text"/>.</summary>
    public static ManifestDiagnostic Single(ManifestLoadResult result, int line, int column, string text)
    {
        Assert.False(result.Success);
        Assert.Null(result.Definitions);
        var d = Assert.Single(result.Diagnostics);
        Assert.True(d.Line == line && d.Column == column, $"expected {line}:{column}, got {d}");
        Assert.Contains(text, d.Message);
        return d;
    }

    public static string RepoRoot { get; } = FindRoot();

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Bureau.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Bureau.slnx not found above " + AppContext.BaseDirectory);
    }

    /// <summary>The example manifest of the tracker's issue 3, as written.</summary>
    public const string IssueExample = """
        models:
          main:
            provider: openai            # any OpenAI-compatible Chat Completions endpoint
            endpoint: http://127.0.0.1:8089/v1
            model: gpt-4.1-mini
            apiKey: ${OPENAI_API_KEY}   # ${VAR} and ${VAR:-default} from the environment
          demo:
            provider: scripted
            # rules: the scripted model's script, in a format you design and document
        tools:
          ledger:
            kind: process
            command: ["python3", "ledger.py"]  # argv; relative paths resolve from the manifest's folder
            effect: write               # read | idempotent | write
            timeout: 10s
            description: Append an entry to the ledger
            parameters:                 # JSON Schema of the arguments
              type: object
              properties: { n: { type: integer } }
              required: [n]
          echo:
            kind: http
            method: POST
            url: http://127.0.0.1:8090/echo
            effect: idempotent
            parameters: { type: object, properties: { text: { type: string } }, required: [text] }
        agents:
          clerk:
            model: main
            instructions: You record things.
            tools: [ledger, echo]
            budgets: { maxSteps: 20 }
        """;
}
