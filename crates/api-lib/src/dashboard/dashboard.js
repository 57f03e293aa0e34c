// registre-api dashboard: renders the overview pushed by /api/stream (SSE) and the jobs list of
// /api/extractions, with Retry / Cancel. Every /api/* route needs API_TOKEN: it is asked once and
// kept in sessionStorage for this tab only; reads and writes send it as the bearer header, and
// POST /api/login trades it for the HttpOnly session cookie the stream uses (an EventSource cannot
// send a header; the token never goes in a URL). A row's detail is re-read only when the stream
// says that row changed. A write whose answer is lost or late says "outcome unknown: check with
// registrectl show <id>", never that it failed (writeOutcome). No framework: the page must work offline from the binary alone.
// STATUS (ids, labels, retryable, cancellable) is written above this file by registre-api from
// registre_domain::status (crates/api-lib/src/dashboard.rs): no status id or label is spelled here.
"use strict";

const SOURCES = ["index", "acte", "plan_cadastraux"];
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
// ISO-like local time (2026-12-01 14:03:07): unambiguous and compact; only the time when it is today.
const fmtTime = (t) => t ? new Date(t).toLocaleString("sv-SE") : "—";
const fmtShort = (t) => {
  if (!t) return "—";
  const s = fmtTime(t), today = new Date().toLocaleDateString("sv-SE");
  return s.startsWith(today) ? s.slice(11) : s;
};
const fmtAge = (s) => s == null ? "—" : s < 60 ? `${Math.round(s)} s` : s < 3600 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
const num = (n) => Number(n).toLocaleString("fr-CA");
const badge = (id) => `<span class="status s${id}">${esc(STATUS.labels[id] || id)}</span>`;

const TOKEN_KEY = "registre-api-token";
let env = null, fingerprint = null, nextCursor = null, selected = null, lastOverview = null;
// updated_at of the detail on screen: the stream's changes are compared with it.
let shownUpdatedAt = null;

function renderCounts(o) {
  let html = `<table><thead><tr><th>Environnement</th>`;
  for (const s of STATUS.ids) html += `<th class="num">${badge(s)}</th>`;
  html += `<th class="num">Plus ancien en attente (extraction / OCR)</th></tr></thead><tbody>`;
  for (const e of o.environments) {
    html += `<tr data-env="${esc(e.env)}"><td><b>${esc(e.env)}</b></td>`;
    if (!e.overview) { html += `<td colspan="${STATUS.ids.length + 1}" class="error">${esc(e.error)}</td></tr>`; continue; }
    for (const s of STATUS.ids) {
      const rows = e.overview.counts.filter((c) => c.status_id === s);
      const total = rows.reduce((a, c) => a + c.count, 0);
      const title = rows.map((c) => `${c.document_source}: ${c.count}`).join(", ");
      html += `<td class="num" data-status="${s}" title="${esc(title)}">${num(total)}</td>`;
    }
    const w = e.overview.oldest_waiting_seconds;
    html += `<td class="num">${fmtAge(w.extraction)} / ${fmtAge(w.ocr)}</td></tr>`;
  }
  $("counts").innerHTML = html + "</tbody></table>";
}

function bar(used, max, label) {
  const pct = max > 0 ? Math.min(100, (used / max) * 100) : 0;
  const cls = pct >= 95 ? "full" : pct >= 75 ? "warn" : "";
  return `<div class="row"><span>${label}</span><span>${used.toFixed(2).replace(/\.?0+$/, "")} / ${max.toFixed(2).replace(/\.?0+$/, "")}</span></div>
          <div class="bar ${cls}"><span style="width:${pct.toFixed(1)}%"></span></div>`;
}

