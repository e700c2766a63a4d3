# ccbackup container image: the binary, pg_dump/pg_restore/pg_dumpall for
# PostgreSQL 16 and 15, CA certificates, a non-root user.
#
#   docker build -t ccbackup .
#
# Build arguments:
#   BINARY=build      compile ccbackup in the Rust stage below (default)
#   BINARY=prebuilt   copy dist/ccbackup, built on the host beforehand (for
#                     machines that cannot pull the Rust image; see
#                     scripts/container-smoke.sh)
#   PG_CLIENTS=pgdg   PostgreSQL 16 and 15 clients from apt.postgresql.org
#                     (default; Debian 12 itself ships only client 15)
#   PG_CLIENTS=debian Debian's client 15 only (offline smoke tests; it
#                     cannot dump a PostgreSQL 16 server)
#   UID/GID           the runtime user's ids (default 10001)
#
# Needs BuildKit (the default builder since Docker 23) or podman/buildah,
# which skip the stage that BINARY does not select.

ARG BINARY=build

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked \
    && install -m 0755 target/release/ccbackup /ccbackup

FROM scratch AS prebuilt
COPY dist/ccbackup /ccbackup

# hadolint ignore=DL3006
FROM ${BINARY} AS binary

FROM docker.io/library/debian:bookworm-slim AS runtime
ARG PG_CLIENTS=pgdg
ARG UID=10001
ARG GID=10001
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && if [ "$PG_CLIENTS" = pgdg ]; then \
         install -d /usr/share/postgresql-common/pgdg \
         && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
              https://www.postgresql.org/media/keys/ACCC4CF8.asc \
         && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
              > /etc/apt/sources.list.d/pgdg.list \
         && apt-get update \
         && apt-get install -y --no-install-recommends postgresql-client-16 postgresql-client-15; \
       else \
         apt-get install -y --no-install-recommends postgresql-client-15; \
       fi \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid "$GID" ccbackup \
    && useradd --system --uid "$UID" --gid "$GID" --home-dir /var/lib/ccbackup \
         --create-home --shell /usr/sbin/nologin ccbackup \
    && install -d -o ccbackup -g ccbackup /etc/ccbackup /var/tmp/ccbackup
COPY --from=binary /ccbackup /usr/local/bin/ccbackup

USER ${UID}:${GID}
WORKDIR /var/lib/ccbackup
ENV CCBACKUP_CONFIG=/etc/ccbackup/config.yaml \
    TMPDIR=/var/tmp/ccbackup
EXPOSE 9187
# /healthz answers while the daemon's HTTP server runs (daemon.listen,
# default 0.0.0.0:9187).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9187/healthz"]
ENTRYPOINT ["ccbackup"]
CMD ["daemon"]
