// What the current page of the registry flow is, read in one call so the Rust side decides on a
// consistent snapshot (js/find.js is prepended). arguments[0] holds the elements of
// registry-site.toml. `marked` is true while the page on which the fetcher last acted
// (window.__registreStep set before the action) is still shown: the site has not answered yet, so
// nothing on it must be acted on again; `leaving` says its beforeunload fired (a navigation started).
const c = arguments[0];
const text = el => (el ? (el.innerText || el.textContent || '') : '').replace(/\s+/g, ' ').trim();
const state = {
  marked: window.__registreStep !== undefined,
  leaving: window.__registreLeaving === true,
  ready: document.readyState,
  url: String(location.href),
  frameset: false, page_url: '', page_ready: false, has_page_frame: false,
  save_href: '', save_in: '', save_alternative: '',
  login: false, errors: [], rows: [], confirm: false, not_found: '',
};
const menu = document.querySelector('frame[name="' + c.menu_frame + '"], iframe[name="' + c.menu_frame + '"]');
const page = document.querySelector('frame[name="' + c.page_frame + '"], iframe[name="' + c.page_frame + '"]');
state.frameset = !!(menu || page) && !!document.querySelector('frameset');
// The save control: the top document first ("the save button is always in the parent"), then the menu frame.
let save = registreFind(document, c.save_link, null);
if (save) state.save_in = 'top';
try {
  if (page) {
    state.has_page_frame = true;
    state.page_url = String(page.contentWindow.location.href);
    state.page_ready = page.contentDocument.readyState === 'complete';
  }
  if (!save && menu && menu.contentDocument) {
    save = registreFind(menu.contentDocument, c.save_link, null);
    if (save) state.save_in = 'menu';
  }
} catch (e) { /* a frame still loading or of another origin: not ready */ }
if (save) {
  state.save_alternative = save.alternative;
  state.save_href = save.element.href ? String(save.element.href) : (save.element.getAttribute('href') || '');
}
if (state.frameset) return state;
state.login = !!registreFind(document, c.login_user, null);
state.errors = Array.from(document.querySelectorAll(c.error_cell)).map(text).filter(t => t.length > 0);
state.rows = Array.from(document.querySelectorAll(c.radio)).map(r => {
  const row = r.closest('tr') || r.parentElement;
  return { text: text(row), paper: !!(row && row.querySelector(c.paper_only)) };
});
state.confirm = !!document.querySelector(c.confirm);
const body = text(document.body);
for (const word of (c.not_found_words || [])) {
  const at = body.toLowerCase().indexOf(String(word).toLowerCase());
  if (word && at >= 0) {
    // The sentence around the word: the site's own words for the operator.
    const start = Math.max(body.lastIndexOf('.', at) + 1, at - 150);
    const end = body.indexOf('.', at);
    state.not_found = body.slice(start, end < 0 ? at + 150 : end + 1).trim();
    break;
  }
}
return state;
