// PM2 ecosystem of registre-extractor workers (docs/deployment-checklist.md Step 6).
//
// Two ways to run the workers; keep ONE of them in `apps` at the bottom of this file:
//   Option 2: Separate Workers (More Control) - RECOMMENDED: apps `registre-workers` and `ocr-pool`.
//   Option 1: All Workers Together (Simpler): app `registre-all-workers` (start-all-workers binary).
// With either option, `registre-api` serves the operators' API, dashboard and /metrics, and
// `registre-monitor` repairs stuck rows and raises alerts (docs/operations.md).
//
// The apps run the release binaries (`cargo build --release --workspace`) from target/release
// with the repository as working directory, so each binary loads `.env` from there (variables
// already in PM2's environment win). REGISTRE_BIN_DIR overrides the binaries' folder.
'use strict';

const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');

// The variables the binaries will see: .env, overridden by the environment of `pm2 start`.
function settings() {
  const vars = {};
  const file = path.join(ROOT, '.env');
  if (fs.existsSync(file)) {
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      const m = line.match(/^\s*([A-Z0-9_]+)\s*=\s*(.*?)\s*$/);
      if (m) vars[m[1]] = m[2].replace(/\s+#.*$/, '').replace(/^(['"])(.*)\1$/, '$2');
    }
  }
  return Object.assign(vars, process.env);
}

const env = settings();
const num = (name, fallback) => {
  const v = parseFloat(env[name]);
  return Number.isFinite(v) && v >= 0 ? v : fallback;
};

const BIN_DIR = env.REGISTRE_BIN_DIR || path.join(ROOT, 'target', 'release');

// Memory limit of a process: its workers' capacity budget (GB) with 50 % headroom, at least 512 MB.
// A process far over what it declared to the capacity accountant is restarted by PM2.
const memoryLimit = (gigabytes) => `${Math.max(512, Math.ceil(gigabytes * 1024 * 1.5))}M`;
const workerCount = num('WORKER_COUNT', 1);
const poolSize = num('OCR_WORKER_POOL_SIZE', 2);
const registreRam = workerCount * num('REGISTRE_WORKER_RAM', 1);
const ocrRam = poolSize * Math.max(num('INDEX_OCR_WORKER_RAM', 0.75), num('ACTE_OCR_WORKER_RAM', 0.5));

// Long enough for a worker to finish (or release) its job and give its capacity back.
const killTimeout =
  Math.max(num('REGISTRE_SHUTDOWN_GRACE_MS', 20000), num('OCR_SHUTDOWN_GRACE_MS', 20000)) + 15000;

const common = {
  cwd: ROOT,
  interpreter: 'none',
  exec_mode: 'fork',
  instances: 1,
  autorestart: true,
  // Exit code 2 is a configuration error: restarting cannot fix it, so PM2 leaves the app stopped.
  stop_exit_codes: [2],
  kill_timeout: killTimeout,
  restart_delay: 5000,
  time: true,
  env: { RUST_LOG: env.RUST_LOG || 'info' },
};

const registreWorkers = {
  ...common,
  name: 'registre-workers',
  script: path.join(BIN_DIR, 'registre-workers'),
  max_memory_restart: memoryLimit(registreRam),
};

const ocrPool = {
  ...common,
  name: 'ocr-pool',
  script: path.join(BIN_DIR, 'ocr-pool'),
  max_memory_restart: memoryLimit(ocrRam),
};

const registreAllWorkers = {
  ...common,
  name: 'registre-all-workers',
  script: path.join(BIN_DIR, 'start-all-workers'),
  max_memory_restart: memoryLimit(registreRam + ocrRam),
};

// registre-api: the operators' HTTP API, dashboard and /metrics (docs/operations.md), with either
// option. It holds no capacity lease and is light: a small fixed memory limit.
const registreApi = {
  ...common,
  name: 'registre-api',
  script: path.join(BIN_DIR, 'registre-api'),
  max_memory_restart: '256M',
  kill_timeout: 10000,
};

// registre-monitor: every MONITOR_INTERVAL_MS, the reaper and the requeue of lease-less stuck
// rows, alerts in its log and to ALERT_WEBHOOK_URL (docs/operations.md), with either option. One
// per fleet is enough (several send the same alerts each). Light: a small fixed memory limit.
// Its /metrics is on METRICS_ADDR: give it its own address in `env` below if the workers use one.
const registreMonitor = {
  ...common,
  name: 'registre-monitor',
  script: path.join(BIN_DIR, 'registre-monitor'),
  max_memory_restart: '256M',
  kill_timeout: 10000,
};

module.exports = {
  apps: [
    // Option 2: Separate Workers (More Control) - RECOMMENDED
    registreWorkers,
    ocrPool,
    // Option 1: All Workers Together (Simpler): uncomment the next line, comment out the two above
    // registreAllWorkers,
    // Both options: the API and dashboard (API_HOST:API_PORT, default 127.0.0.1:3000)
    registreApi,
    // Both options: stuck-row repair and alerts
    registreMonitor,
  ],
};
