// Types of deltagate.js, the client served by deltagate at /client/deltagate.js.

/** An event as stored and sent by deltagate (contract section 1). */
export interface DeltaGateEvent<T = Record<string, unknown> | null> {
  streamId: string;
  /** 0-based position of the event within its stream. */
  streamPosition: number;
  /** Position in the whole store: starts at 1, strictly increasing, no gaps. */
  globalPosition: number;
  eventId: string;
  type: string;
  data: T;
  metadata?: Record<string, unknown>;
  /** As the client wrote it: DeltaBase's are strings ("1.0.0"), integers are kept as such. */
  schemaVersion?: number | string;
  transactionId?: string;
  /** ISO 8601, UTC. */
  createdAt: string;
}

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** 'latest': after the head at subscribe time; 'earliest': from the start; N: after globalPosition N;
 * {time}: from the first event created at or after that ISO 8601 instant. */
export type Position = 'latest' | 'earliest' | number | { time: string };

/** A type pattern (`*` matches any run of characters) or a list of them (OR). */
export type EventFilter = string | string[];

/** Where a problem was noticed, for `onError`. */
export type ErrorSource =
  | 'token'
  | 'connect'
  | 'close'
  | 'message'
  | 'event'
  | 'server'
  | 'heartbeat'
  | 'reconnect'
  | 'onEvent'
  | 'onStateChange'
  | 'onReset'
  | 'onTruncated'
  | 'onCaughtUp';

/** The subscription's cursor is not in the store's history: the server replays the store from its
 * first event (the client's cursor starts again too). */
export interface ResetNotice {
  type: 'reset';
  subscriptionId: string;
  reason: 'store-recreated' | 'position-ahead';
  /** The store's epoch now (new whenever a store is created). */
  epoch: string;
  headPosition: number;
}

/** Events after `requestedPosition` and before `earliestPosition` are gone (retention). */
export interface TruncatedNotice {
  type: 'truncated';
  subscriptionId: string;
  requestedPosition: number;
  earliestPosition: number;
}

/** The constructor of a WHATWG-style WebSocket (the browser's, or Node's `ws` package). */
export interface WebSocketConstructor {
  new (url: string): {
    readonly readyState: number;
    onopen: ((event: unknown) => void) | null;
    onmessage: ((event: { data: unknown }) => void) | null;
    onerror: ((event: unknown) => void) | null;
    onclose: ((event: { code: number; reason: string }) => void) | null;
    send(data: string): void;
    close(code?: number, reason?: string): void;
  };
}

/** A token, or the answer of POST /event-stores/{store}/ws-tokens (its expiresAt is used). */
export type TokenAnswer = string | { token: string; expiresAt?: string };

/** When a token expires (ms since the epoch): from `expiresAt`, else the JWT's `exp`; or null. */
export declare function tokenExpiry(token: string | null, expiresAt?: string | null): number | null;

