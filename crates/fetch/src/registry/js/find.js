// Shared by the scripts that look for an element of registry-site.toml (prepended to them): an
// element is an ordered list of alternatives and the FIRST alternative that matches wins, so the
// log can name it. An alternative is a CSS selector, "label:TEXT" (the input whose <label for>, or
// the table cell beside it, contains TEXT), "link-text:TEXT", "button-text:TEXT", or "any submit"
// (any submit button of `scope`, the form being filled). Selectors are tried in `scope` first,
// then in the whole document; an invalid selector simply does not match.
function registreNorm(t) {
  return (t || '').replace(/[\u2018\u2019\u02bc]/g, "'").replace(/\s+/g, ' ').trim().toLowerCase();
}
function registreByLabel(doc, root, text) {
  for (const label of root.querySelectorAll('label')) {
    if (!registreNorm(label.textContent).includes(text)) continue;
    const id = label.getAttribute('for');
    const el = id ? doc.getElementById(id) : label.querySelector('input, select, textarea');
    if (el) return el;
  }
  for (const cell of root.querySelectorAll('td, th')) {
    if (cell.querySelector('input, select, textarea')) continue;
    if (!registreNorm(cell.textContent).includes(text)) continue;
    for (let next = cell.nextElementSibling; next; next = next.nextElementSibling) {
      const el = next.querySelector('input:not([type=hidden]), select, textarea');
      if (el) return el;
    }
  }
  return null;
}
function registreByText(root, tag, text) {
  for (const el of root.querySelectorAll(tag)) {
    if (registreNorm(el.textContent).includes(text) || registreNorm(el.getAttribute('title')).includes(text)) return el;
  }
  return null;
}
function registreFindIn(doc, root, alt) {
  try {
    if (alt.startsWith('label:')) return registreByLabel(doc, root, registreNorm(alt.slice(6)));
    if (alt.startsWith('link-text:')) return registreByText(root, 'a', registreNorm(alt.slice(10)));
    if (alt.startsWith('button-text:')) return registreByText(root, 'button', registreNorm(alt.slice(12)));
    if (alt.trim() === 'any submit') {
      return root.querySelector('input[type=submit], button[type=submit], button:not([type]), input[type=image]');
    }
    return root.querySelector(alt);
  } catch (e) {
    return null;
  }
}
function registreFind(doc, alternatives, scope) {
  for (let i = 0; i < (alternatives || []).length; i++) {
    const alt = alternatives[i];
    let el = scope ? registreFindIn(doc, scope, alt) : null;
    if (!el && !(scope && alt.trim() === 'any submit')) el = registreFindIn(doc, doc, alt);
    if (el) return { index: i, alternative: alt, element: el };
  }
  return null;
}
// The form an anchor element (given by its alternatives) belongs to, or null.
function registreFormOf(doc, anchor) {
  if (!anchor) return null;
  const found = registreFind(doc, anchor, null);
  return found ? (found.element.form || found.element.closest('form')) : null;
}
