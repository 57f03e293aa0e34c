// Finds an element by its alternatives (arguments[0]) and tags it `data-registre-pick` so the
// fetcher can drive it through WebDriver (typing, a real click). arguments[1]: alternatives of an
// element whose form scopes the search ("any submit" of THAT form), or null. Returns
// {index, alternative} of the alternative that matched, or null when none does.
const [alternatives, anchor] = arguments;
document.querySelectorAll('[data-registre-pick]').forEach(e => e.removeAttribute('data-registre-pick'));
const found = registreFind(document, alternatives, registreFormOf(document, anchor));
if (!found) return null;
found.element.setAttribute('data-registre-pick', '1');
return { index: found.index, alternative: found.alternative };
