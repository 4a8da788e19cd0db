// The guide's AccountBalanceMonitor as a real page: the account's history over REST, then live
// from where it stopped. Amounts are summed in cents so the balance never drifts.
import { DeltaBaseWebSocket, httpBase, loadEvents } from '/client/deltagate.js';
import { el, money, pageParams, setText, showState, when } from './render.js';

const MAX_ROWS = 50;

export class AccountBalanceMonitor {
  constructor({ account, store, apiKey, token }, onBalanceChange) {
    this.accountId = account;
    this.store = store;
    this.apiKey = apiKey;
    this.token = token;
    this.onBalanceChange = onBalanceChange;
    this.cents = 0;
    this.lastPosition = 0;
    this.resets = 0; // times the store's history started again (onReset)
    this.transactions = []; // newest last
    this.state = 'closed';
    this.wsClient = null;
  }

  get balance() {
    return this.cents / 100;
  }

  async initialize() {
    // The history over REST, unless the page has a browser token only (`?token=`): a token
    // opens the live stream, not the REST API, so the stream replays the account instead.
    if (this.apiKey || !this.token) {
      const { events } = await loadEvents(this.store, {
        type: 'money.*',
        streamId: this.accountId,
        apiKey: this.apiKey,
      });
      for (const event of events) this.apply(event);
    }
    this.onBalanceChange(this);
    this.wsClient = new DeltaBaseWebSocket(this.store, this.apiKey, (event) => this.handleEvent(event), {
      token: this.token,
      onReset: () => {
        // The store's history started again: the replay that follows rebuilds the balance.
        this.cents = 0;
        this.transactions = [];
        this.lastPosition = 0;
        this.resets += 1;
        this.onBalanceChange(this);
      },
      onStateChange: (state) => {
        this.state = state;
        this.onBalanceChange(this);
      },
    });
    this.wsClient.connect();
    this.wsClient.subscribe('money.*', this.accountId, this.lastPosition);
  }

  handleEvent(event) {
    if (event.streamId !== this.accountId) return;
    this.apply(event);
    this.onBalanceChange(this);
  }

  apply(event) {
    if (event.globalPosition <= this.lastPosition) return;
    this.lastPosition = event.globalPosition;
    const amount = Number(event.data && event.data.amount);
    if (!Number.isFinite(amount)) return; // not a money movement we can count
    const cents = Math.round(amount * 100);
    if (event.type === 'money.deposited') this.cents += cents;
    else if (event.type === 'money.withdrawn') this.cents -= cents;
    else return;
    this.transactions.push({ event, amount: cents / 100 });
    if (this.transactions.length > MAX_ROWS) this.transactions.shift();
  }

  /** Append a deposit or withdrawal to this account's stream (the live update shows it). */
  async move(type, amount) {
    const headers = { 'content-type': 'application/json' };
    if (this.apiKey) headers['X-API-Key'] = this.apiKey;
    const url = `${httpBase()}/event-stores/${encodeURIComponent(this.store)}/streams/${encodeURIComponent(this.accountId)}`;
    const response = await fetch(url, {
      method: 'POST',
      headers,
      body: JSON.stringify({ events: [{ type, data: { amount } }] }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(`${body.error || response.status}: ${body.message || response.statusText}`);
    }
  }

  disconnect() {
    if (this.wsClient) this.wsClient.disconnect();
  }
}

const $ = (id) => document.getElementById(id);
let pending = false;
let latest = null;

function scheduleUpdate(monitor) {
  latest = monitor;
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    render(latest);
  });
}

function render(monitor) {
  setText($('balance'), money(monitor.balance));
  setText($('position'), monitor.lastPosition);
  showState($('state'), monitor.state);
  const rows = [...monitor.transactions].reverse().map(({ event, amount }) => {
    const deposit = event.type === 'money.deposited';
    return el(
      'tr',
      { 'data-position': event.globalPosition },
      el('td', { class: 'muted' }, event.globalPosition),
      el('td', { class: deposit ? 'deposit' : 'withdraw' }, event.type),
      // What it did to the balance (a deposit of -5 took 5 away, as the seed's monitor counts it).
      el('td', { class: 'amount' }, ((deposit ? amount : -amount) < 0 ? '-' : '+') + money(Math.abs(amount))),
      el('td', { class: 'muted' }, when(event.createdAt)),
    );
  });
  $('transactions').replaceChildren(...rows);
  $('empty').hidden = rows.length > 0;
}

function showError(error) {
  const node = $('error');
  node.hidden = !error;
  setText(node, error ? String(error.message || error) : '');
}

const params = pageParams({ account: 'account-123', store: 'banking' });
setText($('account'), params.account);
setText($('store'), params.store);
const monitor = new AccountBalanceMonitor(params, scheduleUpdate);
globalThis.balanceMonitor = monitor;
monitor.initialize().catch(showError);

$('move').addEventListener('submit', (submit) => {
  submit.preventDefault();
  const type = submit.submitter ? submit.submitter.value : 'money.deposited';
  const amount = Number($('amount').value);
  if (!Number.isFinite(amount) || amount <= 0) {
    showError(new Error('enter a positive amount'));
    return;
  }
  showError(null);
  monitor.move(type, amount).catch(showError);
});
