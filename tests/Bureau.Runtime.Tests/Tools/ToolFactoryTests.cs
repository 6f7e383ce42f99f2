using Bureau.Tools;
using Microsoft.Extensions.AI;
using Xunit;

namespace Bureau.Tests.Tools;

public sealed class ToolFactoryTests
{
    private sealed class SmtpToolDefinition : ToolDefinition
    {
        public override string Kind => "smtp";
    }

    [Fact]
    public void Create_EachKind_BuildsItsTool()
    {
        var factory = new ToolFactory();

        Assert.Equal("ProcessTool", factory.Create(new ProcessToolDefinition { Name = "p", Command = ["true"] }).GetType().Name);
        Assert.Equal("HttpTool", factory.Create(new HttpToolDefinition { Name = "h", Url = new Uri("http://127.0.0.1:1/") }).GetType().Name);
        Assert.Equal("FunctionTool", factory.Create(new FunctionToolDefinition { Name = "f", Function = AIFunctionFactory.Create(() => 1, "f") }).GetType().Name);
    }

    [Fact]
    public void Create_UnknownKind_ThrowsNamingToolAndKind()
    {
        var ex = Assert.Throws<ArgumentException>(() => new ToolFactory().Create(new SmtpToolDefinition { Name = "mail" }));

        Assert.Contains("tool 'mail': unknown kind 'smtp'", ex.Message);
    }

    [Fact]
    public void Create_RelativeHttpUrl_Throws()
    {
        var ex = Assert.Throws<ArgumentException>(() => new ToolFactory().Create(new HttpToolDefinition { Name = "h", Url = new Uri("/x", UriKind.Relative) }));

        Assert.Contains("tool 'h': url must be an absolute http or https address", ex.Message);
    }
}
