// Webhook subscriptions: create and delete; status, lag and last error; pause/resume; dead
// letters and redrive. Both views refresh themselves every 2 s (keyboard focus stays where it
// was).

import { api, describe, detailLines, enc, storePath } from './api.js';
import { confirmTyped, errorBox, h, href, notify, number, pretty, preview, replaceKeepingFocus, timeEl } from './dom.js';

const REFRESH_MS = 2000;

function filterText(filter) {
  return Array.isArray(filter) ? filter.join(', ') : String(filter ?? '*');
}

function statusBadge(sub) {
  const status = sub.status || 'active';
  return h('span', { class: `pill status-${status}`, title: sub.statusReason || '', dataset: { status } }, status);
}

function webhookUrl(sub) {
  return sub.subscriber && sub.subscriber.config ? sub.subscriber.config.url : '';
}

/**
 * The "New subscription" form: event filter (patterns, comma-separated), webhook URL and where
 * to start. The signing secret comes back once, with the created subscription, and is shown
 * here only then.
 */
function createForm(store, reload) {
  const fieldError = (id) => h('p', { id, class: 'field-error', hidden: true });
  const filter = h('input', { id: 'sub-filter', name: 'filter', value: '*', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'sub-filter-hint sub-filter-error' });
  const url = h('input', { id: 'sub-url', name: 'url', type: 'url', autocomplete: 'off', spellcheck: 'false', placeholder: 'https://example.com/hooks/orders', 'aria-describedby': 'sub-url-error' });
  const position = h('select', { id: 'sub-position', name: 'position' }, h('option', { value: 'latest' }, 'New events only (latest)'), h('option', { value: 'earliest' }, 'Every event in the store (earliest)'));
  const errors = { filter: fieldError('sub-filter-error'), url: fieldError('sub-url-error') };
  const inputs = { filter, url };
  const result = h('div', { id: 'sub-create-result', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'sub-create' }, 'Create subscription');

  function setError(name, message) {
    errors[name].textContent = message;
    errors[name].hidden = !message;
    if (message) inputs[name].setAttribute('aria-invalid', 'true');
    else inputs[name].removeAttribute('aria-invalid');
  }
  for (const [name, input] of Object.entries(inputs)) input.addEventListener('input', () => setError(name, ''));

  /** The request body, or null after marking the bad fields. */
  function validate() {
    const problems = [];
    const patterns = filter.value.split(',').map((p) => p.trim()).filter(Boolean);
    if (patterns.length === 0) problems.push(['filter', 'Enter an event type or pattern, e.g. order.* (or * for every event).']);
    let target = null;
    try {
      target = new URL(url.value.trim());
    } catch {
      problems.push(['url', 'Enter the endpoint as an absolute http:// or https:// URL.']);
    }
    if (target !== null && !['http:', 'https:'].includes(target.protocol)) problems.push(['url', 'Only http:// and https:// endpoints can receive webhooks.']);
    for (const [name, message] of problems) setError(name, message);
    if (problems.length) {
      inputs[problems[0][0]].focus();
      return null;
    }
    return {
      eventFilter: patterns.length === 1 ? patterns[0] : patterns,
      subscriber: { type: 'webhook', config: { url: url.value.trim() } },
      position: position.value,
    };
  }

  const form = h(
    'form',
    { class: 'form-grid', id: 'sub-form', novalidate: true },
    h('label', { for: 'sub-filter' }, 'Event filter'),
    h('div', null, filter, h('p', { id: 'sub-filter-hint', class: 'hint' }, 'Types or patterns, comma-separated: order.*, *.created, user.signed_up'), errors.filter),
    h('label', { for: 'sub-url' }, 'Webhook URL'),
    h('div', null, url, errors.url),
    h('label', { for: 'sub-position' }, 'Start with'),
    h('div', null, position),
    h('span'),
    h('div', { class: 'row' }, submit),
    h('span'),
    result,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    result.replaceChildren();
    for (const name of Object.keys(inputs)) setError(name, '');
    const request = validate();
    if (request === null) return;
    submit.disabled = true;
    try {
      const made = await api('POST', storePath(store, '/subscribe'), request);
      const id = made.subscriptionId;
      if (made.isExistingSubscription) {
        result.replaceChildren(h('div', { class: 'ok-box', role: 'status', id: 'sub-existing' }, h('strong', null, `That subscription exists already: ${id}.`), ' Its signing secret was shown when it was created.'));
      } else {
        result.replaceChildren(
          h(
            'div',
            { class: 'ok-box', role: 'status', id: 'sub-created' },
            h('strong', null, `Created subscription ${id}.`),
            h('p', null, 'Signing secret (shown only now; receivers verify the webhook-signature header with it):'),
            h('code', { id: 'sub-secret', class: 'mono secret' }, made.signingSecret || ''),
          ),
        );
      }
    } catch (error) {
      const lines = detailLines(error);
      result.replaceChildren(errorBox(`The server refused the subscription: ${describe(error, lines)}`, lines, { id: 'sub-create-error' }));
    } finally {
      submit.disabled = false;
    }
    await reload();
  });
  return h('details', { class: 'panel', id: 'sub-new' }, h('summary', null, 'New subscription'), form);
}

