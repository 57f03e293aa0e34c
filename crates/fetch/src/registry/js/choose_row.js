// On a choice page: checks the radio number arguments[1] (of the selector arguments[0]), marks the
// page, then submits the choice with the button arguments[2] of the radio's own form (a page can
// hold the search form's button too), else the page's first one.
const [radioSel, index, submitSel] = arguments;
const radios = document.querySelectorAll(radioSel);
const radio = radios[index];
if (!radio) return 'missing';
window.__registreStep = 1;
radio.checked = true;
radio.click();
const submit = (radio.form && radio.form.querySelector(submitSel)) || document.querySelector(submitSel);
if (submit) submit.click();
return 'ok';
