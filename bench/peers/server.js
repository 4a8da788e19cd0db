// The Node peers of bench/fanout.py: the same job as the bench's Python servers, done the way a
// Node team would do it, so deltagate can be measured beside them in the same run.
//
//     node bench/peers/server.js ws PORT
//     node bench/peers/server.js socketio PORT REDIS_URL
//
// Both serve, on 127.0.0.1:PORT:
// - GET /readyz: 200 (what tests/harness.py waits for);
// - POST /event-stores/{store}/streams/{stream} with {"events": [...]}: each event gets the fields
//   deltagate's log adds (positions, ids, createdAt) and is broadcast at once to every subscriber
//   of the store as {"type":"event","subscriptionId":"sub-1","event":{...}}; answers 201 with
//   deltagate's append JSON. Nothing is stored: no replay.
// - subscribers, from "latest" only:
//   - ws: a WebSocket at /event-stores/{store}/events/ws speaking deltagate's subscribe/subscribed;
//     the frame of an event is built once and the same bytes are written to every socket (the
//     in-process broadcast of the ws README);
//   - socketio: Socket.IO 4 (websocket transport) at /socket.io/?store={store}; the client emits
//     "subscribe", is put in the store's room and answered "subscribed"; an event is
//     io.to(store).emit("event", frame) through @socket.io/redis-adapter on REDIS_URL (published
//     to Redis for the other nodes, encoded once, written to the room's sockets).
"use strict";

const http = require("node:http");
const crypto = require("node:crypto");

const [mode, portText, redisUrl] = process.argv.slice(2);
const port = Number(portText);
const APPEND = /^\/event-stores\/([^/]+)\/streams\/([^/?]+)$/;
const SOCKET = /^\/event-stores\/([^/]+)\/events\/ws$/;
const SUB_ID = "sub-1"; // deltagate's id for a connection's first subscription

class Store {
  constructor() {
    this.head = 0;
    this.versions = new Map();
  }

  // Each event as deltagate's log serves it, positioned.
  positioned(stream, events) {
    const transactionId = crypto.randomUUID();
    const createdAt = new Date().toISOString();
    let version = this.versions.get(stream) || 0;
    const out = events.map((e) => {
      version += 1;
      this.head += 1;
      return {
        globalPosition: this.head,
        streamPosition: version,
        streamId: stream,
        eventId: crypto.randomUUID(),
        type: e.type,
        data: e.data,
        schemaVersion: 1,
        transactionId,
        createdAt,
      };
    });
    this.versions.set(stream, version);
    return { out, transactionId, version };
  }
}

const stores = new Map();
function storeOf(name) {
  let store = stores.get(name);
  if (!store) {
    store = new Store();
    stores.set(name, store);
  }
  return store;
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

// The HTTP side, shared: readiness and appends. broadcast(store, events) delivers.
function handler(broadcast) {
  return (req, res) => {
    if (req.method === "GET" && req.url === "/readyz") {
      reply(res, 200, { ready: true });
      return;
    }
    const match = req.method === "POST" ? APPEND.exec(req.url) : null;
    if (!match) {
      reply(res, 404, { error: "NOT_FOUND" });
      return;
    }
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const [, storeName, stream] = match;
      const store = storeOf(storeName);
      const body = JSON.parse(Buffer.concat(chunks));
      const { out, transactionId, version } = store.positioned(stream, body.events);
      broadcast(storeName, out);
      reply(res, 201, {
        success: true,
        streamId: stream,
        nextExpectedStreamVersion: version,
        currentStreamVersion: version,
        eventsWritten: out.length,
        globalPosition: store.head,
        transactionId,
      });
    });
  };
}

function frameOf(event) {
  return { type: "event", subscriptionId: SUB_ID, event };
}

function serveWs() {
  const { WebSocketServer } = require("ws");
  const rooms = new Map(); // store -> Set of sockets
  const server = http.createServer(
    handler((storeName, events) => {
      const room = rooms.get(storeName);
      if (!room) return;
      for (const event of events) {
        const bytes = Buffer.from(JSON.stringify(frameOf(event)));
        for (const socket of room) socket.send(bytes, { binary: false });
      }
    }),
  );
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server.on("upgrade", (req, socket, head) => {
    const match = SOCKET.exec(req.url.split("?")[0]);
    if (!match) {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const storeName = decodeURIComponent(match[1]);
      ws.on("message", (data) => {
        const message = JSON.parse(data);
        if (message.action === "ping") {
          ws.send('{"type":"pong"}');
        } else if (message.action === "subscribe") {
          let room = rooms.get(storeName);
          if (!room) rooms.set(storeName, (room = new Set()));
          room.add(ws);
          const position = storeOf(storeName).head;
          ws.send(JSON.stringify({ type: "subscribed", subscriptionId: SUB_ID, position }));
        }
      });
      ws.on("close", () => rooms.get(storeName)?.delete(ws));
      ws.on("error", () => ws.terminate()); // a client's protocol error ends its connection only
    });
  });
  server.listen(port, "127.0.0.1");
}

async function serveSocketIo() {
  const { Server } = require("socket.io");
  const { createAdapter } = require("@socket.io/redis-adapter");
  const { createClient } = require("redis");
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  let io = null;
  const server = http.createServer(
    handler((storeName, events) => {
      for (const event of events) io.to(storeName).emit("event", frameOf(event));
    }),
  );
  io = new Server(server, {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    adapter: createAdapter(pub, sub),
  });
  io.on("connection", (socket) => {
    const storeName = String(socket.handshake.query.store || "");
    socket.on("subscribe", () => {
      socket.join(storeName);
      const position = storeOf(storeName).head;
      socket.emit("subscribed", { type: "subscribed", subscriptionId: SUB_ID, position });
    });
  });
  server.listen(port, "127.0.0.1");
}

if (mode === "ws") {
  serveWs();
} else if (mode === "socketio") {
  serveSocketIo().catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  console.error("usage: node server.js ws|socketio PORT [REDIS_URL]");
  process.exit(2);
}
