// Unit tests of deltagate.js against a scripted WebSocket: resume positions, de-duplication,
// validation, tokens, backoff, giving up, disconnect. Run by tests/clients/test_js_client.py as
//   DELTAGATE_JS=/path/to/deltagate.js node --test unit.test.mjs
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

const copy = join(mkdtempSync(join(tmpdir(), 'deltagate-unit-')), 'deltagate.mjs');
copyFileSync(process.env.DELTAGATE_JS, copy);
const { DeltaBaseWebSocket, isValidEvent, tokenExpiry, wsBase } = await import(pathToFileURL(copy).href);

class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code) {
    this.closedWith = code;
    this.readyState = 3;
  }
  // -- driven by the test
  open() {
    this.readyState = 1;
    this.onopen({});
  }
  receive(message) {
    this.onmessage({ data: JSON.stringify(message) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose({ code, reason: '' });
  }
}
FakeSocket.all = [];

// Like the `ws` package: takes (url, protocols, options) with options.headers, and has terminate().
class FakeNodeSocket extends FakeSocket {
  constructor(url, protocols, options) {
    super(url);
    this.protocols = protocols;
    this.options = options;
  }
  terminate() {
    this.close(1006);
  }
}

const tick = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms));

function event(gp, type = 'order.placed', streamId = 'order-1') {
  return { globalPosition: gp, streamPosition: 0, type, streamId, eventId: `e${gp}`, data: {}, createdAt: '' };
}

function make(options = {}, apiKey = 'k1') {
  FakeSocket.all = [];
  const seen = [];
  const states = [];
  const errors = [];
  const ids = [];
  const client = new DeltaBaseWebSocket('orders', apiKey, (e, id) => seen.push(e.globalPosition) && ids.push(id), {
    baseUrl: 'http://gw:8787',
    WebSocket: FakeSocket,
    initialDelay: 1,
    maxDelay: 4,
    onStateChange: (s) => states.push(s),
    onError: (error, source) => errors.push([source, error.message]),
    ...options,
  });
  return { client, seen, states, errors, ids };
}

const last = () => FakeSocket.all[FakeSocket.all.length - 1];

test('resumes after the last event, drops replays, delivers in order', async () => {
  const { client, seen, states } = make();
  const id = client.subscribe('order.*');
  client.connect();
  await tick();
  const first = last();
  assert.equal(first.url, 'ws://gw:8787/event-stores/orders/events/ws?apiKey=k1');
  first.open();
  assert.deepEqual(first.sent, [{ action: 'subscribe', subscriptionId: id, eventFilter: 'order.*', position: 'latest' }]);
  first.receive({ type: 'subscribed', subscriptionId: id, position: 10 });
  first.receive({ type: 'event', subscriptionId: id, event: event(11) });
  first.receive({ type: 'event', subscriptionId: id, event: event(12) });
  first.drop();
  await tick(20);
  const second = last();
  assert.notEqual(second, first);
  second.open();
  assert.equal(second.sent[0].position, 12);
  second.receive({ type: 'subscribed', subscriptionId: id, position: 14 });
  second.receive({ type: 'event', subscriptionId: id, event: event(12) }); // a replay
  second.receive({ type: 'event', subscriptionId: id, event: event(11) }); // out of order
  second.receive({ type: 'event', subscriptionId: id, event: event(13) });
  assert.deepEqual(seen, [11, 12, 13]);
  assert.deepEqual(states, ['connecting', 'open', 'reconnecting', 'open']);
  client.disconnect();
  assert.equal(client.state, 'closed');
});

test('with the ws package the key goes in the X-API-Key header, never in the URL', async () => {
  const { client } = make({ WebSocket: FakeNodeSocket });
  client.connect();
  await tick();
  assert.equal(last().url, 'ws://gw:8787/event-stores/orders/events/ws');
  assert.deepEqual(last().options, { headers: { 'X-API-Key': 'k1' } });
  client.disconnect();

  const browser = make(); // a WebSocket without headers: the key can only ride in the URL
  browser.client.connect();
  await tick();
  assert.equal(last().url, 'ws://gw:8787/event-stores/orders/events/ws?apiKey=k1');
  browser.client.disconnect();

  const withToken = make({ WebSocket: FakeNodeSocket, token: 't1' });
  withToken.client.connect();
  await tick();
  assert.equal(last().url, 'ws://gw:8787/event-stores/orders/events/ws?token=t1');
  assert.equal(last().options, undefined);
  withToken.client.disconnect();
});

