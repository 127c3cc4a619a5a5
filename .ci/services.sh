#!/usr/bin/env bash
# Installs and starts what the production-mode suite needs on a Debian 12 machine:
# PostgreSQL 15 with pgvector (built from Debian's source package), Redis, and Chromium.
# Idempotent: every step checks before it acts. Run as root.
set -euo pipefail

log() { printf '\n== %s\n' "$*"; }
export DEBIAN_FRONTEND=noninteractive

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v pg_ctlcluster >/dev/null || need_apt+=(postgresql)
[ -d /usr/include/postgresql/15/server ] || need_apt+=(postgresql-server-dev-15)
command -v make >/dev/null || need_apt+=(make)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PGV=$(ls /usr/share/postgresql/15/extension/vector.control 2>/dev/null || true)
if [ -z "$PGV" ]; then
  log "building pgvector from Debian's source package"
  S=$(mktemp -d); mkdir -p "$S/lists/partial"
  URI=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$URI" > "$S/trixie-src.sources"
  A=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$S" -o "Dir::State::Lists=$S/lists")
  apt-get "${A[@]}" update -qq
  (cd "$S" && apt-get "${A[@]}" source --download-only pgvector >/dev/null)
  tar xzf "$S"/pgvector_*.orig.tar.gz -C "$S"
  make -s -C "$S"/pgvector-*/ OPTFLAGS="" >/dev/null
  make -s -C "$S"/pgvector-*/ install >/dev/null
fi

if ! pg_isready -q; then
  log "starting PostgreSQL"
  [ -d /etc/postgresql/15/main ] || pg_createcluster 15 main
  pg_ctlcluster --skip-systemctl-redirect 15 main start
  for _ in $(seq 30); do pg_isready -q && break; sleep 1; done
fi
su postgres -c "psql -qc 'CREATE EXTENSION IF NOT EXISTS vector' template1" >/dev/null
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='tumorsite'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE tumorsite LOGIN SUPERUSER PASSWORD 'tumorsite'\""
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='tumorsite'\"" | grep -q 1 \
  || su postgres -c "createdb -O tumorsite tumorsite"

if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 30); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 1; done
fi
log "services ready: $(pg_isready) / redis $(redis-cli -h 127.0.0.1 ping)"
