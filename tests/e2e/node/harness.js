'use strict';
// Runs snippets of the guide "Real-Time Events with WebSockets" verbatim in Node, against a local
// deltagate. The only change to the snippets is the host: `wss://api.delta-base.com` becomes
// `ws://127.0.0.1:PORT` (the page's own rule: "only the host differs").
//
//   node harness.js --seed PAGE.txt --port PORT --scenario NAME [--lifetime-ms N] [--print-source]
//
// Everything observable is written to stdout as JSON lines, for tests/e2e/test_seed_snippets.py:
//   {"kind": "log" | "info" | "warn" | "error", "args": [...]}   console.* calls made by snippets
//   {"kind": "fetch", "url": ...}                                 the stub backend was asked
//   {"kind": "dom", "id": ..., "prop": ..., "value": ...}         a snippet wrote to the stub DOM
//   {"kind": "onUpdate", "orders": [...]}                          OrderDashboard rendered a list
//   {"kind": "ready", "snippets": [...]}                           the snippets were evaluated
//   {"kind": "fatal", "message": ...}                              uncaught error (exit code 1)

const fs = require('fs');
const util = require('util');
const vm = require('vm');
const { snippet, transpile } = require('./extract');

const SEED_HOST = 'wss://api.delta-base.com';

// Each scenario is a list of snippets in page order, plus (optionally) harness code run after
// them, marked as such; the snippets themselves are never edited.
const CLIENT_CLASS = { section: 'Handling Reconnection', start: 'class DeltaBaseWebSocket {', take: 'block' };
const BASIC = { section: 'Basic Connection', start: 'const eventStoreName', take: 7 };
const SCENARIOS = {
  // class DeltaBaseWebSocket and its "Usage": connect(), subscribe('order.*').
  'reconnecting-client': [
    CLIENT_CLASS,
    { section: 'Handling Reconnection', start: 'const wsClient = new DeltaBaseWebSocket(', take: 3 },
  ],
  // class OrderDashboard, its "Usage" (initialize()) and renderOrders from "UI Rendering".
  'order-dashboard': [
    CLIENT_CLASS,
    { section: 'Frontend Implementation', start: 'interface Order {', take: 'block' },
    { section: 'Frontend Implementation', start: 'class OrderDashboard {', take: 'block' },
    { section: 'Frontend Implementation', start: 'const dashboard = new OrderDashboard(', take: 2 },
    { section: 'UI Rendering (Vanilla JS Example)', start: 'function renderOrders(', take: 'block' },
  ],
  // class AccountBalanceMonitor and its "Usage" for 'account-123' (store 'banking').
  'account-balance': [
    CLIENT_CLASS,
    { section: 'Example: Live Account Balance', start: 'class AccountBalanceMonitor {', take: 'block' },
    { section: 'Example: Live Account Balance', start: 'const monitor = new AccountBalanceMonitor(', take: 2 },
  ],
  // "Basic Connection", then "Subscribe Message" (which replaces ws.onopen before it fires).
  'basic-subscribe': [
    BASIC,
    { section: 'Subscribe Message', start: 'ws.onopen', take: 1 },
  ],
  // The same, then "Event Message Format" (ws.onmessage with its switch, and handleEvent).
  'event-format': [
    BASIC,
    { section: 'Subscribe Message', start: 'ws.onopen', take: 1 },
    { section: 'Event Message Format', start: 'ws.onmessage', take: 1 },
    { section: 'Event Message Format', start: 'function handleEvent(', take: 'block' },
  ],
  // "Basic Connection", then "Subscribe to Specific Stream": a bare ws.send, which the page means
  // to be called once the socket is open, so the harness calls it from an 'open' listener.
  'specific-stream': [
    BASIC,
    {
      section: 'Subscribe to Specific Stream',
      start: 'ws.send(',
      take: 1,
      wrap: (code) => `ws.addEventListener('open', () => {\n${code}\n});`,
    },
  ],
};

