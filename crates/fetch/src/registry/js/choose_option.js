// Chooses the option of value arguments[1] in the select arguments[0] and fires its change event
// (the site's onchange may reload the page). When arguments[2] is true the page is marked first
// (window.__registreStep) so the fetcher can tell the reloaded page from this one.
const [selector, value, mark] = arguments;
const el = document.querySelector(selector);
if (!el) return 'missing';
if (mark) window.__registreStep = 1;
el.value = value;
el.dispatchEvent(new Event('input', { bubbles: true }));
el.dispatchEvent(new Event('change', { bubbles: true }));
return 'ok';
