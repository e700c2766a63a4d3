# ccbackup container image: the binary, the PostgreSQL client programs,
# CA certificates and a service user.
#
#   docker build -t ccbackup .
#
# The default image is Debian 13 (trixie) with Debian's own
# postgresql-client-17: its pg_dump dumps PostgreSQL 15, 16 and 17 servers,
# and ccbackup restores its archives onto older servers through SQL (see
# README, Restore). This is the image scripts/container-smoke.sh builds and
# tests, against real 15 and 16 servers.
#
# Build arguments:
#   BINARY=build      compile ccbackup in the Rust stage below (default)
#   BINARY=prebuilt   copy dist/ccbackup, built and stripped on the host
#                     beforehand (for machines that cannot pull the Rust
#                     image; scripts/container-smoke.sh does this)
#   PG_CLIENTS=debian Debian's postgresql-client-17 (default)
#   PG_CLIENTS=pgdg   clients from apt.postgresql.org instead, the majors in
#                     PGDG_MAJORS (default "16 15"): exact-version tools for
#                     each server, or a client newer than 17 for an 18+
#                     server (PGDG_MAJORS=18). Needs network access to
#                     apt.postgresql.org at build time.
#   UID/GID           the service user's ids (default 10001)
#
# Privileges: the image starts as root so that ccbackup can read docker
# secrets, which keep their host owner and mode (Concertim's are root-owned
# 0600). ccbackup reads its configuration and every secret file, then
# switches to the `ccbackup` user for good (CCBACKUP_USER) before any work;
# see README, "Privileges in the container".
#
# Needs BuildKit (the default builder since Docker 23) or podman/buildah,
# which skip the stage that BINARY does not select.

ARG BINARY=build

FROM docker.io/library/rust:1.95-trixie AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The release profile keeps line tables (profiling the benchmarks needs
# them); the image ships the binary without them. The debug info stays
# available beside it: `docker build --target debuginfo --output dist .`
# writes dist/ccbackup.debug, which gdb and perf find through the binary's
# debuglink.
RUN cargo build --release --locked \
    && objcopy --only-keep-debug target/release/ccbackup /ccbackup.debug \
    && objcopy --strip-debug --strip-unneeded --add-gnu-debuglink=/ccbackup.debug \
         target/release/ccbackup /ccbackup \
    && chmod 0755 /ccbackup

FROM scratch AS debuginfo
COPY --from=build /ccbackup.debug /ccbackup.debug

FROM scratch AS prebuilt
COPY dist/ccbackup /ccbackup

# hadolint ignore=DL3006
FROM ${BINARY} AS binary

FROM docker.io/library/debian:trixie-slim AS runtime
ARG PG_CLIENTS=debian
ARG PGDG_MAJORS="16 15"
ARG UID=10001
ARG GID=10001
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008,SC2086,SC2046
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && case "$PG_CLIENTS" in \
       debian) apt-get install -y --no-install-recommends postgresql-client-17 ;; \
       pgdg) apt-get install -y --no-install-recommends curl \
             && install -d /usr/share/postgresql-common/pgdg \
             && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
                  https://www.postgresql.org/media/keys/ACCC4CF8.asc \
             && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt trixie-pgdg main" \
                  > /etc/apt/sources.list.d/pgdg.list \
             && apt-get update \
             && apt-get install -y --no-install-recommends $(printf 'postgresql-client-%s ' $PGDG_MAJORS) \
             && apt-get purge -y curl && apt-get autoremove -y ;; \
       *) echo "PG_CLIENTS must be debian or pgdg, not $PG_CLIENTS" >&2; exit 1 ;; \
       esac \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid "$GID" ccbackup \
    && useradd --system --uid "$UID" --gid "$GID" --home-dir /var/lib/ccbackup \
         --create-home --shell /usr/sbin/nologin ccbackup \
    && install -d -o ccbackup -g ccbackup -m 0700 /var/tmp/ccbackup \
    && install -d /etc/ccbackup
COPY --from=binary /ccbackup /usr/local/bin/ccbackup

# No USER: the process starts as root and drops to CCBACKUP_USER itself,
# after reading the secrets (a restore run sets CCBACKUP_USER=root instead).
WORKDIR /var/lib/ccbackup
ENV CCBACKUP_CONFIG=/etc/ccbackup/config.yaml \
    CCBACKUP_USER=ccbackup \
    TMPDIR=/var/tmp/ccbackup
EXPOSE 9465
# Asks /healthz at the configuration's daemon.listen (default
# 0.0.0.0:9465), so moving the port in the configuration moves the check.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["ccbackup", "healthcheck"]
ENTRYPOINT ["ccbackup"]
CMD ["daemon"]
