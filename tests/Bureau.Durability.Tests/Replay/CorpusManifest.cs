namespace Bureau.Durability.Tests.Replay;

/// <summary>The agents the replay corpus records (besides the support-desk sample), all on the scripted model.</summary>
internal static class CorpusManifest
{
    public const string FileName = "agents.yaml";

    public const string Yaml = """
        # The replay corpus's agents (tests/Bureau.Durability.Tests/Replay): every model is the SCRIPTED
        # model, every tool a small shell script written beside this file when recording. Replays never
        # run the tools or the model: their answers come from the recorded journals.
        version: 1

        models:
          clerk-script:
            provider: scripted
            rules:
              - when: { turn: 1 }
                calls: [ { tool: charge, args: { n: "{{input}}" } } ]
              - when: { turn: 2 }
                calls: [ { tool: ledger, args: { n: "{{input}}" } } ]
              - reply: "scripted: charged and recorded {{input}} (last: {{last}})"
          deadline-script:
            provider: scripted
            rules:
              - when: { turn: 1 }
                calls: [ { tool: ledger_with_deadline, args: { n: "{{input}}" } } ]
              - reply: "scripted: done with {{input}} (last: {{last}})"
          flaky-script:
            provider: scripted
            rules:
              - when: { turn: 1 }
                calls: [ { tool: broken, args: { n: "{{input}}" } } ]
              - reply: "scripted: the tool failed, told the customer (last: {{last}})"
          counter-script:
            provider: scripted
            rules:
              - when: { turn: 1 }
                calls: [ { tool: echo, args: { n: "one" } }, { tool: echo, args: { n: "two" } } ]
              - when: { turn: 2 }
                calls: [ { tool: echo, args: { n: "three" } } ]
              - when: { turn: 3 }
                calls: [ { tool: echo, args: { n: "four" } } ]
              - reply: "scripted: counted"
          looper-script:
            provider: scripted
            rules:
              - when: { turn: 9 }
                reply: "scripted: never reached"
              - calls: [ { tool: echo, args: { n: "same" } } ]
          sloppy-script:
            provider: scripted
            rules:
              - when: { turn: 1 }
                calls: [ { tool: echo, args: { wrong: "field" } } ]
              - when: { turn: 2 }
                calls: [ { tool: echo, args: { n: "fixed" } } ]
              - reply: "scripted: fixed my call (last: {{last}})"
          nap-script:
            provider: scripted
            rules:
              - when: { turn: 1 }
                calls: [ { tool: nap, args: { n: "{{input}}" } } ]
              - reply: "scripted: never reached (the time budget stops the run first)"
          slowpoke-script:
            provider: scripted
            latency: 700ms
            rules:
              - when: { turn: 1 }
                calls: [ { tool: echo, args: { n: "one" } } ]
              - when: { turn: 2 }
                calls: [ { tool: echo, args: { n: "two" } } ]
              - reply: "scripted: never reached (the time budget stops the second model call)"
          slow-script:
            provider: scripted
            rules:
              - when: { turn: 1 }
                calls: [ { tool: slow, args: { n: "{{input}}" } } ]
              - reply: "scripted: never reached"

        tools:
          charge:
            kind: process
            command: ["sh", "charge.sh"]
            effect: idempotent
            parameters: { type: object, properties: { n: { type: string } }, required: [n], additionalProperties: false }
          ledger:
            kind: process
            command: ["sh", "ledger.sh"]
            effect: write
            parameters: { type: object, properties: { n: { type: string } }, required: [n], additionalProperties: false }
          ledger_with_deadline:
            kind: process
            command: ["sh", "ledger.sh"]
            effect: write
            inDoubtTimeout: 1s
            parameters: { type: object, properties: { n: { type: string } }, required: [n], additionalProperties: false }
          broken:
            kind: process
            command: ["sh", "broken.sh"]
            effect: read
            parameters: { type: object, properties: { n: { type: string } }, required: [n], additionalProperties: false }
          echo:
            kind: process
            command: ["sh", "echo.sh"]
            effect: read
            parameters: { type: object, properties: { n: { type: string } }, required: [n], additionalProperties: false }
          nap:
            kind: process
            command: ["sh", "nap.sh"]
            effect: read
            parameters: { type: object, properties: { n: { type: string } }, required: [n], additionalProperties: false }
          slow:
            kind: process
            command: ["sh", "slow.sh"]
            effect: read
            parameters: { type: object, properties: { n: { type: string } }, required: [n], additionalProperties: false }

        agents:
          clerk:
            model: clerk-script
            instructions: Charge the order, then record it in the ledger.
            tools: [charge, ledger]
          deadline-clerk:
            model: deadline-script
            instructions: Record the order in the ledger.
            tools: [ledger_with_deadline]
          flaky:
            model: flaky-script
            tools: [broken]
          counter:
            model: counter-script
            instructions: Count.
            tools: [echo]
            budgets: { maxSteps: 4 }
          looper:
            model: looper-script
            tools: [echo]
            loop: { maxRepeatedCalls: 2, action: warn }
          sloppy:
            model: sloppy-script
            tools: [echo]
          waiter:
            model: slow-script
            tools: [slow]
          napper:
            model: nap-script
            tools: [nap]
            budgets: { maxWallTime: 1s }
          slowpoke:
            model: slowpoke-script
            tools: [echo]
            budgets: { maxWallTime: 1s }
        """;

    /// <summary>The tools' scripts (only run while recording).</summary>
    public static readonly IReadOnlyDictionary<string, string> Scripts = new Dictionary<string, string>
    {
        ["charge.sh"] = "args=$(cat)\necho \"charged $args (key $BUREAU_IDEMPOTENCY_KEY)\"\n",
        ["ledger.sh"] = "args=$(cat)\necho \"recorded $args\"\n",
        ["broken.sh"] = "cat >/dev/null\necho 'disk full' >&2\nexit 3\n",
        ["echo.sh"] = "cat\n",
        ["slow.sh"] = "cat >/dev/null\nsleep 60\necho late\n",
        ["nap.sh"] = "cat >/dev/null\nsleep 1.3\necho rested\n",
    };
}