test("'latest' resumes from the subscribed head, then from checkpoints and caughtUp", async () => {
  const { client } = make();
  const id = client.subscribe(['a.*', 'b.created'], 'stream-9');
  client.connect();
  await tick();
  last().open();
  last().receive({ type: 'subscribed', subscriptionId: id, position: 7 });
  last().drop();
  await tick(20);
  last().open();
  assert.deepEqual(last().sent[0], {
    action: 'subscribe',
    subscriptionId: id,
    eventFilter: ['a.*', 'b.created'],
    streamId: 'stream-9',
    position: 7,
  });
  last().receive({ type: 'checkpoint', subscriptionId: id, globalPosition: 20 });
  last().receive({ type: 'caughtUp', subscriptionId: id, globalPosition: 15 }); // never backwards
  last().drop(1012);
  await tick(20);
  last().open();
  assert.equal(last().sent[0].position, 20);
  client.disconnect();
});

test("a 'latest' subscription not yet confirmed is asked for again as 'latest'", async () => {
  const { client } = make();
  client.subscribe('*');
  client.connect();
  await tick();
  last().open();
  last().drop();
  await tick(20);
  last().open();
  assert.equal(last().sent[0].position, 'latest');
  client.disconnect();
});

test('earliest and numeric positions resume from the events seen', async () => {
  const { client, seen } = make();
  const a = client.subscribe('x.*', undefined, 'earliest');
  const b = client.subscribe('y.*', undefined, 5);
  assert.equal(client.subscribe('x.*', undefined, 'earliest'), a, 'same filter twice is one subscription');
  client.connect();
  await tick();
  last().open();
  assert.deepEqual(last().sent.map((m) => m.position), ['earliest', 5]);
  last().receive({ type: 'event', subscriptionId: a, event: event(1, 'x.a') });
  last().receive({ type: 'event', subscriptionId: b, event: event(6, 'y.a') });
  last().drop();
  await tick(20);
  last().open();
  assert.deepEqual(last().sent.map((m) => m.position), [1, 6]);
  assert.deepEqual(seen, [1, 6]);
  client.disconnect();
});

test('invalid events are dropped and reported', async () => {
  const { client, seen, errors } = make();
  const id = client.subscribe('*', undefined, 'earliest');
  client.connect();
  await tick();
  last().open();
  const bad = [
    { streamId: 's', globalPosition: 1 },
    { type: 't', globalPosition: 2 },
    { type: 't', streamId: 's' },
    { type: 't', streamId: 's', globalPosition: '3' },
    null,
  ];
  for (const e of bad) last().receive({ type: 'event', subscriptionId: id, event: e });
  last().receive({ type: 'event', subscriptionId: id, event: event(4) });
  last().onmessage({ data: 'not json' });
  last().receive({ type: 'event', subscriptionId: 'someone-else', event: event(5) });
  assert.deepEqual(seen, [4]);
  assert.equal(errors.filter(([source]) => source === 'event').length, bad.length);
  assert.ok(errors.some(([source]) => source === 'message'));
  assert.equal(isValidEvent(event(9)), true);
  client.disconnect();
});

test('a throwing onEvent does not stop the stream', async () => {
  FakeSocket.all = [];
  const got = [];
  const errors = [];
  const client = new DeltaBaseWebSocket(
    'orders',
    null,
    (e) => {
      got.push(e.globalPosition);
      if (e.globalPosition === 1) throw new Error('handler bug');
    },
    { baseUrl: 'http://gw', WebSocket: FakeSocket, onError: (error, source) => errors.push(source) },
  );
  const id = client.subscribe('*', undefined, 'earliest');
  client.connect();
  await tick();
  last().open();
  last().receive({ type: 'event', subscriptionId: id, event: event(1) });
  last().receive({ type: 'event', subscriptionId: id, event: event(2) });
  assert.deepEqual(got, [1, 2]);
  assert.deepEqual(errors, ['onEvent']);
  client.disconnect();
});

