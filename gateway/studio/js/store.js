// One store's frame: its statistics, delete (with a typed confirmation) and the tabs.

import { api, describe, storePath } from './api.js';
import { confirmTyped, errorBox, h, href, notify, number, timeEl } from './dom.js';

const TABS = [
  ['streams', 'Streams'],
  ['tail', 'Live tail'],
  ['append', 'Append'],
  ['subscriptions', 'Subscriptions'],
];

let shell = null;
let statsTimer = 0;

export function dropShell() {
  shell = null;
  clearInterval(statsTimer);
  statsTimer = 0;
}

/** The frame for `store` with `tab` current; built once per store and reused across its tabs. */
export function storeShell(main, store, tab) {
  if (shell === null || shell.store !== store || !main.contains(shell.root)) {
    dropShell();
    shell = build(store);
    main.replaceChildren(shell.root);
    // The statistics follow the store while it is shown (hidden tabs skip the requests).
    statsTimer = setInterval(() => document.hidden || refreshStats(store), 5000);
  }
  for (const [name, link] of shell.tabs) {
    if (name === tab) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  refreshStats(store);
  return shell;
}

function build(store) {
  const stat = (label, id) => h('div', { class: 'stat' }, h('dt', null, label), h('dd', { id, 'aria-live': 'off' }, '…'));
  const tabs = new Map();
  const nav = h(
    'nav',
    { class: 'tabs', 'aria-label': `Store ${store}` },
    TABS.map(([name, label]) => {
      const link = h('a', { href: href('s', store, name), class: 'tab', id: `tab-${name}` }, label);
      tabs.set(name, link);
      return link;
    }),
  );
  const problem = h('div', { id: 'store-problem' });
  const root = h(
    'section',
    { class: 'store', 'aria-labelledby': 'store-title' },
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/' }, 'Event stores'), h('span', { 'aria-hidden': 'true' }, ' / ')),
    h(
      'div',
      { class: 'store-head' },
      h('div', null, h('h1', { id: 'store-title', class: 'mono' }, store), h('p', { id: 'store-description', class: 'muted' })),
      h(
        'div',
        { class: 'row' },
        h('button', { type: 'button', id: 'store-refresh', onclick: () => refreshStats(store, true) }, 'Refresh'),
        h('button', { type: 'button', id: 'store-delete', class: 'danger', onclick: () => deleteStore(store) }, 'Delete store…'),
      ),
    ),
    h(
      'dl',
      { class: 'stats' },
      stat('Streams', 'stat-streams'),
      stat('Events', 'stat-events'),
      stat('Head position', 'stat-head'),
      h('div', { class: 'stat' }, h('dt', null, 'Created'), h('dd', { id: 'stat-created' }, '…')),
    ),
    problem,
    nav,
    h('div', { class: 'tab-body', id: 'tab-body' }),
  );
  return { store, root, tabs, body: root.querySelector('#tab-body'), problem };
}

/** Reload the store's statistics into the frame (if it is still showing that store). */
export async function refreshStats(store, announce = false) {
  const current = shell;
  if (current === null || current.store !== store) return;
  try {
    const info = await api('GET', storePath(store));
    if (shell !== current) return;
    const stats = info.statistics || {};
    current.root.querySelector('#stat-streams').textContent = number(stats.totalStreams);
    current.root.querySelector('#stat-events').textContent = number(stats.totalEvents);
    current.root.querySelector('#stat-head').textContent = number(stats.headPosition);
    current.root.querySelector('#stat-created').replaceChildren(timeEl(info.createdAt));
    current.root.querySelector('#store-description').textContent = info.description || '';
    current.problem.replaceChildren();
    if (announce) notify('Statistics refreshed.');
  } catch (error) {
    if (shell !== current) return;
    current.problem.replaceChildren(
      errorBox(error.code === 'EVENT_STORE_NOT_FOUND' ? `Event store “${store}” does not exist.` : describe(error)),
    );
  }
}

export async function deleteStore(store, after) {
  let events = '';
  try {
    const info = await api('GET', storePath(store));
    events = ` and its ${number(info.statistics.totalEvents)} events in ${number(info.statistics.totalStreams)} streams`;
  } catch {
    // delete anyway
  }
  const confirmed = await confirmTyped({
    title: `Delete event store “${store}”?`,
    text: `This removes the store${events} permanently. It cannot be undone.`,
    expected: store,
    action: 'Delete store',
  });
  if (!confirmed) return false;
  try {
    await api('DELETE', storePath(store, '?confirm=true'));
  } catch (error) {
    notify(`Could not delete “${store}”: ${describe(error)}`, 'bad');
    return false;
  }
  notify(`Deleted event store “${store}”.`);
  if (typeof after === 'function') after();
  else if (location.hash !== '#/') location.hash = '#/';
  return true;
}
