using Bureau.Manifests;
using Xunit;

namespace Bureau.Manifests.Tests;

/// <summary>
/// The C# blocks of docs/manifest.md, compiled here as the page shows them (between the markers) and run: the test's
/// folder has no bureau.yaml, so they take the page's failure path.
/// </summary>
public sealed class DocsCSharpSnippetTests
{
    [Fact]
    public void LoadFile_Snippet_PrintsTheDiagnosticsAndReturns2_WhenTheManifestCannotBeRead()
    {
        Assert.False(File.Exists("bureau.yaml"), "the test expects no bureau.yaml in its working folder");
        Assert.Equal(2, Load());

        static int Load()
        {
            // docs/manifest.md begin (the top of the page)
            var result = ManifestLoader.LoadFile("bureau.yaml");     // environment: the process's
            if (!result.Success)
            {
                foreach (var d in result.Diagnostics) Console.Error.WriteLine(d);   // bureau.yaml:14:5: error: ...
                return 2;
            }
            BureauDefinitions definitions = result.Definitions!;
            // docs/manifest.md end
            return definitions.Agents.Count > 0 ? 0 : 1;
        }
    }

    [Fact]
    public void Limits_Snippet_IsAccepted_AndALimitOutOfItsRangeThrowsNamingIt()
    {
        // docs/manifest.md begin ("Limits", in C#)
        var limits = new ManifestLimits { MaxFileBytes = 256 * 1024, MaxExpandedNodes = 10_000, MaxAliases = 0 };
        var result = ManifestLoader.LoadFile("bureau.yaml", environment: null, limits);
        // docs/manifest.md end

        Assert.False(result.Success);   // no bureau.yaml here: a diagnostic, not an exception
        Assert.Contains("bureau.yaml", Assert.Single(result.Diagnostics).ToString());
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ManifestLoader.LoadFile("bureau.yaml", environment: null, new ManifestLimits { MaxDepth = 257 }));
        Assert.Contains("MaxDepth", ex.Message);
    }
}