test('getToken is called before every connection, and wins over the key', async () => {
  let calls = 0;
  const { client } = make({ getToken: async () => `tok-${++calls}` });
  client.connect();
  await tick();
  assert.equal(last().url, 'ws://gw:8787/event-stores/orders/events/ws?token=tok-1');
  last().open();
  last().drop(4001);
  await tick(20);
  assert.equal(last().url, 'ws://gw:8787/event-stores/orders/events/ws?token=tok-2');
  client.disconnect();
  const plain = make({ token: 'static' }, null);
  plain.client.connect();
  await tick();
  assert.equal(last().url, 'ws://gw:8787/event-stores/orders/events/ws?token=static');
  plain.client.disconnect();
});

test('backoff is full jitter under a doubling cap, and the default never gives up', async () => {
  const delays = [];
  const realSetTimeout = globalThis.setTimeout;
  const realRandom = Math.random;
  Math.random = () => 0.999;
  globalThis.setTimeout = (fn, ms, ...rest) => {
    if (ms !== 0 && ms !== 5 && ms !== 20) delays.push(ms);
    return realSetTimeout(fn, 0, ...rest);
  };
  try {
    // (no open timeout: every timer here fires at once)
    const { client } = make({ initialDelay: 100, maxDelay: 1000, openTimeout: 0 });
    assert.equal(client.options.maxReconnectAttempts, Infinity);
    client.connect();
    for (let i = 0; i < 7; i++) {
      await tick();
      last().drop(); // refused before opening
    }
    await tick();
    client.disconnect();
  } finally {
    globalThis.setTimeout = realSetTimeout;
    Math.random = realRandom;
  }
  assert.deepEqual(delays.slice(0, 6), [99, 199, 399, 799, 999, 999]);
});

test('maxReconnectAttempts gives up with state closed', async () => {
  const { client, states, errors } = make({ maxReconnectAttempts: 2 });
  client.connect();
  for (let i = 0; i < 3; i++) {
    await tick(20);
    last().drop();
  }
  await tick(20);
  assert.equal(client.state, 'closed');
  assert.equal(FakeSocket.all.length, 3);
  assert.equal(states[states.length - 1], 'closed');
  assert.ok(errors.some(([source]) => source === 'reconnect'));
});

test('disconnect stops reconnecting; connect again resumes; unsubscribe forgets', async () => {
  const { client, seen } = make();
  const id = client.subscribe('order.*', undefined, 'earliest');
  client.connect();
  await tick();
  const socket = last();
  socket.open();
  socket.receive({ type: 'event', subscriptionId: id, event: event(3) });
  client.disconnect();
  client.disconnect(); // twice is fine
  assert.equal(socket.closedWith, 1000);
  await tick(20);
  assert.equal(FakeSocket.all.length, 1, 'no reconnect after disconnect');
  client.connect();
  await tick();
  last().open();
  assert.equal(last().sent[0].position, 3);
  client.unsubscribe('order.*');
  assert.deepEqual(last().sent[1], { action: 'unsubscribe', subscriptionId: id });
  last().receive({ type: 'event', subscriptionId: id, event: event(4) });
  assert.deepEqual(seen, [3]);
  last().drop();
  await tick(20);
  last().open();
  assert.deepEqual(last().sent, [], 'an unsubscribed filter is not resumed');
  client.disconnect();
});

test('a subscription the server refuses is not retried', async () => {
  const { client, errors } = make();
  const id = client.subscribe('*', undefined, 'earliest');
  client.connect();
  await tick();
  last().open();
  last().receive({ type: 'error', error: 'FORBIDDEN', message: 'no', subscriptionId: id });
  last().drop();
  await tick(20);
  last().open();
  assert.deepEqual(last().sent, []);
  assert.ok(errors.some(([source, message]) => source === 'server' && message.startsWith('FORBIDDEN')));
  client.disconnect();
});

test('without onError, refusals are logged and routine closes are not', async () => {
  const warned = [];
  const warn = console.warn;
  console.warn = (...args) => warned.push(args.join(' '));
  try {
    const { client } = make({ onError: undefined });
    client.subscribe('order.*');
    client.connect();
    await tick();
    last().open();
    last().drop(4004); // no such event store: retrying will not help, so say so
    await tick(20);
    assert.equal(warned.length, 1, warned.join('\n'));
    assert.match(warned[0], /close.*4004/);
    last().open();
    last().drop(1012); // a draining pod: routine
    await tick(20);
    last().open();
    last().drop(1006); // a dropped connection: routine, and reconnected
    await tick(20);
    assert.equal(FakeSocket.all.length, 4);
    assert.equal(warned.length, 1, warned.join('\n'));
    client.disconnect();
  } finally {
    console.warn = warn;
  }
});

