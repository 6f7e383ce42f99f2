#!/usr/bin/env bash
# Re-records the replay corpus (corpus/*.jsonl) with real bureau processes on the scripted model.
# A deliberate act: only when the journal format or the engine's behaviour changes on purpose.
# Review `git diff tests/Bureau.Durability.Tests/Replay/corpus` before committing (corpus/README.md).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build tests/Bureau.Durability.Tests -c Release -v quiet -nologo -clp:ErrorsOnly
dotnet tests/Bureau.Durability.Tests/bin/Release/net10.0/Bureau.Durability.Tests.dll \
  -class Bureau.Durability.Tests.Replay.CorpusRecorder -explicit only
