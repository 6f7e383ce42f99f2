using Bureau.Models.OpenAICompatible;
using Microsoft.Extensions.AI;

namespace Bureau.Models;

/// <summary>
/// Turns a <see cref="ModelDefinition"/> into the <see cref="IChatClient"/> that answers for it:
/// an OpenAI-compatible Chat Completions client, the scripted model, or the client a C# caller supplied.
/// </summary>
public sealed class ModelClientFactory
{
    private readonly HttpClient? _httpClient;
    private readonly TimeProvider _timeProvider;

    /// <summary>Creates a factory.</summary>
    /// <param name="httpClient">
    /// The HTTP client OpenAI-compatible models send through; null uses the OpenAI SDK's shared client.
    /// Its own <see cref="HttpClient.Timeout"/> also applies, so keep it above the models' timeouts.
    /// </param>
    /// <param name="timeProvider">The clock of the scripted model's simulated latency and of the waits between retries; <see cref="TimeProvider.System"/> when null.</param>
    public ModelClientFactory(HttpClient? httpClient = null, TimeProvider? timeProvider = null)
    {
        _httpClient = httpClient;
        _timeProvider = timeProvider ?? TimeProvider.System;
    }

    /// <summary>Creates the client for <paramref name="model"/>.</summary>
    /// <exception cref="ArgumentException">The definition is invalid, or of a kind this factory does not know; the message names the model.</exception>
    public IChatClient Create(ModelDefinition model) => Create(model, providerRetries: true);

    /// <summary>
    /// Creates the client for <paramref name="model"/>; with <paramref name="providerRetries"/> false the provider
    /// does not retry (an OpenAI-compatible client makes one attempt per call): for callers that retry themselves,
    /// as Bureau's runtime does, so that a failure is never retried twice over.
    /// </summary>
    public IChatClient Create(ModelDefinition model, bool providerRetries)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model switch
        {
            OpenAIModelDefinition openAI => OpenAIModelChatClient.Create(openAI, _httpClient, _timeProvider, providerRetries ? openAI.MaxRetries : 0),
            ScriptedModelDefinition scripted => new ScriptedChatClient(scripted, _timeProvider),
            ChatClientModelDefinition custom => custom.Client ?? throw new ArgumentException($"model '{model.Name}': no client was given.", nameof(model)),
            _ => throw new ArgumentException(
                $"model '{model.Name}': provider '{model.Provider}' ({model.GetType().Name}) is not supported; use openai, scripted or a ChatClientModelDefinition.", nameof(model)),
        };
    }
}