export interface DeltaBaseWebSocketOptions {
  /** http(s):// or ws(s):// base of the gateway. Default: the page's origin. */
  baseUrl?: string;
  /** A short-lived WebSocket token (POST /event-stores/{store}/ws-tokens), used instead of a key. */
  token?: string;
  /** Called before each (re)connect for a fresh token; wins over `token`. On a WebSocket it is
   * also called a while before the token expires, and the new token is sent over the open socket
   * (`{"action": "refresh"}`): no reconnect. May return the token or the ws-tokens answer. */
  getToken?: () => TokenAnswer | Promise<TokenAnswer>;
  /** Refresh a WebSocket's token this many ms before it expires (default 60000; at most half of
   * the time left). */
  refreshBefore?: number;
  /** 'websocket' (default) or 'sse': Server-Sent Events through EventSource, one stream per
   * subscription, resumed with Last-Event-ID. */
  transport?: 'websocket' | 'sse';
  /** EventSource implementation for transport 'sse'. Default globalThis.EventSource. */
  EventSource?: new (url: string) => {
    readonly readyState: number;
    onopen: ((event: unknown) => void) | null;
    onerror: ((event: unknown) => void) | null;
    addEventListener(type: string, listener: (event: { data: string }) => void): void;
    close(): void;
  };
  onStateChange?: (state: ConnectionState) => void;
  /** Problems the client handled itself (it keeps going). Default: console.warn. */
  onError?: (error: Error, source: ErrorSource) => void;
  /** A replay ('earliest' or a number) reached live. */
  onCaughtUp?: (subscriptionId: string, globalPosition: number) => void;
  /** The store's history is not the one the cursor came from; what `onEvent` sees next starts
   * again from the store's first event (rebuild state from it). Default: console.warn. */
  onReset?: (notice: ResetNotice) => void;
  /** History the subscription asked for is gone. Default: console.warn. */
  onTruncated?: (notice: TruncatedNotice) => void;
  /** First backoff ceiling in ms (default 1000); doubles per attempt; full jitter. */
  initialDelay?: number;
  /** Backoff cap in ms (default 30000). */
  maxDelay?: number;
  /** Default Infinity: never give up. */
  maxReconnectAttempts?: number;
  /** Send a ping after this many ms (default 25000); a connection that stays silent for
   * pingInterval + pongTimeout is considered dead and replaced. 0 turns it off. */
  pingInterval?: number;
  pongTimeout?: number;
  /** A connection not open this many ms after it was asked for (default 10000) is given up
   * and tried again. 0 turns it off. */
  openTimeout?: number;
  /** A connection open this long (ms, default 5000) resets the backoff. */
  stableAfter?: number;
  /** WebSocket implementation. Default globalThis.WebSocket; in Node 20 pass require('ws'). */
  WebSocket?: WebSocketConstructor;
}

export declare const DEFAULT_OPTIONS: Readonly<
  Required<
    Pick<
      DeltaBaseWebSocketOptions,
      | 'initialDelay'
      | 'maxDelay'
      | 'maxReconnectAttempts'
      | 'pingInterval'
      | 'pongTimeout'
      | 'openTimeout'
      | 'stableAfter'
      | 'transport'
      | 'refreshBefore'
    >
  >
>;

export declare class DeltaBaseWebSocket<T = Record<string, unknown> | null> {
  constructor(
    eventStoreName: string,
    /** Sent as X-API-Key with Node's `ws`; as ?apiKey= in browsers (use a token there). */
    apiKey: string | null | undefined,
    /** Each matching event, exactly once per subscription, in order, with the id `subscribe`
     * returned (an event several subscriptions match comes once for each). */
    onEvent: (event: DeltaGateEvent<T>, subscriptionId: string) => void,
    options?: DeltaBaseWebSocketOptions,
  );
  readonly eventStoreName: string;
  readonly state: ConnectionState;
  /** Failed attempts since the connection last worked. */
  readonly reconnectAttempts: number;
  /** Open the connection and keep it open until disconnect(). */
  connect(): void;
  /** Returns the subscriptionId. The same filter and stream twice is one subscription. */
  subscribe(eventFilter: EventFilter, streamId?: string, position?: Position): string;
  unsubscribe(eventFilter: EventFilter, streamId?: string): void;
  /** Close and stop reconnecting; a later connect() resumes every subscription where it stopped. */
  disconnect(): void;
  /** Last globalPosition seen per subscriptionId (null: not known yet). */
  positions(): Record<string, number | null>;
}

export interface LoadEventsOptions {
  baseUrl?: string;
  apiKey?: string;
  /** Type pattern(s); default every type. */
  type?: EventFilter;
  streamId?: string;
  /** Only events after this globalPosition. */
  after?: number;
  fetch?: typeof fetch;
}

/** Every matching event over REST (paged), and the globalPosition to resume live from.
 * A store that does not exist yet reads as empty. */
export declare function loadEvents<T = Record<string, unknown> | null>(
  eventStoreName: string,
  options?: LoadEventsOptions,
): Promise<{ events: DeltaGateEvent<T>[]; lastPosition: number }>;

export declare function isValidEvent(event: unknown): event is DeltaGateEvent;
export declare function wsBase(baseUrl?: string): string;
export declare function httpBase(baseUrl?: string): string;

export default DeltaBaseWebSocket;