function parseArgs(argv) {
  const args = { lifetimeMs: 20000, printSource: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--seed') args.seed = argv[++i];
    else if (a === '--port') args.port = Number(argv[++i]);
    else if (a === '--scenario') args.scenario = argv[++i];
    else if (a === '--lifetime-ms') args.lifetimeMs = Number(argv[++i]);
    else if (a === '--print-source') args.printSource = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!args.seed || !args.port || !SCENARIOS[args.scenario]) {
    throw new Error(`usage: --seed PAGE --port PORT --scenario (${Object.keys(SCENARIOS).join('|')})`);
  }
  return args;
}

function emit(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

// Plain data goes out as JSON; anything else (an ErrorEvent, an Error) as util.inspect text.
function plain(value) {
  if (value === undefined) return null;
  if (value === null || typeof value !== 'object') return value;
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null || Array.isArray(value)) {
    try {
      return JSON.parse(JSON.stringify(value));
    } catch {
      // circular: fall through
    }
  }
  return util.inspect(value, { depth: 1, breakLength: Infinity });
}

function installStubs() {
  // Node 20 has no global WebSocket; the `ws` package is API-compatible with the browser's.
  globalThis.WebSocket = require('ws');

  for (const kind of ['log', 'info', 'warn', 'error']) {
    console[kind] = (...args) => emit({ kind, args: args.map(plain) });
  }

  // fetch('/api/orders') and fetch('/api/accounts/:id') are the reader's own backend in the guide,
  // not deltagate: this stub answers for it with no existing orders and an account balance of 100.
  globalThis.fetch = async (url) => {
    emit({ kind: 'fetch', url: String(url) });
    let body;
    if (url === '/api/orders') body = [];
    else if (String(url).startsWith('/api/accounts/')) body = { balance: 100 };
    else throw new Error(`the stub backend has no ${url}`);
    return { ok: true, status: 200, json: async () => body };
  };

  // The browser DOM the UI snippets write to: each write is reported.
  const elements = new Map();
  globalThis.document = {
    getElementById(id) {
      if (!elements.has(id)) {
        const values = {};
        const element = {};
        for (const prop of ['innerHTML', 'textContent']) {
          Object.defineProperty(element, prop, {
            get: () => values[prop] ?? '',
            set: (value) => {
              values[prop] = String(value);
              emit({ kind: 'dom', id, prop, value: String(value) });
            },
          });
        }
        elements.set(id, element);
      }
      return elements.get(id);
    },
  };
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  process.on('uncaughtException', (err) => {
    emit({ kind: 'fatal', message: String(err && err.stack ? err.stack : err) });
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    emit({ kind: 'fatal', message: String(err && err.stack ? err.stack : err) });
    process.exit(1);
  });
  // Never outlive the test that started us, even if it forgets to kill us.
  setTimeout(() => {
    emit({ kind: 'fatal', message: `lifetime of ${args.lifetimeMs} ms exceeded` });
    process.exit(2);
  }, args.lifetimeMs);

  const page = fs.readFileSync(args.seed, 'utf8');
  const host = `ws://127.0.0.1:${args.port}`;
  const sources = SCENARIOS[args.scenario].map((spec) => snippet(page, spec));
  if (!sources.some((source) => source.includes(SEED_HOST))) {
    throw new Error(`no snippet of ${args.scenario} connects to ${SEED_HOST}: has the page changed?`);
  }
  const parts = sources.map((source, n) => {
    const spec = SCENARIOS[args.scenario][n];
    const js = transpile(source.split(SEED_HOST).join(host), `${args.scenario}-${n}`);
    return spec.wrap ? spec.wrap(js) : js;
  });
  const program = parts.join('\n');
  if (args.printSource) {
    process.stdout.write(`${program}\n`);
    process.exit(0);
  }

  installStubs();
  // A classic script in this realm, as a <script> tag would run it: top-level function
  // declarations (renderOrders) become properties of globalThis.
  vm.runInThisContext(program, { filename: `seed-${args.scenario}.js` });

  if (args.scenario === 'order-dashboard') {
    // Observe what the dashboard's onUpdate hands to renderOrders (the guide's own function).
    const render = globalThis.renderOrders;
    globalThis.renderOrders = (orders) => {
      emit({ kind: 'onUpdate', orders: plain(orders) });
      return render(orders);
    };
  }
  emit({ kind: 'ready', scenario: args.scenario, snippets: SCENARIOS[args.scenario].map((s) => s.start) });
}

main();
