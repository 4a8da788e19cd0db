// Append one event: type, stream, JSON data (and metadata) checked here before sending; the
// server's own validation errors are shown field by field.

import { api, describe, detailLines, storePath, unaddressable } from './api.js';
import { errorBox, h, href, pretty } from './dom.js';
import { refreshStats } from './store.js';

const drafts = new Map(); // store -> last form values, kept while browsing

/** Parse JSON text; returns {value} or {error} with a position-bearing message. */
function parseJson(text) {
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    return { error: error.message };
  }
}

export function mountAppend(body, store, params) {
  const draft = drafts.get(store) || { stream: '', type: '', data: '{\n  \n}', metadata: '', expected: '' };
  drafts.set(store, draft);
  if (params.get('stream')) draft.stream = params.get('stream');

  const fieldError = (id) => h('p', { id, class: 'field-error', hidden: true });
  const stream = h('input', { id: 'append-stream', name: 'stream', value: draft.stream, autocomplete: 'off', spellcheck: 'false', placeholder: 'order-123', 'aria-describedby': 'append-stream-error' });
  const type = h('input', { id: 'append-type', name: 'type', value: draft.type, autocomplete: 'off', spellcheck: 'false', placeholder: 'order.placed', 'aria-describedby': 'append-type-error' });
  const data = h('textarea', { id: 'append-data', name: 'data', rows: '10', spellcheck: 'false', class: 'mono', 'aria-describedby': 'append-data-hint append-data-error' });
  data.value = draft.data;
  const metadata = h('textarea', { id: 'append-metadata', name: 'metadata', rows: '3', spellcheck: 'false', class: 'mono', placeholder: '{"correlationId": "…"}', 'aria-describedby': 'append-metadata-error' });
  metadata.value = draft.metadata;
  const expected = h('input', { id: 'append-expected', name: 'expected', value: draft.expected, autocomplete: 'off', placeholder: 'any', 'aria-describedby': 'append-expected-hint append-expected-error' });
  const errors = {
    stream: fieldError('append-stream-error'),
    type: fieldError('append-type-error'),
    data: fieldError('append-data-error'),
    metadata: fieldError('append-metadata-error'),
    expected: fieldError('append-expected-error'),
  };
  const inputs = { stream, type, data, metadata, expected };
  const result = h('div', { id: 'append-result', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'append-submit' }, 'Append event');
  const format = h('button', { type: 'button', id: 'append-format' }, 'Format JSON');

  for (const [name, input] of Object.entries(inputs)) {
    input.addEventListener('input', () => {
      draft[name] = input.value;
      setError(name, '');
    });
  }

  function setError(name, message) {
    const el = errors[name];
    el.textContent = message;
    el.hidden = !message;
    if (message) inputs[name].setAttribute('aria-invalid', 'true');
    else inputs[name].removeAttribute('aria-invalid');
  }

  format.addEventListener('click', () => {
    for (const name of ['data', 'metadata']) {
      const text = inputs[name].value.trim();
      if (!text) continue;
      const parsed = parseJson(text);
      if ('error' in parsed) setError(name, `Not valid JSON: ${parsed.error}`);
      else {
        inputs[name].value = pretty(parsed.value);
        draft[name] = inputs[name].value;
      }
    }
  });

  /** The request body, or null after marking the bad fields. */
  function validate() {
    const problems = [];
    for (const name of Object.keys(inputs)) setError(name, '');
    if (!stream.value.trim()) problems.push(['stream', 'Enter a stream ID.']);
    else if (unaddressable(stream.value.trim())) problems.push(['stream', `This form cannot append to it: ${unaddressable(stream.value.trim())}.`]);
    if (!type.value.trim()) problems.push(['type', 'Enter an event type.']);
    const event = { type: type.value.trim() };
    const dataText = data.value.trim();
    if (dataText === '') event.data = null;
    else {
      const parsed = parseJson(dataText);
      if ('error' in parsed) problems.push(['data', `Data is not valid JSON: ${parsed.error}`]);
      else if (parsed.value !== null && (typeof parsed.value !== 'object' || Array.isArray(parsed.value))) {
        problems.push(['data', 'Data must be a JSON object (or null).']);
      } else event.data = parsed.value;
    }
    const metaText = metadata.value.trim();
    if (metaText) {
      const parsed = parseJson(metaText);
      if ('error' in parsed) problems.push(['metadata', `Metadata is not valid JSON: ${parsed.error}`]);
      else if (parsed.value === null || typeof parsed.value !== 'object' || Array.isArray(parsed.value)) {
        problems.push(['metadata', 'Metadata must be a JSON object.']);
      } else event.metadata = parsed.value;
    }
    const request = { events: [event] };
    const want = expected.value.trim();
    if (want && want !== 'any') {
      if (['no_stream', 'stream_exists'].includes(want)) request.options = { expectedStreamVersion: want };
      else if (/^\d+$/.test(want) && Number.isSafeInteger(Number(want))) request.options = { expectedStreamVersion: Number(want) };
      else problems.push(['expected', 'A stream version (0, 1, …), no_stream, stream_exists or any.']);
    }
    for (const [name, message] of problems) setError(name, message);
    if (problems.length) {
      inputs[problems[0][0]].focus();
      return null;
    }
    return request;
  }

  const form = h(
    'form',
    { class: 'panel form-grid', id: 'append-form', novalidate: true, 'aria-labelledby': 'append-title' },
    h('h2', { id: 'append-title' }, 'Append an event'),
    h('label', { for: 'append-stream' }, 'Stream ID'),
    h('div', null, stream, errors.stream),
    h('label', { for: 'append-type' }, 'Event type'),
    h('div', null, type, errors.type),
    h('label', { for: 'append-data' }, 'Data (JSON)'),
    h('div', null, data, h('p', { id: 'append-data-hint', class: 'hint' }, 'A JSON object, or empty for null. Checked before sending.'), errors.data),
    h('label', { for: 'append-metadata' }, 'Metadata (optional JSON)'),
    h('div', null, metadata, errors.metadata),
    h('label', { for: 'append-expected' }, 'Expected stream version'),
    h('div', null, expected, h('p', { id: 'append-expected-hint', class: 'hint' }, 'Optional: a number (0 = empty), no_stream, stream_exists or any (default).'), errors.expected),
    h('span'),
    h('div', { class: 'row' }, submit, format),
    h('span'),
    result,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    result.replaceChildren();
    const request = validate();
    if (request === null) return;
    const streamId = stream.value.trim();
    submit.disabled = true;
    try {
      const done = await api('POST', storePath(store, `/streams/${encodeURIComponent(streamId)}`), request);
      result.replaceChildren(
        h(
          'div',
          { class: 'ok-box', role: 'status', id: 'append-ok' },
          h('strong', null, `Appended ${done.eventsWritten} event to ${done.streamId}.`),
          ` Stream version ${done.currentStreamVersion}, global position ${done.globalPosition}. `,
          h('a', { href: href('s', store, 'stream', done.streamId) }, 'View the stream'),
        ),
      );
      refreshStats(store);
    } catch (error) {
      const lines = detailLines(error);
      result.replaceChildren(errorBox(`The server refused the event: ${describe(error, lines)}`, lines, { id: 'append-server-error' }));
      if (error.code === 'STREAM_VERSION_CONFLICT') setError('expected', error.message);
    } finally {
      submit.disabled = false;
    }
  });

  body.append(form);
  return null;
}
