#!/usr/bin/env bash
# The one-command demo: on a fresh Debian machine, installs what is missing and starts local
# PostgreSQL and Redis, builds the release binaries, creates a demo database and applies the
# migrations, generates a batch of sample registry documents, queues them, runs
# start-all-workers (directory fetcher, tesseract OCR) until the queue is drained, then prints a
# summary (rows per status, pages read, time, an excerpt of extracted text) and stops cleanly.
#
# Usage: scripts/demo.sh [document count, default 12]
# Environment: DEMO_DATABASE (default registre_demo), DEMO_DIR (default: a new mktemp -d folder),
#   REGISTRE_BIN_DIR (use prebuilt binaries, skips the build), DEMO_SKIP_SERVICES=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
source scripts/lib.sh
COUNT="${1:-12}"
DB="${DEMO_DATABASE:-registre_demo}"
# A fresh private folder unless one is named: a fixed /tmp path could be another user's symlink.
DIR="${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/registre-demo.XXXXXX")}"
PG_ADMIN="${DEMO_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"
SERVER_ID="demo-$$"

say() { echo; echo "== $*"; }

if [ "${DEMO_SKIP_SERVICES:-0}" != 1 ]; then
  say "local services (Redis, PostgreSQL, tesseract, poppler)"
  # The demo is for a development machine: local-services.sh may set up trust auth on loopback.
  REGISTRE_DEV_MACHINE=1 bash scripts/local-services.sh
fi

if [ -n "${REGISTRE_BIN_DIR:-}" ]; then
  BIN="$REGISTRE_BIN_DIR"
else
  say "building the release binaries"
  cargo build --release --workspace
  BIN="$ROOT/target/release"
fi

say "demo database $DB"
pgq "$PG_ADMIN/postgres" -X -q -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" -c "CREATE DATABASE \"$DB\""
export PROD_DATABASE_URL="$PG_ADMIN/$DB"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
"$BIN/registrectl" migrate

say "generating $COUNT sample documents in $DIR/documents"
rm -rf "$DIR/documents" "$DIR/storage" "$DIR/documents.tsv"; mkdir -p "$DIR/documents" "$DIR/storage"
python3 scripts/sample-documents.py "$DIR/documents" "$COUNT" > "$DIR/documents.tsv"
while IFS=$'\t' read -r source number circ cadastre; do
  printf "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, cadastre) VALUES ('%s', '%s', '%s', '%s');\n" \
    "$source" "$number" "$circ" "$cadastre"
done < "$DIR/documents.tsv" | pgq "$PROD_DATABASE_URL" -X -q
pgq "$PROD_DATABASE_URL" -X -At -c "SELECT document_source || ': ' || count(*) || ' queued' FROM extraction_queue GROUP BY document_source ORDER BY document_source"

say "running start-all-workers until the queue is drained"
export SERVER_ID REGISTRE_FETCHER=directory REGISTRE_SOURCE_DIR="$DIR/documents" STORAGE_URL="file://$DIR/storage"
export OCR_ENGINE=tesseract QUEUE_POLL_INTERVAL_MS=500 OCR_REBALANCE_INTERVAL_MS=2000 RUST_LOG="${RUST_LOG:-info}"
# A demo machine may be small: size the server to what the demo runs (1 registre + 2 OCR workers).
export SERVER_MAX_CPU="${SERVER_MAX_CPU:-8}" SERVER_MAX_RAM="${SERVER_MAX_RAM:-16}"
started=$(date +%s)
"$BIN/start-all-workers" > "$DIR/workers.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
pending() { pgq "$PROD_DATABASE_URL" -X -At -c "SELECT count(*) FROM extraction_queue WHERE status_id IN (1, 2, 3, 6)"; }
deadline=$((started + ${DEMO_TIMEOUT_S:-600}))
while [ "$(pending)" != 0 ]; do
  if ! kill -0 "$pid" 2>/dev/null; then echo "start-all-workers exited early:"; tail -n 30 "$DIR/workers.log"; exit 1; fi
  if [ "$(date +%s)" -gt "$deadline" ]; then echo "queue not drained in time:"; tail -n 30 "$DIR/workers.log"; exit 1; fi
  sleep 1
done
elapsed=$(( $(date +%s) - started ))
kill -TERM "$pid"
wait "$pid"; code=$?
trap - EXIT
grep -E "STARTING|Started|STARTED SUCCESSFULLY|Capacity plan|needed" "$DIR/workers.log" | sed 's/^/   /' | head -n 20

say "summary"
echo "rows per status:"
pgq "$PROD_DATABASE_URL" -X -c "SELECT q.status_id, s.name AS status, q.document_source, count(*) FROM extraction_queue q LEFT JOIN extraction_status s ON s.id = q.status_id GROUP BY 1, 2, 3 ORDER BY 1, 3"
pages=$(pgq "$PROD_DATABASE_URL" -X -At -c "SELECT coalesce(sum(array_length(string_to_array(file_content, chr(12)), 1)), 0) FROM extraction_queue WHERE file_content IS NOT NULL")
echo "pages read by OCR: $pages"
echo "time to drain the queue: ${elapsed} s"
echo "objects stored: $(find "$DIR/storage" -name '*.pdf' | wc -l) in $DIR/storage"
echo "excerpt of an extracted index (boosted_file_content):"
pgq "$PROD_DATABASE_URL" -X -At -c "SELECT left(boosted_file_content, 400) FROM extraction_queue WHERE document_source = 'index' AND boosted_file_content IS NOT NULL ORDER BY created_at LIMIT 1" | sed 's/^/   | /'
echo "start-all-workers exited with $code after SIGTERM (log: $DIR/workers.log)"
errors=$(pgq "$PROD_DATABASE_URL" -X -At -c "SELECT count(*) FROM extraction_queue WHERE status_id = 4")
[ "$code" = 0 ] && [ "$errors" = 0 ] || { echo "demo finished with problems (exit $code, $errors row(s) in error)"; exit 1; }
echo "✅ demo complete"
