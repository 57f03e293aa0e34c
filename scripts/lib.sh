# Shared helpers of the deployment scripts (sourced, not run): settings from .env with the
# environment winning (as the binaries read them), key names, PM2 queries, messages.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

ok()   { echo "✅ $*"; }
warn() { echo "⚠️  $*"; }
fail() { echo "❌ $*" >&2; }

# setting NAME [DEFAULT]: the environment's value, else .env's, else DEFAULT.
setting() {
  local name="$1" default="${2-}" value=""
  if [ -n "${!name-}" ]; then
    value="${!name}"
  elif [ -f "$REPO_ROOT/.env" ]; then
    value="$(sed -n "s/^[[:space:]]*$name[[:space:]]*=[[:space:]]*//p" "$REPO_ROOT/.env" | tail -n1 | sed 's/[[:space:]]\+#.*$//; s/^["'\'']\(.*\)["'\'']$/\1/')"
  fi
  echo "${value:-$default}"
}

# The Redis key prefix of this server's capacity and pool keys (SERVER_ID makes a hash tag).
capacity_prefix() { local id; id="$(setting SERVER_ID)"; if [ -n "$id" ]; then echo "server:{$id}"; else echo "server"; fi; }
pool_prefix()     { local id; id="$(setting SERVER_ID)"; if [ -n "$id" ]; then echo "worker_pool:{$id}"; else echo "worker_pool"; fi; }

rcli() { redis-cli -u "$(setting REDIS_URL redis://localhost:6379)" --no-auth-warning "$@"; }

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
