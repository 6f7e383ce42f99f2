using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Models.Tests;

public sealed class ModelClientFactoryTests
{
    private sealed class OtherModelDefinition : ModelDefinition
    {
        public override string Provider => "other";
    }

    private sealed class EchoClient : IChatClient
    {
        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, messages.Last().Text)));

        public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            throw new NotSupportedException();

        public object? GetService(Type serviceType, object? serviceKey = null) => null;

        public void Dispose()
        {
        }
    }

    [Fact]
    public void Create_Scripted_ReturnsScriptedClient()
    {
        var client = new ModelClientFactory().Create(new ScriptedModelDefinition { Name = "demo", Rules = [new ScriptRule { Reply = "hi" }] });

        Assert.Equal("scripted:demo", Assert.IsType<ScriptedChatClient>(client).ModelId);
    }

    [Fact]
    public void Create_ChatClientModel_ReturnsItsClient()
    {
        var echo = new EchoClient();

        Assert.Same(echo, new ModelClientFactory().Create(new ChatClientModelDefinition { Name = "mine", Client = echo }));
    }

    [Fact]
    public void Create_UnknownDefinition_ThrowsNamingTheModel()
    {
        var ex = Assert.Throws<ArgumentException>(() => new ModelClientFactory().Create(new OtherModelDefinition { Name = "weird" }));

        Assert.Contains("'weird'", ex.Message);
        Assert.Contains("other", ex.Message);
    }

    [Theory]
    [InlineData(-1, 100.0, "maxRetries")]
    [InlineData(3, 0.0, "timeout")]
    public void Create_InvalidOpenAISettings_ThrowsNamingModelAndKey(int maxRetries, double timeoutSeconds, string key)
    {
        var model = new OpenAIModelDefinition
        {
            Name = "main",
            Endpoint = new Uri("http://127.0.0.1:1/v1"),
            Model = "m",
            MaxRetries = maxRetries,
            Timeout = TimeSpan.FromSeconds(timeoutSeconds),
        };

        var ex = Assert.Throws<ArgumentException>(() => new ModelClientFactory().Create(model));

        Assert.Contains("'main'", ex.Message);
        Assert.Contains(key, ex.Message);
    }
}