function subPath(store, id, rest = '') {
  return storePath(store, `/subscriptions/${enc(id)}${rest}`);
}

/** Run `load` now and every REFRESH_MS while the view is shown; returns the cleanup. */
function autoRefresh(load, toggle) {
  let timer = 0;
  const arm = () => {
    clearInterval(timer);
    timer = toggle.checked ? setInterval(() => document.hidden || load(), REFRESH_MS) : 0;
  };
  toggle.addEventListener('change', arm);
  load();
  arm();
  return () => clearInterval(timer);
}

function refreshToggle(id) {
  const input = h('input', { type: 'checkbox', id, checked: true, dataset: { focusKey: id } });
  return [input, h('label', { for: id, class: 'inline' }, input, ' Refresh every 2 s')];
}

export function mountSubscriptions(body, store) {
  let alive = true;
  const list = h('div', { id: 'subs-list', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  const [toggle, toggleLabel] = refreshToggle('subs-autorefresh');

  async function load() {
    try {
      const page = await api('GET', storePath(store, '/subscriptions'));
      if (!alive) return;
      replaceKeepingFocus(list, table(page.subscriptions || []));
    } catch (error) {
      if (!alive) return;
      replaceKeepingFocus(list, errorBox(describe(error)));
    } finally {
      list.setAttribute('aria-busy', 'false');
    }
  }

  async function remove(sub) {
    const id = sub.subscriptionId;
    const confirmed = await confirmTyped({
      title: 'Delete subscription',
      text: `Deliveries to ${webhookUrl(sub) || 'its endpoint'} stop, and the subscription's progress and dead letters are deleted with it.`,
      expected: id,
    });
    if (!confirmed) return;
    try {
      await api('DELETE', subPath(store, id));
      notify(`Subscription ${id} deleted.`);
    } catch (error) {
      notify(`Could not delete ${id}: ${describe(error)}`, 'bad');
    }
    await load();
  }

  async function setStatus(sub, action) {
    try {
      await api('POST', subPath(store, sub.subscriptionId, `/${action}`));
      notify(`Subscription ${sub.subscriptionId} ${action === 'pause' ? 'paused' : 'resumed'}.`);
    } catch (error) {
      notify(`Could not ${action} ${sub.subscriptionId}: ${describe(error)}`, 'bad');
    }
    await load();
  }

  function table(subs) {
    if (subs.length === 0) {
      return h(
        'div',
        { class: 'empty' },
        h('p', null, 'No webhook subscriptions in this store.'),
        h('p', { class: 'muted' }, 'Create one above, with ', h('code', null, `POST /event-stores/${store}/subscribe`), ' or with ', h('code', null, 'deltagate apply FILE'), '.'),
      );
    }
    return h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'grid', id: 'subs-table' },
        h('caption', { class: 'sr-only' }, `Webhook subscriptions of ${store}`),
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            ...['Subscription', 'Events', 'Webhook', 'Status', 'Processed up to', 'Lag', 'Dead letters', 'Last error', 'Actions'].map((label) =>
              h('th', { scope: 'col', class: ['Processed up to', 'Lag', 'Dead letters'].includes(label) ? 'num' : null }, label),
            ),
          ),
        ),
        h(
          'tbody',
          null,
          subs.map((sub) => {
            const id = sub.subscriptionId;
            const paused = sub.status !== 'active';
            const url = webhookUrl(sub);
            return h(
              'tr',
              { dataset: { subscription: id } },
              h('th', { scope: 'row', class: 'mono' }, h('a', { href: href('s', store, 'subscriptions', id), dataset: { focusKey: `open:${id}` } }, id)),
              h('td', { class: 'mono' }, filterText(sub.eventFilter), sub.streamId ? h('div', { class: 'muted' }, `stream ${sub.streamId}`) : null),
              h('td', { class: 'mono url' }, url),
              h('td', null, statusBadge(sub), sub.statusReason && paused ? h('div', { class: 'muted small' }, sub.statusReason) : null),
              h('td', { class: 'num mono' }, number(sub.lastProcessedEventGlobalPosition)),
              h('td', { class: 'num mono lag' }, number(sub.lag)),
              h('td', { class: 'num mono' }, h('a', { href: href('s', store, 'subscriptions', id), 'aria-label': `${sub.deadLetterCount ?? 0} dead letters of ${id}` }, number(sub.deadLetterCount ?? 0))),
              h('td', { class: 'last-error' }, sub.lastError ? [h('span', { class: 'error-text' }, sub.lastError), h('div', { class: 'muted small' }, timeEl(sub.lastErrorAt))] : h('span', { class: 'muted' }, '—')),
              h(
                'td',
                { class: 'actions' },
                h(
                  'button',
                  {
                    type: 'button',
                    class: 'small',
                    dataset: { focusKey: `status:${id}`, action: paused ? 'resume' : 'pause' },
                    'aria-label': `${paused ? 'Resume' : 'Pause'} ${id}`,
                    onclick: () => setStatus(sub, paused ? 'resume' : 'pause'),
                  },
                  paused ? 'Resume' : 'Pause',
                ),
                h('button', { type: 'button', class: 'small danger delete', dataset: { focusKey: `delete:${id}` }, 'aria-label': `Delete ${id}`, onclick: () => remove(sub) }, 'Delete'),
              ),
            );
          }),
        ),
      ),
    );
  }

  body.append(
    h('div', { class: 'section-head' }, h('h2', null, 'Webhook subscriptions'), h('div', { class: 'row' }, toggleLabel, h('button', { type: 'button', id: 'subs-refresh', onclick: () => load() }, 'Refresh'))),
    createForm(store, load),
    list,
  );
  const stop = autoRefresh(load, toggle);
  return () => {
    alive = false;
    stop();
  };
}

