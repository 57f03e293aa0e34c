#!/usr/bin/env bash
# The soak (issue 25, docs/soak.md): the whole fleet as PM2 runs it, from ecosystem/ecosystem.config.js,
# fed at a steady rate for N minutes with one bad row in twenty, one worker process kill -9'd every
# M minutes (PM2 brings it back), sampled every 30 s by soak-sampler (processes, browsers, OCR
# subprocesses, temp files, Redis keys, Postgres connections, rows). At the end: a PNG per series
# family, the first/last/slope table, and the checks; exit 1 when one fails, 2 on bad arguments.
#
# Everything is private, so an operator's apps of the same names are never touched: PM2_HOME,
# the database (created and dropped), a redis-server on its own port, SERVER_ID, the API's port,
# TMPDIR, and a SOAK_RUN marker in every process's environment (how the sampler finds the run's
# Chromium, chromedriver and tesseract processes, and only those).
#
# Usage: scripts/soak.sh [--minutes N] [--docs-per-minute R] [--kill-every M] [--sample-every S]
#                        [--drain-minutes D] [--no-slope-check]
# Environment: SOAK_FETCHER=registry|directory|http (registre-workers' fetcher; default registry: the
#   browser fetcher against registry-site-sim serving the generated documents, one worker_accounts
#   login per worker plus a spare for a killed worker's lease; directory: the documents folder;
#   http: that folder over HTTP),
#   SOAK_DIR (work folder; default a new mktemp -d), REGISTRE_BIN_DIR (default target/release),
#   SOAK_POSTGRES_URL (admin URL, default postgres://postgres@127.0.0.1:5432), SOAK_KEEP=1 (keep the
#   database and the work folder's logs after the run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
source scripts/lib.sh

MINUTES=60 RATE=20 KILL_EVERY=10 SAMPLE_EVERY=30 DRAIN_MINUTES=10 SLOPE=1
bad_args() { echo "soak.sh: $*" >&2; exit 2; }
number() { [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] && awk -v v="$2" 'BEGIN { exit !(v > 0) }' || bad_args "$1 must be a positive number, not '$2'"; echo "$2"; }
# calc EXPR: integer (rounded down) or, with a scale, decimal arithmetic in awk.
calc() { awk "BEGIN { printf \"%d\", $1 }"; }
calc3() { awk "BEGIN { printf \"%.3f\", $1 }"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$(number "$1" "${2-}")"; shift 2 ;;
    --docs-per-minute) RATE="$(number "$1" "${2-}")"; shift 2 ;;
    --kill-every) KILL_EVERY="$(number "$1" "${2-}")"; shift 2 ;;
    --sample-every) SAMPLE_EVERY="$(number "$1" "${2-}")"; shift 2 ;;
    --drain-minutes) DRAIN_MINUTES="$(number "$1" "${2-}")"; shift 2 ;;
    --no-slope-check) SLOPE=0; shift ;;
    *) bad_args "unknown argument '$1' (usage: soak.sh [--minutes N] [--docs-per-minute R] [--kill-every M] [--sample-every S] [--drain-minutes D] [--no-slope-check])" ;;
  esac
done
FETCHER="${SOAK_FETCHER:-registry}"
case "$FETCHER" in directory|http|registry) ;; *) bad_args "SOAK_FETCHER must be directory, http or registry, not '$FETCHER'" ;; esac

BIN="${REGISTRE_BIN_DIR:-$ROOT/target/release}"
for b in registre-workers ocr-pool registre-api registre-monitor registrectl gemini-stand-in soak-sampler; do
  [ -x "$BIN/$b" ] || bad_args "$BIN/$b is missing: build first (cargo build --release --workspace) or set REGISTRE_BIN_DIR"
done
if [ "$FETCHER" = registry ]; then
  SIM="$(ls "$BIN"/registry-site-sim* 2>/dev/null | head -n1 || true)"
  [ -n "$SIM" ] || bad_args "SOAK_FETCHER=registry needs the registry site simulator binary in $BIN"
fi

