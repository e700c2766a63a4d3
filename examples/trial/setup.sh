#!/usr/bin/env bash
# Prepares the self-contained trial of examples/docker-compose.s3.yml: the
# secret files the compose file names and a key pair for signing and
# encryption. Run it once, from anywhere; it never overwrites a file.
#
#   bash examples/trial/setup.sh
#   docker compose -f examples/docker-compose.s3.yml --profile standin up -d --build
#
# Keys come from `ccbackup keys generate` (the binary on PATH, or the image
# built from this repository when there is none).
set -euo pipefail
cd "$(dirname "$0")"

random() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }
umask 077
mkdir -p secrets
[ -s secrets/db-password ] || random > secrets/db-password
[ -s secrets/s3-access-key-id ] || printf 'ccbackup' > secrets/s3-access-key-id
[ -s secrets/s3-secret-access-key ] || random > secrets/s3-secret-access-key

if [ ! -e keys ]; then
  if command -v ccbackup >/dev/null; then
    ccbackup keys generate keys
  else
    docker compose -f ../docker-compose.s3.yml build ccbackup
    docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/trial" --entrypoint ccbackup \
      ccbackup:latest keys generate /trial/keys
  fi
fi
echo "trial: secrets in $PWD/secrets, keys in $PWD/keys (keep keys/age-identity.txt safe: it decrypts the backups)"
