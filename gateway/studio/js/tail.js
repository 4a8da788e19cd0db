// Live tail over the WebSocket or Server-Sent Events (a choice on the form; the status bar shows
// which one is in use), with the gateway's own client (/client/deltagate.js: reconnects and
// resumes from the last position seen, so nothing is missed or repeated). It can start from a
// time ("since 10:00": the first event created at or after it).
//
// Made for thousands of events per second: an event only goes into an array; the DOM is
// updated at most once per animation frame, with one DocumentFragment, and never holds more
// than `cap` rows (older rows are dropped from the bottom; newest is on top). While paused,
// events go into a buffer (the latest `cap` of them are kept) and the count shows; on resume
// they are rendered in order.

import { DeltaBaseWebSocket } from '/client/deltagate.js';
import { api, auth, describe, storePath, wsToken } from './api.js';
import { h, href, pretty, preview, timeEl } from './dom.js';

let current = null; // the running (or last) tail: one per store, kept while browsing its tabs

/** Stop the tail unless it belongs to `keepStore`. */
export function stopTail(keepStore) {
  if (current !== null && current.store !== keepStore) {
    current.stop();
    current = null;
  }
}

export function mountTail(body, store) {
  if (current === null || current.store !== store) current = new Tail(store);
  body.append(current.root);
  current.render(true);
  return null; // keeps running while the user looks at the store's other tabs
}

class Tail {
  constructor(store) {
    this.store = store;
    this.client = null;
    this.running = false;
    this.paused = false;
    this.cap = 500;
    this.pending = []; // received, not yet rendered
    this.buffer = []; // received while paused
    this.buffered = 0; // how many arrived while paused (the buffer keeps the latest `cap`)
    this.received = 0;
    this.dropped = 0; // not rendered because more than `cap` arrived at once
    this.rows = 0;
    this.lastPosition = null;
    this.frame = 0;
    this.fallback = 0;
    this.samples = [];
    this.rateTimer = 0;
    this.generation = 0;
    this.build();
  }