WORK="${SOAK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/registre-soak.XXXXXX")}"
mkdir -p "$WORK"/{tmp,documents,storage,logs}
RUN="soak-$$-$(date +%s)"
PG_ADMIN="${SOAK_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"
DB="soak_$$_$(date +%s)"
DB_URL="$PG_ADMIN/$DB"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
REDIS_PORT="$(free_port)" API_PORT="$(free_port)" GEMINI_PORT="$(free_port)" HTTP_PORT="$(free_port)"
REDIS="redis://127.0.0.1:$REDIS_PORT"
GEMINI_KEY="soak-key-$RUN"
MARKER="SOAK-REFUSE-$RUN"
export PM2_HOME="$WORK/pm2"
APPS="registre-workers,ocr-pool,registre-api,registre-monitor"

say() { echo "== $(date -u +%H:%M:%S) $*"; }
pids=()
cleanup() {
  set +e
  pm2 kill >/dev/null 2>&1
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "${SOAK_KEEP:-0}" != 1 ]; then
    pgq "$PG_ADMIN/postgres" -X -q -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1
    rm -rf "$WORK/tmp" "$WORK/documents" "$WORK/storage" "$WORK/redis" "$WORK/pm2"
  fi
}
trap cleanup EXIT

say "soak $RUN: $MINUTES min, $RATE documents/min, a kill every $KILL_EVERY min, a sample every $SAMPLE_EVERY s, fetcher $FETCHER; work folder $WORK"

# An operator's .env in the repository would be loaded by the binaries (PM2's cwd is the
# repository): every variable it sets that the soak does not is emptied (empty means unset).
if [ -f "$ROOT/.env" ]; then
  for name in $(sed -n 's/^[[:space:]]*\([A-Z0-9_]\+\)[[:space:]]*=.*/\1/p' "$ROOT/.env"); do export "$name="; done
fi

# Private Redis and database.
mkdir -p "$WORK/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/redis" > "$WORK/logs/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "private redis-server did not start:"; cat "$WORK/logs/redis.log"; exit 1; }
pgq "$PG_ADMIN/postgres" -X -q -c "CREATE DATABASE \"$DB\""
PROD_DATABASE_URL="$DB_URL" REDIS_URL="$REDIS" "$BIN/registrectl" migrate > "$WORK/logs/migrate.log" 2>&1 || { cat "$WORK/logs/migrate.log"; exit 1; }
# The completion audit: one record per applied completion, so a row completed twice shows.
pgq "$DB_URL" -X -q -f tests/tests/common/completion_audit.sql

# The documents, written ahead (the fetcher's layout, and the simulator's catalog); the feeder
# queues them at the steady rate.
TOTAL="$(calc "$MINUTES * $RATE + 0.999")"
python3 scripts/sample-documents.py "$WORK/documents" "$TOTAL" > "$WORK/documents.tsv"

