// Studio: the shell, the credentials prompt and the hash router.
//
// Routes (every segment URL-encoded; no credentials ever go in the URL):
//   #/                              event stores
//   #/s/{store}[/streams]           a store's streams
//   #/s/{store}/stream/{streamId}   a stream's events
//   #/s/{store}/tail                live tail
//   #/s/{store}/append[?stream=..]  append form
//   #/s/{store}/subscriptions[/{id}]  webhook subscriptions, and one's dead letters

import { ApiError, auth, describe, probe, setKey, tryKey } from './api.js';
import { errorBox, h, notify } from './dom.js';
import { mountStores } from './stores.js';
import { storeShell, dropShell } from './store.js';
import { mountStreams, mountStream } from './streams.js';
import { mountTail, stopTail } from './tail.js';
import { mountAppend } from './append.js';
import { mountSubscriptions, mountDeadLetters } from './subscriptions.js';

const main = document.getElementById('main');
let cleanup = null;
let routing = 0;

function parseHash() {
  let raw = location.hash.replace(/^#/, '');
  let params = new URLSearchParams();
  const q = raw.indexOf('?');
  if (q >= 0) {
    params = new URLSearchParams(raw.slice(q + 1));
    raw = raw.slice(0, q);
  }
  const parts = raw
    .split('/')
    .filter(Boolean)
    .map((part) => {
      try {
        return decodeURIComponent(part);
      } catch {
        return part;
      }
    });
  return { parts, params };
}

function runCleanup() {
  if (typeof cleanup === 'function') {
    try {
      cleanup();
    } catch (error) {
      console.warn('studio: cleanup failed', error);
    }
  }
  cleanup = null;
}

async function route() {
  const turn = ++routing;
  if (auth.mode === 'unknown') return;
  if (auth.mode === 'key' && !auth.key) {
    showKeyForm();
    return;
  }
  runCleanup();
  const { parts, params } = parseHash();
  const hadFocus = main.contains(document.activeElement);

  if (parts.length === 0) {
    stopTail();
    dropShell();
    main.replaceChildren();
    cleanup = mountStores(main);
  } else if (parts[0] === 's' && parts[1]) {
    const store = parts[1];
    const view = parts[2] || 'streams';
    const tab = view === 'stream' ? 'streams' : view;
    stopTail(store); // a different store's tail stops; this store's keeps running
    const shell = storeShell(main, store, tab);
    if (turn !== routing) return;
    const body = shell.body;
    body.replaceChildren();
    if (view === 'streams') cleanup = mountStreams(body, store);
    else if (view === 'stream' && parts[3] !== undefined) cleanup = mountStream(body, store, parts[3]);
    else if (view === 'tail') cleanup = mountTail(body, store);
    else if (view === 'append') cleanup = mountAppend(body, store, params);
    else if (view === 'subscriptions' && parts[3] !== undefined) cleanup = mountDeadLetters(body, store, parts[3]);
    else if (view === 'subscriptions') cleanup = mountSubscriptions(body, store);
    else body.append(notFound());
  } else {
    stopTail();
    dropShell();
    main.replaceChildren(notFound());
  }
  // Keyboard users: a navigation that removed the focused element puts focus on the content.
  if (hadFocus && !main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

function notFound() {
  return h('section', { class: 'panel' }, h('h1', null, 'Not found'), h('p', null, 'No such page. ', h('a', { href: '#/' }, 'Back to the event stores')));
}

// -- credentials -------------------------------------------------------------------------------

function renderAuthState() {
  const state = document.getElementById('auth-state');
  const forget = document.getElementById('forget-key');
  if (auth.mode === 'open') {
    state.textContent = 'Dev mode · no credentials needed';
    state.className = 'pill pill-warn';
    state.title = 'Auth is off on this gateway (the embedded dev mode): anyone who can reach it can do anything.';
    forget.hidden = true;
  } else if (auth.mode === 'key' && auth.key) {
    state.textContent = `API key …${auth.key.slice(-4)} · this tab only`;
    state.className = 'pill pill-ok';
    state.title = 'Kept in this tab’s session storage and sent as the X-API-Key header; the live tail uses short-lived tokens.';
    forget.hidden = false;
  } else if (auth.mode === 'key') {
    state.textContent = 'API key required';
    state.className = 'pill pill-bad';
    state.title = '';
    forget.hidden = true;
  } else {
    state.textContent = 'checking credentials…';
    state.className = 'pill';
    forget.hidden = true;
  }
}

function showKeyForm(problem) {
  runCleanup();
  stopTail();
  dropShell();
  renderAuthState();
  const input = h('input', {
    id: 'api-key',
    name: 'api-key',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'api-key-help',
    placeholder: 'dg_…',
  });
  const status = h('div', { id: 'api-key-status' });
  if (problem) status.append(errorBox(problem));
  const button = h('button', { type: 'submit', class: 'primary' }, 'Use this key');
  const form = h(
    'form',
    { class: 'panel narrow', id: 'key-form', novalidate: true },
    h('h1', null, 'This gateway needs an API key'),
    h('p', null, 'Auth is on. Enter an API key (create one with ', h('code', null, 'deltagate keys create'), ').'),
    h('label', { for: 'api-key' }, 'API key'),
    input,
    h(
      'p',
      { id: 'api-key-help', class: 'muted' },
      'Kept in this browser tab’s session storage only (gone when the tab closes) and sent as the X-API-Key header. ' +
        'The live tail connects with short-lived tokens minted with it; the key is never put in a URL.',
    ),
    h('div', { class: 'row' }, button),
    status,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    status.replaceChildren();
    if (!key) {
      status.append(errorBox('Enter a key.'));
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      await tryKey(key);
      input.value = '';
      renderAuthState();
      notify('Key accepted.');
      await route();
    } catch (error) {
      status.append(errorBox(error instanceof ApiError && error.status === 401 ? 'The gateway refused this key.' : describe(error)));
      input.focus();
      input.select();
    } finally {
      button.disabled = false;
    }
  });
  main.replaceChildren(form);
  input.focus();
}

auth.onRefused = (error) => {
  setKey(null);
  showKeyForm(`The gateway refused the key: ${error.message}`);
};

document.getElementById('forget-key').addEventListener('click', () => {
  setKey(null);
  notify('Key forgotten.');
  showKeyForm();
});

// -- start -------------------------------------------------------------------------------------

async function start() {
  window.addEventListener('hashchange', () => {
    route();
  });
  try {
    const outcome = await probe();
    renderAuthState();
    if (outcome === 'needed') {
      showKeyForm();
      return;
    }
  } catch (error) {
    main.replaceChildren(errorBox(`The gateway did not answer: ${describe(error)}`), h('p', null, h('button', { type: 'button', onclick: () => location.reload() }, 'Retry')));
    return;
  }
  await route();
}

start();
