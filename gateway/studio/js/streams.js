// A store's streams (searchable, paginated) and one stream's events.

import { api, describe, query, storePath, unaddressable } from './api.js';
import { errorBox, h, href, number, pretty, timeEl } from './dom.js';

const listState = new Map(); // store -> {search, offset, limit}: kept while browsing

export function mountStreams(body, store) {
  let alive = true;
  const state = listState.get(store) || { search: '', offset: 0, limit: 50 };
  listState.set(store, state);

  const search = h('input', {
    type: 'search',
    id: 'stream-search',
    name: 'search',
    value: state.search,
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'order-',
  });
  const size = h(
    'select',
    { id: 'stream-page-size' },
    [25, 50, 100, 250].map((n) => h('option', { value: n, selected: n === state.limit }, String(n))),
  );
  const results = h('div', { id: 'streams-results', 'aria-live': 'polite', 'aria-busy': 'true' });
  const pager = h('div', { class: 'pager', id: 'streams-pager' });

  let debounce = 0;
  let turn = 0;
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      state.search = search.value;
      state.offset = 0;
      load();
    }, 250);
  });
  size.addEventListener('change', () => {
    state.limit = Number(size.value);
    state.offset = 0;
    load();
  });
  const form = h(
    'form',
    { class: 'toolbar', role: 'search', onsubmit: (e) => (e.preventDefault(), clearTimeout(debounce), (state.search = search.value), (state.offset = 0), load()) },
    h('label', { for: 'stream-search' }, 'Search streams'),
    search,
    h('label', { for: 'stream-page-size' }, 'Per page'),
    size,
    h('button', { type: 'submit' }, 'Search'),
  );

  async function load() {
    const mine = ++turn;
    results.setAttribute('aria-busy', 'true');
    try {
      const page = await api(
        'GET',
        storePath(store, '/streams' + query({ limit: state.limit, offset: state.offset, search: state.search.trim() })),
      );
      if (!alive || mine !== turn) return;
      render(page);
    } catch (error) {
      if (!alive || mine !== turn) return;
      results.replaceChildren(errorBox(describe(error)));
      pager.replaceChildren();
    } finally {
      results.setAttribute('aria-busy', 'false');
    }
  }

  function render(page) {
    const streams = page.streams || [];
    const p = page.pagination || {};
    const total = typeof p.total === 'number' ? p.total : streams.length;
    if (streams.length === 0) {
      results.replaceChildren(
        h('p', { class: 'empty' }, state.search ? `No stream matches “${state.search}”.` : 'This store has no streams yet.'),
      );
    } else {
      results.replaceChildren(
        h(
          'table',
          { class: 'grid', id: 'streams-table' },
          h('caption', { class: 'sr-only' }, `Streams of ${store}`),
          h(
            'thead',
            null,
            h('tr', null, h('th', { scope: 'col' }, 'Stream'), h('th', { scope: 'col' }, 'Type'), h('th', { scope: 'col', class: 'num' }, 'Events'), h('th', { scope: 'col' }, 'Created'), h('th', { scope: 'col' }, 'Updated')),
          ),
          h(
            'tbody',
            null,
            streams.map((s) =>
              h(
                'tr',
                { dataset: { stream: s.streamId } },
                h('th', { scope: 'row' }, h('a', { href: href('s', store, 'stream', s.streamId), class: 'mono' }, s.streamId)),
                h('td', null, s.streamType || ''),
                h('td', { class: 'num' }, number(s.streamPosition + 1)),
                h('td', null, timeEl(s.createdAt)),
                h('td', null, timeEl(s.updatedAt)),
              ),
            ),
          ),
        ),
      );
    }
    const from = streams.length ? state.offset + 1 : 0;
    const to = state.offset + streams.length;
    pager.replaceChildren(
      h('span', { id: 'streams-range' }, `${number(from)}–${number(to)} of ${number(total)}`),
      h('button', { type: 'button', id: 'streams-prev', disabled: state.offset === 0, onclick: () => ((state.offset = Math.max(0, state.offset - state.limit)), load()) }, 'Previous'),
      h('button', { type: 'button', id: 'streams-next', disabled: !p.hasMore, onclick: () => ((state.offset += state.limit), load()) }, 'Next'),
    );
  }

  body.append(h('h2', { class: 'sr-only' }, 'Streams'), form, results, pager);
  load();
  return () => {
    alive = false;
    clearTimeout(debounce);
  };
}

// -- one stream ---------------------------------------------------------------------------------

const streamState = new Map(); // `${store}\n${stream}` -> {direction, limit}

