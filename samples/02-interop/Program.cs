// Bureau's interop samples in one app: a Bureau host (InteropHost), then one client per protocol run against it.
//   dotnet run --project samples/02-interop
// Each client is a small static class in its own file; tests/Bureau.Hosting.Tests/InteropSampleTests runs each one.
namespace InteropSample;

public static class Program
{
    public static async Task Main(string[] args)
    {
        await using var app = InteropHost.Build(args, "interop.db");
        await app.StartAsync();
        var bureau = InteropHost.Address(app);
        var key = await InteropHost.CreateKeyAsync(bureau); // once a key exists, every call needs one (docs/security.md)
        Console.WriteLine($"Bureau at {bureau}");

        Console.WriteLine("OpenAI client:    " + await OpenAIClientSample.AskAsync(bureau, key, "orders", "Where is order 1042?"));
        Console.WriteLine("A2A client:       " + await A2AClientSample.SendAsync(bureau, key, "orders", "Where is order 1042?"));
        var events = await AguiConsumerSample.StreamAsync(bureau, key, "orders", "Where is order 1042?");
        Console.WriteLine("AG-UI events:     " + string.Join(" ", events.Select(e => e.Type)));
        Console.WriteLine("MAF agent hosted: " + await AgentFrameworkSamples.RunHostedAsync(app.Services, "Where is order 1042?"));
        Console.WriteLine("MAF workflow:     " + await AgentFrameworkSamples.RunWorkflowAsync(app.Services, "Where is order 1042?"));
        await app.StopAsync();
    }
}