test('a subscription refused for now is asked for again', async () => {
  const { client, seen } = make();
  const id = client.subscribe('*', undefined, 'earliest');
  client.connect();
  await tick();
  const socket = last();
  socket.open();
  socket.receive({ type: 'error', error: 'RATE_LIMIT_EXCEEDED', message: 'slow down', subscriptionId: id });
  await tick(20);
  assert.equal(socket.sent.length, 2, 'subscribe sent again on the same connection');
  assert.deepEqual(socket.sent[1], socket.sent[0]);
  socket.receive({ type: 'subscribed', subscriptionId: id, position: 0 });
  socket.receive({ type: 'event', subscriptionId: id, event: event(1) });
  assert.deepEqual(seen, [1]);
  client.disconnect();
});

test('a silent connection is replaced (heartbeat)', async () => {
  const { client } = make({ pingInterval: 10, pongTimeout: 10 });
  client.subscribe('*');
  client.connect();
  await tick();
  const socket = last();
  socket.open();
  await tick(15);
  assert.ok(socket.sent.some((m) => m.action === 'ping'));
  await tick(60);
  assert.notEqual(last(), socket, 'reconnected after silence');
  assert.equal(socket.closedWith, 4000);
  client.disconnect();
});

test('a connection whose upgrade is never answered is given up and tried again', async () => {
  const { client, errors } = make({ openTimeout: 50 });
  try {
    client.subscribe('*');
    client.connect();
    await tick();
    const hung = last(); // never opens: a server that took the connection and went silent
    const deadline = Date.now() + 5000;
    while (last() === hung && Date.now() < deadline) await tick(1);
    assert.notEqual(last(), hung, 'another attempt after the open timeout');
    assert.ok(errors.some(([source, message]) => source === 'connect' && /no answer/.test(message)));
    const next = last();
    next.open(); // this one answers: its own timer must not cut it
    await tick(100);
    assert.equal(last(), next);
    assert.equal(client.state, 'open');
    hung.drop(); // the old socket's late close changes nothing
    assert.equal(client.state, 'open');
  } finally {
    client.disconnect();
  }
});

test('a throwing onCaughtUp is reported, and the next messages are still handled', async () => {
  const { client, seen, errors, ids } = make({
    onCaughtUp: () => {
      throw new Error('app bug');
    },
  });
  const id = client.subscribe('*', undefined, 'earliest');
  client.connect();
  await tick();
  const socket = last();
  socket.open();
  socket.receive({ type: 'subscribed', subscriptionId: id, position: 1 });
  socket.receive({ type: 'event', subscriptionId: id, event: event(1) });
  socket.receive({ type: 'caughtUp', subscriptionId: id, globalPosition: 1 });
  socket.receive({ type: 'event', subscriptionId: id, event: event(2) });
  assert.deepEqual(seen, [1, 2]);
  assert.deepEqual(errors, [['onCaughtUp', 'app bug']]);
  assert.deepEqual(ids, [id, id], 'onEvent is told which subscription matched');
  client.disconnect();
});

test('a negative position is refused by the client, as the server would', () => {
  const { client } = make();
  assert.throws(() => client.subscribe('*', undefined, -5), /position/);
  assert.throws(() => client.subscribe('*', undefined, 1.5), /position/);
  client.subscribe('*', undefined, 0);
});

test('base URLs: page origin scheme mapping', () => {
  assert.equal(wsBase('https://example.com/'), 'wss://example.com');
  assert.equal(wsBase('http://h:1'), 'ws://h:1');
  assert.equal(wsBase('wss://h'), 'wss://h');
  assert.throws(() => wsBase('ftp://h'));
  assert.throws(() => new DeltaBaseWebSocket('s', null, () => {}, { WebSocket: FakeSocket }), /baseUrl/);
});