export function mountStream(body, store, streamId) {
  let alive = true;
  const key = `${store}\n${streamId}`;
  const state = streamState.get(key) || { direction: 'backward', limit: 50 };
  streamState.set(key, state);
  let pages = [null]; // start positions of the pages seen (null: the stream's first/last event)
  let version = 0;
  const list = h('div', { id: 'stream-events', 'aria-busy': 'true' });
  const pager = h('div', { class: 'pager', id: 'stream-pager' });
  const info = h('p', { id: 'stream-info', class: 'muted' });

  const order = h(
    'fieldset',
    { class: 'segmented' },
    h('legend', null, 'Order'),
    ...[
      ['backward', 'Newest first'],
      ['forward', 'Oldest first'],
    ].map(([value, label]) => {
      const id = `order-${value}`;
      const radio = h('input', { type: 'radio', name: 'stream-order', id, value, checked: state.direction === value });
      radio.addEventListener('change', () => {
        if (!radio.checked) return;
        state.direction = value;
        pages = [null];
        load();
      });
      return h('span', null, radio, h('label', { for: id }, label));
    }),
  );
  const size = h('select', { id: 'stream-page-size' }, [20, 50, 100, 500].map((n) => h('option', { value: n, selected: n === state.limit }, String(n))));
  size.addEventListener('change', () => {
    state.limit = Number(size.value);
    pages = [null];
    load();
  });

  async function load() {
    const why = unaddressable(streamId);
    if (why !== null) {
      list.replaceChildren(errorBox('This stream cannot be opened here', [`${why[0].toUpperCase()}${why.slice(1)}: read it with GET .../events?streamId=.`]));
      return;
    }
    list.setAttribute('aria-busy', 'true');
    const from = pages[pages.length - 1];
    try {
      const page = await api(
        'GET',
        storePath(store, `/streams/${encodeURIComponent(streamId)}` + query({ direction: state.direction, limit: state.limit, from })),
      );
      if (!alive) return;
      version = page.currentStreamVersion;
      render(page.events || []);
    } catch (error) {
      if (!alive) return;
      list.replaceChildren(errorBox(describe(error)));
    } finally {
      list.setAttribute('aria-busy', 'false');
    }
  }

  function render(events) {
    info.textContent = `Version ${number(version)} (${number(version)} event${version === 1 ? '' : 's'}), ${state.direction === 'forward' ? 'oldest' : 'newest'} first.`;
    list.replaceChildren(
      events.length ? h('ol', { class: 'events', reversed: state.direction === 'backward' }, events.map(eventCard)) : h('p', { class: 'empty' }, 'No events in this stream.'),
    );
    const last = events[events.length - 1];
    let next = null;
    if (last && state.direction === 'forward' && last.streamPosition < version - 1) next = last.streamPosition + 1;
    if (last && state.direction === 'backward' && last.streamPosition > 0) next = last.streamPosition - 1;
    const first = events[0];
    pager.replaceChildren(
      h('span', null, first ? `Stream positions ${first.streamPosition}–${last.streamPosition}` : ''),
      h('button', { type: 'button', id: 'stream-prev', disabled: pages.length <= 1, onclick: () => (pages.pop(), load()) }, 'Previous page'),
      h('button', { type: 'button', id: 'stream-next', disabled: next === null, onclick: () => (pages.push(next), load()) }, 'Next page'),
    );
  }

  body.append(
    h(
      'nav',
      { class: 'crumbs', 'aria-label': 'Stream' },
      h('a', { href: href('s', store, 'streams') }, 'Streams'),
      h('span', { 'aria-hidden': 'true' }, ' / '),
    ),
    h(
      'div',
      { class: 'section-head' },
      h('h2', { id: 'stream-title', class: 'mono' }, streamId),
      h('div', { class: 'row' }, h('a', { class: 'button', href: `${href('s', store, 'append')}?stream=${encodeURIComponent(streamId)}` }, 'Append to this stream'), h('button', { type: 'button', id: 'stream-refresh', onclick: () => load() }, 'Refresh')),
    ),
    h('div', { class: 'toolbar' }, order, h('label', { for: 'stream-page-size' }, 'Per page'), size),
    info,
    list,
    pager,
  );
  load();
  return () => {
    alive = false;
  };
}

/** One stored event, every field as text: positions, ids, timestamps, data and metadata. */
export function eventCard(event) {
  const field = (label, value, cls = 'mono') => [h('dt', null, label), h('dd', { class: cls }, value)];
  return h(
    'li',
    { class: 'event', dataset: { position: event.globalPosition, streamPosition: event.streamPosition } },
    h(
      'div',
      { class: 'event-head' },
      h('span', { class: 'badge' }, `#${event.streamPosition}`),
      h('span', { class: 'event-type mono' }, event.type),
      h('span', { class: 'muted' }, 'global ', h('span', { class: 'mono' }, String(event.globalPosition))),
      timeEl(event.createdAt),
    ),
    h(
      'dl',
      { class: 'meta' },
      field('Event ID', event.eventId),
      field('Transaction', event.transactionId ?? '—'),
      field('Schema version', String(event.schemaVersion ?? 1)),
      field('Created (UTC)', event.createdAt),
    ),
    h('h3', { class: 'sub' }, 'Data'),
    h('pre', { class: 'json data' }, pretty(event.data)),
    event.metadata !== undefined ? [h('h3', { class: 'sub' }, 'Metadata'), h('pre', { class: 'json metadata' }, pretty(event.metadata))] : null,
  );
}
