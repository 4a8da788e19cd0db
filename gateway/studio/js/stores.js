// The event stores: statistics, create, delete.

import { api, describe, detailLines } from './api.js';
import { errorBox, h, href, notify, number, replaceKeepingFocus, timeEl } from './dom.js';
import { deleteStore } from './store.js';

const NAME = /^[a-z0-9_-]{3,63}$/;

export function mountStores(main) {
  let alive = true;
  const list = h('div', { id: 'stores-list', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));

  const name = h('input', {
    id: 'new-store-name',
    name: 'name',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'orders',
    'aria-describedby': 'new-store-hint',
  });
  const description = h('input', { id: 'new-store-description', name: 'description', autocomplete: 'off' });
  const result = h('div', { id: 'new-store-result' });
  const create = h('button', { type: 'submit', class: 'primary', id: 'new-store-create' }, 'Create store');
  const form = h(
    'form',
    { class: 'panel form-grid', id: 'new-store', novalidate: true, 'aria-labelledby': 'new-store-title' },
    h('h2', { id: 'new-store-title' }, 'New event store'),
    h('label', { for: 'new-store-name' }, 'Name'),
    h('div', null, name, h('p', { id: 'new-store-hint', class: 'hint' }, '3 to 63 characters: a–z, 0–9, _ and -')),
    h('label', { for: 'new-store-description' }, 'Description (optional)'),
    description,
    h('span'),
    h('div', { class: 'row' }, create),
    h('span'),
    result,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    result.replaceChildren();
    name.removeAttribute('aria-invalid');
    const value = name.value.trim();
    if (!NAME.test(value)) {
      name.setAttribute('aria-invalid', 'true');
      result.append(errorBox('The name must be 3 to 63 characters of a–z, 0–9, _ and -.'));
      name.focus();
      return;
    }
    create.disabled = true;
    try {
      const body = { name: value };
      if (description.value.trim()) body.description = description.value.trim();
      await api('POST', '/event-stores', body);
      name.value = '';
      description.value = '';
      notify(`Created event store “${value}”.`);
      await load();
      const opened = list.querySelector(`a[data-store="${CSS.escape(value)}"]`);
      if (opened) opened.focus();
    } catch (error) {
      const lines = detailLines(error);
      result.append(errorBox(describe(error, lines), lines));
    } finally {
      create.disabled = false;
    }
  });

  async function load() {
    list.setAttribute('aria-busy', 'true');
    try {
      const stores = [];
      for (;;) { // the list comes a page at a time
        const page = await api('GET', `/event-stores?limit=1000&offset=${stores.length}`);
        stores.push(...(page.eventStores || []));
        if (!(page.eventStores || []).length || stores.length >= page.totalCount) break;
      }
      if (!alive) return;
      replaceKeepingFocus(list, table(stores));
    } catch (error) {
      if (!alive) return;
      replaceKeepingFocus(list, errorBox(describe(error)));
    } finally {
      list.setAttribute('aria-busy', 'false');
    }
  }

  function table(stores) {
    if (stores.length === 0) {
      return h('p', { class: 'empty' }, 'No event stores yet. Create one above, or append an event (the dev mode creates stores on first use).');
    }
    const sorted = [...stores].sort((a, b) => a.name.localeCompare(b.name));
    return h(
      'table',
      { class: 'grid', id: 'stores-table' },
      h('caption', { class: 'sr-only' }, 'Event stores'),
      h(
        'thead',
        null,
        h('tr', null, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Description'), h('th', { scope: 'col', class: 'num' }, 'Streams'), h('th', { scope: 'col', class: 'num' }, 'Events'), h('th', { scope: 'col', class: 'num' }, 'Head'), h('th', { scope: 'col' }, 'Created'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions'))),
      ),
      h(
        'tbody',
        null,
        sorted.map((store) => {
          const stats = store.statistics || {};
          return h(
            'tr',
            { dataset: { store: store.name } },
            h('th', { scope: 'row' }, h('a', { href: href('s', store.name), class: 'mono', dataset: { store: store.name, focusKey: `open:${store.name}` } }, store.name)),
            h('td', { class: 'muted' }, store.description || ''),
            h('td', { class: 'num' }, number(stats.totalStreams)),
            h('td', { class: 'num' }, number(stats.totalEvents)),
            h('td', { class: 'num' }, number(stats.headPosition)),
            h('td', null, timeEl(store.createdAt)),
            h(
              'td',
              { class: 'actions' },
              h(
                'button',
                {
                  type: 'button',
                  class: 'danger small',
                  'aria-label': `Delete store ${store.name}`,
                  dataset: { focusKey: `delete:${store.name}` },
                  onclick: () => deleteStore(store.name, load),
                },
                'Delete…',
              ),
            ),
          );
        }),
      ),
    );
  }

  main.append(
    h(
      'section',
      { 'aria-labelledby': 'stores-title' },
      h(
        'div',
        { class: 'section-head' },
        h('h1', { id: 'stores-title' }, 'Event stores'),
        h('button', { type: 'button', id: 'stores-refresh', onclick: () => load().then(() => notify('Refreshed.')) }, 'Refresh'),
      ),
      list,
    ),
    form,
  );
  load();
  const timer = setInterval(() => {
    if (!document.hidden) load();
  }, 5000);
  return () => {
    alive = false;
    clearInterval(timer);
  };
}
