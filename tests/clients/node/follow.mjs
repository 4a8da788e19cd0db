// Follows a store with the DeltaBaseWebSocket served by a gateway, in Node with the `ws` package,
// and reports everything it sees as JSON lines on stdout (for tests/clients/test_js_client.py).
//
//   node follow.mjs --url http://127.0.0.1:PORT --store STORE --sub NAME=JSON [--sub ...]
//        [--initial-delay MS] [--max-delay MS] [--api-key KEY]
//
// Each --sub is NAME={"filter": "order.*", "streamId"?: "s-1", "position"?: "earliest"|"latest"|N}.
// The client module is the one the gateway serves at /client/deltagate.js, fetched at start.
// Lines: {"kind":"ready"} {"kind":"state","state"} {"kind":"event","sub","gp","type","streamId"}
//        {"kind":"error","source","message"}. Closing stdin disconnects and exits.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import WebSocket from 'ws';

function parseArgs(argv) {
  const args = { subs: [], initialDelay: undefined, maxDelay: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--url') args.url = argv[++i];
    else if (a === '--store') args.store = argv[++i];
    else if (a === '--sub') {
      const raw = argv[++i];
      const at = raw.indexOf('=');
      args.subs.push({ name: raw.slice(0, at), ...JSON.parse(raw.slice(at + 1)) });
    } else if (a === '--initial-delay') args.initialDelay = Number(argv[++i]);
    else if (a === '--max-delay') args.maxDelay = Number(argv[++i]);
    else if (a === '--api-key') args.apiKey = argv[++i];
    else throw new Error(`unknown argument ${a}`);
  }
  if (!args.url || !args.store || args.subs.length === 0) throw new Error('need --url, --store, --sub');
  return args;
}

const emit = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);

const args = parseArgs(process.argv.slice(2));
const response = await fetch(`${args.url}/client/deltagate.js`);
if (!response.ok || !(response.headers.get('content-type') || '').startsWith('text/javascript')) {
  throw new Error(`GET /client/deltagate.js: ${response.status} ${response.headers.get('content-type')}`);
}
const file = join(mkdtempSync(join(tmpdir(), 'deltagate-')), 'deltagate.mjs');
writeFileSync(file, await response.text());
const { DeltaBaseWebSocket } = await import(pathToFileURL(file).href);

const names = new Map(); // subscriptionId -> sub name
const bySub = new Map(); // sub name -> filter key, to route events
function optionsFor(name) {
  const options = {
    baseUrl: args.url,
    WebSocket,
    onStateChange: (state) => emit({ kind: 'state', sub: name, state }),
    onError: (error, source) => emit({ kind: 'error', sub: name, source, message: String(error && error.message) }),
  };
  if (args.initialDelay !== undefined) options.initialDelay = args.initialDelay;
  if (args.maxDelay !== undefined) options.maxDelay = args.maxDelay;
  return options;
}

// One client, several subscriptions: onEvent does not say which subscription an event is for,
// so the harness gives each subscription its own client when there are several.
const clients = args.subs.map((sub) => {
  const client = new DeltaBaseWebSocket(
    args.store,
    args.apiKey ?? null,
    (event) =>
      emit({ kind: 'event', sub: sub.name, gp: event.globalPosition, type: event.type, streamId: event.streamId }),
    optionsFor(sub.name),
  );
  client.connect();
  const id = client.subscribe(sub.filter, sub.streamId, sub.position ?? 'latest');
  names.set(id, sub.name);
  bySub.set(sub.name, client);
  return client;
});
emit({ kind: 'ready', ids: [...names.keys()] });

process.stdin.on('data', (chunk) => {
  for (const line of String(chunk).split('\n')) {
    if (line.trim() === 'positions') {
      emit({ kind: 'positions', positions: Object.fromEntries(args.subs.map((s) => [s.name, bySub.get(s.name).positions()])) });
    }
  }
});
process.stdin.on('end', () => {
  for (const client of clients) client.disconnect();
  emit({ kind: 'bye' });
  setTimeout(() => process.exit(0), 50);
});
