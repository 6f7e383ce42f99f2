using System.Text;
using Xunit;

namespace Bureau.Storage.PostgreSql.Tests;

/// <summary>The payload of a commit's notice: small (under PostgreSQL's 8000-byte limit however big the batch), and read back exactly.</summary>
public sealed class EventNoticeTests
{
    [Fact]
    public void ABatch_IsOneLinePerRunRange_MarkingLifecycleEntries_AndReadsBack()
    {
        var payloads = PgEventNotices.Build("origin1", ["r1", "r1", "r2", "r1"], [4, 5, 1, 6], [false, true, true, false]);

        var payload = Assert.Single(payloads);
        Assert.Equal("origin1", PgEventNotices.Origin(payload).ToString());
        Assert.Equal(
            [new PgEventNotices.Range("r1", 4, 5, true), new PgEventNotices.Range("r2", 1, 1, true), new PgEventNotices.Range("r1", 6, 6, false)],
            PgEventNotices.Parse(payload));
    }

    [Fact]
    public void RunIdsWithSpacesNewlinesAndBackslashes_ReadBackUnchanged()
    {
        string[] ids = ["a b", "line\nbreak", @"back\slash\n", "ünïcode"];
        var payload = Assert.Single(PgEventNotices.Build("o", [.. ids], [1, 1, 1, 1], [false, false, false, false]));

        Assert.Equal(ids, PgEventNotices.Parse(payload).Select(r => r.RunId));
    }

    [Fact]
    public void AThousandRuns_AreSplitIntoPayloadsUnderTheLimit_NoRangeLost()
    {
        var ids = Enumerable.Range(0, 1000).Select(i => $"01JEXAMPLERUNID{i:D10}").ToList();

        var payloads = PgEventNotices.Build("origin", ids, [.. ids.Select(_ => 7L)], [.. ids.Select(_ => false)]);

        Assert.True(payloads.Count > 1);
        Assert.All(payloads, p => Assert.True(Encoding.UTF8.GetByteCount(p) <= PgEventNotices.MaxPayloadBytes));
        Assert.All(payloads, p => Assert.Equal("origin", PgEventNotices.Origin(p).ToString()));
        Assert.Equal(ids, payloads.SelectMany(PgEventNotices.Parse).Select(r => r.RunId));
    }
}
