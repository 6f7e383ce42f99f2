using Microsoft.Extensions.DependencyInjection;

namespace Bureau;

/// <summary>
/// What <c>AddBureau()</c> returns: the application's services, for extension methods of other
/// Bureau packages (<c>UseSqliteStorage</c>, <c>UseOrleans</c>, <c>AddHttpApi</c>) to register into.
/// </summary>
public interface IBureauBuilder
{
    /// <summary>The application's services.</summary>
    IServiceCollection Services { get; }
}
