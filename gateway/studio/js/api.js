// The REST API and the credentials Studio uses for it.
//
// Credentials: none in the embedded dev mode (detected: a request without a key succeeds).
// Otherwise an API key the user types in, kept in this tab's sessionStorage only and sent as the
// X-API-Key header. The WebSocket gets a short-lived token minted with that key
// (POST /event-stores/{store}/ws-tokens) and connects with ?token=: the key itself never
// appears in a URL.

const KEY_STORAGE = 'deltagate.studio.apiKey';
const BASE = '/api';

export const auth = {
  /** 'unknown' until probed; 'open': auth is off (dev mode); 'key': an API key is needed. */
  mode: 'unknown',
  key: readKey(),
  /** Called when the server refuses the key (401): the app asks for a new one. */
  onRefused: null,
};

function readKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || null;
  } catch {
    return null; // storage disabled: keep the key in memory only
  }
}

export function setKey(key) {
  auth.key = key || null;
  try {
    if (auth.key) sessionStorage.setItem(KEY_STORAGE, auth.key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled
  }
}

/** A refused request, with the contract's error body: {error, message, details?}. */
export class ApiError extends Error {
  constructor(status, body, text) {
    const code = body && typeof body.error === 'string' ? body.error : `HTTP_${status}`;
    const message =
      body && typeof body.message === 'string' ? body.message : text ? text.slice(0, 300) : `HTTP ${status}`;
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = body && body.details !== undefined ? body.details : null;
  }
}

export const enc = encodeURIComponent;

/** `/event-stores/{store}` with the store name escaped. */
export function storePath(store, rest = '') {
  return `/event-stores/${enc(store)}${rest}`;
}

/** Why a stream id cannot be in a URL path (null when it can): servers decode `%2F` before
 * routing, and browsers resolve `.` and `..` out of the path (docs/api.md). */
export function unaddressable(streamId) {
  if (streamId === '.' || streamId === '..') return `a stream ID of ${streamId} cannot be addressed in a URL path`;
  if (streamId.includes('/')) return 'a stream ID with / cannot be addressed in a URL path';
  return null;
}

/** Query string from an object, skipping undefined/null/'' values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue;
    q.append(name, String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

async function send(method, path, body, withKey) {
  const headers = { Accept: 'application/json' };
  if (withKey && auth.key) headers['X-API-Key'] = auth.key;
  const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(BASE + path, init);
  } catch (error) {
    const failure = new ApiError(0, { error: 'NETWORK_ERROR', message: `the gateway did not answer (${error.message})` });
    throw failure;
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) throw new ApiError(response.status, data, text);
  return data;
}

/** Call the API (path below /api, e.g. `/event-stores`). Throws ApiError. */
export async function api(method, path, body) {
  try {
    return await send(method, path, body, auth.mode !== 'open');
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && auth.mode === 'key' && typeof auth.onRefused === 'function') {
      auth.onRefused(error);
    }
    throw error;
  }
}

/**
 * Find out whether the gateway needs credentials: a request without a key that succeeds means
 * auth is off. Returns 'open', 'key' (a stored key works) or 'needed'.
 */
export async function probe() {
  try {
    await send('GET', '/event-stores', undefined, false);
    auth.mode = 'open';
    return 'open';
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
  }
  auth.mode = 'key';
  if (!auth.key) return 'needed';
  try {
    await send('GET', '/event-stores', undefined, true);
    return 'key';
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      setKey(null);
      return 'needed';
    }
    if (error instanceof ApiError && error.status === 403) return 'key'; // valid, narrower key
    throw error;
  }
}

/** Check a key the user typed; keep it (session storage) only if the gateway accepts it. */
export async function tryKey(key) {
  const previous = auth.key;
  auth.key = key;
  try {
    await send('GET', '/event-stores', undefined, true);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 403) {
      auth.key = previous;
      throw error;
    }
  }
  setKey(key);
  auth.mode = 'key';
}

/** A short-lived WebSocket token for `store` (null in dev mode: no credentials needed). */
export async function wsToken(store) {
  if (auth.mode === 'open') return null;
  const minted = await api('POST', storePath(store, '/ws-tokens'), { ttlSeconds: 300 });
  return minted.token;
}

/** A one-line description of an API error; with the `lines` shown beside it (`detailLines`),
 * just its code when they already say its message (it was said twice). */
export function describe(error, lines = null) {
  if (!(error instanceof ApiError)) return String(error && error.message ? error.message : error);
  if (lines !== null && lines.includes(error.message)) return error.code;
  return `${error.code}: ${error.message}`;
}

/** [{field, message}] of a VALIDATION_ERROR (or whatever details a refusal carries), as text lines. */
export function detailLines(error) {
  if (!(error instanceof ApiError) || error.details === null) return [];
  const details = error.details;
  if (Array.isArray(details)) {
    return details.map((item) => {
      if (item && typeof item === 'object') {
        const field = item.field !== undefined ? String(item.field) : '';
        const message = item.message !== undefined ? String(item.message) : JSON.stringify(item);
        return field ? `${field}: ${message}` : message;
      }
      return String(item);
    });
  }
  if (typeof details === 'object') {
    return Object.entries(details).map(([name, value]) => `${name}: ${typeof value === 'string' ? value : JSON.stringify(value)}`);
  }
  return [String(details)];
}
