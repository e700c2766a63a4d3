#!/usr/bin/env bash
# Opt-in container smoke test (not part of `cargo test`; takes minutes).
#
# Builds the ccbackup image with podman from locally made base images (no
# registry needed), then runs the container with --network host against
# this machine's PostgreSQL (127.0.0.1:5432, trust auth as set up by
# scripts/prereqs.sh) and a loopback moto S3 server: run-now, list, verify,
# restore of the database and of a directory, and the daemon's /healthz and
# HEALTHCHECK.
#
# Offline differences from a normal `docker build`, both build arguments of
# the Dockerfile:
#   BINARY=prebuilt    the binary is built on the host (cargo build --release)
#                      and copied in, because the Rust image cannot be pulled;
#   PG_CLIENTS=debian  Debian's postgresql-client-15 instead of PGDG's 16 and
#                      15, because apt.postgresql.org is unreachable here.
#
# Usage: bash scripts/container-smoke.sh      (as root, or with sudo for apt)
# Env:   SMOKE_WORK=DIR  keep the rootfs and podman config there between runs
#                        (default /var/tmp/ccbackup-smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
say() { printf 'smoke: %s\n' "$*"; }

work=${SMOKE_WORK:-/var/tmp/ccbackup-smoke}
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
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
moto=$(command -v moto_server || echo "${CCBACKUP_TEST_TOOLS:-/opt/ccbackup-test}/venv/bin/moto_server")
[ -x "$moto" ] || { echo "smoke: moto_server missing; run scripts/prereqs.sh" >&2; exit 1; }

cat > "$work/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$work/containers.conf"

# --- base image ----------------------------------------------------------------
base=docker.io/library/debian:bookworm-slim
if ! podman image exists "$base"; then
  say "making $base with debootstrap (about a minute)"
  rootfs="$work/rootfs"
  as_root rm -rf "$rootfs"
  as_root debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  as_root tar -C "$rootfs" -c . | podman import - "$base" >/dev/null
fi

# --- image -----------------------------------------------------------------------
say "building the release binary on the host"
cargo build --release --locked --quiet
mkdir -p dist
cleanup_dist() { rm -rf "$repo/dist"; }
install -m 0755 target/release/ccbackup dist/ccbackup
say "building $image"
build_log="$work/build.log"
# --format docker keeps HEALTHCHECK (the OCI image format has no field for it).
if ! podman build --format docker --pull=never --build-arg BINARY=prebuilt --build-arg PG_CLIENTS=debian \
     -t "$image" . >"$build_log" 2>&1; then
  tail -40 "$build_log" >&2
  cleanup_dist
  echo "smoke: image build failed (log: $build_log)" >&2
  exit 1
fi
cleanup_dist

# --- fixtures --------------------------------------------------------------------
tmp=$(mktemp -d)
db="smoke_$$"
moto_pid=
daemon_name="ccbackup-smoke-$$"
cleanup() {
  podman rm -f "$daemon_name" >/dev/null 2>&1 || true
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
  for d in "$db" "${db}_restored"; do
    psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS \"$d\" WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$moto" -H 127.0.0.1 -p "$port" >"$tmp/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 1 50); do curl -fs -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
curl -fsS -X PUT "http://127.0.0.1:$port/smoke-bucket" -o /dev/null

psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE \"$db\""
psql -X -q -h 127.0.0.1 -U postgres -d "$db" -c \
  "CREATE TABLE racks (id int PRIMARY KEY, name text); INSERT INTO racks SELECT g, 'rack ' || g FROM generate_series(1, 250) g;"

mkdir -p "$tmp/etc/ccbackup" "$tmp/data/sub dir" "$tmp/restore" "$tmp/secrets"
printf 'credentials\n' > "$tmp/data/credentials.yml.enc"
printf 'x' > "$tmp/data/sub dir/a:b.txt"
printf 'smoke-secret-key\n' > "$tmp/secrets/s3-secret-access-key"
chmod -R a+rX "$tmp"
chmod a+rwx "$tmp/restore"
cat > "$tmp/etc/ccbackup/config.yaml" <<EOF
store:
  url: s3://smoke-bucket/site
  options:
    endpoint: http://127.0.0.1:$port
    allow_http: true
    region: us-east-1
    access_key_id: AKIASMOKE
    secret_access_key_file: /run/secrets/s3-secret-access-key
daemon:
  listen: 127.0.0.1:9187
jobs:
  - name: smoke
    schedule: "0 3 * * *"
    sources:
      - name: db
        postgres:
          host: 127.0.0.1
          port: 5432
          user: postgres
          databases: ["$db"]
      - name: etc
        files:
          path: /data
EOF

run() {
  podman run --rm --network host \
    -v "$tmp/etc/ccbackup:/etc/ccbackup:ro" \
    -v "$tmp/data:/data:ro" \
    -v "$tmp/secrets:/run/secrets:ro" \
    -v "$tmp/restore:/restore" \
    "$image" --log-format text "$@"
}

# --- checks ----------------------------------------------------------------------
say "image: $(podman run --rm --entrypoint id "$image")"
[ "$(podman run --rm --entrypoint id "$image" -u)" != 0 ] || { echo "smoke: image runs as root" >&2; exit 1; }
podman run --rm --entrypoint pg_dump "$image" --version
run check-config
id=$(run run-now)
say "backup $id"
run list | grep -q "$id"
run verify
run restore --source db --target-db "${db}_restored"
n=$(psql -X -At -h 127.0.0.1 -U postgres -d "${db}_restored" -c 'SELECT count(*) FROM racks')
[ "$n" = 250 ] || { echo "smoke: restored $n rows, expected 250" >&2; exit 1; }
run restore --source etc --to /restore/etc
cmp "$tmp/data/credentials.yml.enc" "$tmp/restore/etc/credentials.yml.enc"
cmp "$tmp/data/sub dir/a:b.txt" "$tmp/restore/etc/sub dir/a:b.txt"

say "daemon and HEALTHCHECK"
podman run -d --name "$daemon_name" --network host \
  -v "$tmp/etc/ccbackup:/etc/ccbackup:ro" -v "$tmp/data:/data:ro" \
  -v "$tmp/secrets:/run/secrets:ro" "$image" >/dev/null
ok=
for _ in $(seq 1 50); do
  if curl -fs -o /dev/null http://127.0.0.1:9187/healthz; then ok=1; break; fi
  sleep 0.2
done
[ -n "$ok" ] || { podman logs "$daemon_name" >&2; echo "smoke: /healthz never answered" >&2; exit 1; }
# Without systemd podman logs that it cannot add healthcheck timers; the
# explicit run below is what counts.
podman healthcheck run "$daemon_name"
podman stop -t 20 "$daemon_name" >/dev/null

say "passed: image build, run-now, list, verify, database and directory restore, daemon /healthz"
