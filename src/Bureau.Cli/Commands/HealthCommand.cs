using System.CommandLine;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;

namespace Bureau.Cli.Commands;

/// <summary><c>bureau health [--url URL]</c>: the models' and tools' circuit breakers of a running host (<c>GET /v1/health/dependencies</c>).</summary>
internal static class HealthCommand
{
    public static Command Create()
    {
        var url = new Option<string>("--url")
        {
            Description = "The host's address (bureau serve). Breakers live in the host's process, so ask the host.",
            DefaultValueFactory = _ => ServeCommand.DefaultUrls, // where `bureau serve` listens by default
            HelpName = "URL",
        };
        var key = new Option<string?>("--key") { Description = "An API key (bk_...) with the read role; default: $BUREAU_API_KEY.", HelpName = "KEY" };
        var json = CliShared.JsonOption("Print the host's answer ({\"items\":[...]}) on stdout.");
        var cmd = new Command("health", "Show the circuit breakers and counters of the models and tools a running host calls, and its MCP servers' connections (exit 3 when a breaker is open or an MCP server is not connected).")
        {
            url, key, json,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            if (!Uri.TryCreate(parse.GetValue(url)!.TrimEnd('/') + "/v1/health/dependencies", UriKind.Absolute, out var address))
                throw new CliUsageException($"--url: '{parse.GetValue(url)}' is not an absolute address");
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(15) };
            using var request = new HttpRequestMessage(HttpMethod.Get, address);
            var apiKey = parse.GetValue(key) ?? Environment.GetEnvironmentVariable("BUREAU_API_KEY");
            if (!string.IsNullOrEmpty(apiKey)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
            HttpResponseMessage response;
            try
            {
                response = await http.SendAsync(request, ct);
            }
            catch (HttpRequestException ex)
            {
                Console.Error.WriteLine($"bureau: no answer from {address}: {ex.Message} (is `bureau serve` running there?)");
                return 1;
            }
            using (response)
            {
                var body = await response.Content.ReadAsStringAsync(ct);
                if (!response.IsSuccessStatusCode)
                {
                    Console.Error.WriteLine($"bureau: {address} answered {(int)response.StatusCode}: {body}");
                    return 1;
                }
                var items = JsonNode.Parse(body)?["items"]?.AsArray() ?? [];
                // Exit 3 when a breaker is open or an MCP server is not connected (a degraded start): the host serves, but something it calls is down.
                var open = items.Any(i => (string?)i?["circuit"] == "open" || (string?)i?["connection"] == "connecting");
                if (parse.GetValue(json))
                {
                    Console.Out.WriteLine(body);
                    return open ? 3 : 0;
                }
                if (items.Count == 0)
                {
                    Console.Out.WriteLine("no model or tool called yet");
                    return 0;
                }
                var o = Console.Out;
                o.WriteLine($"{"DEPENDENCY",-28} {"CIRCUIT",-10} {"CALLS",8} {"FAILED",8} {"REJECTED",9} {"IN FLIGHT",9}  NOTE");
                foreach (var i in items)
                {
                    var note = (string?)i?["circuit"] == "open" ? $"tried again at {(string?)i?["retryAt"]}"
                        : (string?)i?["connection"] == "connecting" ? $"not connected; next attempt at {(string?)i?["nextAttemptAt"]}" : "";
                    var circuit = i?["connection"] is { } connection ? (string?)connection : (string?)i?["circuit"];
                    if (i?["lastError"] is { } last) note += (note.Length > 0 ? "; " : "") + "last error: " + JournalText.Cut((string?)last ?? "", 80);
                    if (i?["notApplied"] is JsonArray notApplied && notApplied.Count > 0)
                        note += (note.Length > 0 ? "; " : "") + "not applied here: " + string.Join("; ", notApplied.Select(l => JournalText.Cut((string?)l ?? "", 100)));
                    o.WriteLine($"{(string?)i?["name"],-28} {circuit,-10} {(long?)i?["calls"],8} {(long?)i?["failures"],8} {(long?)i?["rejected"],9} {(int?)i?["inFlight"],9}  {note}");
                }
                return open ? 3 : 0;
            }
        });
        return cmd;
    }
}
