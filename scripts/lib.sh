# Shared helpers of the deployment scripts (sourced, not run): settings from .env with the
# environment winning (as the binaries read them), key names, PM2 queries, messages.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The settings file (the checklist's .env); REGISTRE_ENV_FILE points elsewhere. Backups are
# written beside it.
ENV_FILE="${REGISTRE_ENV_FILE:-$REPO_ROOT/.env}"
BACKUP_DIR="$(cd "$(dirname "$ENV_FILE")" 2>/dev/null && pwd || echo "$REPO_ROOT")"

ok()   { echo "✅ $*"; }
warn() { echo "⚠️  $*"; }
fail() { echo "❌ $*" >&2; }

# env_file_value NAME: the value .env gives NAME (last assignment, comment and quotes removed).
env_file_value() {
  [ -f "$ENV_FILE" ] || return 0
  sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$ENV_FILE" | tail -n1 | sed 's/[[:space:]]\+#.*$//; s/^["'\'']\(.*\)["'\'']$/\1/'
}

# setting NAME [DEFAULT]: the environment's value, else .env's, else DEFAULT.
setting() {
  local name="$1" default="${2-}" value=""
  if [ -n "${!name-}" ]; then value="${!name}"; else value="$(env_file_value "$name")"; fi
  echo "${value:-$default}"
}

# export_env_file: when the settings file is not the repository's .env (which the binaries load
# by themselves), export its variables so registrectl and PM2's apps see them.
export_env_file() {
  [ "$ENV_FILE" = "$REPO_ROOT/.env" ] && return 0
  local name
  for name in $(sed -n 's/^[[:space:]]*\([A-Z0-9_]\+\)[[:space:]]*=.*/\1/p' "$ENV_FILE"); do
    [ -n "${!name-}" ] || export "$name=$(env_file_value "$name")"
  done
}

# The Redis key prefix of this server's capacity and pool keys (SERVER_ID makes a hash tag).
capacity_prefix() { local id; id="$(setting SERVER_ID)"; if [ -n "$id" ]; then echo "server:{$id}"; else echo "server"; fi; }
pool_prefix()     { local id; id="$(setting SERVER_ID)"; if [ -n "$id" ]; then echo "worker_pool:{$id}"; else echo "worker_pool"; fi; }

# Passwords never go on a command line (any user of the server can read it with ps): the URLs
# given to redis-cli and psql carry no password, which goes through REDISCLI_AUTH / PGPASSWORD.
# url_user URL / url_password URL: the userinfo's parts, percent-decoded; url_host_part URL: the
# URL with no userinfo at all (redis-cli would take a lone user name for a password).
url_userinfo()  { sed -nE 's#^[A-Za-z][A-Za-z0-9+.-]*://([^@/]*)@.*#\1#p' <<<"$1"; }
url_decode()    { local s="${1//+/ }"; printf '%b' "${s//%/\\x}"; }
url_user()      { local u; u="$(url_userinfo "$1")"; url_decode "${u%%:*}"; }
url_password()  { local u; u="$(url_userinfo "$1")"; case "$u" in *:*) url_decode "${u#*:}" ;; esac; }
url_host_part() { sed -E 's#^([A-Za-z][A-Za-z0-9+.-]*://)[^@/]*@#\1#' <<<"$1"; }
# url_without_password URL: the URL with the user kept and the password removed (for psql).
url_without_password() { sed -E 's#^([A-Za-z][A-Za-z0-9+.-]*://)([^@/:]*):[^@/]*@#\1\2@#' <<<"$1"; }

rcli() {
  local url user pass
  url="$(setting REDIS_URL redis://localhost:6379)"
  user="$(url_user "$url")"; pass="$(url_password "$url")"
  local args=(-u "$(url_host_part "$url")" --no-auth-warning)
  [ -n "$user" ] && [ -n "$pass" ] && args+=(--user "$user")
  if [ -n "$pass" ]; then
    REDISCLI_AUTH="$pass" redis-cli "${args[@]}" "$@"
  else
    redis-cli "${args[@]}" "$@"
  fi
}

# pgq URL ARGS...: psql on URL, its password (if any) passed through PGPASSWORD.
pgq() {
  local url="$1"; shift
  local pass; pass="$(url_password "$url")"
  if [ -n "$pass" ]; then
    PGPASSWORD="$pass" psql "$(url_without_password "$url")" "$@"
  else
    psql "$url" "$@"
  fi
}

# pm2_status APP: online, stopped, errored... or "missing".
pm2_status() {
  pm2 jlist 2>/dev/null | node -e '
    let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
      let list = []; try { list = JSON.parse(s.slice(s.indexOf("["))); } catch (e) {}
      const app = list.find(p => p.name === process.argv[1]);
      console.log(app ? app.pm2_env.status : "missing");
    });' "$1"
}

pm2_apps() {
  pm2 jlist 2>/dev/null | node -e '
    let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
      let list = []; try { list = JSON.parse(s.slice(s.indexOf("["))); } catch (e) {}
      console.log(list.map(p => p.name).join(" "));
    });'
}