// -- dead letters -------------------------------------------------------------------------------

export function mountDeadLetters(body, store, id) {
  let alive = true;
  const summary = h('div', { id: 'sub-summary' });
  const list = h('div', { id: 'dead-letters', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  const outcome = h('div', { id: 'redrive-result', role: 'status', 'aria-live': 'polite' });
  const [toggle, toggleLabel] = refreshToggle('dead-autorefresh');
  const redriveAll = h('button', { type: 'button', id: 'redrive-all', class: 'primary', disabled: true, dataset: { focusKey: 'redrive-all' }, onclick: () => redrive(null) }, 'Redrive all');
  const open = new Set(); // eventIds whose JSON is expanded, kept across refreshes

  async function load() {
    try {
      const [sub, page] = await Promise.all([api('GET', subPath(store, id)), api('GET', subPath(store, id, '/dead-letters?limit=100'))]);
      if (!alive) return;
      renderSummary(sub);
      const letters = page.deadLetters || [];
      redriveAll.disabled = page.totalCount === 0;
      redriveAll.textContent = page.totalCount ? `Redrive all (${number(page.totalCount)})` : 'Redrive all';
      replaceKeepingFocus(list, table(letters, page.totalCount));
    } catch (error) {
      if (!alive) return;
      replaceKeepingFocus(list, errorBox(describe(error)));
    } finally {
      list.setAttribute('aria-busy', 'false');
    }
  }

  function renderSummary(sub) {
    const paused = sub.status !== 'active';
    const url = webhookUrl(sub);
    replaceKeepingFocus(
      summary,
      h(
        'dl',
        { class: 'stats' },
        h('div', { class: 'stat' }, h('dt', null, 'Status'), h('dd', null, statusBadge(sub))),
        h('div', { class: 'stat' }, h('dt', null, 'Processed up to'), h('dd', { class: 'mono' }, number(sub.lastProcessedEventGlobalPosition))),
        h('div', { class: 'stat' }, h('dt', null, 'Lag'), h('dd', { class: 'mono', id: 'sub-lag' }, number(sub.lag))),
        h('div', { class: 'stat' }, h('dt', null, 'Dead letters'), h('dd', { class: 'mono', id: 'sub-dead-count' }, number(sub.deadLetterCount ?? 0))),
      ),
      h(
        'p',
        { class: 'muted' },
        'Events ',
        h('code', null, filterText(sub.eventFilter)),
        sub.streamId ? [' in stream ', h('code', null, sub.streamId)] : null,
        ' → ',
        h('code', null, url),
      ),
      sub.lastError ? h('p', { class: 'error-text' }, 'Last error: ', sub.lastError, ' (', timeEl(sub.lastErrorAt), ')') : null,
      h(
        'div',
        { class: 'row' },
        h('button', { type: 'button', id: 'sub-toggle', dataset: { focusKey: 'toggle' }, onclick: () => setStatus(paused ? 'resume' : 'pause') }, paused ? 'Resume deliveries' : 'Pause deliveries'),
        redriveAll,
        toggleLabel,
      ),
    );
  }

  async function setStatus(action) {
    try {
      await api('POST', subPath(store, id, `/${action}`));
      notify(`Subscription ${id} ${action === 'pause' ? 'paused' : 'resumed'}.`);
    } catch (error) {
      notify(`Could not ${action}: ${describe(error)}`, 'bad');
    }
    await load();
  }

  async function redrive(eventId) {
    outcome.replaceChildren();
    try {
      const path = eventId === null ? subPath(store, id, '/dead-letters/redrive') : subPath(store, id, `/dead-letters/${enc(eventId)}/redrive`);
      const done = await api('POST', path);
      const text = `Queued ${done.redriven} dead letter${done.redriven === 1 ? '' : 's'} for redelivery.`;
      outcome.replaceChildren(h('p', { class: 'ok-text', dataset: { redriven: done.redriven } }, text));
      notify(text);
    } catch (error) {
      outcome.replaceChildren(errorBox(`Redrive failed: ${describe(error)}`));
    }
    await load();
    if (!list.contains(document.activeElement)) redriveAll.focus();
  }

  function table(letters, total) {
    if (letters.length === 0) return h('p', { class: 'empty', id: 'no-dead-letters' }, 'No dead letters: every event was delivered or is still being tried.');
    return h(
      'div',
      { class: 'table-wrap' },
      total > letters.length ? h('p', { class: 'muted' }, `Showing the oldest ${letters.length} of ${number(total)}.`) : null,
      h(
        'table',
        { class: 'grid', id: 'dead-table' },
        h('caption', { class: 'sr-only' }, `Dead letters of ${id}`),
        h(
          'thead',
          null,
          h('tr', null, ...['Position', 'Type', 'Stream', 'Attempts', 'Last error', 'Failed at', 'Event', 'Actions'].map((label) => h('th', { scope: 'col', class: ['Position', 'Attempts'].includes(label) ? 'num' : null }, label))),
        ),
        h(
          'tbody',
          null,
          letters.map((letter) => {
            const event = letter.event || {};
            const eventId = letter.eventId || event.eventId;
            const details = h('details', { open: open.has(eventId) }, h('summary', { class: 'mono', dataset: { focusKey: `event:${eventId}` } }, preview(event.data, 60)), h('pre', { class: 'json' }, pretty(event)));
            details.addEventListener('toggle', () => (details.open ? open.add(eventId) : open.delete(eventId)));
            return h(
              'tr',
              { dataset: { eventId } },
              h('td', { class: 'num mono' }, String(letter.globalPosition ?? event.globalPosition ?? '')),
              h('td', { class: 'mono' }, event.type ?? ''),
              h('td', { class: 'mono' }, letter.streamId ?? event.streamId ?? ''),
              h('td', { class: 'num mono' }, String(letter.attempts ?? '')),
              h('td', { class: 'error-text' }, letter.lastError ?? ''),
              h('td', null, timeEl(letter.failedAt)),
              h('td', { class: 'data' }, details),
              h(
                'td',
                { class: 'actions' },
                h('button', { type: 'button', class: 'small redrive', dataset: { focusKey: `redrive:${eventId}` }, 'aria-label': `Redrive event ${eventId}`, onclick: () => redrive(eventId) }, 'Redrive'),
              ),
            );
          }),
        ),
      ),
    );
  }

  body.append(
    h('nav', { class: 'crumbs', 'aria-label': 'Subscription' }, h('a', { href: href('s', store, 'subscriptions') }, 'Subscriptions'), h('span', { 'aria-hidden': 'true' }, ' / ')),
    h('h2', { class: 'mono', id: 'sub-title' }, id),
    summary,
    h('h3', null, 'Dead letters'),
    outcome,
    list,
  );
  const stop = autoRefresh(load, toggle);
  return () => {
    alive = false;
    stop();
  };
}
