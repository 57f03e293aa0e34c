#!/usr/bin/env bash
# The Rollback of docs/deployment-checklist.md: stop and delete the new worker apps, restore .env from
# .env.backup, and bring back the previous PM2 processes: from ecosystem.config.old.js when the
# old deployment had one at the repository root, else from the PM2 dump deploy.sh saved.
# Backups are read beside the settings file (.env, or REGISTRE_ENV_FILE).
#
# Usage: scripts/rollback.sh [--all]   (--all: pm2 delete all, as the checklist does)
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

if [ "${1-}" = "--all" ]; then
  pm2 stop all >/dev/null 2>&1; pm2 delete all >/dev/null 2>&1; ok "pm2 stop all; pm2 delete all"
else
  for app in registre-workers ocr-pool registre-all-workers registre-api registre-monitor; do
    if [ "$(pm2_status "$app")" != "missing" ]; then pm2 stop "$app" >/dev/null 2>&1; pm2 delete "$app" >/dev/null 2>&1; ok "deleted $app"; fi
  done
fi

if [ -f "$BACKUP_DIR/.env.backup" ]; then cp "$BACKUP_DIR/.env.backup" "$ENV_FILE" && ok ".env restored from .env.backup"; else warn "no .env.backup: .env left as it is"; fi

if [ -f "$BACKUP_DIR/ecosystem.config.old.js" ]; then
  cp "$BACKUP_DIR/ecosystem.config.old.js" "$REPO_ROOT/ecosystem.config.js"
  pm2 start "$REPO_ROOT/ecosystem.config.js" || { fail "pm2 start ecosystem.config.js failed: see pm2 logs --err"; exit 1; }
  ok "old apps started from ecosystem.config.old.js"
elif [ -f "$BACKUP_DIR/pm2-dump-before.pm2" ]; then
  cp "$BACKUP_DIR/pm2-dump-before.pm2" "${PM2_HOME:-$HOME/.pm2}/dump.pm2"
  pm2 resurrect || { fail "pm2 resurrect failed: see pm2 logs --err"; exit 1; }
  ok "previous PM2 processes restored from pm2-dump-before.pm2"
else
  fail "nothing to roll back to: neither ecosystem.config.old.js nor pm2-dump-before.pm2 exists"
  exit 1
fi
pm2 save >/dev/null 2>&1 && ok "pm2 save"
pm2 list
