// Marks the page (window.__registreStep, see page_state.js) then clicks the element found by the
// alternatives arguments[0] (a submit or confirmation button; arguments[1] scopes "any submit" to
// the form of that anchor). Returns the alternative that matched, or null when none did (nothing
// clicked, the page is not marked).
const [alternatives, anchor] = arguments;
const found = registreFind(document, alternatives, registreFormOf(document, anchor));
if (!found) return null;
window.__registreStep = 1;
found.element.click();
return { index: found.index, alternative: found.alternative };
