// registre-api dashboard, detail pane: the index des immeubles as data (the row's index_data) as a
// table, one line per inscription, parties one under the other. Every value goes through esc():
// the text comes from OCR of documents and is never markup. Served after dashboard.js (same file).

function indexDataTable(data) {
  if (!data || !Array.isArray(data.pages)) return "";
  let html = `<div class="muted" id="index-data">Index des immeubles, lu par ${esc(data.engine)} :</div>`;
  for (const p of data.pages) {
    const layout = p.format === "modern-inscription" ? "" : ` <span class="error">(présentation non reconnue : ${esc(p.format)})</span>`;
    html += `<div class="index-page">Page ${esc(p.page)} — ${esc(p.circonscription || "—")}, ${esc(p.cadastre || "—")}, lot ${esc(p.lot || "—")}${layout}</div>`;
    const rows = Array.isArray(p.inscriptions) ? p.inscriptions : [];
    if (!rows.length) continue;
    html += `<table class="index-data"><thead><tr><th>Date de présentation</th><th>Numéro</th><th>Nature</th><th>Qualité</th>
      <th>Nom des parties</th><th>Remarques</th><th>Avis d'adresse</th><th>Radiations</th></tr></thead><tbody>`;
    for (const i of rows) {
      const parties = Array.isArray(i.parties) ? i.parties : [];
      html += `<tr><td>${esc(i.date_presentation || "—")}</td><td>${esc(i.numero || "—")}</td><td>${esc(i.nature || "—")}</td>
        <td>${parties.map((x) => esc(x.qualite || "—")).join("<br>")}</td><td>${parties.map((x) => esc(x.nom)).join("<br>")}</td>
        <td>${esc(i.remarques || "")}</td><td>${esc(i.avis_adresse || "")}</td><td>${(i.radiations || []).map(esc).join("<br>")}</td></tr>`;
    }
    html += `</tbody></table>`;
  }
  const warnings = Array.isArray(data.warnings) ? data.warnings : [];
  if (warnings.length) html += `<div class="muted">Avertissements :</div><ul class="index-warnings">${warnings.map((w) => `<li>${esc(w)}</li>`).join("")}</ul>`;
  return html;
}
