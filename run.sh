#!/usr/bin/env bash
# Bureau's main job on a fresh machine: build, then run a support ticket through the sample's
# triage agent on the embedded default (SQLite in ./bureau.db) and the scripted model.
set -euo pipefail
cd "$(dirname "$0")"
command -v python3 >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build src/Bureau.Cli -c Release -v quiet -nologo -clp:ErrorsOnly
bureau() { dotnet src/Bureau.Cli/bin/Release/net10.0/bureau.dll "$@"; }
bureau validate samples/support-desk/bureau.yaml
bureau run samples/support-desk/bureau.yaml --agent triage \
  --input "${1:-Ticket from ada@example.com: I was charged twice for order 1042, please refund 30 EUR}"
