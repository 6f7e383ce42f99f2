#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (docs/decisions/0030).
#
#   tests/pg.sh COMMAND [ARGS...]   starts a server, runs COMMAND with BUREAU_TEST_POSTGRES set, stops it
#   . tests/pg.sh                   (sourced) defines pg_start and pg_stop; pg_start exports BUREAU_TEST_POSTGRES
#                                   and stops the server when the shell exits (trap EXIT)
#
# The server is Debian's `postgresql` package (installed with apt-get when missing), initialized with initdb in a
# new temp directory, listening on a free port of 127.0.0.1 only, with its unix socket in that directory; it runs as
# the user `nobody` when the script runs as root (PostgreSQL refuses to run as root). pg_stop stops it (fast mode)
# and deletes the directory. Nothing outside the directory is touched.

pg_bin_dir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"; return 0
  fi
  return 1
}

# Returns 3 when PostgreSQL is missing and cannot be installed here (no root, no apt-get, apt-get failed).
pg_install() {
  pg_bin_dir >/dev/null && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "pg.sh: PostgreSQL is not installed and cannot be installed here (needs root and apt-get)" >&2
    return 3
  fi
  echo "pg.sh: installing postgresql with apt-get" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || {
    echo "pg.sh: apt-get could not install postgresql" >&2; return 3; }
  pg_bin_dir >/dev/null || return 3
}

pg_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Returns 3 when PostgreSQL cannot be installed, 1 when it is installed but does not start.
pg_start() {
  pg_install || return $?
  local bin; bin=$(pg_bin_dir) || return 1
  PG_TMP=$(mktemp -d /tmp/bureau-pg.XXXXXX)
  chmod 755 "$PG_TMP"
  local as=()
  if [ "$(id -u)" -eq 0 ]; then
    chown nobody "$PG_TMP"
    if command -v setpriv >/dev/null 2>&1; then
      as=(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups --)
    else
      as=(runuser -u nobody --)
    fi
  fi
  PG_AS=("${as[@]}")
  PG_CTL="$bin/pg_ctl"
  PG_DATA="$PG_TMP/data"
  "${as[@]}" "$bin/initdb" -D "$PG_DATA" -U bureau -A trust -E UTF8 --no-locale >"$PG_TMP/initdb.log" 2>&1 || {
    echo "pg.sh: initdb failed:" >&2; cat "$PG_TMP/initdb.log" >&2; return 1; }
  local port tries=0
  while :; do
    port=$(pg_free_port)
    # Small settings for a shared CI machine; fsync stays on (the tests check durability, not speed).
    if "${as[@]}" "$PG_CTL" -D "$PG_DATA" -l "$PG_TMP/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$PG_TMP -c max_connections=200 -c shared_buffers=64MB" \
        start >/dev/null 2>&1; then
      break
    fi
    tries=$((tries + 1))
    if [ $tries -ge 3 ]; then echo "pg.sh: the server did not start:" >&2; cat "$PG_TMP/server.log" >&2; return 1; fi
  done
  export BUREAU_TEST_POSTGRES="Host=127.0.0.1;Port=$port;Username=bureau;Database=postgres"
  trap pg_stop EXIT
  echo "pg.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $PG_TMP)" >&2
}

pg_stop() {
  if [ -n "${PG_DATA:-}" ] && [ -d "$PG_DATA" ]; then
    "${PG_AS[@]}" "$PG_CTL" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
  if [ -n "${PG_TMP:-}" ]; then rm -rf "$PG_TMP"; fi
  PG_TMP= PG_DATA=
  unset BUREAU_TEST_POSTGRES
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  if [ $# -eq 0 ]; then echo "usage: tests/pg.sh COMMAND [ARGS...]" >&2; exit 2; fi
  pg_start || exit $?
  "$@"
  exit $?
fi
