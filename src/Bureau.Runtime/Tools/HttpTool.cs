using System.Net;
using System.Text;
using System.Text.Json;

namespace Bureau.Tools;

/// <summary>
/// Sends an HTTP request: GET carries the arguments as the query string, other methods as a JSON body.
/// Every request carries <c>Idempotency-Key</c>, and <c>traceparent</c> when the call is traced. The response body is the result; a 4xx or 5xx answer is
/// a tool error with the status and an excerpt of the body.
/// </summary>
internal sealed class HttpTool : BureauTool
{
    private const int ErrorExcerptChars = 500;

    private readonly HttpToolDefinition _definition;
    private readonly HttpClient _client;
    private readonly HttpMethod _method;

    public HttpTool(HttpToolDefinition definition, HttpClient client) : base(definition)
    {
        if (!definition.Url.IsAbsoluteUri || (definition.Url.Scheme != Uri.UriSchemeHttp && definition.Url.Scheme != Uri.UriSchemeHttps))
            throw new ArgumentException($"tool '{definition.Name}': url must be an absolute http or https address, was '{definition.Url}'", nameof(definition));
        if (string.IsNullOrWhiteSpace(definition.Method))
            throw new ArgumentException($"tool '{definition.Name}': method is empty", nameof(definition));
        if (definition.MaxResponseBytes <= 0)
            throw new ArgumentException($"tool '{definition.Name}': maxResponseBytes must be positive, was {definition.MaxResponseBytes}", nameof(definition));
        _definition = definition;
        _client = client;
        _method = new HttpMethod(definition.Method.Trim().ToUpperInvariant());
    }

    /// <inheritdoc />
    protected override bool HonoursCancellation => true;

    protected override async Task<ToolOutcome> InvokeCoreAsync(ToolInvocation invocation, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(_method, _definition.Url);
        if (_method == HttpMethod.Get || _method == HttpMethod.Head)
            request.RequestUri = WithQuery(_definition.Url, invocation.Arguments);
        else
            request.Content = new StringContent(invocation.Arguments.GetRawText(), new UTF8Encoding(false), "application/json");

        foreach (var (name, value) in _definition.Headers)
        {
            if (!request.Headers.TryAddWithoutValidation(name, value) && request.Content is not null)
            {
                request.Content.Headers.Remove(name);
                request.Content.Headers.TryAddWithoutValidation(name, value);
            }
        }
        request.Headers.Remove("Idempotency-Key");
        request.Headers.TryAddWithoutValidation("Idempotency-Key", invocation.IdempotencyKey);
        // The call's span (execute_tool) as the request's parent; HttpClient's own propagation skips a request that has one.
        if (System.Diagnostics.Activity.Current is { IdFormat: System.Diagnostics.ActivityIdFormat.W3C } span && !request.Headers.Contains("traceparent"))
        {
            request.Headers.TryAddWithoutValidation("traceparent", span.Id);
            if (span.TraceStateString is { Length: > 0 } state) request.Headers.TryAddWithoutValidation("tracestate", state);
        }

        using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        var encoding = Charset(response);
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            // Enough bytes for the excerpt in any encoding; the rest is not read.
            var head = await ToolOutput.ReadHeadAsync(body, ErrorExcerptChars * 4, drain: false, cancellationToken);
            var excerpt = ToolOutput.Excerpt(encoding.GetString(head.Bytes), ErrorExcerptChars);
            var status = $"HTTP {(int)response.StatusCode} {response.ReasonPhrase ?? ReasonPhrase(response.StatusCode)}".TrimEnd();
            var code = (int)response.StatusCode;
            var failure = code is 408 or 429 || code >= 500 ? ToolFailure.Unavailable : ToolFailure.Error;
            var retryAfter = response.Headers.RetryAfter is { } ra
                ? ra.Delta ?? (ra.Date is { } date ? date - DateTimeOffset.UtcNow : null)
                : null;
            return ToolOutcome.Error(excerpt.Length == 0 ? status : $"{status}: {excerpt}", failure) with { RetryAfter = retryAfter };
        }

        var captured = await ToolOutput.ReadHeadAsync(body, _definition.MaxResponseBytes, drain: false, cancellationToken);
        return ToolOutcome.Success(ToolOutput.Text(captured, _definition.MaxResponseBytes, encoding));
    }

    /// <summary>
    /// Adds the arguments to <paramref name="url"/>'s query: strings as they are, numbers and booleans as
    /// JSON text, objects and arrays as JSON; null values are left out.
    /// </summary>
    internal static Uri WithQuery(Uri url, JsonElement arguments)
    {
        var query = new StringBuilder(url.Query.TrimStart('?'));
        foreach (var property in arguments.EnumerateObject())
        {
            string value;
            switch (property.Value.ValueKind)
            {
                case JsonValueKind.Null or JsonValueKind.Undefined:
                    continue;
                case JsonValueKind.String:
                    value = property.Value.GetString()!;
                    break;
                default:
                    value = property.Value.GetRawText();
                    break;
            }
            if (query.Length > 0) query.Append('&');
            query.Append(Uri.EscapeDataString(property.Name)).Append('=').Append(Uri.EscapeDataString(value));
        }
        return new UriBuilder(url) { Query = query.ToString() }.Uri;
    }

    private static Encoding Charset(HttpResponseMessage response)
    {
        var charset = response.Content.Headers.ContentType?.CharSet?.Trim('"');
        if (string.IsNullOrEmpty(charset)) return Encoding.UTF8;
        try
        {
            return Encoding.GetEncoding(charset);
        }
        catch (ArgumentException)
        {
            return Encoding.UTF8;
        }
    }

    private static string ReasonPhrase(HttpStatusCode status) =>
        Enum.IsDefined(status) ? SplitWords(status.ToString()) : string.Empty;

    private static string SplitWords(string pascal)
    {
        var sb = new StringBuilder(pascal.Length + 4);
        for (var i = 0; i < pascal.Length; i++)
        {
            if (i > 0 && char.IsUpper(pascal[i])) sb.Append(' ');
            sb.Append(pascal[i]);
        }
        return sb.ToString();
    }
}
