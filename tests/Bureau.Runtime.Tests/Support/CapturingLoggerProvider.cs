using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Bureau.Tests.Support;

/// <summary>
/// Keeps every log record written through it (category, level, formatted message), for tests of what Bureau logs.
/// Give it to the engine with <c>_f.Configure = b => b.Services.AddSingleton&lt;ILoggerFactory&gt;(new LoggerFactory([logs]))</c>.
/// </summary>
internal sealed class CapturingLoggerProvider : ILoggerProvider
{
    /// <summary>The records, in the order they were written.</summary>
    public ConcurrentQueue<(string Category, LogLevel Level, string Message)> Records { get; } = new();

    /// <summary>The records that carried an exception (its stack goes to the log), with it.</summary>
    public ConcurrentQueue<(string Message, Exception Exception)> Exceptions { get; } = new();

    /// <summary>The messages written at <paramref name="level"/>.</summary>
    public List<string> At(LogLevel level) => [.. Records.Where(r => r.Level == level).Select(r => r.Message)];

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose() { }

    private sealed class Logger(CapturingLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var message = formatter(state, exception);
            owner.Records.Enqueue((category, logLevel, message));
            if (exception is not null) owner.Exceptions.Enqueue((message, exception));
        }
    }
}
