// The options of the select arguments[0] as [{value, text}], or null when the page has no such select.
const el = document.querySelector(arguments[0]);
if (!el || !el.options) return null;
return Array.from(el.options).map(o => ({ value: o.value, text: (o.text || '').replace(/\s+/g, ' ').trim() }));
