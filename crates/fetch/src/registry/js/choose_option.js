// Chooses the option of value arguments[1] in the select arguments[0] and fires its change event.
// Whether that reloads the page is a guess (docs/design.md §9.1 knows it only for the
// circonscription), so the page is marked (window.__registreStep) and a beforeunload listener
// records whether a navigation started (window.__registreLeaving): page_state.js reports both.
const [selector, value] = arguments;
const el = document.querySelector(selector);
if (!el) return 'missing';
window.__registreStep = 1;
window.__registreLeaving = false;
window.addEventListener('beforeunload', () => { window.__registreLeaving = true; });
el.value = value;
el.dispatchEvent(new Event('input', { bubbles: true }));
el.dispatchEvent(new Event('change', { bubbles: true }));
return 'ok';
