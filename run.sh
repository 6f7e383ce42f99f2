#!/usr/bin/env bash
# Bureau's main job on a fresh machine: build, check the support-desk sample, and serve it on
# http://127.0.0.1:5080 (SQLite in ./bureau.db, the scripted model; SUPPORT_DESK_MODEL=openai for a
# real one). Extra arguments go to `bureau serve` (for example --urls or --db). Ctrl+C stops.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v python3 >/dev/null 2>&1; then
  echo "run.sh: installing python3 (the sample's tools) with apt-get" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build src/Bureau.Cli -c Release -v quiet -nologo -clp:ErrorsOnly
dotnet run --project src/Bureau.Cli -c Release --no-build -- validate samples/support-desk/bureau.yaml
exec dotnet run --project src/Bureau.Cli -c Release --no-build -- serve samples/support-desk/bureau.yaml "$@"
