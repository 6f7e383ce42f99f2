// An existing minimal API app. The lines marked "Bureau" are all it takes to add a durable agent:
// runs are journaled in bureau.db, survive restarts, and are served under /v1 (docs/api.md).
using Bureau;
using Microsoft.Extensions.AI;

var builder = WebApplication.CreateBuilder(args);

builder.Services.AddBureau()                                                   // Bureau
    .UseSqliteStorage("bureau.db")                                             // Bureau
    .AddModel(new ScriptedModelDefinition { Name = "model", Rules = Script.Rules }) // Bureau (or AddChatClient with any IChatClient)
    .AddTool(AIFunctionFactory.Create(Orders.Status, "order_status"), ToolEffect.Read) // Bureau
    .AddAgent(new AgentDefinition { Name = "orders", Model = "model", Tools = ["order_status"] }) // Bureau
    .AddHttpApi();                                                             // Bureau

var app = builder.Build();

app.MapGet("/", () => "The shop's own API");                                   // the app's existing route
app.MapBureau();                                                               // Bureau

app.Run();

/// <summary>The app's existing code, exposed to the agent as a read tool.</summary>
public static class Orders
{
    public static string Status(int order) => order == 1042 ? "shipped on 2026-11-20" : "unknown order";
}

/// <summary>A deterministic offline model, so the sample runs without a model provider.</summary>
internal static class Script
{
    public static readonly IReadOnlyList<ScriptRule> Rules =
    [
        new() { When = new() { TurnTo = 1, Input = @"(?<order>\d+)" }, Calls = [new() { Tool = "order_status", Arguments = new() { ["order"] = "{{order}}" } }] },
        new() { Reply = "Order status: {{last}}" },
    ];
}

/// <summary>Lets tests start this app with WebApplicationFactory.</summary>
public partial class Program;
