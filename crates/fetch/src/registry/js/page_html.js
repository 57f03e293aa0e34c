// The HTML of the page and of every same-origin frame / iframe (nested), each headed by its URL:
// what an operator reads to see how the site changed.
function dump(win, depth) {
  let out = '';
  let doc = null;
  try { doc = win.document; } catch (e) { return '<!-- frame of another origin -->\n'; }
  if (!doc || !doc.documentElement) return '';
  out += '<!-- ' + String(win.location.href) + ' -->\n' + doc.documentElement.outerHTML + '\n';
  if (depth < 4) {
    for (let i = 0; i < win.frames.length; i++) out += dump(win.frames[i], depth + 1);
  }
  return out;
}
return dump(window, 0);
