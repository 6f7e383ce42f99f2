using System.Text.Json;
using System.Text.Json.Nodes;
using Bureau.Replay;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Bureau.Hosting;

/// <summary>
/// <c>POST /v1/runs/{id}/replay</c> (does the engine reproduce a finished run's steps?) and <c>POST /v1/runs/{id}/whatif</c>
/// (fork it from step N with another model or instructions), the HTTP form of <c>bureau replay</c> (decisions 0013, 0043).
/// Neither writes to the host's store: both run in a throwaway in-memory store with an engine of their own.
/// </summary>
internal static class ReplayApi
{
    private static BureauEngine Engine(HttpContext ctx) => ctx.RequestServices.GetRequiredService<BureauEngine>();

    /// <summary>The longest a what-if may run in a request (a live model may be slow; the request is answered either way).</summary>
    internal static readonly TimeSpan WhatIfLimit = TimeSpan.FromMinutes(5);

    public static async Task<IResult> ReplayAsync(HttpContext ctx, string id)
    {
        // The replay takes no fields: a body, if sent, is an empty object. A field (say "fromStpe", a what-if's meant)
        // is refused rather than ignored, so a typo never runs a plain replay in its place.
        var max = ctx.RequestServices.GetRequiredService<IOptions<BureauHttpOptions>>().Value.MaxRequestBodyBytes;
        if (await RequestBody.ReadAsync(ctx, max, optional: true) is { } body) RequestBody.OnlyFields(body);
        var engine = Engine(ctx);
        var journal = await FinishedJournalAsync(engine, id, ctx.RequestAborted);
        ReplayResult result;
        try
        {
            result = await new RunReplayer(engine.Definitions, ctx.RequestServices.GetService<ILoggerFactory>()).ReplayAsync(id, journal, ctx.RequestAborted);
        }
        catch (ArgumentException ex)
        {
            throw new ApiException(StatusCodes.Status400BadRequest, "not-replayable", ex.Message.Split(" (Parameter", 2)[0], "id", id);
        }
        return BureauApi.Json(new JsonObject
        {
            ["runId"] = result.RunId,
            ["agent"] = result.Agent,
            ["steps"] = result.Steps,
            ["stepsReproduced"] = result.StepsReproduced,
            ["reproduced"] = result.Reproduced,
            ["divergence"] = result.Divergence is not { } d ? null : new JsonObject
            {
                ["step"] = d.Step,
                ["expected"] = d.Expected is null ? null : StepComparison.Comparable(d.Expected),
                ["actual"] = d.Actual is null ? null : StepComparison.Comparable(d.Actual),
                ["note"] = d.Note,
            },
        });
    }

    public static async Task<IResult> WhatIfAsync(HttpContext ctx, string id)
    {
        var max = ctx.RequestServices.GetRequiredService<IOptions<BureauHttpOptions>>().Value.MaxRequestBodyBytes;
        var body = (await RequestBody.ReadAsync(ctx, max, optional: false))!;
        RequestBody.OnlyFields(body, "fromStep", "model", "instructions", "allowWrites");
        var request = new ForkRequest(RequestBody.RequiredInteger(body, "fromStep"), RequestBody.OptionalString(body, "model"),
            RequestBody.OptionalString(body, "instructions"), OptionalBool(body, "allowWrites"));
        var engine = Engine(ctx);
        var journal = await FinishedJournalAsync(engine, id, ctx.RequestAborted);
        var forker = new RunForker(engine.Definitions, ctx.RequestServices.GetService<Models.ModelClientFactory>(), ctx.RequestServices.GetService<ILoggerFactory>());
        try
        {
            forker.Check(id, journal, request); // a bad request is answered before anything runs
        }
        catch (ForkRequestException ex)
        {
            throw ApiException.BadField(ex.Field, ex.Message);
        }
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        limit.CancelAfter(WhatIfLimit);
        var fork = await forker.ForkAsync(id, journal, request, limit.Token);
        return BureauApi.Json(Document(engine.Definitions, id, journal, fork));
    }