function renderLive(o) {
  const live = o.live;
  if (!live) {
    for (const id of ["capacity", "ratelimit", "pool", "workers"]) $(id).innerHTML = `<span class="error">${esc(o.live_error)}</span>`;
    return;
  }
  $("capacity").innerHTML = live.capacity.map((c) => `<div><b>${esc(c.server || "serveur par défaut")}</b> <span class="muted">(${c.workers} worker(s))</span>
      ${c.cpu_usable == null ? `<div class="muted">Budget non publié : ${c.cpu_allocated} vCPU, ${c.ram_allocated} Go alloués</div>`
        : bar(c.cpu_allocated, c.cpu_usable, "vCPU") + bar(c.ram_allocated, c.ram_usable, "RAM (Go)")}</div>`).join("") || `<span class="muted">Aucun serveur</span>`;
  const r = live.rate_limit;
  $("ratelimit").innerHTML = `${bar(r.requests, r.requests_limit, `Requêtes / ${r.window_seconds} s`)}${bar(r.tokens, r.tokens_limit, "Jetons")}
      <div>${r.cooldown_seconds > 0 ? `<span class="cool">Pause après 429 : encore ${r.cooldown_seconds.toFixed(0)} s</span>` : `<span class="muted">Aucune pause en cours</span>`}</div>`;
  $("pool").innerHTML = live.pools.map((p) => {
    const a = p.allocation, total = Math.max(1, a.totalWorkers);
    return `<div><b>${esc(p.server || "serveur par défaut")}</b>
      <div class="row"><span>index : ${a.indexWorkers}</span><span>acte : ${a.acteWorkers}</span></div>
      <div class="bar"><span style="width:${(100 * a.indexWorkers / total).toFixed(0)}%;background:var(--teal)"></span></div>
      <div class="muted">En attente d'OCR : index ${num(a.queue.index)}, acte ${num(a.queue.acte)}</div></div>`;
  }).join("") || `<span class="muted">Aucun pool OCR publié</span>`;
  const rows = live.workers.map((w) => `<tr><td>${esc(w.worker_id)}</td><td>${esc(w.type)}</td><td>${esc(w.assigned_mode || "—")}</td>
      <td>${esc(w.server || "défaut")}</td><td>${esc(w.host)} / ${w.pid}</td><td class="num">${w.cpu}</td><td class="num">${w.ram}</td>
      <td>${fmtShort(w.started_at_ms)}</td></tr>`).join("");
  $("workers").innerHTML = rows ? `<table><thead><tr><th>Worker</th><th>Type</th><th>Mode</th><th>Serveur</th><th>Hôte / PID</th>
      <th class="num">vCPU</th><th class="num">RAM</th><th>Démarré</th></tr></thead><tbody>${rows}</tbody></table>` : `<span class="muted">Aucun worker actif</span>`;
}

function renderChart(e) {
  if (!e || !e.overview) { $("chart").innerHTML = ""; return; }
  const pts = e.overview.completions_per_minute, W = 300, H = 110, P = 22;
  const max = Math.max(1, ...pts.map((p) => p.count));
  const bw = (W - P) / Math.max(1, pts.length);
  const bars = pts.map((p, i) => {
    const h = (p.count / max) * (H - 24);
    return `<rect x="${(P + i * bw).toFixed(1)}" y="${(H - 14 - h).toFixed(1)}" width="${Math.max(1, bw - 1).toFixed(1)}" height="${h.toFixed(1)}" fill="#2563eb"><title>${fmtTime(p.minute)} : ${p.count}</title></rect>`;
  }).join("");
  const total = pts.reduce((a, p) => a + p.count, 0);
  $("chart").innerHTML = `<div class="big">${num(total)}</div><svg viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="Complétés par minute">
      <line x1="${P}" y1="${H - 14}" x2="${W}" y2="${H - 14}" stroke="#cbd5e1"/><text x="0" y="10">${max}</text><text x="0" y="${H - 14}">0</text>
      ${bars}<text x="${P}" y="${H - 2}">-60 min</text><text x="${W}" y="${H - 2}" text-anchor="end">maintenant</text></svg>`;
}

