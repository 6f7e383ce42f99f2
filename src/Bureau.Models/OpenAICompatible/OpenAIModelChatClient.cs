using System.ClientModel;
using System.ClientModel.Primitives;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using OpenAI;

namespace Bureau.Models.OpenAICompatible;

/// <summary>
/// Wraps the Microsoft.Extensions.AI client of an OpenAI-compatible endpoint: applies the model's
/// temperature and output-token limit when a request leaves them unset, and turns a request that ran
/// past the model's timeout into a <see cref="TimeoutException"/> that names the model.
/// </summary>
internal sealed class OpenAIModelChatClient : DelegatingChatClient
{
    /// <summary>The key sent when the definition has none: local servers (Ollama, vLLM, llama.cpp) ignore it.</summary>
    internal const string PlaceholderApiKey = "unused";

    private readonly OpenAIModelDefinition _model;

    private OpenAIModelChatClient(IChatClient inner, OpenAIModelDefinition model)
        : base(inner)
    {
        _model = model;
    }

    /// <summary>Builds the client for <paramref name="model"/>, over <paramref name="httpClient"/> when one is given; retry waits run on <paramref name="timeProvider"/>.</summary>
    public static IChatClient Create(OpenAIModelDefinition model, HttpClient? httpClient, TimeProvider timeProvider) =>
        Create(model, httpClient, timeProvider, model.MaxRetries);

    /// <summary>As <see cref="Create(OpenAIModelDefinition, HttpClient?, TimeProvider)"/>, with <paramref name="retries"/> retries by the SDK (0 when the caller retries).</summary>
    public static IChatClient Create(OpenAIModelDefinition model, HttpClient? httpClient, TimeProvider timeProvider, int retries)
    {
        Validate(model);
        var options = new OpenAIClientOptions
        {
            Endpoint = model.Endpoint,
            NetworkTimeout = model.Timeout,
            RetryPolicy = new TimeProviderRetryPolicy(retries, timeProvider),
        };
        if (httpClient is not null) options.Transport = new HttpClientPipelineTransport(httpClient);
        var key = string.IsNullOrEmpty(model.ApiKey) ? PlaceholderApiKey : model.ApiKey;
        var client = new OpenAIClient(new ApiKeyCredential(key), options);
        return new OpenAIModelChatClient(client.GetChatClient(model.Model).AsIChatClient(), model);
    }

    /// <inheritdoc />
    public override async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        try
        {
            return await base.GetResponseAsync(messages, WithDefaults(options), cancellationToken);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw TimedOut(ex);
        }
    }

    /// <inheritdoc />
    public override async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
        IEnumerable<ChatMessage> messages, ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await using var updates = base.GetStreamingResponseAsync(messages, WithDefaults(options), cancellationToken).GetAsyncEnumerator(cancellationToken);
        while (true)
        {
            try
            {
                if (!await updates.MoveNextAsync()) yield break;
            }
            catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
            {
                throw TimedOut(ex);
            }
            yield return updates.Current;
        }
    }

    /// <summary>The request's options, with the model's temperature and token limit filled in where unset.</summary>
    internal ChatOptions? WithDefaults(ChatOptions? options)
    {
        var temperature = _model.Temperature;
        var maxTokens = _model.MaxOutputTokens;
        if (temperature is null && maxTokens is null) return options;
        if (options is null) return new ChatOptions { Temperature = temperature, MaxOutputTokens = maxTokens };
        if ((temperature is null || options.Temperature is not null) && (maxTokens is null || options.MaxOutputTokens is not null)) return options;
        var copy = options.Clone();   // the caller's options are shared between runs: never change them
        copy.Temperature ??= temperature;
        copy.MaxOutputTokens ??= maxTokens;
        return copy;
    }

    private TimeoutException TimedOut(Exception inner) =>
        new($"model '{_model.Name}' ({_model.Model} at {_model.Endpoint}) did not answer within {_model.Timeout.TotalSeconds:0.###}s", inner);

    private static void Validate(OpenAIModelDefinition model)
    {
        if (string.IsNullOrWhiteSpace(model.Name)) throw new ArgumentException("An OpenAI-compatible model needs a name.", nameof(model));
        if (model.Endpoint is null || !model.Endpoint.IsAbsoluteUri)
            throw new ArgumentException($"model '{model.Name}': endpoint must be an absolute URI, not '{model.Endpoint}'.", nameof(model));
        if (string.IsNullOrWhiteSpace(model.Model)) throw new ArgumentException($"model '{model.Name}': model (the id sent to the endpoint) is empty.", nameof(model));
        if (model.Timeout <= TimeSpan.Zero && model.Timeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentException($"model '{model.Name}': timeout must be positive, not {model.Timeout}.", nameof(model));
        if (model.MaxRetries < 0) throw new ArgumentException($"model '{model.Name}': maxRetries must be 0 or more, not {model.MaxRetries}.", nameof(model));
        if (model.Temperature is < 0) throw new ArgumentException($"model '{model.Name}': temperature must not be negative, not {model.Temperature}.", nameof(model));
        if (model.MaxOutputTokens is < 1) throw new ArgumentException($"model '{model.Name}': maxOutputTokens must be 1 or more, not {model.MaxOutputTokens}.", nameof(model));
    }
}
