#!/usr/bin/env bash
# Deploys (or redeploys) the workers on this server, automating the deployment checklist:
# Redis answers, .env has the required variables, backups (ecosystem config, .env, PM2 process
# list and dump), release build, migrations, stop/delete the old apps, start the new ones, wait
# until they are online, verify Redis (Step 12), pm2 save. Any failed step stops the deployment
# with a message saying what to do; scripts/rollback.sh puts the previous state back.
#
# Usage: scripts/deploy.sh [--all] [--skip-build] [--skip-migrate]
#   --all           delete every PM2 app first (the checklist's "pm2 delete all"), not only the
#                   worker apps, old and new: registre-worker, registre-ocr, registre-workers,
#                   ocr-pool, registre-all-workers
#   --skip-build    use the binaries already in target/release (or REGISTRE_BIN_DIR)
#   --skip-migrate  do not run registrectl migrate
# Environment: REGISTRE_ENV_FILE (settings file, default .env; backups go beside it),
#   REGISTRE_BIN_DIR (binaries, default target/release), ECOSYSTEM_FILE (default ecosystem/ecosystem.config.js)
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

delete_all=0; build=1; migrate=1
while [ $# -gt 0 ]; do
  case "$1" in
    --all) delete_all=1 ;;
    --skip-build) build=0 ;;
    --skip-migrate) migrate=0 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) fail "unknown argument $1 (see --help)"; exit 2 ;;
  esac
  shift
done
step() { echo; echo "== Step $1"; }
stop_with() { fail "$1"; echo "   $2" >&2; echo "   Nothing else was changed after this step; scripts/rollback.sh restores the previous state." >&2; exit 1; }

BIN_DIR="${REGISTRE_BIN_DIR:-$REPO_ROOT/target/release}"
ECOSYSTEM="${ECOSYSTEM_FILE:-$REPO_ROOT/ecosystem/ecosystem.config.js}"
REQUIRED="REDIS_URL SERVER_MAX_CPU SERVER_MAX_RAM SERVER_RESERVE_CPU_PERCENT SERVER_RESERVE_RAM_PERCENT WORKER_COUNT OCR_WORKER_POOL_SIZE OCR_MIN_INDEX_WORKERS OCR_MIN_ACTE_WORKERS"

step "1: environment variables in .env"
[ -f "$ENV_FILE" ] || stop_with "$ENV_FILE does not exist" "Copy .env.example to .env and fill it in (docs/configuration.md)."
missing=""
for var in $REQUIRED; do
  grep -Eq "^[[:space:]]*$var[[:space:]]*=[[:space:]]*[^[:space:]#]" "$ENV_FILE" || missing="$missing $var"
done
if [ -n "$missing" ]; then
  stop_with ".env is missing:$missing" "Add them to $ENV_FILE (docs/deployment-checklist.md Step 3; defaults in .env.example), then run this script again."
fi
ok "required variables present: $REQUIRED"
export_env_file

step "2: Redis answers"
command -v redis-cli >/dev/null || stop_with "redis-cli is not installed" "sudo apt-get install redis-tools redis-server"
reply="$(rcli ping 2>&1)"
[ "$reply" = "PONG" ] || stop_with "Redis at $(setting REDIS_URL | sed -E 's#//[^@/]*@#//***@#') does not answer PONG ($reply)" "Start it (sudo systemctl start redis) or fix REDIS_URL in .env."
ok "redis-cli ping: PONG"

step "3: backups (in $BACKUP_DIR)"
# The old system's PM2 config (docs/deployment-checklist.md Step 1), if this checkout still has one at its root.
if [ -f "$REPO_ROOT/ecosystem.config.js" ]; then
  cp "$REPO_ROOT/ecosystem.config.js" "$BACKUP_DIR/ecosystem.config.old.js" && ok "ecosystem.config.js saved as ecosystem.config.old.js"
fi
cp "$ENV_FILE" "$BACKUP_DIR/.env.backup" && ok ".env saved as .env.backup"
pm2 list > "$BACKUP_DIR/pm2-processes-before.txt" 2>&1 && ok "PM2 process list saved in pm2-processes-before.txt"
pm2 save --force >/dev/null 2>&1
if cp "${PM2_HOME:-$HOME/.pm2}/dump.pm2" "$BACKUP_DIR/pm2-dump-before.pm2" 2>/dev/null; then
  ok "PM2 dump saved in pm2-dump-before.pm2 (scripts/rollback.sh restores it)"
fi

step "4: build"
if [ "$build" = 1 ]; then
  cargo build --release --workspace --locked || stop_with "the release build failed" "Read the compiler error above; git pull may be incomplete."
  ok "release binaries built in target/release"
fi
for bin in registre-workers ocr-pool start-all-workers registrectl registre-api registre-monitor; do
  [ -x "$BIN_DIR/$bin" ] || stop_with "$BIN_DIR/$bin is missing" "Run cargo build --release --workspace (or drop --skip-build)."
done
ok "binaries present in $BIN_DIR"

step "5: migrations"
if [ "$migrate" = 1 ]; then
  (cd "$REPO_ROOT" && "$BIN_DIR/registrectl" migrate) || stop_with "registrectl migrate failed" "Check the database URLs in .env (docs/configuration.md) and that the database answers."
fi

step "6: stop and delete the old worker apps"
if [ "$delete_all" = 1 ]; then
  pm2 stop all >/dev/null 2>&1; pm2 delete all >/dev/null 2>&1
  ok "pm2 stop all; pm2 delete all"
else
  # registre-api, registre-monitor: the seed ran Node apps of those names; ours replace them.
  for app in registre-worker registre-ocr registre-workers ocr-pool registre-all-workers registre-api registre-monitor; do
    if [ "$(pm2_status "$app")" != "missing" ]; then
      pm2 stop "$app" >/dev/null 2>&1; pm2 delete "$app" >/dev/null 2>&1 && ok "deleted $app"
    fi
  done
fi

step "7: start the new workers"
pm2 start "$ECOSYSTEM" || stop_with "pm2 start $ECOSYSTEM failed" "Check the file (Step 6 of docs/deployment.md) and pm2 logs --err."
apps="$(node -e 'console.log(require(process.argv[1]).apps.map(a => a.name).join(" "))' "$ECOSYSTEM")"

step "8: wait until the apps are online"
for _ in $(seq 1 60); do
  all_online=1
  for app in $apps; do [ "$(pm2_status "$app")" = "online" ] || all_online=0; done
  [ "$all_online" = 1 ] && break
  sleep 1
done
[ "$all_online" = 1 ] || stop_with "not every app is online: $(for a in $apps; do printf '%s=%s ' "$a" "$(pm2_status "$a")"; done)" "pm2 logs --err --lines 100; a configuration error is one line naming the variable."
ok "online: $apps"

step "9: verify Redis coordination (docs/deployment-checklist.md Step 12)"
verified=0
report="$(mktemp)"
for _ in $(seq 1 30); do
  if "$REPO_ROOT/scripts/verify-deployment.sh" --apps "$apps" > "$report" 2>&1; then verified=1; break; fi
  sleep 2
done
cat "$report"; rm -f "$report"
[ "$verified" = 1 ] || stop_with "the deployment check failed" "See the lines above; docs/runbook.md explains each one."

step "10: save the PM2 process list"
pm2 save || stop_with "pm2 save failed" "Run pm2 save by hand so the workers restart on reboot."
ok "deployment complete: watch pm2 logs for a few minutes (docs/deployment-checklist.md Step 14)"