function onOverview(o) {
  lastOverview = o;
  const select = $("env");
  if (!select.options.length) {
    for (const e of o.environments) select.add(new Option(e.env, e.env));
    env = env || (o.environments[0] && o.environments[0].env);
    select.value = env;
  }
  renderCounts(o);
  renderLive(o);
  const e = o.environments.find((x) => x.env === env);
  renderChart(e);
  $("updated").textContent = "Mis à jour " + fmtTime(o.generated_at);
  const fp = e && e.overview ? JSON.stringify([e.overview.counts, e.overview.last_change]) : null;
  if (fp !== fingerprint) { fingerprint = fp; loadJobs(); }
  if (selected && e && e.overview && detailChanged(e.changes)) showDetail(selected, true);
}

// Whether the stream's changes say the row on screen changed. No changes listed (the first event,
// or more rows changed than listed): the row may have changed.
function detailChanged(changes) {
  if (!changes || changes.truncated) return true;
  const hit = changes.rows.find((r) => r.id === selected);
  return !!hit && hit.updated_at !== shownUpdatedAt;
}

function query(extra) {
  const p = new URLSearchParams({environment: env, limit: "50"});
  if ($("f-status").value) p.set("status", $("f-status").value);
  if ($("f-source").value) p.set("source", $("f-source").value);
  if (extra) p.set("cursor", extra);
  return p.toString();
}

function jobRow(r) {
  const actions = STATUS.retryable.includes(r.status_id) ? `<button class="retry" data-act="retry">Réessayer</button>`
    : STATUS.cancellable.includes(r.status_id) ? `<button class="cancel" data-act="cancel">Annuler</button>` : "";
  return `<tr data-id="${esc(r.id)}" class="${r.id === selected ? "sel" : ""}"><td>${badge(r.status_id)}</td><td>${esc(r.document_source)}</td>
    <td title="${esc(r.circonscription_fonciere || "")}">${esc(r.document_number)}</td><td class="num">${r.attempts ?? 0}/${r.max_attempts ?? "—"}</td>
    <td>${fmtShort(r.updated_at)}</td><td class="err" title="${esc(r.error_message || "")}">${esc(r.error_message || "")}</td><td>${actions}</td></tr>`;
}

async function loadJobs(append) {
  if (!env) return;
  try {
    const res = await apiFetch("/api/extractions?" + query(append ? nextCursor : null));
    const body = await res.json();
    if (!res.ok) { $("jobs-msg").textContent = body.error; return; }
    $("jobs-msg").textContent = "";
    nextCursor = body.next_cursor;
    $("more").hidden = !nextCursor;
    const rows = body.rows.map(jobRow).join("");
    if (append) { document.querySelector("#jobs tbody").insertAdjacentHTML("beforeend", rows); return; }
    $("jobs").innerHTML = `<table><thead><tr><th>Statut</th><th>Source</th><th>Numéro</th><th class="num">Essais</th>
      <th>Mis à jour</th><th>Erreur</th><th></th></tr></thead><tbody>${rows}</tbody></table>`;
  } catch (err) { $("jobs-msg").textContent = "Liste indisponible : " + err; }
}

