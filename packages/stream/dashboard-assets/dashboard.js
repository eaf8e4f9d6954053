// The dashboard's page: reads /api/state, then follows /api/stream (server-sent events), and draws what it gets.
// Plain DOM and SVG, no framework and no build: every value from the database goes in as text (textContent), never
// as markup, so a view or stream name holding HTML shows as written.

const csrf = document.querySelector('meta[name="fstore-csrf"]').getAttribute('content');
const byId = (id) => document.getElementById(id);
let lastState;
let lastSampleAt = 0;
let announcedStale = false;

/** An element with text and attributes; children appended as given. */
function element(tag, options = {}, ...children) {
  const node = document.createElement(tag);
  if (options.text !== undefined) node.textContent = options.text;
  if (options.className) node.className = options.className;
  for (const [name, value] of Object.entries(options.attributes ?? {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

const number = (value) =>
  value === null || value === undefined ? '–' : Math.round(value).toLocaleString('en-US');

function age(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function bytes(value) {
  if (value < 1024 * 1024) return `${(value / 1024).toFixed(0)} KB`;
  if (value < 1024 ** 3) return `${(value / 1024 ** 2).toFixed(1)} MB`;
  return `${(value / 1024 ** 3).toFixed(2)} GB`;
}

/** A sparkline of the last minutes, in plain SVG, labelled for screen readers with its range. */
function sparkline(values, label) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('viewBox', '0 0 90 22');
  svg.setAttribute('role', 'img');
  const known = values.filter((v) => v !== null && v !== undefined);
  const max = Math.max(1, ...known);
  svg.setAttribute(
    'aria-label',
    `${label}: ${known.length} samples, from ${number(known[0] ?? 0)} to ${number(known.at(-1) ?? 0)}, at most ${number(max)}`,
  );
  const title = document.createElementNS(ns, 'title');
  title.textContent = svg.getAttribute('aria-label');
  svg.append(title);
  if (known.length > 1) {
    const line = document.createElementNS(ns, 'polyline');
    const step = 90 / (values.length - 1);
    line.setAttribute(
      'points',
      values.map((v, i) => `${(i * step).toFixed(1)},${(21 - ((v ?? 0) / max) * 20).toFixed(1)}`).join(' '),
    );
    svg.append(line);
  }
  return svg;
}

function figure(text, values, label, className) {
  return element(
    'span',
    { className: `figure ${className ?? ''}` },
    element('span', { text }),
    sparkline(values, label),
  );
}

function renderDatabase(database) {
  const list = byId('database');
  const entries = [
    ['appended', `${number(database.appendedPerSecond)} events/s`],
    ['events (log)', bytes(database.sizes.events)],
    ['archived events', bytes(database.sizes.archivedEvents)],
    ['lock rows', bytes(database.sizes.locks)],
    ['frontiers', bytes(database.sizes.viewFrontiers)],
    ['parked events', bytes(database.sizes.parkedEvents)],
  ];
  list.replaceChildren(
    ...entries.map(([term, value]) =>
      element('div', {}, element('dt', { text: term }), element('dd', { text: value })),
    ),
  );
  const chart = element(
    'div',
    {},
    element('dt', { text: 'appended, last minutes' }),
    element(
      'dd',
      {},
      sparkline(
        database.history.map((h) => h.appendedPerSecond),
        'events appended per second',
      ),
    ),
  );
  list.append(chart);
}

function renderViews(views, rebuildable) {
  const body = byId('views').tBodies[0];
  byId('no-views').hidden = views.length > 0;
  body.replaceChildren(
    ...views.map((view) => {
      const last = view.history.at(-1) ?? {};
      const behind = view.history.map((h) => h.eventsBehind);
      const oldest = view.history.map((h) => h.oldestUnreadSeconds);
      const handled = view.history.map((h) => h.handledPerSecond);
      const subscription = [
        view.subscribedDeciders ? `deciders: ${view.subscribedDeciders.join(', ')}` : 'every decider',
        view.subscribedEvents ? `events: ${view.subscribedEvents.join(', ')}` : '',
      ]
        .filter(Boolean)
        .join('; ');
      const row = element(
        'tr',
        { attributes: { 'data-view': view.view } },
        element('th', { text: view.view, attributes: { scope: 'row' } }),
        element(
          'td',
          {},
          figure(
            number(last.eventsBehind),
            behind,
            `${view.view}, events behind`,
            last.eventsBehind > 0 ? 'behind' : 'caught-up',
          ),
        ),
        element(
          'td',
          {},
          figure(
            age(last.oldestUnreadSeconds),
            oldest,
            `${view.view}, age of the oldest unread event in seconds`,
          ),
        ),
        element(
          'td',
          {},
          figure(number(last.handledPerSecond), handled, `${view.view}, events handled per second`),
        ),
        element('td', { text: number(view.leasedStreams) }),
        element('td', { text: number(view.waitingStreams) }),
        element('td', { text: number(view.stoppedStreams) }),
        element('td', { text: number(view.parkedEvents) }),
        element('td', { text: number(view.archivedStreams) }),
        element('td', { text: subscription, className: 'text' }),
        rebuildCell(view.view, rebuildable.includes(view.view)),
      );
      row.querySelector('td').setAttribute('data-behind', String(last.eventsBehind ?? ''));
      return row;
    }),
  );
}

/**
 * A Rebuild button for a view the dashboard may rebuild; it asks once more before it acts (the read model is emptied
 * and replayed). The rows are drawn anew with every sample, so the pending question is kept by view.
 */
const confirming = new Set();
function rebuildCell(view, rebuildable) {
  const cell = element('td', { className: 'text actions' });
  if (!rebuildable) {
    cell.textContent = '–';
    return cell;
  }
  const asking = confirming.has(view);
  const button = element('button', {
    text: asking ? 'Confirm rebuild' : 'Rebuild',
    attributes: {
      type: 'button',
      'aria-label': asking
        ? `confirm: empty the read model of view ${view} and replay its events`
        : `rebuild view ${view}: empty its read model and replay its events`,
    },
  });
  button.addEventListener('click', () => {
    if (!confirming.has(view)) {
      confirming.add(view);
      byId('action-result').textContent =
        `Rebuild view ${view}? Press Confirm rebuild to empty its read model and replay it.`;
      redrawViews(view);
      return;
    }
    confirming.delete(view);
    void rebuild(view);
  });
  cell.append(button);
  if (asking) {
    const cancel = element('button', {
      text: 'Cancel',
      attributes: { type: 'button', 'aria-label': `do not rebuild view ${view}` },
    });
    cancel.addEventListener('click', () => {
      confirming.delete(view);
      byId('action-result').textContent = `View ${view} was not rebuilt.`;
      redrawViews(view);
    });
    cell.append(' ', cancel);
  }
  return cell;
}

/** Draws the views again (a question asked or withdrawn), keeping the keyboard on that view's button. */
function redrawViews(view) {
  renderViews(lastState.views, lastState.rebuildable ?? []);
  for (const row of byId('views').tBodies[0].rows)
    if (row.getAttribute('data-view') === view) row.querySelector('button')?.focus();
}

function rebuild(view) {
  return postAction(
    '/api/views/rebuild',
    { view },
    `View ${view} is rebuilding: its read model was emptied, and its workers replay its events.`,
  );
}

function renderParked(parked, actions) {
  byId('read-only').hidden = actions;
  byId('no-parked').hidden = parked.length > 0;
  const body = byId('parked').tBodies[0];
  body.replaceChildren(
    ...parked.map((p) => {
      const buttons = element('td', { className: 'text actions' });
      if (actions) {
        for (const action of ['retry', 'discard']) {
          const button = element('button', {
            text: action === 'retry' ? 'Retry' : 'Discard',
            attributes: {
              type: 'button',
              'aria-label': `${action} the event at offset ${p.offset} of stream ${p.deciderId} in view ${p.view}`,
            },
          });
          button.addEventListener('click', () => act(action, p));
          buttons.append(button);
        }
        if (p.retryRequested) buttons.append(element('span', { text: ' retry requested' }));
      } else {
        buttons.textContent = p.retryRequested ? 'retry requested' : '–';
      }
      return element(
        'tr',
        { attributes: { 'data-offset': String(p.offset), 'data-view': p.view } },
        element('td', { text: p.view }),
        element('td', { text: p.deciderId, className: 'text' }),
        element('td', { text: String(p.offset) }),
        element('td', { text: String(p.attempts) }),
        errorCell(p.error),
        element('td', { text: new Date(p.parkedAt).toLocaleString() }),
        buttons,
      );
    }),
  );
}

/** The error's first line; the rest (a stack, often) folded under it. */
function errorCell(error) {
  const [first, ...rest] = error.split('\n');
  const cell = element('td', { className: 'error' });
  if (rest.length === 0) {
    cell.textContent = first;
    return cell;
  }
  cell.append(
    element('details', {}, element('summary', { text: first }), element('pre', { text: rest.join('\n') })),
  );
  return cell;
}

function act(action, parked) {
  return postAction(
    `/api/parked/${action}`,
    { view: parked.view, offset: parked.offset },
    `${action === 'retry' ? 'Retry requested for' : 'Discarded'} the event at offset ${parked.offset} of view ${parked.view}.`,
  );
}

/** Sends an action with the page's CSRF token, and says what came of it under the tables. */
async function postAction(path, body, done) {
  const result = byId('action-result');
  try {
    const response = await fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Fstore-Csrf': csrf },
      body: JSON.stringify(body),
      credentials: 'same-origin',
    });
    const answer = await response.json();
    result.textContent = response.ok ? done : `Refused: ${answer.error}`;
  } catch (error) {
    result.textContent = `Failed: ${error.message}`;
  }
}

function render(state) {
  lastState = state;
  lastSampleAt = Date.now();
  // The tables are drawn anew each second: the keyboard stays on the button it was on (found by its label).
  const focused = document.activeElement?.getAttribute('aria-label');
  renderDatabase(state.database);
  renderViews(state.views, state.rebuildable ?? []);
  renderParked(state.parked, state.actions);
  if (focused)
    for (const button of document.querySelectorAll('button'))
      if (button.getAttribute('aria-label') === focused) button.focus();
  showConnection();
}

function showConnection() {
  const connection = byId('connection');
  const seconds = (Date.now() - lastSampleAt) / 1000;
  const stale = !lastState || seconds > 5;
  connection.classList.toggle('stale', stale);
  // Announced once when it changes, not every second.
  if (lastState && stale !== announcedStale) {
    announcedStale = stale;
    byId('connection-alert').textContent = stale
      ? 'The dashboard is not receiving updates.'
      : 'Receiving updates again.';
  }
  connection.textContent = lastState
    ? `updated ${seconds < 2 ? 'just now' : `${seconds.toFixed(0)} s ago`}${stale ? ': not receiving updates' : ''}`
    : 'connecting…';
}

fetch('/api/state', { credentials: 'same-origin' })
  .then((response) => response.json())
  .then(render)
  .catch(() => {});
const source = new EventSource('/api/stream');
source.addEventListener('message', (message) => render(JSON.parse(message.data)));
setInterval(showConnection, 1000);