test('a reset replays the store from its first event: the cursor and the epoch start again', async () => {
  const resets = [];
  const { client, seen } = make({ onReset: (notice) => resets.push(notice) });
  const id = client.subscribe('order.*');
  client.connect();
  await tick();
  const first = last();
  first.open();
  first.receive({ type: 'subscribed', subscriptionId: id, position: 10, epoch: 'e-old' });
  first.receive({ type: 'event', subscriptionId: id, event: event(11) });
  first.drop(1012);
  await tick(20);
  const second = last();
  second.open();
  // The resume names the epoch its cursor belongs to.
  assert.deepEqual(second.sent[0], {
    action: 'subscribe', subscriptionId: id, eventFilter: 'order.*', position: 11, epoch: 'e-old',
  });
  second.receive({ type: 'subscribed', subscriptionId: id, position: 3, epoch: 'e-new' });
  second.receive({ type: 'reset', subscriptionId: id, reason: 'store-recreated', epoch: 'e-new', headPosition: 3 });
  for (const gp of [1, 2, 3]) second.receive({ type: 'event', subscriptionId: id, event: event(gp) });
  assert.deepEqual(seen, [11, 1, 2, 3]);
  assert.equal(resets.length, 1);
  assert.equal(resets[0].reason, 'store-recreated');
  second.drop(1012);
  await tick(20);
  assert.equal(last().sent.length, 0);
  last().open();
  assert.equal(last().sent[0].position, 3);
  assert.equal(last().sent[0].epoch, 'e-new');
  client.disconnect();
});

test('a truncation is reported and the cursor moves past what is gone', async () => {
  const notices = [];
  const { client, seen } = make({ onTruncated: (notice) => notices.push(notice) });
  const id = client.subscribe('order.*', undefined, 5);
  client.connect();
  await tick();
  last().open();
  last().receive({ type: 'subscribed', subscriptionId: id, position: 60, epoch: 'e' });
  last().receive({ type: 'truncated', subscriptionId: id, requestedPosition: 5, earliestPosition: 50 });
  last().receive({ type: 'event', subscriptionId: id, event: event(50) });
  assert.deepEqual(seen, [50]);
  assert.equal(notices[0].earliestPosition, 50);
  client.disconnect();
});

// -- token refresh over the open socket ----------------------------------------------------------