async function showDetail(id, quiet) {
  selected = id;
  document.querySelectorAll("#jobs tbody tr").forEach((tr) => tr.classList.toggle("sel", tr.dataset.id === id));
  const res = await apiFetch(`/api/extractions/${encodeURIComponent(id)}?environment=${encodeURIComponent(env)}`);
  const d = await res.json();
  if (!res.ok) { if (!quiet) $("detail").innerHTML = `<span class="error">${esc(d.error)}</span>`; return; }
  if (id !== selected) return;
  shownUpdatedAt = d.updated_at;
  const text = d.boosted_file_content_excerpt || d.file_content_excerpt;
  $("detail").className = "";
  $("detail").innerHTML = `<h3>${esc(d.document_source)} ${esc(d.document_number)} ${badge(d.status_id)}</h3>
    <dl><dt>Id</dt><dd>${esc(d.id)}</dd><dt>Circonscription</dt><dd>${esc(d.circonscription_fonciere || "—")}</dd>
    <dt>Cadastre</dt><dd>${esc(d.cadastre || "—")}</dd><dt>Type d'acte</dt><dd>${esc(d.acte_type || "—")}</dd>
    <dt>Essais</dt><dd>extraction ${d.attempts ?? 0}/${d.max_attempts ?? "—"}, OCR ${d.ocr_attempts ?? 0}/${d.ocr_max_attempts ?? "—"}</dd>
    <dt>Worker</dt><dd>${esc(d.worker_id || "—")} ${d.ocr_worker_id ? "/ " + esc(d.ocr_worker_id) : ""}</dd>
    <dt>PDF</dt><dd>${esc(d.supabase_path || "—")}</dd><dt>Créé</dt><dd>${fmtTime(d.created_at)}</dd><dt>Mis à jour</dt><dd>${fmtTime(d.updated_at)}</dd>
    <dt>Erreur</dt><dd class="error" id="detail-error">${esc(d.error_message || "—")}</dd>
    ${d.ocr_error ? `<dt>Erreur OCR</dt><dd class="error">${esc(d.ocr_error)}</dd>` : ""}</dl>
    ${indexDataTable(d.index_data)}
    ${text ? `<div class="muted">Texte OCR (${num(d.boosted_file_content_chars || d.file_content_chars || 0)} caractères) :</div><pre>${esc(text)}</pre>` : ""}
    <div>${STATUS.retryable.includes(d.status_id) ? `<button class="retry" id="btn-retry">Réessayer</button>` : ""}
    ${STATUS.cancellable.includes(d.status_id) ? `<button class="cancel" id="btn-cancel">Annuler</button>` : ""}</div>`;
  const r = $("btn-retry"); if (r) r.onclick = () => act("retry", id);
  const c = $("btn-cancel"); if (c) c.onclick = () => act("cancel", id);
}

function askToken() {
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) return Promise.resolve(saved);
  return new Promise((resolve) => {
    const dialog = $("token-dialog");
    $("token-input").value = "";
    $("token-cancel").onclick = () => { dialog.close(); resolve(null); };
    $("token-form").onsubmit = (ev) => {
      ev.preventDefault();
      const t = $("token-input").value.trim();
      dialog.close();
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      resolve(t || null);
    };
    dialog.showModal();
    $("token-input").focus();
  });
}

// fetch with the bearer token (reads and writes alike); a 401 forgets it, so it is asked again.
async function apiFetch(url, options) {
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  const res = await fetch(url, {...(options || {}), headers: {Authorization: "Bearer " + token}});
  if (res.status === 401) sessionStorage.removeItem(TOKEN_KEY);
  return res;
}

// How long a write's answer is awaited: longer than the API's own bound on a write (10 s), so no
// answer by then means it was lost, not that the write is still running.
const WRITE_WAIT_MS = 15000;

// What a write's answer says happened. Only a 2xx is "done"; a 4xx or a 503 from registre-api
// means nothing changed (the server rolls back before it answers). A 504 (the API lost the
// COMMIT's answer, `outcome_unknown`, or a gateway in front gave up), a 502 from a gateway, a
// connection lost on the way or no answer within WRITE_WAIT_MS leave the outcome unknown: the
// change may have been made, so it is never reported as failed.
function writeOutcome(res, body, id, envName) {
  const check = `outcome unknown: check with registrectl show ${id} --environment ${envName}`;
  if (!res) return {kind: "unknown", text: check, detail: "la réponse n'est pas arrivée (connexion perdue ou aucune réponse en " + WRITE_WAIT_MS / 1000 + " s)"};
  if (res.ok) return {kind: "done"};
  if (res.status === 504 || res.status === 502 || body.reason === "outcome_unknown") {
    return {kind: "unknown", text: check, detail: body.error || `HTTP ${res.status}`};
  }
  return {kind: "refused", text: "Rien n'a été modifié : " + (body.error || `HTTP ${res.status}`)};
}