  build() {
    const el = (tag, attrs, ...children) => h(tag, attrs, ...children);
    this.pattern = el('input', { id: 'tail-pattern', name: 'pattern', value: '*', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'tail-pattern-hint' });
    this.stream = el('input', { id: 'tail-stream', name: 'stream', autocomplete: 'off', spellcheck: 'false', placeholder: 'any stream' });
    this.start = el(
      'select',
      { id: 'tail-from', name: 'from' },
      el('option', { value: 'latest' }, 'latest (new events only)'),
      el('option', { value: 'earliest' }, 'earliest (replay everything)'),
      el('option', { value: 'number' }, 'after a global position…'),
      el('option', { value: 'time' }, 'since a time…'),
    );
    this.since = el('input', { id: 'tail-since', name: 'since', type: 'datetime-local', step: '1', disabled: true, hidden: true, 'aria-label': 'Start at events created at or after (your local time)' });
    this.transport = el(
      'select',
      { id: 'tail-transport', name: 'transport' },
      el('option', { value: 'websocket' }, 'WebSocket'),
      el('option', { value: 'sse' }, 'Server-Sent Events'),
    );
    this.position = el('input', { id: 'tail-position', name: 'position', type: 'number', min: '0', step: '1', inputmode: 'numeric', placeholder: 'position', disabled: true, 'aria-label': 'Start after global position' });
    this.start.addEventListener('change', () => {
      this.position.disabled = this.start.value !== 'number';
      this.position.hidden = this.start.value === 'time';
      this.since.disabled = this.since.hidden = this.start.value !== 'time';
      if (!this.position.disabled) this.position.focus();
      if (!this.since.disabled) this.since.focus();
    });
    this.capInput = el('input', { id: 'tail-cap', name: 'cap', type: 'number', min: '10', max: '10000', step: '10', value: String(this.cap) });
    this.capInput.addEventListener('change', () => {
      const value = Math.round(Number(this.capInput.value));
      if (Number.isFinite(value) && value >= 10 && value <= 10000) {
        this.cap = value;
        this.trim();
      } else {
        this.capInput.value = String(this.cap);
      }
    });
    this.startButton = el('button', { type: 'submit', class: 'primary', id: 'tail-start' }, 'Start');
    this.stopButton = el('button', { type: 'button', id: 'tail-stop', disabled: true, onclick: () => this.stop(true) }, 'Stop');
    this.pauseButton = el('button', { type: 'button', id: 'tail-pause', disabled: true, 'aria-pressed': 'false', onclick: () => (this.paused ? this.resume() : this.pause()) }, 'Pause');
    this.clearButton = el('button', { type: 'button', id: 'tail-clear', onclick: () => this.clear() }, 'Clear');

    this.stateEl = el('span', { id: 'tail-state', class: 'pill' }, 'stopped');
    this.transportEl = el('span', { id: 'tail-via', class: 'pill', title: 'How the tail is connected' }, '—');
    this.rateEl = el('span', { id: 'tail-rate' }, '0');
    this.receivedEl = el('span', { id: 'tail-received' }, '0');
    this.shownEl = el('span', { id: 'tail-shown' }, '0');
    this.lastEl = el('span', { id: 'tail-last' }, '—');
    this.bufferedEl = el('span', { id: 'tail-buffered', class: 'pill pill-warn', hidden: true, role: 'status' });
    this.droppedEl = el('span', { id: 'tail-dropped', class: 'muted', hidden: true });
    this.infoEl = el('p', { id: 'tail-info', class: 'muted' }, 'Pick what to watch and press Start.');
    this.errorEl = el('p', { id: 'tail-error', class: 'error', role: 'alert', hidden: true });
    this.noticeEl = el('p', { id: 'tail-notice', class: 'pill pill-warn', role: 'status', hidden: true });
    this.tbody = el('tbody', { id: 'tail-rows' });

    const field = (...children) => el('div', { class: 'field' }, ...children);
    const form = el(
      'form',
      { class: 'panel tail-form', id: 'tail-form', novalidate: true, onsubmit: (e) => (e.preventDefault(), this.begin()) },
      field(el('label', { for: 'tail-pattern' }, 'Event types'), this.pattern),
      field(el('label', { for: 'tail-stream' }, 'Stream (optional)'), this.stream),
      field(el('label', { for: 'tail-from' }, 'Start from'), el('div', { class: 'row' }, this.start, this.position, this.since)),
      field(el('label', { for: 'tail-transport' }, 'Connection'), this.transport),
      field(el('label', { for: 'tail-cap' }, 'Rows kept'), this.capInput),
      el('div', { class: 'row buttons' }, this.startButton, this.stopButton, this.pauseButton, this.clearButton),
      el('p', { id: 'tail-pattern-hint', class: 'hint wide' }, '* matches any run of characters; several patterns separated by commas (order.*, *.created). Newest events on top; older rows beyond “Rows kept” are dropped so the page stays fast at any rate.'),
    );
    const status = el(
      'div',
      { class: 'tail-status', 'aria-label': 'Tail status' },
      this.stateEl,
      this.transportEl,
      el('span', null, el('strong', null, this.rateEl), ' events/s'),
      el('span', null, this.receivedEl, ' received'),
      el('span', null, this.shownEl, ' shown'),
      el('span', null, 'last position ', this.lastEl),
      this.bufferedEl,
      this.droppedEl,
    );
    const table = el(
      'table',
      { class: 'grid tail', id: 'tail-table' },
      el('caption', { class: 'sr-only' }, 'Live events, newest first'),
      el(
        'thead',
        null,
        el('tr', null, el('th', { scope: 'col', class: 'num' }, 'Position'), el('th', { scope: 'col' }, 'Time'), el('th', { scope: 'col' }, 'Type'), el('th', { scope: 'col' }, 'Stream'), el('th', { scope: 'col', class: 'num' }, 'Stream pos.'), el('th', { scope: 'col' }, 'Data')),
      ),
      this.tbody,
    );
    this.root = el('section', { class: 'tail-view', 'aria-labelledby': 'tail-title' }, el('h2', { id: 'tail-title', class: 'sr-only' }, 'Live tail'), form, status, this.infoEl, this.noticeEl, this.errorEl, el('div', { class: 'table-wrap' }, table));
  }

  setState(state) {
    this.stateEl.textContent = state;
    this.stateEl.className = `pill state-${state}`;
    this.stateEl.dataset.state = state;
  }

  showError(text) {
    this.errorEl.textContent = text;
    this.errorEl.hidden = !text;
  }

  /** What the server said of the store's history (a reset, a truncation): shown until the
   * next Start, the rows above it being the new history's. */
  showNotice(text, kind) {
    this.flush(); // the rows received before it are shown before it
    this.noticeEl.textContent = text;
    this.noticeEl.hidden = !text;
    this.noticeEl.dataset.kind = kind || '';
  }

