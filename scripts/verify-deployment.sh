#!/usr/bin/env bash
# Verifies a running deployment like docs/deployment-checklist.md Steps 10-12 and post-deployment check 1:
# the PM2 apps are online, Redis shows every worker's capacity lease and the OCR pool
# allocation, and the queue counts per status and source. Exits non-zero when something is off.
#
# Usage: scripts/verify-deployment.sh [--apps "registre-workers ocr-pool"]
# By default the apps are those of Option 2, or registre-all-workers when that one is running.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
export_env_file

apps=""
while [ $# -gt 0 ]; do
  case "$1" in
    --apps) apps="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) fail "unknown argument $1"; exit 2 ;;
  esac
done
problems=0
problem() { fail "$*"; problems=$((problems + 1)); }

echo "== Step 10: PM2 apps"
if [ -z "$apps" ]; then
  if [ "$(pm2_status registre-all-workers)" != "missing" ]; then apps="registre-all-workers"; else apps="registre-workers ocr-pool"; fi
fi
for app in $apps; do
  status="$(pm2_status "$app")"
  if [ "$status" = "online" ]; then ok "$app is online"; else problem "$app is $status (pm2 logs $app --err --lines 100)"; fi
done

echo "== Step 12: Redis coordination"
if ! rcli ping 2>/dev/null | grep -q PONG; then
  problem "Redis does not answer at REDIS_URL: start it (sudo systemctl start redis) or fix REDIS_URL"
else
  cap="$(capacity_prefix)"; pool="$(pool_prefix)"
  cpu="$(rcli GET "$cap:cpu:allocated")"; ram="$(rcli GET "$cap:ram:allocated")"
  echo "   $cap:cpu:allocated = ${cpu:-(none)}"
  echo "   $cap:ram:allocated = ${ram:-(none)}"
  expected_workers=0
  case " $apps " in *" registre-workers "*|*" registre-all-workers "*) expected_workers=$((expected_workers + $(setting WORKER_COUNT 1))) ;; esac
  case " $apps " in *" ocr-pool "*|*" registre-all-workers "*) expected_workers=$((expected_workers + $(setting OCR_WORKER_POOL_SIZE 2))) ;; esac
  workers="$(rcli HLEN "$cap:workers")"
  echo "   $cap:workers: ${workers:-0} worker(s) holding capacity, $expected_workers expected"
  rcli HGETALL "$cap:workers" | paste - - | sed 's/^/     /'
  if [ "${workers:-0}" -lt "$expected_workers" ]; then
    problem "$((expected_workers - ${workers:-0})) worker(s) hold no capacity lease: a worker is missing or waiting for capacity (pm2 logs; docs/runbook.md)"
  else
    ok "every expected worker holds its capacity lease"
  fi
  case "${cpu:-0}" in 0|"") [ "$expected_workers" -gt 0 ] && problem "$cap:cpu:allocated is ${cpu:-unset}: no worker holds capacity" ;; esac
  case " $apps " in
    *" ocr-pool "*|*" registre-all-workers "*)
      allocation="$(rcli GET "$pool:allocation")"
      if [ -n "$allocation" ]; then ok "$pool:allocation = $allocation"; else problem "$pool:allocation is missing: the OCR pool manager has not published its split"; fi ;;
  esac
fi

echo "== registre-api: /ready"
if [ "$(pm2_status registre-api)" != "missing" ]; then
  api_host="$(setting API_HOST 127.0.0.1)"; api_port="$(setting API_PORT 3000)"
  [ "$api_host" = "0.0.0.0" ] && api_host=127.0.0.1
  ready=""
  # The app may still be starting: a few tries, a second apart.
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    ready="$(curl -s -m 5 -w ' HTTP %{http_code}' "http://$api_host:$api_port/ready" 2>&1)"
    case "$ready" in *"HTTP 200") break ;; esac
    sleep 1
  done
  case "$ready" in
    *"HTTP 200") ok "registre-api /ready: $ready" ;;
    *) problem "registre-api /ready on $api_host:$api_port answered: ${ready:-nothing} (pm2 logs registre-api; docs/operations.md)" ;;
  esac
else
  echo "   registre-api is not deployed (ecosystem/ecosystem.config.js runs it with either option)"
fi

echo "== registre-monitor"
monitor_status="$(pm2_status registre-monitor)"
case "$monitor_status" in
  online) ok "registre-monitor online (stuck-row repair and alerts: pm2 logs registre-monitor)" ;;
  missing) echo "   registre-monitor is not deployed (ecosystem/ecosystem.config.js runs it with either option)" ;;
  *) problem "registre-monitor is $monitor_status (pm2 logs registre-monitor --err; docs/operations.md)" ;;
esac

echo "== Queue: rows per status and source"
for env in PROD STAGING DEV; do
  url="$(setting "${env}_DATABASE_URL")"
  [ "$env" = PROD ] && [ -z "$url" ] && url="$(setting DATABASE_URL)"
  if [ -n "$url" ]; then
    echo "   $env:"
    errors="$(mktemp)"
    if ! pgq "$url" -X -q -c "SELECT status_id, document_source, count(*) AS count FROM extraction_queue GROUP BY status_id, document_source ORDER BY status_id, document_source" 2>"$errors"; then
      problem "$env queue unreadable: $(head -n1 "$errors") (run registrectl migrate if extraction_queue is missing)"
    fi
    rm -f "$errors"
  elif [ -n "$(setting "${env}_SUPABASE_URL")" ]; then
    echo "   $env: Supabase REST only; see the Supabase SQL editor (docs/deployment.md)"
  fi
done

if [ "$problems" -gt 0 ]; then
  fail "deployment check: $problems problem(s)"
  exit 1
fi
ok "deployment check passed"