# The Gemini stand-in (refuses the documents carrying the marker) and the fetcher's source.
"$BIN/gemini-stand-in" --port "$GEMINI_PORT" --keys "$GEMINI_KEY" --rpm 200 --refuse-marker "$MARKER" > "$WORK/logs/gemini.out" 2> "$WORK/logs/gemini.log" &
pids+=($!)
# SOAK_RUN marks the fleet's processes only: it is given to the PM2 daemon (below), not to this
# script's own helpers (stand-in, redis-server, feeder, sampler).
export TMPDIR="$WORK/tmp" REGISTRE_BIN_DIR="$BIN"
export SERVER_ID="$RUN" REDIS_URL="$REDIS" PROD_DATABASE_URL="$DB_URL" STORAGE_URL="file://$WORK/storage"
export OCR_ENGINE=gemini GEMINI_API_KEY="$GEMINI_KEY" GEMINI_API_BASE_URL="http://127.0.0.1:$GEMINI_PORT/v1beta"
export OCR_RATE_LIMIT_NAME="$RUN" OCR_RATE_LIMIT_RPM=150 API_HOST=127.0.0.1 API_PORT="$API_PORT"
# Two registre workers: one browser fetches 16 to 18 documents a minute on a 2-core machine, less
# than the default rate, and a backlog that grows all hour is a lack of capacity, not a leak. The
# budget holds them (3 vCPU each with the browser) and the pool's two OCR workers (1.5 + 1) with
# room to spare: 16 × 0.8 usable = 12.8 vCPU.
export SERVER_MAX_CPU=16 SERVER_MAX_RAM=16 WORKER_COUNT=2 OCR_WORKER_POOL_SIZE=2 OCR_REBALANCE_INTERVAL_MS=5000
export QUEUE_LEASE_TTL_MS=30000 QUEUE_MAX_ATTEMPTS=3 QUEUE_BACKOFF_BASE_MS=500 QUEUE_BACKOFF_MAX_MS=5000
export REGISTRE_SHUTDOWN_GRACE_MS=5000 OCR_SHUTDOWN_GRACE_MS=5000 MONITOR_INTERVAL_MS=15000 RUST_LOG=info
case "$FETCHER" in
  directory) export REGISTRE_FETCHER=directory REGISTRE_SOURCE_DIR="$WORK/documents" ;;
  http)
    python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1 --directory "$WORK/documents" > "$WORK/logs/http.log" 2>&1 &
    pids+=($!)
    export REGISTRE_FETCHER=http REGISTRE_URL_TEMPLATE="http://127.0.0.1:$HTTP_PORT/{source}/{document_number}.pdf" ;;
  registry)
    # The simulator (P's shape) serves the generated documents as its catalog and accepts one
    # login per worker, plus a spare: a killed worker's account stays leased until its lease
    # (QUEUE_LEASE_TTL_MS) runs out. The logins are the worker_accounts rows the fetcher leases.
    site_args=(--shape p --port "$HTTP_PORT" --documents "$WORK/documents")
    for n in $(seq $((WORKER_COUNT + 1))); do
      site_args+=(--account "soak-$n:pw-$RUN-$n")
      pgq "$DB_URL" -X -q -c "INSERT INTO worker_accounts (username, password) VALUES ('soak-$n', 'pw-$RUN-$n')"
    done
    "$SIM" "${site_args[@]}" > "$WORK/logs/site.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [ -s "$WORK/logs/site.log" ] && break; sleep 0.1; done
    base="$(head -n1 "$WORK/logs/site.log")"
    [[ "$base" == http* ]] || { echo "registry-site-sim did not start:"; cat "$WORK/logs/site.log"; exit 1; }
    export REGISTRE_FETCHER=registry REGISTRE_BASE_URL="$base" ;;
esac

say "starting the fleet under PM2 ($PM2_HOME): ${APPS//,/ }"
SOAK_RUN="$RUN" pm2 start ecosystem/ecosystem.config.js > "$WORK/logs/pm2-start.log" 2>&1 || { cat "$WORK/logs/pm2-start.log"; exit 1; }
for _ in $(seq 600); do
  missing=0
  for app in ${APPS//,/ }; do [ "$(pm2_status "$app")" = online ] || missing=1; done
  [ "$missing" = 0 ] && break
  sleep 0.5
done
[ "$missing" = 0 ] || { echo "the fleet did not come online"; pm2 jlist | head -c 2000; exit 1; }

date +%s > "$WORK/started"
: > "$WORK/kills.csv"
: > "$WORK/fed.tsv"
rm -f "$WORK/samples.csv"
SAMPLER=("$BIN/soak-sampler" sample --dir "$WORK" --pm2-home "$PM2_HOME" --apps "$APPS" --marker "$RUN" --redis "$REDIS"
  --database "$DB_URL" --folder "tmp=$WORK/tmp" --stored "$WORK/storage")
"${SAMPLER[@]}" --every "$SAMPLE_EVERY" > "$WORK/logs/sampler.log" 2>&1 &
sampler=$!
pids+=($sampler)

# The feeder: one row every 60/R s; one of every twenty is bad, in turn an unknown lot (no
# document anywhere: the file is removed, and the simulator answers that the lot or acte does not
# exist), a corrupt PDF, and a document the stand-in refuses (index or acte: plans are not read by
# OCR; a plan in that slot gets a corrupt PDF instead).
feed() {
  local i=0 k kind source number circ cadastre file
  local interval; interval="$(calc3 "60 / $RATE")"
  while IFS=$'\t' read -r source number circ cadastre; do
    kind=good
    file="$WORK/documents/$source/$number.pdf"
    # The bad row's place in its twenty moves with its kind, so each kind falls on a source that
    # can show it (the documents cycle index, index, acte, plan): unknown at 19 (a plan), corrupt
    # at 18 (an acte), refused at 17 (an index; a plan is never read by OCR).
    k=$(( (i / 20) % 3 ))
    if [ $((i % 20)) = $((19 - k)) ]; then
      case $k in
        0) kind=unknown; rm -f "$file"; [ "$FETCHER" = registry ] || number="${number}-inconnu" ;;
        1) kind=corrupt; head -c 3000 /dev/urandom > "$file" ;;
        2) if [ "$source" = plan_cadastraux ]; then kind=corrupt; head -c 3000 /dev/urandom > "$file"
           else kind=refused; printf '%%%s\n' "$MARKER" >> "$file"; fi ;;
      esac
    fi
    id="$(pgq "$DB_URL" -X -At -q -c "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, cadastre)
          VALUES ('$source', '$number', '$circ', '$cadastre') RETURNING id")"
    printf '%s\t%s\n' "$id" "$kind" >> "$WORK/fed.tsv"
    i=$((i + 1))
    sleep "$interval"
  done < "$WORK/documents.tsv"
}
feed > "$WORK/logs/feeder.log" 2>&1 &
feeder=$!
pids+=($feeder)

