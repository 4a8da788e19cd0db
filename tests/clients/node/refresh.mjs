// Follows a store with the served DeltaBaseWebSocket on short-lived tokens from getToken(), in
// Node with the `ws` package, for tests/clients/test_js_client.py: the client should refresh its
// token over the open socket and never reconnect.
//
//   node refresh.mjs --url http://127.0.0.1:PORT --store STORE --key MINTING_KEY --ttl SECONDS
//
// Lines: {"kind":"state","state"} {"kind":"event","gp"} {"kind":"token"} {"kind":"error",...}.
// Closing stdin disconnects and exits.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import WebSocket from 'ws';

const arg = (name) => process.argv[process.argv.indexOf(name) + 1];
const [url, store, key, ttl] = ['--url', '--store', '--key', '--ttl'].map(arg);
const emit = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);

const file = join(mkdtempSync(join(tmpdir(), 'deltagate-')), 'deltagate.mjs');
writeFileSync(file, await (await fetch(`${url}/client/deltagate.js`)).text());
const { DeltaBaseWebSocket } = await import(pathToFileURL(file).href);

async function getToken() {
  const response = await fetch(`${url}/event-stores/${store}/ws-tokens`, {
    method: 'POST',
    headers: { 'X-API-Key': key, 'Content-Type': 'application/json' },
    body: JSON.stringify({ ttlSeconds: Number(ttl), eventFilter: '*' }),
  });
  if (!response.ok) throw new Error(`ws-tokens: ${response.status}`);
  emit({ kind: 'token' });
  return response.json(); // {token, expiresAt}
}

const client = new DeltaBaseWebSocket(store, null, (event) => emit({ kind: 'event', gp: event.globalPosition }), {
  baseUrl: url,
  WebSocket,
  getToken,
  onStateChange: (state) => emit({ kind: 'state', state }),
  onError: (error, source) => emit({ kind: 'error', source, message: String(error && error.message) }),
});
client.subscribe('*', undefined, 'earliest');
client.connect();
process.stdin.on('data', () => {});
process.stdin.on('end', () => {
  client.disconnect();
  process.exit(0);
});