    /// <summary>The two runs' steps side by side: step n of each, whether it was shared, whether the two are the same step, and where they first differ.</summary>
    internal static JsonObject Document(BureauDefinitions definitions, string runId, IReadOnlyList<JournalRecord> original, ForkResult fork)
    {
        var steps = new JsonArray();
        long? divergesAt = null;
        var rows = Math.Max(original.Count, fork.Journal.Count);
        for (var i = 0; i < rows; i++)
        {
            var left = i < original.Count ? original[i].Entry : null;
            var right = i < fork.Journal.Count ? fork.Journal[i].Entry : null;
            var shared = i < fork.FromStep;
            // Step 1 of the fork names its own actor; the shared steps are the recorded ones by construction.
            var same = shared || (left is not null && right is not null && StepComparison.Same(left, right));
            if (!same) divergesAt ??= i + 1;
            steps.Add(new JsonObject
            {
                ["n"] = i + 1,
                ["shared"] = shared,
                ["same"] = same,
                ["original"] = left is null ? null : Step(original[i]),
                ["fork"] = right is null ? null : Step(fork.Journal[i]),
            });
        }
        var run = fork.Run;
        return new JsonObject
        {
            ["runId"] = runId,
            ["fork"] = new JsonObject
            {
                ["id"] = fork.ForkId,
                ["fromStep"] = fork.FromStep,
                ["model"] = fork.Model,
                ["instructionsChanged"] = fork.InstructionsChanged,
                ["writeToolsLeftOut"] = new JsonArray([.. fork.WriteToolsLeftOut.Select(t => (JsonNode?)t)]),
                ["status"] = run.Status.ToWireName(),
                ["output"] = run.Output,
                ["error"] = run.Error,
                ["waitingFor"] = run.WaitingFor?.Reason,
                ["scripted"] = definitions.Models.TryGetValue(fork.Model, out var model) && model is ScriptedModelDefinition,
            },
            ["divergesAt"] = divergesAt,
            ["steps"] = steps,
        };
    }

    private static JsonObject Step(JournalRecord record)
    {
        var json = StepComparison.Comparable(record.Entry);
        json.Insert(0, "n", record.N);
        return json;
    }

    private static bool OptionalBool(JsonObject body, string name)
    {
        if (!body.TryGetPropertyValue(name, out var node) || node is null) return false;
        if (node is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False) return v.GetValue<bool>();
        throw ApiException.BadField(name, $"'{name}' must be true or false");
    }

    /// <summary>The journal of a finished run: 404 when there is no such run, 409 while it has not finished.</summary>
    private static async Task<IReadOnlyList<JournalRecord>> FinishedJournalAsync(BureauEngine engine, string id, CancellationToken cancellationToken)
    {
        var run = await engine.GetRunAsync(id, cancellationToken) ?? throw new RunNotFoundException(id);
        if (!run.Status.IsTerminal())
            throw new ApiException(StatusCodes.Status409Conflict, "run-not-finished",
                $"run {id} is {run.Status.ToWireName()}; only a finished run (succeeded, failed or canceled) can be replayed or forked", runId: id);
        return await engine.ReadJournalAsync(id, 0, cancellationToken);
    }
}

/// <summary>The body of <c>POST /v1/runs/{id}/whatif</c>: the step the fork goes on after, and what changes.</summary>
internal sealed record WhatIfBody(long FromStep, string? Model, string? Instructions, bool? AllowWrites);
/// <summary>The first step a replay did differently: the recorded entry, the replayed one, and why in words.</summary>
internal sealed record ReplayDivergenceDoc(long Step, JsonElement? Expected, JsonElement? Actual, string? Note);
/// <summary>A replay check: did the engine reproduce the run's steps (<c>reproduced</c>), how many, and the first divergence.</summary>
internal sealed record ReplayCheckDoc(string RunId, string Agent, int Steps, long StepsReproduced, bool Reproduced, ReplayDivergenceDoc? Divergence);
/// <summary>The fork of a what-if: its id, what changed, and how it ended (<c>scripted</c> when its model is the scripted one).</summary>
internal sealed record WhatIfForkDoc(string Id, long FromStep, string Model, bool InstructionsChanged, IReadOnlyList<string> WriteToolsLeftOut,
    string Status, string? Output, string? Error, string? WaitingFor, bool Scripted);
/// <summary>Step n of both runs: shared (copied), the same step, and each run's entry (its fields, as replay compares them).</summary>
internal sealed record WhatIfStepDoc(long N, bool Shared, bool Same, JsonElement? Original, JsonElement? Fork);
/// <summary>A what-if: the fork, the first step where the two runs differ (null: none), and their steps side by side.</summary>
internal sealed record WhatIfDoc(string RunId, WhatIfForkDoc Fork, long? DivergesAt, IReadOnlyList<WhatIfStepDoc> Steps);