async function act(kind, id) {
  const token = await askToken();
  if (!token) return;
  const envName = env;
  const url = kind === "retry" ? `/api/extractions/${encodeURIComponent(id)}/retry?environment=${encodeURIComponent(envName)}`
                               : `/api/extractions/${encodeURIComponent(id)}?environment=${encodeURIComponent(envName)}&by=dashboard`;
  const msg = $("act-msg");
  msg.className = "muted";
  msg.textContent = kind === "retry" ? "Remise en attente…" : "Annulation…";
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), WRITE_WAIT_MS);
  let res = null, body = {};
  try {
    res = await apiFetch(url, {method: kind === "retry" ? "POST" : "DELETE", signal: abort.signal});
    body = await res.json().catch(() => ({}));
  } catch (err) {
    res = null; // lost on the way or aborted: nobody can say whether the server made the change
  } finally {
    clearTimeout(timer);
  }
  const outcome = writeOutcome(res, body, id, envName);
  msg.dataset.outcome = outcome.kind;
  if (outcome.kind === "done") {
    msg.className = "muted";
    msg.textContent = kind === "retry" ? "Remis en attente." : "Annulé.";
  } else if (outcome.kind === "unknown") {
    msg.className = "unknown";
    msg.innerHTML = `<b>${esc(outcome.text)}</b> <span class="muted">(${esc(outcome.detail)})</span>`;
  } else {
    msg.className = "error";
    msg.textContent = outcome.text;
  }
  await loadJobs();
  if (outcome.kind === "done" || (outcome.kind === "unknown" && selected === id)) showDetail(id, true);
}

$("jobs").addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr[data-id]");
  if (!tr) return;
  const button = ev.target.closest("button[data-act]");
  if (button) { act(button.dataset.act, tr.dataset.id); return; }
  showDetail(tr.dataset.id);
});
$("env").onchange = () => { env = $("env").value; selected = null; shownUpdatedAt = null; fingerprint = null; if (lastOverview) onOverview(lastOverview); };
$("f-status").insertAdjacentHTML("beforeend", STATUS.ids.map((s) => `<option value="${s}">${esc(STATUS.labels[s])}</option>`).join(""));
$("f-status").onchange = $("f-source").onchange = () => loadJobs();
$("more").onclick = () => loadJobs(true);

function offline(text) { $("live").className = "pill off"; $("live").textContent = text; }

// Asks the token (once per tab) and trades it for the stream's session cookie: "ok", "cancelled"
// (the operator closed the dialog: the button asks again) or "retry" (server unreachable or refusing).
async function login() {
  for (;;) {
    const token = await askToken();
    if (!token) { offline("jeton requis"); $("login").hidden = false; return "cancelled"; }
    let res;
    try { res = await fetch("/api/login", {method: "POST", headers: {Authorization: "Bearer " + token}}); }
    catch (err) { offline("hors ligne"); return "retry"; }
    if (res.ok) { $("login").hidden = true; return "ok"; }
    const body = await res.json().catch(() => ({}));
    $("jobs-msg").textContent = body.error || String(res.status);
    if (res.status !== 401) { offline("refusé"); return "retry"; }
    sessionStorage.removeItem(TOKEN_KEY);
  }
}

let source = null;
async function connect() {
  if (source) { source.close(); source = null; }
  const session = await login();
  if (session === "retry") setTimeout(connect, 5000);
  if (session !== "ok") return;
  source = new EventSource("/api/stream");
  source.addEventListener("overview", (ev) => {
    $("live").className = "pill on"; $("live").textContent = "en direct";
    try { onOverview(JSON.parse(ev.data)); } catch (err) { console.error(err); }
  });
  source.onerror = () => {
    offline("reconnexion…");
    // Closed: the server refused the stream (a restart ended the session, or too many streams):
    // log in again, then reconnect. Otherwise the browser reconnects by itself.
    if (source && source.readyState === EventSource.CLOSED) { source = null; setTimeout(connect, 2000); }
  };
}
$("login").onclick = () => { $("login").hidden = true; connect(); };
connect();
