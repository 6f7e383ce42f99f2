#!/usr/bin/env bash
# Runs Bureau's whole test suite on a fresh machine: installs what the tests need, builds, tests,
# and ends with one line "N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v sh >/dev/null 2>&1 || need_apt+=(dash)
command -v fiu-run >/dev/null 2>&1 || need_apt+=(fiu-utils)   # storage fault injection (fsync EIO), RELIABILITY R6
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)  # run bureau as a non-root user (read-only database test)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]} with apt-get" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v dotnet >/dev/null 2>&1; then
  echo "test.sh: the .NET 10 SDK is required (https://dot.net); 'dotnet' is not on PATH" >&2
  exit 2
fi

# The A2A tests' client: the protocol's JS SDK (tests/a2a, pinned by package-lock.json).
if [ ! -d tests/a2a/node_modules ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "test.sh: installing nodejs and npm with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
  echo "test.sh: npm ci in tests/a2a" >&2
  (cd tests/a2a && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
dotnet build Bureau.slnx -c Release -v quiet -nologo -clp:ErrorsOnly

log=$(mktemp)
set +e
dotnet test Bureau.slnx -c Release --no-build -v quiet -nologo --blame-hang-timeout 5m 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# Sum the per-assembly summaries ("Passed!  - Failed: 0, Passed: 15, Skipped: 0, ...").
read -r passed failed skipped < <(awk '
  /(Passed|Failed)!  - Failed:/ {
    for (i = 1; i <= NF; i++) {
      if ($i == "Failed:") f += $(i+1) + 0
      if ($i == "Passed:") p += $(i+1) + 0
      if ($i == "Skipped:") s += $(i+1) + 0
    }
  }
  END { printf "%d %d %d\n", p, f, s }' "$log")
rm -f "$log"
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then exit 1; fi
if [ "$passed" -eq 0 ]; then echo "test.sh: no test ran" >&2; exit 1; fi
