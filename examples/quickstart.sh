#!/usr/bin/env bash
# End-to-end demo on a fresh machine, no cloud account needed:
# makes sure PostgreSQL runs, creates a sample database, Concertim-shaped RRD
# files and a config directory, backs them up to a file:// store, verifies
# the backup by restoring it, restores everything to new places, and checks
# that what came back equals what went in.
#
#   bash examples/quickstart.sh            # work dir: ./tmp/quickstart
#   CCBACKUP_DEMO_DIR=/some/dir bash examples/quickstart.sh
#   CCBACKUP_DEMO_DB=demo CCBACKUP_DEMO_RESTORED_DB=demo-copy bash examples/quickstart.sh
#
# The binary is built with cargo and taken from $CARGO_TARGET_DIR/release
# (./target/release when unset).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=${CCBACKUP_DEMO_DIR:-$root/tmp/quickstart}
db=${CCBACKUP_DEMO_DB:-ct-vis-demo}
restored_db=${CCBACKUP_DEMO_RESTORED_DB:-$db-restored}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Only what the demo needs: PostgreSQL (server and client), rrdtool, zstd.
# The test suite's prerequisites are scripts/prereqs.sh's business.
need=()
command -v rrdtool >/dev/null || need+=(rrdtool)
command -v zstd >/dev/null || need+=(zstd)
command -v psql >/dev/null || need+=(postgresql-client)
installed_server=
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  need+=(postgresql)
  installed_server=1
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo "== starting PostgreSQL"
  ver=$(ls /etc/postgresql | sort -n | tail -1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
# The demo connects over TCP as `postgres`, with PGPASSWORD if you set it.
# pg_hba.conf is touched only on a server this script just installed; an
# existing server that refuses the connection is left alone.
if ! psql -w -X -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
  if [ -z "$installed_server" ]; then
    echo "quickstart: PostgreSQL on 127.0.0.1:5432 does not accept user postgres." >&2
    echo "  Set PGPASSWORD to its password and run again (pg_hba.conf is not changed)." >&2
    exit 1
  fi
  echo "== allowing user postgres from 127.0.0.1 on the server just installed (trust, loopback only)"
  hba=$(as_root runuser -u postgres -- psql -Atc 'SHOW hba_file')
  as_root sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  as_root runuser -u postgres -- psql -qc 'SELECT pg_reload_conf()' >/dev/null
  for _ in $(seq 1 10); do psql -w -X -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done
fi
password_line=
[ -n "${PGPASSWORD:-}" ] && password_line="password_env: PGPASSWORD"

cargo build --release --locked -q
bin=${CARGO_TARGET_DIR:-$root/target}/release/ccbackup
# A relative CARGO_TARGET_DIR is relative to where cargo ran: here.
case $bin in /*) ;; *) bin=$root/$bin ;; esac
pg() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }

echo "== preparing sample data in $work"
rm -rf "$work"
mkdir -p "$work/etc" "$work/rrds/unspecified/__SummaryInfo__"
for d in "$db" "$restored_db"; do pg -d postgres -c "DROP DATABASE IF EXISTS \"$d\" WITH (FORCE)"; done
pg -d postgres -c "CREATE DATABASE \"$db\""
pg -d "$db" <<'SQL'
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE racks (id bigserial PRIMARY KEY, name text NOT NULL, u_height int, metadata jsonb);
CREATE TABLE devices (id bigserial PRIMARY KEY, rack_id bigint REFERENCES racks(id), name text, secret bytea);
INSERT INTO racks (name, u_height, metadata)
  SELECT 'rack-' || g, 42, jsonb_build_object('room', 'B' || (g % 3), 'tags', jsonb_build_array('hpc', g))
  FROM generate_series(1, 200) g;
INSERT INTO devices (rack_id, name, secret)
  SELECT 1 + (g % 200), 'node ' || g || ' ☃', gen_random_bytes(16) FROM generate_series(1, 5000) g;
SQL

echo "credentials for the demo" > "$work/etc/credentials.yml.enc"
chmod 600 "$work/etc/credentials.yml.enc"

start=$(( $(date +%s) - 3600 ))
mkrrd() { # file ds-count
  local ds="DS:sum:GAUGE:120:U:U"
  [ "$2" = 2 ] && ds="DS:sum:GAUGE:120:U:U DS:num:GAUGE:120:U:U"
  # shellcheck disable=SC2086
  rrdtool create "$1" --start "$start" --step 15 $ds \
    RRA:AVERAGE:0.5:1:240 RRA:AVERAGE:0.5:20:288 RRA:AVERAGE:0.5:240:2160 \
    RRA:MIN:0.5:1:240 RRA:MIN:0.5:20:288 RRA:MIN:0.5:240:2160 \
    RRA:MAX:0.5:1:240 RRA:MAX:0.5:20:288 RRA:MAX:0.5:240:2160
}
for i in $(seq 1 20); do
  dev="$work/rrds/unspecified/device:$(printf '%08d' "$i")-0000-4000-8000-000000000000"
  mkdir -p "$dev"
  for metric in "cpu load" "mem used" "net:rx"; do
    mkrrd "$dev/$metric.rrd" 1
    rrdtool update "$dev/$metric.rrd" "$((start + 15)):$i" "$((start + 30)):$((i * 2))"
  done
done
mkrrd "$work/rrds/unspecified/__SummaryInfo__/power.rrd" 2

# Authenticated and private from the first backup: manifests are signed
# (a store writer cannot plant a backup that counts) and artifacts are
# encrypted. On a real site the identity (the decryption key) stays off the
# backed-up host; the demo keeps it beside the config for the restore.
"$bin" keys generate "$work/keys" >/dev/null
cat > "$work/config.yaml" <<YAML
store:
  url: file://$work/store
signing:
  secret_key_file: $work/keys/minisign.key
encryption:
  recipients_file: $work/keys/age-recipient.txt
  identity_file: $work/keys/age-identity.txt
jobs:
  - name: concertim
    schedule: "0 2 * * *"
    retention: {keep_daily: 7, keep_weekly: 4, keep_monthly: 6}
    sources:
      - name: db
        postgres:
          host: 127.0.0.1
          port: 5432
          user: postgres
          $password_line
          databases: [$db]
      - name: rrd
        rrd: {path: $work/rrds}
      - name: etc
        files: {path: $work/etc}
YAML

cc() { "$bin" --config "$work/config.yaml" --log-format text "$@"; }
echo "== ccbackup check-config"; cc check-config
echo "== ccbackup run-now"; id=$(cc run-now); echo "backup id: $id"
echo "== ccbackup list"; cc list
echo "== ccbackup verify --restore-test"; cc verify --restore-test
echo "== ccbackup restore (database into a new name, trees into new folders)"
cc restore --source db --target-db "$restored_db"
cc restore --source rrd --to "$work/restored/rrds"
cc restore --source etc --to "$work/restored/etc"

echo "== the store holds a signed manifest and only encrypted artifacts"
backup_dir=$work/store/concertim/$id
[ -s "$backup_dir/manifest.json.minisig" ] || { echo "quickstart: $id has no signature" >&2; exit 1; }
find "$backup_dir" -name '*.zst' | while IFS= read -r f; do
  head -c 21 "$f" | grep -q 'age-encryption.org/v1' || { echo "quickstart: $f is not encrypted" >&2; exit 1; }
done

echo "== comparing"
pg_dump -h 127.0.0.1 -U postgres --data-only --inserts -d "$db" | grep -v -e '^--' -e '^\\restrict' -e '^\\unrestrict' > "$work/a.sql"
pg_dump -h 127.0.0.1 -U postgres --data-only --inserts -d "$restored_db" | grep -v -e '^--' -e '^\\restrict' -e '^\\unrestrict' > "$work/b.sql"
diff -q "$work/a.sql" "$work/b.sql"
diff -r "$work/rrds" "$work/restored/rrds"
diff -r "$work/etc" "$work/restored/etc"
echo "quickstart OK: backup $id restored and identical (store: $work/store)"