  async begin() {
    this.stop(false);
    this.showError('');
    this.showNotice('');
    const patterns = this.pattern.value
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
    if (patterns.length === 0) {
      this.showError('Enter at least one event type pattern (* for all).');
      this.pattern.focus();
      return;
    }
    const filter = patterns.length === 1 ? patterns[0] : patterns;
    const streamId = this.stream.value.trim() || undefined;
    const generation = ++this.generation;
    let position = this.start.value;
    let info;
    if (position === 'number') {
      const n = Number(this.position.value);
      if (this.position.value.trim() === '' || !Number.isSafeInteger(n) || n < 0) {
        this.showError('The start position must be a whole number ≥ 0 (events after it are shown).');
        this.position.focus();
        return;
      }
      position = n;
      info = `Replaying events after global position ${n}, then live.`;
    } else if (position === 'time') {
      const at = new Date(this.since.value); // datetime-local: the browser's time zone
      if (this.since.value === '' || Number.isNaN(at.getTime())) {
        this.showError('Pick the time to start from (events created at or after it are shown).');
        this.since.focus();
        return;
      }
      position = { time: at.toISOString() };
      info = `Replaying events created since ${at.toLocaleString()}, then live.`;
    } else if (position === 'latest') {
      // Pin "latest" to the head now, so an event appended after Start is never missed while
      // the socket is still opening.
      try {
        const store = await api('GET', storePath(this.store));
        position = store.statistics.headPosition;
      } catch (error) {
        this.showError(`Could not read the store's head: ${describe(error)}`);
        return;
      }
      info = `Live: events after global position ${position}.`;
    } else {
      info = 'Replaying every retained event from the start, then live.';
    }
    if (generation !== this.generation) return;
    const what = `${patterns.join(', ')}${streamId ? ` in stream ${streamId}` : ''}`;
    this.infoEl.textContent = `${info} Watching ${what}.`;
    this.infoEl.dataset.from = typeof position === 'object' ? position.time : String(position);
    const transport = this.transport.value;
    this.transportEl.textContent = transport === 'sse' ? 'SSE' : 'WebSocket';
    this.transportEl.dataset.transport = transport;

    const options = {
      transport,
      onStateChange: (state) => generation === this.generation && this.setState(state),
      onCaughtUp: (_id, at) => {
        if (generation === this.generation) this.infoEl.textContent = `Caught up at global position ${at}; live now. Watching ${what}.`;
      },
      onReset: (msg) => {
        if (generation !== this.generation) return;
        const why = msg.reason === 'store-recreated' ? 'the store was deleted and created again' : 'the store no longer holds the position the tail had reached (Redis lost writes, or a dev server restarted)';
        this.showNotice(`History started again (${why}): the rows from here on are the store's current history, from its first event.`, 'reset');
      },
      onTruncated: (msg) => {
        if (generation !== this.generation) return;
        this.showNotice(`Events ${msg.requestedPosition + 1} to ${msg.earliestPosition - 1} are gone (retention): the tail goes on from ${msg.earliestPosition}.`, 'truncated');
      },
      onError: (error, where) => {
        if (generation !== this.generation) return;
        if (where === 'close' || where === 'connect') return; // shown as the state
        this.showError(`${where}: ${error && error.message ? error.message : error}`);
      },
    };
    if (auth.mode !== 'open') options.getToken = () => wsToken(this.store);
    this.client = new DeltaBaseWebSocket(this.store, null, (event) => this.onEvent(event), options);
    this.running = true;
    this.client.connect();
    this.client.subscribe(filter, streamId, position);
    this.samples = [[performance.now(), this.received]];
    this.rateTimer = setInterval(() => this.tickRate(), 500);
    this.startButton.textContent = 'Restart';
    this.stopButton.disabled = false;
    this.pauseButton.disabled = false;
    this.render(true);
  }

  stop(announce) {
    this.generation += 1;
    if (this.client !== null) {
      this.client.disconnect();
      this.client = null;
    }
    clearInterval(this.rateTimer);
    this.rateTimer = 0;
    this.running = false;
    if (this.paused) this.resume();
    this.flush();
    this.setState('stopped');
    this.rateEl.textContent = '0';
    this.startButton.textContent = 'Start';
    this.stopButton.disabled = true;
    this.pauseButton.disabled = true;
    if (announce) this.infoEl.textContent = 'Stopped. Press Start to watch again (rows stay until you clear them).';
  }

  onEvent(event) {
    this.received += 1;
    this.lastPosition = event.globalPosition;
    if (this.paused) {
      this.buffered += 1;
      this.buffer.push(event);
      if (this.buffer.length > 2 * this.cap) this.buffer.splice(0, this.buffer.length - this.cap);
    } else {
      this.pending.push(event);
      if (this.pending.length > 2 * this.cap) {
        const extra = this.pending.length - this.cap;
        this.pending.splice(0, extra);
        this.dropped += extra;
      }
    }
    this.schedule();
  }

  schedule() {
    if (this.frame || this.fallback) return;
    this.frame = requestAnimationFrame(() => this.flush());
    // Frames stop in a hidden tab: still catch up now and then (and keep memory bounded).
    this.fallback = setTimeout(() => this.flush(), 250);
  }

