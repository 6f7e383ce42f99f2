using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Bureau;
using Microsoft.Agents.AI;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.AI;

namespace InteropSample;

/// <summary>
/// The Bureau host the clients talk to: a native agent <c>orders</c> and a Microsoft Agent Framework agent
/// <c>maf-orders</c> hosted in Bureau, both with the app's <c>order_status</c> function as a tool, on loopback.
/// </summary>
public static class InteropHost
{
    /// <summary>The host, on <paramref name="database"/>, on a free loopback port unless <c>--urls</c> says otherwise.</summary>
    public static WebApplication Build(string[] args, string database, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateSlimBuilder(args);
        if (builder.Configuration["urls"] is null) builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        // docs/interop.md begin (the page shows these lines)
        builder.Services.AddBureau()
            .UseSqliteStorage(database)
            .AddModel(new ScriptedModelDefinition { Name = "model", Rules = Script.Rules }) // offline; replace with AddChatClient("model", yourChatClient)
            .AddTool(AIFunctionFactory.Create(Orders.Status, "order_status", "The shipping status of an order."), ToolEffect.Read)
            .AddAgent(new AgentDefinition { Name = "orders", Model = "model", Tools = ["order_status"], Description = "Answers questions about orders." })
            // A MAF ChatClientAgent run as a Bureau agent: its model and tool calls go through Bureau's pipelines and journal.
            .AddAgentFrameworkAgent(
                new AgentDefinition { Name = "maf-orders", Model = "model", Tools = ["order_status"], Description = "A MAF agent hosted in Bureau." },
                (chat, tools) => new ChatClientAgent(chat, instructions: "Answer questions about orders.", name: "maf-orders", tools: [.. tools]))
            .AddHttpApi();
        // docs/interop.md end
        configure?.Invoke(builder);
        var app = builder.Build();
        app.MapBureau();
        return app;
    }

    /// <summary>Where the started host listens.</summary>
    public static Uri Address(WebApplication app) =>
        new(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First() + "/");

    /// <summary>An operator key, made through the API (allowed to a loopback client while no key exists; <c>bureau keys create</c> does the same).</summary>
    public static async Task<string> CreateKeyAsync(Uri bureau, CancellationToken cancellationToken = default)
    {
        using var http = new HttpClient { BaseAddress = bureau };
        using var response = await http.PostAsJsonAsync("v1/keys", new { role = "operator", name = "interop-sample" }, cancellationToken);
        response.EnsureSuccessStatusCode();
        var body = await response.Content.ReadFromJsonAsync<JsonObject>(cancellationToken);
        return (string?)body?["key"] ?? throw new InvalidOperationException("POST /v1/keys answered no key");
    }
}

/// <summary>The app's own code, exposed to the agents as a read tool.</summary>
public static class Orders
{
    public static string Status(int order) => order == 1042 ? "shipped on 2026-11-20" : "unknown order";
}

/// <summary>Bureau's scripted model, so the sample runs without a model provider (its answers are labelled scripted).</summary>
internal static class Script
{
    public static readonly IReadOnlyList<ScriptRule> Rules =
    [
        new() { When = new() { TurnTo = 1, Input = @"(?<order>\d+)" }, Calls = [new() { Tool = "order_status", Arguments = new() { ["order"] = "{{order}}" } }] },
        new() { Reply = "Order status: {{last}}" },
    ];
}
