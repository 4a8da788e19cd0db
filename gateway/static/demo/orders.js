// The guide's live order dashboard as a real page: the orders so far over REST, then live over
// the WebSocket from exactly where the REST read stopped, rendered at most once per frame.
import { DeltaBaseWebSocket, loadEvents } from '/client/deltagate.js';
import { el, money, pageParams, setText, showState, when } from './render.js';

const STATUSES = ['pending', 'shipped', 'delivered'];
const MAX_ROWS = 200;

export class OrderDashboard {
  constructor({ store, apiKey, token }, onUpdate) {
    this.store = store;
    this.apiKey = apiKey;
    this.token = token;
    this.onUpdate = onUpdate;
    this.orders = new Map(); // orderId -> order
    this.lastPosition = 0; // last globalPosition applied
    this.positions = []; // every globalPosition applied, in order (the tests compare it)
    this.anomalies = 0; // events seen twice or out of order (must stay 0)
    this.resets = 0; // times the store's history started again (onReset)
    this.state = 'closed';
    this.wsClient = null;
  }

  async initialize() {
    // 1. Everything so far, over REST (a store that does not exist yet is simply empty). A
    // browser token (`?token=`) opens only the live stream, not the REST API: then the stream
    // replays the store from its start instead, which comes to the same.
    if (this.apiKey || !this.token) {
      const { events } = await loadEvents(this.store, {
        type: 'order.*',
        apiKey: this.apiKey,
      });
      for (const event of events) this.apply(event);
    }
    this.notifyUpdate();
    // 2. Live from the last position read: nothing missed in between, nothing twice.
    this.wsClient = new DeltaBaseWebSocket(this.store, this.apiKey, (event) => this.handleEvent(event), {
      token: this.token,
      onReset: () => {
        // The store's history started again (a re-created store, a restarted dev server): the
        // replay that follows rebuilds the dashboard from its first event.
        this.orders.clear();
        this.lastPosition = 0;
        this.positions = [];
        this.resets += 1;
        this.notifyUpdate();
      },
      onStateChange: (state) => {
        this.state = state;
        this.notifyUpdate();
      },
    });
    this.wsClient.connect();
    this.wsClient.subscribe('order.*', undefined, this.lastPosition);
  }

  handleEvent(event) {
    this.apply(event);
    this.notifyUpdate();
  }

  apply(event) {
    if (event.globalPosition <= this.lastPosition) {
      this.anomalies += 1;
      return;
    }
    this.lastPosition = event.globalPosition;
    this.positions.push(event.globalPosition);
    const data = event.data && typeof event.data === 'object' ? event.data : {};
    const orderId = data.orderId === undefined ? event.streamId : String(data.orderId);
    let order = this.orders.get(orderId);
    if (event.type === 'order.placed') {
      order = {
        orderId,
        customerId: data.customerId,
        totalAmount: data.totalAmount,
        placedAt: data.placedAt || event.createdAt,
        status: 'pending',
        position: event.globalPosition,
        updatedAt: event.globalPosition,
      };
      this.orders.set(orderId, order);
      return;
    }
    const status = { 'order.shipped': 'shipped', 'order.delivered': 'delivered' }[event.type];
    if (status === undefined) return;
    if (order === undefined) {
      // Its order.placed is not in the store (deleted or never written): show what we know.
      order = { orderId, placedAt: event.createdAt, position: event.globalPosition };
      this.orders.set(orderId, order);
    }
    order.status = status;
    order.updatedAt = event.globalPosition;
  }

  notifyUpdate() {
    this.onUpdate(this);
  }

  /** Newest first, by placedAt then by position. */
  sorted() {
    const time = (o) => {
      const t = new Date(o.placedAt).getTime();
      return Number.isNaN(t) ? 0 : t;
    };
    return [...this.orders.values()].sort((a, b) => time(b) - time(a) || b.position - a.position);
  }

  disconnect() {
    if (this.wsClient) this.wsClient.disconnect();
  }
}

// -- rendering: batched with requestAnimationFrame, data only ever as text ---------------------

const $ = (id) => document.getElementById(id);
const rows = new Map(); // orderId -> { row, cells, updatedAt }
let pending = false;
let latest = null;

function scheduleUpdate(dashboard) {
  latest = dashboard;
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    render(latest);
  });
}

function rowFor(order) {
  let entry = rows.get(order.orderId);
  if (entry === undefined) {
    const cells = {
      id: el('td', { class: 'id' }),
      customer: el('td'),
      amount: el('td', { class: 'amount' }),
      status: el('td'),
      placed: el('td', { class: 'muted nowrap' }),
    };
    const badge = el('span', { class: 'badge' });
    cells.status.append(badge);
    const row = el('tr', { class: 'order', 'data-order-id': order.orderId }, ...Object.values(cells));
    entry = { row, cells, badge, updatedAt: null };
    rows.set(order.orderId, entry);
  }
  return entry;
}

function render(dashboard) {
  const tbody = $('orders');
  const orders = dashboard.sorted();
  const counts = { pending: 0, shipped: 0, delivered: 0 };
  for (const order of orders) if (order.status in counts) counts[order.status] += 1;
  const shown = orders.slice(0, MAX_ROWS);
  const keep = new Set();
  shown.forEach((order, index) => {
    const entry = rowFor(order);
    keep.add(order.orderId);
    const status = STATUSES.includes(order.status) ? order.status : 'pending';
    setText(entry.cells.id, order.orderId);
    setText(entry.cells.customer, order.customerId ?? '-');
    setText(entry.cells.amount, money(order.totalAmount));
    setText(entry.badge, status);
    entry.badge.className = `badge ${status}`;
    entry.row.className = `order status-${status}`;
    setText(entry.cells.placed, when(order.placedAt));
    if (entry.updatedAt !== null && entry.updatedAt !== order.updatedAt) {
      entry.row.classList.add('flash');
      setTimeout(() => entry.row.classList.remove('flash'), 1200);
    }
    entry.updatedAt = order.updatedAt;
    if (tbody.children[index] !== entry.row) tbody.insertBefore(entry.row, tbody.children[index] || null);
  });
  for (const [orderId, entry] of rows) {
    if (!keep.has(orderId)) {
      entry.row.remove();
      rows.delete(orderId);
    }
  }
  $('empty').hidden = orders.length > 0;
  setText($('shown'), orders.length > MAX_ROWS ? `showing the newest ${MAX_ROWS} of ${orders.length} orders` : '');
  setText($('count-total'), orders.length);
  for (const status of STATUSES) setText($(`count-${status}`), counts[status]);
  setText($('position'), dashboard.lastPosition);
  setText($('applied'), dashboard.positions.length);
  showState($('state'), dashboard.state);
}

const params = pageParams({ store: 'orders' });
setText($('store'), params.store);
const dashboard = new OrderDashboard(params, scheduleUpdate);
globalThis.orderDashboard = dashboard;
dashboard.initialize().catch((error) => {
  const node = $('error');
  node.hidden = false;
  setText(node, String(error && error.message ? error.message : error));
});
