// What the current page of the registry flow is, read in one call so the Rust side decides on a
// consistent snapshot. arguments[0] holds the selectors of registry-site.toml. `marked` is true
// while the page on which the fetcher last acted (window.__registreStep set before the action) is
// still shown: the site has not answered yet, so nothing on it must be acted on again.
const c = arguments[0];
const text = el => (el ? (el.innerText || el.textContent || '') : '').replace(/\s+/g, ' ').trim();
const state = {
  marked: window.__registreStep !== undefined,
  ready: document.readyState,
  url: String(location.href),
  frameset: false, page_url: '', page_ready: false, save_href: '',
  login: false, errors: [], rows: [], confirm: false, search: false,
};
const menu = document.querySelector('frame[name="' + c.menu_frame + '"], iframe[name="' + c.menu_frame + '"]');
const page = document.querySelector('frame[name="' + c.page_frame + '"], iframe[name="' + c.page_frame + '"]');
if (menu || page) {
  state.frameset = true;
  try {
    if (page) {
      state.page_url = String(page.contentWindow.location.href);
      state.page_ready = page.contentDocument.readyState === 'complete';
    }
    if (menu) {
      const link = menu.contentDocument.querySelector(c.save_link);
      if (link && link.href) state.save_href = link.href;
    }
  } catch (e) { /* a frame still loading or of another origin: not ready */ }
  return state;
}
state.login = !!document.querySelector(c.login_user);
state.errors = Array.from(document.querySelectorAll(c.error_cell)).map(text).filter(t => t.length > 0);
state.rows = Array.from(document.querySelectorAll(c.radio)).map(r => {
  const row = r.closest('tr') || r.parentElement;
  return { text: text(row), paper: !!(row && row.querySelector(c.paper_only)) };
});
state.confirm = !!document.querySelector(c.confirm);
state.search = !!(c.search_submit && document.querySelector(c.search_submit));
return state;
