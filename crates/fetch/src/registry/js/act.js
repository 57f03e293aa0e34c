// Marks the page (window.__registreStep, see page_state.js) then clicks the first element of the
// selector arguments[0]: a submit or confirmation button. Returns 'missing' when there is none.
const el = document.querySelector(arguments[0]);
if (!el) return 'missing';
window.__registreStep = 1;
el.click();
return 'ok';
