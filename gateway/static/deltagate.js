// deltagate.js: the browser and Node 20 client of deltagate's live event stream.
//
// A drop-in for the DeltaBaseWebSocket class of the guide "Real-Time Events with WebSockets",
// made production-grade: it never gives up by default (exponential backoff with full jitter,
// capped), and on every reconnect it resumes each subscription from the last globalPosition it
// saw (of an event, a checkpoint or caughtUp), dropping anything at or below it, so `onEvent`
// sees each matching event exactly once and in order across disconnects and pod restarts.
//
// Served by the gateway at /client/deltagate.js (types: /client/deltagate.d.ts). No build step:
//
//   import { DeltaBaseWebSocket } from '/client/deltagate.js';
//   const client = new DeltaBaseWebSocket('orders', null, (event) => render(event));
//   client.connect();
//   client.subscribe('order.*');
//
// In Node 20 pass the `ws` package: `{ baseUrl: 'http://127.0.0.1:8787', WebSocket: require('ws') }`.
//
// `transport: 'sse'` uses Server-Sent Events instead (the browser's EventSource, one stream per
// subscription; for proxies that strip WebSocket upgrades): this client reopens a dropped stream
// itself, from its cursor and the store's epoch (with `getToken`, with a fresh token), and drops
// anything seen already.
//
// With `getToken`, a WebSocket's token is refreshed over the open socket before it expires
// (`{"action": "refresh"}`), so short-lived tokens never force a reconnect. `getToken` may return
// the token, or the `{token, expiresAt}` answer of POST /event-stores/{store}/ws-tokens.
//
// Credentials: an API key goes in the `X-API-Key` header where the WebSocket implementation takes
// headers (the `ws` package), never in the URL, which proxies and servers log. A browser's
// WebSocket cannot send headers, so there a key would have to ride in `?apiKey=`: browsers should
// use a short-lived token (`options.token` or `getToken()`, minted by your backend) instead.

const OPEN = 1;
// Error codes that refuse a subscribe only for now.
const TEMPORARY = new Set(['RATE_LIMIT_EXCEEDED', 'UNAVAILABLE', 'INTERNAL_ERROR']);

export const DEFAULT_OPTIONS = Object.freeze({
  initialDelay: 1000,
  maxDelay: 30000,
  maxReconnectAttempts: Infinity,
  pingInterval: 25000,
  pongTimeout: 10000,
  openTimeout: 10000,
  stableAfter: 5000,
  transport: 'websocket',
  refreshBefore: 60000,
});

/** When a token expires (ms since the epoch), from an explicit `expiresAt` or the JWT's `exp`;
 * null when unknown. */
