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
[ -x "${BUREAU_CHROMIUM:-/usr/bin/chromium}" ] || need_apt+=(chromium)  # the Dashboard's browser tests (Playwright drives Debian's chromium)
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)    # sandboxed process tools (docs/decisions/0029); prlimit is util-linux
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]} with apt-get" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v dotnet >/dev/null 2>&1; then
  echo "test.sh: the .NET 10 SDK is required (https://dot.net); 'dotnet' is not on PATH" >&2
  exit 2
fi

# Node.js tools and clients the tests run, nobody here wrote them (pinned by package-lock.json): the OpenAPI linter,
# client generator and compiler; the openai npm client, AG-UI's client and protocol types; an MCP server
# (@modelcontextprotocol/server-filesystem) for the MCP client tests; the A2A protocol's JS SDK.
if ! command -v npm >/dev/null 2>&1; then
  echo "test.sh: installing nodejs and npm with apt-get" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
for dir in tests/openapi tests/Bureau.Hosting.Tests/Interop/js tests/mcp-servers tests/a2a; do
  if [ ! -d "$dir/node_modules" ]; then
    echo "test.sh: npm ci in $dir" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
done
# PostgreSQL store tests (docs/decisions/0030): a throwaway server (initdb in a temp dir, a free loopback port), stopped
# and deleted when this script exits; BUREAU_TEST_POSTGRES tells the tests where it is. Only a machine where postgresql
# cannot be installed skips them (they say why); a server that is installed but does not start fails the run. A
# BUREAU_TEST_POSTGRES set beforehand names a server of your own instead (the tests make and drop t_* schemas there).
. tests/pg.sh
pg_rc=0
if [ -n "${BUREAU_TEST_POSTGRES:-}" ]; then
  echo "test.sh: PostgreSQL tests use the server BUREAU_TEST_POSTGRES names" >&2
else
  pg_start || pg_rc=$?
fi
if [ "$pg_rc" -eq 3 ]; then
  echo "test.sh: PostgreSQL cannot be installed here: the PostgreSQL store tests are skipped" >&2
elif [ "$pg_rc" -ne 0 ]; then
  echo "test.sh: PostgreSQL is installed but did not start (see above)" >&2
  exit 1
fi

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
dotnet build Bureau.slnx -c Release -v quiet -nologo -clp:ErrorsOnly

log=$(mktemp)
set +e
dotnet test Bureau.slnx -c Release --no-build -v quiet -nologo --logger "console;verbosity=minimal" --blame-hang-timeout 5m 2>&1 | tee "$log"
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
