// On a choice page (or the acte results under the search form): checks the radio number
// arguments[1] (of the selector arguments[0]), marks the page, then submits with the first
// alternative of arguments[2] found in the radio's own form (the page can hold the search form's
// button too). Returns the alternative used, or null when the radio or a button is missing.
const [radioSel, index, submit] = arguments;
const radio = document.querySelectorAll(radioSel)[index];
if (!radio) return null;
const form = radio.form || radio.closest('form');
const found = registreFind(document, submit, form);
if (!found) return null;
radio.checked = true;
radio.click();
window.__registreStep = 1;
found.element.click();
return { index: found.index, alternative: found.alternative };
