using System.ClientModel;
using Microsoft.Extensions.AI;
using OpenAI;

namespace InteropSample;

/// <summary>An OpenAI client against Bureau: the agent's name is the model; each request is a durable run (docs/interop.md).</summary>
public static class OpenAIClientSample
{
    public static async Task<string> AskAsync(Uri bureau, string key, string agent, string question, CancellationToken cancellationToken = default)
    {
        var openai = new OpenAIClient(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(bureau, "v1") });
        using IChatClient chat = openai.GetChatClient(agent).AsIChatClient();
        var response = await chat.GetResponseAsync(question, cancellationToken: cancellationToken);
        return response.Text; // response.ResponseId is the run's id: bureau runs show ID
    }
}