# The killer: every M minutes, kill -9 one worker process, registre-workers and ocr-pool in turn.
started="$(cat "$WORK/started")"
end=$(( started + $(calc "$MINUTES * 60") ))
kill_period="$(calc "$KILL_EVERY * 60")"
next_kill=$(( started + kill_period ))
turn=0
while [ "$(date +%s)" -lt "$end" ]; do
  if [ "$(date +%s)" -ge "$next_kill" ] && [ "$next_kill" -lt "$end" ]; then
    if [ $((turn % 2)) = 0 ]; then app=registre-workers; else app=ocr-pool; fi
    pid="$(cat "$PM2_HOME"/pids/"$app"-*.pid 2>/dev/null | head -n1)"
    if [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; then
      echo "$(date +%s),$app,$pid" >> "$WORK/kills.csv"
      say "kill -9 $app (pid $pid)"
    fi
    turn=$((turn + 1))
    next_kill=$(( next_kill + kill_period ))
  fi
  sleep 1
done
wait "$feeder" 2>/dev/null || true
fed="$(wc -l < "$WORK/fed.tsv")"
say "fed $fed rows; waiting for every row to be final (up to $DRAIN_MINUTES min)"
drain_end=$(( $(date +%s) + $(calc "$DRAIN_MINUTES * 60") ))
while :; do
  final="$(pgq "$DB_URL" -X -At -c "SELECT count(*) FROM extraction_queue WHERE status_id IN (4, 5)")"
  [ "$final" -ge "$fed" ] && break
  [ "$(date +%s)" -ge "$drain_end" ] && { say "$final of $fed rows final when the drain time ran out"; break; }
  sleep 2
done
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
"${SAMPLER[@]}" --once --phase drained >> "$WORK/logs/sampler.log" 2>&1 || true
say "stopping the fleet (pm2 kill)"
pm2 kill > "$WORK/logs/pm2-kill.log" 2>&1 || true
"${SAMPLER[@]}" --once --phase stopped --until-quiet 30 >> "$WORK/logs/sampler.log" 2>&1 || true
restarts="$(grep -c "" "$WORK/kills.csv" || true)"

say "report"
report_args=(report --dir "$WORK" --database "$DB_URL")
[ "$SLOPE" = 1 ] && report_args+=(--check-slope)
status=0
"$BIN/soak-sampler" "${report_args[@]}" || status=1
violations="$(grep -c VIOLATION "$WORK/logs/gemini.log" || true)"
if [ "$violations" != 0 ]; then
  echo "❌ the Gemini stand-in saw $violations request(s) the real API would refuse:"; grep VIOLATION "$WORK/logs/gemini.log" | head -n 5
  status=1
fi
echo "kills: $restarts; samples: $WORK/samples.csv; plots: $WORK/plots/; logs: $WORK/logs/ and PM2's"
cp -r "$PM2_HOME/logs" "$WORK/logs/pm2" 2>/dev/null || true
exit "$status"