export function tokenExpiry(token, expiresAt) {
  if (expiresAt !== undefined && expiresAt !== null) {
    const at = Date.parse(expiresAt);
    if (!Number.isNaN(at)) return at;
  }
  try {
    const part = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
    return Number.isFinite(claims.exp) ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}

/** Resolve the WebSocket base (ws:// or wss://, no trailing slash) from an http(s) or ws(s) URL,
 * or from the page's origin when none is given. */
export function wsBase(baseUrl) {
  let base = baseUrl;
  if (base === undefined || base === null || base === '') {
    const origin = globalThis.location && globalThis.location.origin;
    if (!origin || origin === 'null') {
      throw new TypeError('deltagate: options.baseUrl is required outside a web page');
    }
    base = origin;
  }
  base = String(base).replace(/\/+$/, '');
  if (base.startsWith('https://')) return `wss://${base.slice(8)}`;
  if (base.startsWith('http://')) return `ws://${base.slice(7)}`;
  if (base.startsWith('ws://') || base.startsWith('wss://')) return base;
  throw new TypeError(`deltagate: baseUrl must start with http(s):// or ws(s)://, got ${base}`);
}

/** The http(s) counterpart of a base URL (for REST calls), page origin by default. */
export function httpBase(baseUrl) {
  const ws = wsBase(baseUrl);
  return ws.startsWith('wss://') ? `https://${ws.slice(6)}` : `http://${ws.slice(5)}`;
}

/** True for an event the client may hand to `onEvent`: the fields it relies on are present. */
export function isValidEvent(event) {
  return (
    event !== null &&
    typeof event === 'object' &&
    typeof event.type === 'string' &&
    event.type !== '' &&
    typeof event.streamId === 'string' &&
    event.streamId !== '' &&
    Number.isSafeInteger(event.globalPosition) &&
    event.globalPosition > 0
  );
}

function sameFilter(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function randomTag() {
  return Math.random().toString(36).slice(2, 8);
}

/**
 * Read every event of a store matching `type` patterns (and optionally one stream) over REST,
 * paging through `GET /event-stores/{store}/events`. Returns `{events, lastPosition}` where
 * `lastPosition` is the globalPosition to resume a live subscription from (0 when nothing
 * matched). A store that does not exist yet reads as empty.
 */
export async function loadEvents(eventStoreName, options = {}) {
  const fetchImpl = options.fetch || globalThis.fetch;
  const base = httpBase(options.baseUrl);
  const types = options.type === undefined ? [] : [].concat(options.type);
  const headers = {};
  if (options.apiKey) headers['X-API-Key'] = options.apiKey;
  const events = [];
  let after = options.after || 0;
  for (;;) {
    const query = new URLSearchParams();
    for (const t of types) query.append('type', t);
    if (options.streamId) query.set('streamId', options.streamId);
    query.set('fromPosition', String(after + 1));
    query.set('limit', '1000');
    const url = `${base}/event-stores/${encodeURIComponent(eventStoreName)}/events?${query}`;
    const response = await fetchImpl(url, { headers });
    if (response.status === 404) break; // no such store yet: nothing to load
    if (!response.ok) {
      let detail = '';
      try {
        const body = await response.json();
        detail = `${body.error}: ${body.message}`;
      } catch {
        detail = response.statusText;
      }
      throw new Error(`deltagate: loading ${eventStoreName} failed (${response.status} ${detail})`);
    }
    const page = await response.json();
    for (const event of page.events) {
      if (isValidEvent(event) && event.globalPosition > after) {
        events.push(event);
        after = event.globalPosition;
      }
    }
    if (!page.pagination || !page.pagination.hasMore || page.events.length === 0) break;
  }
  return { events, lastPosition: after };
}

/** Whether `WebSocketClass` is the `ws` package's (Node), whose constructor takes `{headers}`:
 * it alone has `terminate()`; a browser's WebSocket (or a wrapper of it) has not. */
function takesHeaders(WebSocketClass) {
  return typeof WebSocketClass?.prototype?.terminate === 'function';
}

export class DeltaBaseWebSocket {
  /**
   * @param {string} eventStoreName
   * @param {string|null} apiKey  sent as X-API-Key in Node (`ws`), as ?apiKey= in browsers, which
   *   cannot set WebSocket headers (there use options.token/getToken; pass null/'')
   * @param {(event: object, subscriptionId: string) => void} onEvent  each matching event, exactly
   *   once per subscription, in order, with the id `subscribe` returned
   * @param {object} [options]  see deltagate.d.ts
   */
  constructor(eventStoreName, apiKey, onEvent, options = {}) {
    if (typeof eventStoreName !== 'string' || eventStoreName === '') {
      throw new TypeError('deltagate: eventStoreName must be a non-empty string');
    }
    if (typeof onEvent !== 'function') throw new TypeError('deltagate: onEvent must be a function');
    this.eventStoreName = eventStoreName;
    this.apiKey = apiKey || null;
    this.onEvent = onEvent;
    this.options = { ...DEFAULT_OPTIONS, ...options };
    this.baseUrl = wsBase(this.options.baseUrl);
    this.sse = this.options.transport === 'sse';
    if (!this.sse && this.options.transport !== 'websocket') {
      throw new TypeError("deltagate: transport must be 'websocket' or 'sse'");
    }
    this.WebSocket = this.options.WebSocket || globalThis.WebSocket;
    this.EventSource = this.options.EventSource || globalThis.EventSource;
    if (this.sse && typeof this.EventSource !== 'function') {
      throw new TypeError('deltagate: no EventSource here; pass { EventSource } (e.g. the eventsource package)');
    }
    if (!this.sse && typeof this.WebSocket !== 'function') {
      throw new TypeError("deltagate: no WebSocket here; in Node pass { WebSocket: require('ws') }");
    }
    this.state = 'closed';
    this.reconnectAttempts = 0;
    this.ws = null;
    this._subscriptions = new Map(); // id -> subscription record, in subscription order
    this._ids = 0;
    this._tag = randomTag();
    this._wanted = false; // connect() called and not disconnect()ed
    this._timer = null; // pending reconnect
    this._heartbeat = null;
    this._generation = 0; // identifies the current socket; stale sockets' events are ignored
    this._opening = false; // between _open() and the socket's creation (getToken may be slow)
    this._lastHeard = 0;
    this._refreshTimer = null; // pending token refresh over the open socket
    this._tokenExpiry = null; // when the open socket's token expires (ms), if known
    this._pendingExpiry = null; // the same for a token sent in a refresh not yet answered
  }

  // -- public API ------------------------------------------------------------------------------

  /** Open the connection (and keep it open until disconnect()). Safe to call again. */
  connect() {
    this._wanted = true;
    if (this.sse) {
      if (this.state === 'closed') this._setState('connecting');
      for (const sub of this._subscriptions.values()) if (!sub.source) this._openSource(sub);
      return;
    }
    if (this.ws !== null || this._timer !== null || this._opening) return;
    this.reconnectAttempts = 0;
    this._open(this.state === 'closed' ? 'connecting' : 'reconnecting');
  }

  /**
   * Subscribe to events whose type matches `eventFilter` (a pattern or a list of them),
   * optionally only from `streamId`, starting after `position` ('latest' (default),
   * 'earliest', a globalPosition N: every matching event with globalPosition > N, or
   * `{time: '2026-12-01T10:00:00Z'}`: every matching event created at or after that instant).
   * The same filter and stream twice is one subscription. Returns its subscriptionId.
   */
  subscribe(eventFilter, streamId, position = 'latest') {
    for (const sub of this._subscriptions.values()) {
      if (sameFilter(sub.eventFilter, eventFilter) && sub.streamId === (streamId || undefined)) {
        return sub.id;
      }
    }
    const isTime = position !== null && typeof position === 'object' && typeof position.time === 'string';
    if (position !== 'latest' && position !== 'earliest' && !(Number.isSafeInteger(position) && position >= 0) && !isTime) {
      throw new TypeError("deltagate: position must be 'latest', 'earliest', an integer >= 0 or {time: ISO 8601}");
    }
    this._ids += 1;
    const sub = {
      id: `dg-${this._tag}-${this._ids}`,
      eventFilter,
      streamId: streamId || undefined,
      position,
      // The cursor: last globalPosition seen for this subscription; null until known.
      cursor: typeof position === 'number' ? position : null,
      confirmed: false,
    };
    this._subscriptions.set(sub.id, sub);
    if (this.sse) {
      if (this._wanted) this._openSource(sub);
    } else {
      this._sendSubscribe(sub);
    }
    return sub.id;
  }

  /** Remove the subscription(s) with this filter and stream. */
  unsubscribe(eventFilter, streamId) {
    for (const sub of [...this._subscriptions.values()]) {
      if (sameFilter(sub.eventFilter, eventFilter) && sub.streamId === (streamId || undefined)) {
        this._subscriptions.delete(sub.id);
        if (this.sse) this._closeSource(sub);
        else this._send({ action: 'unsubscribe', subscriptionId: sub.id });
      }
    }
  }

  /** Close the connection and stop reconnecting. Subscriptions and their cursors are kept,
   * so a later connect() resumes where this one stopped. Safe to call twice. */
  disconnect() {
    this._wanted = false;
    this._clearTimers();
    for (const sub of this._subscriptions.values()) this._closeSource(sub);
    this._generation += 1;
    const ws = this.ws;
    this.ws = null;
    this._opening = false;
    if (ws !== null) {
      try {
        ws.close(1000, 'client disconnect');
      } catch {
        // already closed
      }
    }
    this._setState('closed');
  }

  /** The last globalPosition seen per subscription: `{subscriptionId: position|null}`. */
  positions() {
    const out = {};
    for (const sub of this._subscriptions.values()) out[sub.id] = sub.cursor;
    return out;
  }

  // -- connection ------------------------------------------------------------------------------

  async _open(state) {
    this._setState(state);
    this._opening = true;
    const generation = ++this._generation;
    let url = `${this.baseUrl}/event-stores/${encodeURIComponent(this.eventStoreName)}/events/ws`;
    let headers = null;
    try {
      const { token, expiresAt } = await this._token();
      if (generation !== this._generation) return; // disconnect() while fetching the token
      this._tokenExpiry = token ? tokenExpiry(token, expiresAt) : null;
      if (token) url += `?token=${encodeURIComponent(token)}`;
      else if (this.apiKey && takesHeaders(this.WebSocket)) headers = { 'X-API-Key': this.apiKey };
      else if (this.apiKey) url += `?apiKey=${encodeURIComponent(this.apiKey)}`;
    } catch (error) {
      this._opening = false;
      this._report('token', error);
      this._scheduleReconnect();
      return;
    }
    let ws;
    try {
      ws = headers ? new this.WebSocket(url, [], { headers }) : new this.WebSocket(url);
    } catch (error) {
      this._opening = false;
      this._report('connect', error, true);
      this._scheduleReconnect();
      return;
    }
    this._opening = false;
    this.ws = ws;
    let openedAt = 0;
    let heard = false;
    const current = () => generation === this._generation;
    // A server (or a load balancer before a dead one) that takes the connection but never
    // answers the upgrade would hold it forever: the heartbeat only starts once it is open.
    const { openTimeout } = this.options;
    let unanswered = null;
    if (openTimeout && openTimeout !== Infinity) {
      unanswered = setTimeout(() => {
        unanswered = null;
        if (!current() || openedAt) return;
        this._report('connect', new Error(`no answer to the connection within ${openTimeout} ms; reconnecting`), true);
        this._replace(ws);
      }, openTimeout);
      if (typeof unanswered.unref === 'function') unanswered.unref();
    }
    const answered = () => {
      if (unanswered !== null) clearTimeout(unanswered);
      unanswered = null;
    };

    ws.onopen = () => {
      answered();
      if (!current()) return;
      openedAt = Date.now();
      this._lastHeard = openedAt;
      this._setState('open');
      this._startHeartbeat(ws);
      this._scheduleRefresh();
      for (const sub of this._subscriptions.values()) {
        sub.confirmed = false;
        this._sendSubscribe(sub);
      }
    };
    ws.onmessage = (message) => {
      if (!current()) return;
      this._lastHeard = Date.now();
      if (!heard) {
        heard = true;
        this.reconnectAttempts = 0; // the server talks to us: this connection works
      }
      let data = message.data;
      if (typeof data !== 'string') data = String(data);
      let msg;
      try {
        msg = JSON.parse(data);
      } catch (error) {
        this._report('message', error);
        return;
      }
      this._handle(msg);
    };
    ws.onerror = () => {
      // Always followed by onclose, which decides what happens next.
    };
    ws.onclose = (event) => {
      answered();
      if (!current()) return;
      this.ws = null;
      this._stopHeartbeat();
      if (openedAt && Date.now() - openedAt >= this.options.stableAfter) this.reconnectAttempts = 0;
      if (event && event.code && event.code !== 1000 && event.code !== 1005 && event.code !== 1006) {
        // A refusal (4001 unauthorized, 4003 forbidden, 4004 no such store...) is logged by
        // default: retrying cannot fix it, and silence would leave a page waiting unexplained.
        // A draining pod (1012) or one going away (1001) is routine: only onError hears of it.
        const routine = event.code === 1012 || event.code === 1001;
        this._report('close', new Error(`closed ${event.code} ${event.reason || ''}`.trim()), routine);
      }
      if (this._wanted) this._scheduleReconnect(event && event.code);
      else this._setState('closed');
    };
  }

  _scheduleReconnect(code) {
    if (!this._wanted || this._timer !== null) return;
    const { initialDelay, maxDelay, maxReconnectAttempts } = this.options;
    if (this.reconnectAttempts >= maxReconnectAttempts) {
      this._wanted = false;
      this._report('reconnect', new Error('max reconnection attempts reached'));
      this._setState('closed');
      return;
    }
    // Full jitter: uniform in [0, min(cap, base * 2^attempt)]. A draining pod (1012) asks us to
    // move elsewhere now, so its first retry uses the smallest window.
    const attempt = code === 1012 ? 0 : this.reconnectAttempts;
    const ceiling = Math.min(maxDelay, initialDelay * 2 ** attempt);
    const delay = Math.floor(Math.random() * ceiling);
    this.reconnectAttempts += 1;
    this._setState('reconnecting');
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this._wanted) this._open('reconnecting');
    }, delay);
  }

  _startHeartbeat(ws) {
    this._stopHeartbeat();
    const { pingInterval, pongTimeout } = this.options;
    if (!pingInterval || pingInterval === Infinity) return;
    this._heartbeat = setInterval(() => {
      if (Date.now() - this._lastHeard > pingInterval + pongTimeout) {
        // Nothing heard, not even a pong: the connection is dead without having said so.
        this._report('heartbeat', new Error('no answer from the server; reconnecting'));
        this._replace(ws, 4000, 'heartbeat timeout');
        return;
      }
      this._send({ action: 'ping' });
    }, pingInterval);
    if (this._heartbeat && typeof this._heartbeat.unref === 'function') this._heartbeat.unref();
  }

  /** Give up `ws`, which went silent (its events are ignored from now on), and connect again. */
  _replace(ws, code, reason) {
    this._generation += 1;
    this.ws = null;
    this._stopHeartbeat();
    try {
      ws.close(code, reason);
    } catch {
      // ignore
    }
    this._scheduleReconnect();
  }

  _stopHeartbeat() {
    if (this._heartbeat !== null) clearInterval(this._heartbeat);
    this._heartbeat = null;
  }

  _clearTimers() {
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
    this._stopHeartbeat();
    this._stopRefresh();
  }

  // -- credentials -----------------------------------------------------------------------------

  /** `{token, expiresAt}` for the next connection: from getToken() (a string, or the ws-tokens
   * answer), else options.token, else none. */
  async _token() {
    let got = this.options.token || null;
    if (typeof this.options.getToken === 'function') got = await this.options.getToken();
    if (got && typeof got === 'object') return { token: got.token || null, expiresAt: got.expiresAt };
    return { token: got || null, expiresAt: undefined };
  }

  /** With getToken, refresh the open socket's token a while before it expires: `refreshBefore`
   * ms ahead, at most half of what is left. */
  _scheduleRefresh() {
    this._stopRefresh();
    if (typeof this.options.getToken !== 'function' || !this._tokenExpiry) return;
    const left = this._tokenExpiry - Date.now();
    const delay = Math.max(0, left - Math.min(this.options.refreshBefore, left / 2));
    const socket = this.ws;
    this._refreshTimer = setTimeout(async () => {
      this._refreshTimer = null;
      if (this.ws !== socket || socket === null) return;
      let fresh;
      try {
        fresh = await this._token();
      } catch (error) {
        this._report('token', error);
        return; // the server closes the socket once the old token and its grace run out
      }
      if (this.ws !== socket || !fresh.token) return;
      this._pendingExpiry = tokenExpiry(fresh.token, fresh.expiresAt);
      this._send({ action: 'refresh', token: fresh.token });
    }, delay);
    if (this._refreshTimer && typeof this._refreshTimer.unref === 'function') this._refreshTimer.unref();
  }

  _stopRefresh() {
    if (this._refreshTimer !== null) clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
  }

  // -- Server-Sent Events (transport: 'sse'): one EventSource per subscription -----------------

  async _openSource(sub) {
    if (!this._wanted || sub.source || sub.opening) return;
    sub.opening = true;
    let token = null;
    try {
      ({ token } = await this._token());
    } catch (error) {
      sub.opening = false;
      this._report('token', error);
      this._reopenSource(sub);
      return;
    }
    sub.opening = false;
    if (!this._wanted || this._subscriptions.get(sub.id) !== sub || sub.source) return;
    const query = new URLSearchParams();
    for (const pattern of [].concat(sub.eventFilter)) query.append('eventFilter', pattern);
    if (sub.streamId !== undefined) query.set('streamId', sub.streamId);
    const position = sub.cursor === null ? sub.position : sub.cursor;
    query.set('position', typeof position === 'object' ? JSON.stringify(position) : String(position));
    if (sub.cursor !== null && typeof sub.epoch === 'string') query.set('epoch', sub.epoch);
    if (token) query.set('token', token);
    else if (this.apiKey) query.set('apiKey', this.apiKey);
    const url = `${httpBase(this.options.baseUrl)}/event-stores/${encodeURIComponent(this.eventStoreName)}/events/sse?${query}`;
    let source;
    try {
      source = new this.EventSource(url);
    } catch (error) {
      this._report('connect', error, true);
      this._reopenSource(sub);
      return;
    }
    sub.source = source;
    const mine = () => sub.source === source;
    source.onopen = () => {
      if (!mine()) return;
      sub.attempts = 0;
      this._setState('open');
    };
    source.onerror = () => {
      if (!mine()) return;
      // The stream dropped (CONNECTING) or the browser gave up on it (CLOSED: an error answer,
      // e.g. an expired token). Either way this client reopens it, rather than letting the
      // browser reconnect by itself: the browser would send Last-Event-ID with this stream's
      // first URL, which carries no epoch when the cursor was unknown then, so a re-created
      // store (a restarted dev server) would not be told apart and its first events skipped.
      // Reopened, the URL carries the cursor and its epoch (and a fresh token), as a WebSocket
      // subscribe does.
      this._closeSource(sub);
      this._reopenSource(sub);
    };
    const on = (kind, handle) =>
      source.addEventListener(kind, (message) => {
        if (!mine()) return;
        let data;
        try {
          data = JSON.parse(message.data);
        } catch (error) {
          this._report('message', error);
          return;
        }
        handle(data);
      });
    on('event', (event) => this._handle({ type: 'event', subscriptionId: sub.id, event }));
    for (const kind of ['subscribed', 'caughtUp', 'checkpoint', 'reset', 'truncated']) {
      on(kind, (data) => this._handle({ ...data, type: kind, subscriptionId: sub.id }));
    }
    on('close', (data) => {
      // The server ends the stream: a drain (reopened elsewhere after the error that follows),
      // or credentials that ran out (4001): reopen now with a fresh token.
      if (data.code === 4001) {
        this._closeSource(sub);
        this._reopenSource(sub, 0);
      }
    });
  }

  _closeSource(sub) {
    const source = sub.source;
    sub.source = null;
    if (sub.reopen) clearTimeout(sub.reopen);
    sub.reopen = null;
    if (source) {
      try {
        source.close();
      } catch {
        // already closed
      }
    }
  }

  _reopenSource(sub, ceiling) {
    if (!this._wanted || this._subscriptions.get(sub.id) !== sub || sub.reopen) return;
    sub.attempts = (sub.attempts || 0) + 1;
    const cap = ceiling ?? Math.min(this.options.maxDelay, this.options.initialDelay * 2 ** (sub.attempts - 1));
    this._setState('reconnecting');
    sub.reopen = setTimeout(() => {
      sub.reopen = null;
      this._openSource(sub);
    }, Math.floor(Math.random() * cap));
  }

  _send(message) {
    const ws = this.ws;
    if (ws === null || ws.readyState !== OPEN) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  _sendSubscribe(sub) {
    // Resume after the cursor when there is one; otherwise ask for what was asked at first.
    const position = sub.cursor === null ? sub.position : sub.cursor;
    const message = {
      action: 'subscribe',
      subscriptionId: sub.id,
      eventFilter: sub.eventFilter,
      position,
    };
    if (sub.streamId !== undefined) message.streamId = sub.streamId;
    // The store's epoch the cursor belongs to: a re-created store (or a restarted dev server)
    // is then told apart from the one the cursor came from, and the server says `reset`.
    if (sub.cursor !== null && typeof sub.epoch === 'string') message.epoch = sub.epoch;
    this._send(message);
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    if (typeof this.options.onStateChange === 'function') {
      try {
        this.options.onStateChange(state);
      } catch (error) {
        this._report('onStateChange', error);
      }
    }
  }

  /** Hand a server notice to its option callback, or log it and carry on (the default). */
  _notify(option, msg, text) {
    const handler = this.options[option];
    if (typeof handler !== 'function') {
      console.warn(`deltagate: ${text}`);
      return;
    }
    try {
      handler(msg);
    } catch (error) {
      this._report(option, error);
    }
  }

  /** Hand a problem to `onError`, or log it (the default) unless it is `routine`. */
  _report(where, error, routine = false) {
    if (typeof this.options.onError === 'function') {
      try {
        this.options.onError(error, where);
      } catch {
        // an error handler that throws has nowhere else to go
      }
    } else if (!routine) {
      console.warn(`deltagate (${where}):`, error && error.message ? error.message : error);
    }
  }

  // -- messages --------------------------------------------------------------------------------

  _handle(msg) {
    if (msg === null || typeof msg !== 'object') return;
    const sub = msg.subscriptionId === undefined ? undefined : this._subscriptions.get(msg.subscriptionId);
    switch (msg.type) {
      case 'event': {
        if (sub === undefined) return; // unsubscribed meanwhile, or not ours
        const event = msg.event;
        if (!isValidEvent(event)) {
          this._report('event', new Error('invalid event dropped (needs type, streamId, globalPosition)'));
          return;
        }
        if (sub.cursor !== null && event.globalPosition <= sub.cursor) return; // seen already
        sub.cursor = event.globalPosition;
        try {
          this.onEvent(event, sub.id); // (the id: one event can match several subscriptions)
        } catch (error) {
          this._report('onEvent', error);
        }
        return;
      }
      case 'checkpoint':
      case 'caughtUp':
        if (sub !== undefined && Number.isSafeInteger(msg.globalPosition)) {
          if (sub.cursor === null || msg.globalPosition > sub.cursor) sub.cursor = msg.globalPosition;
        }
        if (msg.type === 'caughtUp' && sub !== undefined && typeof this.options.onCaughtUp === 'function') {
          try {
            this.options.onCaughtUp(sub.id, msg.globalPosition);
          } catch (error) {
            this._report('onCaughtUp', error);
          }
        }
        return;
      case 'reset':
        // The cursor is not in the store's history (re-created store, restarted dev server, a
        // Redis that lost data): the server now replays the store from its first event.
        if (sub !== undefined) {
          sub.cursor = 0;
          if (typeof msg.epoch === 'string') sub.epoch = msg.epoch;
        }
        this._notify('onReset', msg, `subscription ${msg.subscriptionId} reset (${msg.reason}): replaying the store's current history`);
        return;
      case 'truncated':
        // History after the cursor is gone (retention): the server goes on from what is kept.
        if (sub !== undefined && Number.isSafeInteger(msg.earliestPosition)) {
          sub.cursor = Math.max(sub.cursor === null ? 0 : sub.cursor, msg.earliestPosition - 1);
        }
        this._notify('onTruncated', msg, `subscription ${msg.subscriptionId}: events ${msg.requestedPosition + 1}..${msg.earliestPosition - 1} are gone (retention)`);
        return;
      case 'subscribed':
        if (sub !== undefined) {
          sub.confirmed = true;
          sub.retries = 0;
          if (typeof msg.epoch === 'string') sub.epoch = msg.epoch;
          // A 'latest' subscription starts after the head the server reports.
          if (sub.cursor === null && sub.position === 'latest' && Number.isSafeInteger(msg.position)) {
            sub.cursor = msg.position;
          }
        }
        return;
      case 'error':
        this._report('server', new Error(`${msg.error}: ${msg.message}`));
        if (sub === undefined || sub.confirmed) return;
        if (TEMPORARY.has(msg.error)) {
          // Refused for now (rate limit, Redis unavailable): ask again after a backoff.
          sub.retries = (sub.retries || 0) + 1;
          const ceiling = Math.min(this.options.maxDelay, this.options.initialDelay * 2 ** sub.retries);
          const socket = this.ws;
          setTimeout(() => {
            if (this.ws === socket && this._subscriptions.get(sub.id) === sub && !sub.confirmed) {
              this._sendSubscribe(sub);
            }
          }, Math.floor(Math.random() * ceiling));
        } else {
          // The server refused this subscribe (bad filter, forbidden): asking again won't help.
          this._subscriptions.delete(sub.id);
        }
        return;
      case 'refreshed':
        this._tokenExpiry = tokenExpiry(null, msg.expiresAt) ?? this._pendingExpiry ?? null;
        this._scheduleRefresh();
        return;
      default:
        return; // pong, unsubscribed, anything newer
    }
  }
}

export default DeltaBaseWebSocket;