  flush() {
    if (this.frame) cancelAnimationFrame(this.frame);
    clearTimeout(this.fallback);
    this.frame = 0;
    this.fallback = 0;
    let batch = this.pending;
    this.pending = [];
    if (batch.length > this.cap) {
      this.dropped += batch.length - this.cap;
      batch = batch.slice(batch.length - this.cap);
    }
    if (batch.length) {
      const fragment = document.createDocumentFragment();
      for (let i = batch.length - 1; i >= 0; i -= 1) fragment.append(this.row(batch[i]));
      this.tbody.prepend(fragment);
      this.rows += batch.length;
      this.trim();
    }
    this.render(false);
  }

  trim() {
    while (this.rows > this.cap && this.tbody.lastElementChild) {
      this.tbody.lastElementChild.remove();
      this.rows -= 1;
    }
  }

  row(event) {
    const details = h('details', null, h('summary', { class: 'mono' }, preview(event.data)));
    details.addEventListener(
      'toggle',
      () => {
        if (details.open && details.childElementCount === 1) {
          details.append(h('pre', { class: 'json data' }, pretty(event.data)));
          if (event.metadata !== undefined) {
            details.append(h('div', { class: 'sub' }, 'metadata'), h('pre', { class: 'json metadata' }, pretty(event.metadata)));
          }
          details.append(
            h('p', { class: 'muted mono small' }, `eventId ${event.eventId} · transaction ${event.transactionId ?? '—'} · schema v${event.schemaVersion ?? 1} · ${event.createdAt}`),
          );
        }
      },
      { once: false },
    );
    return h(
      'tr',
      { dataset: { position: event.globalPosition } },
      h('td', { class: 'num mono' }, String(event.globalPosition)),
      h('td', { class: 'nowrap' }, timeEl(event.createdAt, true)),
      h('td', { class: 'mono type' }, event.type),
      h('td', { class: 'mono' }, h('a', { href: href('s', this.store, 'stream', event.streamId) }, event.streamId)),
      h('td', { class: 'num mono' }, String(event.streamPosition)),
      h('td', { class: 'data' }, details),
    );
  }

  pause() {
    if (this.paused || !this.running) return;
    this.flush(); // what arrived before the click is shown
    this.paused = true;
    this.buffered = 0;
    this.pauseButton.textContent = 'Resume';
    this.pauseButton.setAttribute('aria-pressed', 'true');
    this.render(true);
  }

  resume() {
    if (!this.paused) return;
    this.paused = false;
    const lost = this.buffered - this.buffer.length;
    if (lost > 0) this.dropped += lost;
    this.pending = this.buffer.concat(this.pending);
    this.buffer = [];
    this.buffered = 0;
    this.pauseButton.textContent = 'Pause';
    this.pauseButton.setAttribute('aria-pressed', 'false');
    this.flush();
  }

  clear() {
    this.tbody.replaceChildren();
    this.rows = 0;
    this.pending = [];
    this.buffer = [];
    this.buffered = 0;
    this.dropped = 0;
    this.received = 0;
    this.samples = [[performance.now(), 0]];
    this.render(true);
  }

  tickRate() {
    const now = performance.now();
    this.samples.push([now, this.received]);
    while (this.samples.length > 2 && now - this.samples[1][0] >= 1000) this.samples.shift();
    const [t0, n0] = this.samples[0];
    const seconds = (now - t0) / 1000;
    const rate = seconds > 0 ? Math.max(0, (this.received - n0) / seconds) : 0;
    this.rateEl.textContent = rate >= 100 ? Math.round(rate).toLocaleString('en-US') : rate.toFixed(1).replace(/\.0$/, '');
  }

  render(full) {
    this.receivedEl.textContent = this.received.toLocaleString('en-US');
    this.shownEl.textContent = this.rows.toLocaleString('en-US');
    this.lastEl.textContent = this.lastPosition === null ? '—' : String(this.lastPosition);
    if (this.paused) {
      this.bufferedEl.hidden = false;
      this.bufferedEl.textContent = `Paused · ${this.buffered.toLocaleString('en-US')} buffered`;
      this.bufferedEl.dataset.count = String(this.buffered);
    } else {
      this.bufferedEl.hidden = true;
      this.bufferedEl.dataset.count = '0';
    }
    if (full && !this.running) this.setState('stopped');
    this.droppedEl.hidden = this.dropped === 0;
    this.droppedEl.textContent = `${this.dropped.toLocaleString('en-US')} not rendered (arrived faster than the ${this.cap}-row cap)`;
  }
}
