// Safe DOM helpers shared by the demo pages. Event data is never parsed as HTML: it only ever
// becomes text nodes (textContent, append(string)) or attribute values (setAttribute), so a
// `<script>` or `<img onerror=...>` in an event renders as the characters it is.

/** Create an element: `el('td', { class: 'amount' }, 'text', otherNode)`. Strings become text. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null) continue;
    if (name === 'class') node.className = String(value);
    else node.setAttribute(name, String(value));
  }
  node.append(...children.map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

/** Set a node's text only when it changed (cheap re-renders). */
export function setText(node, value) {
  const text = String(value);
  if (node.textContent !== text) node.textContent = text;
}

const dollars = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });

/** A number as dollars; anything else shown as the text it is. */
export function money(value) {
  const n = typeof value === 'number' ? value : Number(value);
  return Number.isFinite(n) ? dollars.format(n) : String(value ?? '-');
}

/** An ISO time as local time; anything unparsable shown as the text it is. */
export function when(value) {
  if (value === undefined || value === null || value === '') return '-';
  const t = new Date(value);
  return Number.isNaN(t.getTime()) ? String(value) : t.toLocaleString();
}

/** Page settings from the query string: ?store=...&apiKey=... or &token=... */
export function pageParams(defaults) {
  const query = new URLSearchParams(globalThis.location.search);
  const out = { ...defaults };
  for (const key of Object.keys(defaults)) {
    const value = query.get(key);
    if (value) out[key] = value;
  }
  out.apiKey = query.get('apiKey') || undefined;
  out.token = query.get('token') || undefined;
  return out;
}

/** Show the client's connection state in a badge. */
export function showState(node, state) {
  node.className = `state state-${state}`;
  setText(node, state);
}
