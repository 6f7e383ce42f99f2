using YamlDotNet.RepresentationModel;

namespace Bureau.Manifests;

/// <summary>Reads a process tool's <c>sandbox:</c> (bubblewrap and rlimits, docs/tools.md).</summary>
internal sealed partial class ManifestReader
{
    private static readonly string[] s_sandboxKeys = ["writable", "network", "maxCpuTime", "maxMemoryMB", "maxProcesses", "user"];
    private static readonly string[] s_sandboxNetworks = ["deny", "allow"];

    /// <summary><c>sandbox: true</c> (the defaults), <c>false</c> (none), or a mapping of settings.</summary>
    private SandboxSettings? ReadSandbox(Entry entry)
    {
        if (entry.Value is YamlScalarNode)
            return Boolean(entry) == true ? new SandboxSettings() : null;
        var map = Map(entry, "'sandbox'", s_sandboxKeys, [], null);
        if (map is null) return null;
        var writable = map.TryGetValue("writable", out var wr) ? StringItems(wr) ?? [] : [];
        var network = map.TryGetValue("network", out var ne) ? Choice(ne, s_sandboxNetworks) : null;
        var cpu = map.TryGetValue("maxCpuTime", out var cp) ? Duration(cp, allowZero: false) : null;
        var memory = map.TryGetValue("maxMemoryMB", out var me) ? Integer(me, 0, 1L << 30) : null;
        var processes = map.TryGetValue("maxProcesses", out var pr) ? Integer(pr, 1, 1_000_000) : null;
        var user = map.TryGetValue("user", out var us) ? Integer(us, 1, int.MaxValue) : null;
        return new SandboxSettings
        {
            Writable = writable,
            Network = network == "allow" ? SandboxNetwork.Allow : SandboxNetwork.Deny,
            MaxCpuTime = cpu,
            MaxMemoryMB = (int?)memory,
            MaxProcesses = (int?)processes,
            User = user is { } u ? (int)u : 65534,
        };
    }
}
