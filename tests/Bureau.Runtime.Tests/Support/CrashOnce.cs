using Bureau.Engine;

namespace Bureau.Tests.Support;

/// <summary>Crash points that throw once, at the named point, as a process killed there would stop; then let everything pass.</summary>
internal sealed class CrashOnce(string point) : ICrashPoints
{
    private int _crashed;

    /// <summary>Whether the crash happened.</summary>
    public bool Crashed => Volatile.Read(ref _crashed) == 1;

    public void Hit(string name)
    {
        if (name == point && Interlocked.Exchange(ref _crashed, 1) == 0)
            throw new InvalidOperationException($"simulated crash at {name}");
    }
}
