using Xunit;

namespace Bureau.Hosting.Tests;

/// <summary>The parsing the CLI (<c>bureau keys create --role --name</c>) and POST /v1/keys share.</summary>
public sealed class ApiKeysTests
{
    [Theory]
    [InlineData("viewer", ApiKeyRole.Viewer)]
    [InlineData("operator", ApiKeyRole.Operator)]
    [InlineData("approver", ApiKeyRole.Approver)]
    [InlineData("admin", ApiKeyRole.Admin)]
    public void TryParseRole_WireName_Parses(string text, ApiKeyRole expected)
    {
        Assert.True(ApiKeys.TryParseRole(text, out var role));
        Assert.Equal(expected, role);
        Assert.Equal(text, role.ToWireName());
    }

    [Theory]
    [InlineData("Admin")]
    [InlineData("ADMIN")]
    [InlineData("Operator")]
    [InlineData(" admin")]
    [InlineData("")]
    [InlineData(null)]
    [InlineData("root")]
    public void TryParseRole_AnythingElse_IsNotARole(string? text)
    {
        Assert.False(ApiKeys.TryParseRole(text, out _));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("dashboard (read-only)")]
    [InlineData("caf\u00e9 \u4e2d")]
    public void CheckName_ShortPrintableOrNone_IsFine(string? name)
    {
        Assert.Null(ApiKeys.CheckName(name));
    }

    [Fact]
    public void CheckName_CountsCharactersNotUtf16Units()
    {
        Assert.Null(ApiKeys.CheckName(new string('a', ApiKeys.MaxNameLength)));
        Assert.Null(ApiKeys.CheckName(string.Concat(Enumerable.Repeat("\U0001F511", ApiKeys.MaxNameLength))));
        Assert.Equal($"is 101 characters long; at most {ApiKeys.MaxNameLength} are allowed",
            ApiKeys.CheckName(string.Concat(Enumerable.Repeat("\U0001F511", ApiKeys.MaxNameLength + 1))));
    }

    [Theory]
    [InlineData("a\nb", "U+000A at character 2")]
    [InlineData("\u001b[31mred", "U+001B at character 1")]
    [InlineData("tab\there", "U+0009 at character 4")]
    public void CheckName_ControlCharacter_SaysWhich(string name, string expected)
    {
        Assert.Contains(expected, ApiKeys.CheckName(name));
    }

    [Fact]
    public void Create_InvalidName_ThrowsAndMakesNoKey()
    {
        var ex = Assert.Throws<ArgumentException>(() => ApiKeys.Create(ApiKeyRole.Viewer, new string('x', ApiKeys.MaxNameLength + 1), DateTimeOffset.UnixEpoch));
        Assert.Equal("name", ex.ParamName);
        Assert.Contains("at most 100", ex.Message);
    }
}
