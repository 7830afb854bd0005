#!/usr/bin/env bash
# Start a throwaway PostgreSQL on loopback for tests and benchmarks (never another address).
# Usage: source deploy/start-postgres.sh   -> exports CROWD_TEST_PG_DSN
# Installs Debian's postgresql when missing (CI runs as root on a fresh machine).
set -euo pipefail
PGPORT="${CROWD_PG_PORT:-54329}"
PGDATA="${CROWD_PG_DATA:-/tmp/crowd-pg-data}"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PGBIN="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")"
id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  rm -rf "$PGDATA"; mkdir -p "$PGDATA"; chown postgres "$PGDATA" 2>/dev/null || true
  as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k /tmp -c max_connections=200 -c fsync=off" start >/dev/null
fi
for db in crowd_dagster crowd_bench; do
  as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 \
    || as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -qc "CREATE DATABASE $db"
done
export CROWD_TEST_PG_DSN="postgresql://postgres@127.0.0.1:$PGPORT/crowd_dagster"
export CROWD_BENCH_PG_DSN="postgresql://postgres@127.0.0.1:$PGPORT/crowd_bench"
echo "PostgreSQL on 127.0.0.1:$PGPORT ($CROWD_TEST_PG_DSN)"
