// DOM helpers. Everything that comes from the server (event data, names, error messages) goes
// into the page as text nodes or attribute values, never as markup: there is no innerHTML here.

/**
 * h('button', {class: 'x', onclick: fn, type: 'button'}, 'text', childNode, [more])
 * Strings become text nodes; `text` sets textContent; `on*` functions become listeners;
 * `dataset` fills data-*; `true` makes a boolean attribute; null/undefined/false are skipped.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'class') el.className = value;
      else if (name === 'text') el.textContent = String(value);
      else if (name === 'dataset') Object.assign(el.dataset, value);
      else if (name === 'value') el.value = String(value);
      else if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
      else if (value === true) el.setAttribute(name, '');
      else el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.append(child);
    else el.append(document.createTextNode(String(child)));
  }
}

/** Replace a container's children, keeping keyboard focus on the element with the same
 * data-focus-key (auto-refreshing tables must not steal the focus of a keyboard user). */
export function replaceKeepingFocus(container, ...children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focusKey : undefined;
  container.replaceChildren();
  append(container, children);
  if (key !== undefined) {
    const again = container.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}

/** `#/s/{store}/...` with every segment escaped. */
export function href(...segments) {
  return '#/' + segments.map((s) => encodeURIComponent(String(s))).join('/');
}

export function link(text, target, attrs = {}) {
  return h('a', { ...attrs, href: target }, text);
}

const pad = (n, width = 2) => String(n).padStart(width, '0');

/** '2024-05-01 14:03:04.123' in local time (the ISO UTC value goes in a title). */
export function localTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso ?? '');
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`
  );
}

/** '14:03:04.123' local time. */
export function clockTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso ?? '');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** A <time> element: local time shown, ISO UTC in datetime and title. */
export function timeEl(iso, short = false) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: `${iso} (UTC)` }, short ? clockTime(iso) : localTime(iso));
}

export function pretty(value) {
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

/** Compact JSON, cut at `max` characters. */
export function preview(value, max = 160) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  if (text === undefined) text = 'undefined';
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
}

export function number(n) {
  return typeof n === 'number' ? n.toLocaleString('en-US') : String(n ?? '—');
}

/** An error box: code + message + detail lines, as text. */
export function errorBox(title, lines = [], attrs = {}) {
  return h(
    'div',
    { class: 'error-box', role: 'alert', ...attrs },
    h('strong', null, title),
    lines.length ? h('ul', null, lines.map((line) => h('li', null, line))) : null,
  );
}

let noticeTimer = 0;

/** A short message in the page's polite live region. */
export function notify(text, kind = 'ok') {
  const notice = document.getElementById('notice');
  if (!notice) return;
  notice.textContent = text;
  notice.className = `notice ${kind}`;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    notice.hidden = true;
  }, 6000);
}

/**
 * Ask for confirmation in the page's <dialog>: the user types `expected` to enable the button.
 * Resolves true when confirmed, false when cancelled (Escape, Cancel).
 */
export function confirmTyped({ title, text, expected, action = 'Delete' }) {
  const dialog = document.getElementById('confirm-dialog');
  const input = document.getElementById('confirm-input');
  const ok = document.getElementById('confirm-ok');
  const cancel = document.getElementById('confirm-cancel');
  const form = document.getElementById('confirm-form');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-label').textContent = `Type “${expected}” to confirm`;
  ok.textContent = action;
  input.value = '';
  ok.disabled = true;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    const check = () => {
      ok.disabled = input.value !== expected;
    };
    const finish = (result) => {
      input.removeEventListener('input', check);
      form.removeEventListener('submit', onSubmit);
      cancel.removeEventListener('click', onCancel);
      dialog.removeEventListener('cancel', onCancel);
      if (dialog.open) dialog.close();
      if (opener && opener.isConnected) opener.focus();
      resolve(result);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      if (input.value === expected) finish(true);
    };
    const onCancel = (event) => {
      event.preventDefault();
      finish(false);
    };
    input.addEventListener('input', check);
    form.addEventListener('submit', onSubmit);
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener('cancel', onCancel);
    dialog.showModal();
    input.focus();
  });
}
