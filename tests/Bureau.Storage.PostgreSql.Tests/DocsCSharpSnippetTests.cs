using Bureau.Orleans.PostgreSql;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Xunit;

namespace Bureau.Storage.PostgreSql.Tests;

/// <summary>
/// The C# blocks of docs/storage.md and docs/cluster.md, compiled here as the pages show them (between the markers), and
/// run as far as the options they set: no server is needed (nothing connects before the host starts).
/// </summary>
public sealed class DocsCSharpSnippetTests
{
    [Fact]
    public void StorageMd_InCode_SetsTheNodeIdConnectionStringAndManifest()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());

        // docs/storage.md begin ("In code")
        builder.Services.AddBureau(o => o.NodeId = Environment.MachineName)
            .UsePostgreSqlStorage("Host=db.internal;Database=bureau;Username=bureau;Password=...")
            .AddManifest("bureau.yaml");
        // docs/storage.md end

        using var provider = builder.Services.BuildServiceProvider();
        var bureau = provider.GetRequiredService<IOptions<BureauOptions>>().Value;
        Assert.Equal(Environment.MachineName, bureau.NodeId);
        Assert.Equal(["bureau.yaml"], bureau.Manifests);
        Assert.Equal("Host=db.internal;Database=bureau;Username=bureau;Password=...", provider.GetRequiredService<IOptions<PostgreSqlStoreOptions>>().Value.ConnectionString);
    }

    [Fact]
    public void ClusterMd_InCode_AdvertisesTheAddress_AndTheClusterDefaultsToTheStoresDatabase()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());

        // docs/cluster.md begin ("In code")
        builder.Services.AddBureau(o => o.NodeId = Environment.MachineName)
            .UsePostgreSqlStorage("Host=db.internal;Database=bureau;Username=bureau;Password=...")
            .UsePostgreSqlCluster(o => o.AdvertisedAddress = "10.0.0.5")   // Bureau.Orleans.PostgreSql
            .AddManifest("bureau.yaml");
        // docs/cluster.md end

        using var provider = builder.Services.BuildServiceProvider();
        var cluster = provider.GetRequiredService<IOptions<PostgreSqlClusterOptions>>().Value;
        // "its connection string defaults to the store's"
        Assert.Equal(("10.0.0.5", "Host=db.internal;Database=bureau;Username=bureau;Password=..."), (cluster.AdvertisedAddress, cluster.ConnectionString));
        Assert.Equal(Environment.MachineName, provider.GetRequiredService<IOptions<BureauOptions>>().Value.NodeId);
    }
}
