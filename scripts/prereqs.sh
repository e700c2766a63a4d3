#!/usr/bin/env bash
# Installs what ccbackup's tests and quick start need, and makes sure a local
# PostgreSQL answers on 127.0.0.1:5432 with trust auth for the test roles.
# Idempotent: safe to run on every CI run and on a developer machine.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
command -v rrdtool >/dev/null || need+=(rrdtool)
command -v restic >/dev/null || need+=(restic)
command -v zstd >/dev/null || need+=(zstd)
command -v pgrep >/dev/null || need+=(procps)
command -v psql >/dev/null || need+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "prereqs: installing ${need[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo "prereqs: starting PostgreSQL"
  ver=$(ls /etc/postgresql | sort -n | tail -1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 -q || { echo "prereqs: PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }

# Tests connect over TCP as `postgres` without a password. A stock Debian
# cluster asks for one on 127.0.0.1, so allow trust for loopback only.
if ! psql -w -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
  echo "prereqs: enabling trust auth for 127.0.0.1 (test machine only)"
  hba=$(as_root runuser -u postgres -- psql -Atc 'SHOW hba_file')
  as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  as_root runuser -u postgres -- psql -qc 'SELECT pg_reload_conf()'
  sleep 1
fi
if ! psql -w -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_roles WHERE rolname = '$(id -un)'" | grep -q 1; then
  psql -w -h 127.0.0.1 -U postgres -d postgres -qc "CREATE ROLE \"$(id -un)\" SUPERUSER LOGIN"
fi