function jwtWith(exp) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'HS256' })}.${part({ exp, sub: 'k' })}.sig`;
}

test('tokenExpiry reads expiresAt, else the JWT exp', () => {
  assert.equal(tokenExpiry('x', '2026-12-01T10:00:00Z'), Date.parse('2026-12-01T10:00:00Z'));
  assert.equal(tokenExpiry(jwtWith(1700000000)), 1700000000 * 1000);
  assert.equal(tokenExpiry('not-a-jwt'), null);
});

test('getToken: the token is refreshed over the open socket before it expires', async () => {
  let calls = 0;
  const getToken = async () => {
    calls += 1;
    return { token: `tok-${calls}`, expiresAt: new Date(Date.now() + 200).toISOString() };
  };
  const { client } = make({ getToken, refreshBefore: 150 });
  const id = client.subscribe('order.*');
  client.connect();
  await tick();
  const socket = last();
  assert.ok(socket.url.endsWith('?token=tok-1'));
  socket.open();
  socket.receive({ type: 'subscribed', subscriptionId: id, position: 0, epoch: 'e' });
  await tick(150); // at most half of the 200 ms left: refreshed by ~100 ms
  const refresh = socket.sent.find((m) => m.action === 'refresh');
  assert.deepEqual(refresh, { action: 'refresh', token: 'tok-2' });
  socket.receive({ type: 'refreshed', expiresAt: new Date(Date.now() + 200).toISOString() });
  await tick(150);
  assert.equal(socket.sent.filter((m) => m.action === 'refresh').length, 2);
  assert.equal(FakeSocket.all.length, 1, 'no reconnect');
  client.disconnect();
});

test('without getToken no refresh is sent', async () => {
  const { client } = make({ token: jwtWith(Math.floor(Date.now() / 1000) + 1) });
  client.subscribe('order.*');
  client.connect();
  await tick();
  last().open();
  await tick(50);
  assert.equal(last().sent.filter((m) => m.action === 'refresh').length, 0);
  client.disconnect();
});

// -- transport: 'sse' ----------------------------------------------------------------------------

class FakeEventSource {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.listeners = {};
    this.closed = false;
    FakeEventSource.all.push(this);
  }
  addEventListener(kind, listener) {
    (this.listeners[kind] ||= []).push(listener);
  }
  close() {
    this.closed = true;
    this.readyState = 2;
  }
  // -- driven by the test
  open() {
    this.readyState = 1;
    this.onopen({});
  }
  emit(kind, data, id) {
    for (const l of this.listeners[kind] || []) l({ data: JSON.stringify(data), lastEventId: id });
  }
  fail(readyState) {
    this.readyState = readyState;
    this.onerror({});
  }
}
FakeEventSource.all = [];

test("transport 'sse': one EventSource per subscription, events once, resumed after a give-up", async () => {
  FakeEventSource.all = [];
  let calls = 0;
  const { client, seen, states } = make({
    transport: 'sse',
    EventSource: FakeEventSource,
    getToken: async () => `tok-${++calls}`,
  });
  const id = client.subscribe(['order.*', 'user.created'], 'o-1', 'earliest');
  client.connect();
  await tick();
  assert.equal(FakeEventSource.all.length, 1);
  const source = FakeEventSource.all[0];
  const url = new URL(source.url);
  assert.equal(url.pathname, '/event-stores/orders/events/sse');
  assert.deepEqual(url.searchParams.getAll('eventFilter'), ['order.*', 'user.created']);
  assert.equal(url.searchParams.get('streamId'), 'o-1');
  assert.equal(url.searchParams.get('position'), 'earliest');
  assert.equal(url.searchParams.get('token'), 'tok-1');
  source.open();
  source.emit('subscribed', { position: 2, epoch: 'ep' }, '0');
  source.emit('event', event(1, 'order.placed', 'o-1'), '1');
  source.emit('event', event(2, 'order.placed', 'o-1'), '2');
  source.emit('caughtUp', { globalPosition: 2 }, '2');
  // The stream drops (CONNECTING: the browser would reconnect by itself, with this first URL,
  // which has no epoch): the client reopens it instead, from the cursor, with the epoch.
  source.fail(0);
  assert.ok(source.closed, 'the browser is not left to reconnect with the first URL');
  await tick(20);
  assert.equal(FakeEventSource.all.length, 2);
  const resumed = new URL(FakeEventSource.all[1].url);
  assert.equal(resumed.searchParams.get('position'), '2');
  assert.equal(resumed.searchParams.get('epoch'), 'ep');
  assert.equal(resumed.searchParams.get('token'), 'tok-2');
  const second = FakeEventSource.all[1];
  second.open();
  second.emit('event', event(2, 'order.placed', 'o-1'), '2'); // a replay: nothing twice
  second.emit('event', event(3, 'order.placed', 'o-1'), '3');
  assert.deepEqual(seen, [1, 2, 3]);
  assert.deepEqual(client.positions(), { [id]: 3 });
  // It gives up (CLOSED, e.g. an expired token): a new one, with a fresh token, from the cursor.
  second.fail(2);
  await tick(20);
  assert.equal(FakeEventSource.all.length, 3);
  const again = new URL(FakeEventSource.all[2].url);
  assert.equal(again.searchParams.get('position'), '3');
  assert.equal(again.searchParams.get('epoch'), 'ep');
  assert.equal(again.searchParams.get('token'), 'tok-3');
  assert.ok(second.closed);
  FakeEventSource.all[2].open();
  assert.ok(states.includes('open') && states.includes('reconnecting'));
  // The server says the credentials ran out: reconnect at once with a fresh token.
  FakeEventSource.all[2].emit('close', { code: 4001, reason: 'token expired' });
  await tick(20);
  assert.equal(new URL(FakeEventSource.all[3].url).searchParams.get('token'), 'tok-4');
  client.unsubscribe(['order.*', 'user.created'], 'o-1');
  assert.ok(FakeEventSource.all[3].closed);
  client.disconnect();
});

test("transport 'sse': subscriptions made before connect open on connect; disconnect closes", async () => {
  FakeEventSource.all = [];
  const { client } = make({ transport: 'sse', EventSource: FakeEventSource });
  client.subscribe('a.*');
  client.subscribe('b.*', undefined, 7);
  assert.equal(FakeEventSource.all.length, 0);
  client.connect();
  await tick();
  assert.equal(FakeEventSource.all.length, 2);
  assert.equal(new URL(FakeEventSource.all[0].url).searchParams.get('apiKey'), 'k1');
  assert.equal(new URL(FakeEventSource.all[1].url).searchParams.get('position'), '7');
  client.disconnect();
  assert.ok(FakeEventSource.all.every((s) => s.closed));
  assert.equal(client.state, 'closed');
  assert.throws(() => make({ transport: 'carrier-pigeon' }), /transport/);
});
