// The console's one script: reads /api/events (server-sent events, through fetch so that the
// token goes in the Authorization header, never in a URL) and drains, undrains and rebalances
// through the admin API's POST routes. Every value from the server reaches the page through
// textContent or an attribute, never as HTML.
const TOKEN_KEY = 'rtmp-goaway-admin-token';
const RETRY_MS = 2000;
/** Planned moves listed at most (the event stream sends at most as many). */
const MAX_MOVES_SHOWN = 100;

const $ = (id) => document.getElementById(id);
let controller = null;
/** The last snapshot's sessions: a planned move names its session by id. */
let sessionsById = new Map();
/** The plan the panel shows: the last dry run asked from this page, or the run's (from the stream). */
let dryPlan = null;

function token() {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

function authHeaders(extra = {}) {
  const t = token();
  return t === '' ? extra : { ...extra, authorization: `Bearer ${t}` };
}

function setStatus(text) {
  $('status').textContent = text;
}

function showLogin(message) {
  controller?.abort();
  $('console').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  setStatus(message);
  $('token').focus();
}

function cell(row, text, className) {
  const td = document.createElement('td');
  td.textContent = text === null || text === undefined || text === '' ? '–' : String(text);
  if (className) td.className = className;
  row.append(td);
  return td;
}

function bitrate(bits) {
  if (typeof bits !== 'number') return null;
  return bits >= 1e6 ? `${(bits / 1e6).toFixed(1)} Mb/s` : `${Math.round(bits / 1000)} kb/s`;
}

function codec(m) {
  if (!m) return null;
  const v = m.videoFourcc ? `${m.videoCodec ?? '?'}(${m.videoFourcc})` : m.videoCodec;
  const a = m.audioCodec ?? m.audioFourcc;
  return [v, a].filter(Boolean).join(' + ') || null;
}

function drainText(b, now) {
  if (!b.draining) return [null, null];
  const left = `${b.sessions} left`;
  if (typeof b.drainStartedAt !== 'number' || typeof b.drainDeadlineAt !== 'number') return [left, null];
  const total = Math.max(1, b.drainDeadlineAt - b.drainStartedAt);
  const done = Math.min(total, Math.max(0, now - b.drainStartedAt));
  const secs = Math.max(0, Math.ceil((b.drainDeadlineAt - now) / 1000));
  return [`${left}, deadline in ${secs}s`, done / total];
}

function renderBackends(backends, now) {
  const body = $('backends').tBodies[0];
  const rows = backends.map((b) => {
    const tr = document.createElement('tr');
    tr.dataset.backend = b.name;
    cell(tr, b.name, 'name');
    cell(tr, `${b.host}:${b.port}`);
    cell(tr, b.state, `state state-${b.state}`);
    cell(tr, b.health);
    cell(tr, b.maxSessions ? `${b.sessions} / ${b.maxSessions}` : b.sessions, 'num sessions');
    const [text, fraction] = drainText(b, now);
    const td = cell(tr, text, 'draining');
    if (fraction !== null) {
      const p = document.createElement('progress');
      p.value = fraction;
      p.title = 'time to the drain deadline';
      td.prepend(p, ' ');
    }
    const action = document.createElement('td');
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = b.draining ? 'Undrain' : 'Drain';
    button.className = b.draining ? 'undrain' : 'drain';
    button.addEventListener('click', () => void command(b.name, b.draining ? 'undrain' : 'drain', button));
    action.append(button);
    tr.append(action);
    return tr;
  });
  body.replaceChildren(...rows);
}

function renderSessions(sessions) {
  const body = $('sessions').tBodies[0];
  $('session-count').textContent = `(${sessions.length})`;
  const rows = sessions.map((s) => {
    const m = s.media ?? null;
    const tr = document.createElement('tr');
    tr.dataset.session = s.id;
    cell(tr, s.app, 'app');
    cell(tr, s.streamKey, 'key');
    cell(tr, s.client, 'client');
    cell(tr, s.backend, 'backend');
    cell(tr, s.capability, 'capability');
    cell(tr, s.role, 'role');
    cell(tr, codec(m), 'codec');
    cell(tr, m && m.width && m.height ? `${m.width}x${m.height}` : null, 'resolution');
    cell(tr, m && typeof m.fps === 'number' ? Math.round(m.fps * 100) / 100 : null, 'num fps');
    cell(tr, bitrate(m?.bitrate), 'num bitrate');
    cell(tr, m && typeof m.keyframeIntervalMs === 'number' ? `${(m.keyframeIntervalMs / 1000).toFixed(1)}s` : null, 'num gop');
    cell(tr, s.state, 'state');
    return tr;
  });
  body.replaceChildren(...rows);
}

/** POSTs a JSON body with the token (the browser adds the page's Origin); null after a refused token. */
async function post(path, body) {
  const r = await fetch(path, { method: 'POST', headers: authHeaders({ 'content-type': 'application/json' }), body: JSON.stringify(body) });
  if (r.status === 401) {
    showLogin('the token was refused');
    return null;
  }
  return r;
}

async function failed(what, r) {
  const answer = await r.json().catch(() => ({}));
  $('message').textContent = `${what}: HTTP ${r.status} ${answer.error ?? ''}`;
}

async function command(name, action, button) {
  button.disabled = true;
  $('message').textContent = '';
  const path = `/api/backends/${encodeURIComponent(name)}/${action}`;
  try {
    let r = await post(path, action === 'drain' ? { reason: 'console' } : {});
    if (r?.status === 409 && window.confirm(`${name} is the last backend taking publishers. Drain it anyway?`)) {
      r = await post(path, { reason: 'console', force: true });
    }
    if (r && !r.ok) await failed(`${action} ${name}`, r);
  } catch (err) {
    $('message').textContent = `${action} ${name}: ${err.message}`;
  } finally {
    button.disabled = false;
  }
}

/** The form's pace, in the body of POST /api/rebalance (empty fields: the configured defaults). */
function rebalanceBody(dryRun) {
  const body = { dryRun, reason: 'console' };
  const max = $('rebalance-max').value.trim();
  const minAge = $('rebalance-min-age').value.trim();
  if (max !== '') body.maxInFlight = Number(max);
  if (minAge !== '') body.minAgeMs = Math.round(Number(minAge) * 1000);
  return body;
}

async function rebalance(dryRun) {
  const buttons = [$('rebalance-plan'), $('rebalance-start')];
  for (const b of buttons) b.disabled = true;
  $('message').textContent = '';
  try {
    const r = await post('/api/rebalance', rebalanceBody(dryRun));
    if (r === null) return;
    if (!r.ok) return await failed(dryRun ? 'plan' : 'rebalance', r);
    const status = await r.json();
    // A dry run's plan stays on show until the next click; a run's plan comes with its progress on the stream.
    dryPlan = dryRun ? status.plan : null;
    renderRebalance(status);
  } catch (err) {
    $('message').textContent = `${dryRun ? 'plan' : 'rebalance'}: ${err.message}`;
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

function count(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/** Appends `label N` (N in a span of its own class) to `parent`, after a separator unless first. */
function labelled(parent, text, value, className) {
  const span = document.createElement('span');
  span.className = className;
  span.textContent = String(value);
  parent.append(parent.childNodes.length > 1 ? ` · ${text} ` : `${text} `, span);
}

function renderProgress(rb) {
  const state = rb.running ? 'running' : rb.startedAt === null || rb.startedAt === undefined ? 'idle' : 'done';
  $('rebalance-progress').dataset.state = state;
  const r = rb.results ?? {};
  const planned = count(rb.planned);
  const pending = count(rb.pending);
  const inFlight = count(rb.inFlight);
  const bar = $('rebalance-bar');
  bar.value = planned === 0 ? (state === 'done' ? 1 : 0) : (planned - pending - inFlight) / planned;
  const text = $('rebalance-text');
  if (state === 'idle') {
    text.textContent = 'no rebalance yet';
    return;
  }
  const when = new Date(rb.startedAt).toLocaleTimeString();
  text.replaceChildren(state === 'running' ? `running since ${when}: ` : `done (started ${when}): `);
  labelled(text, 'planned', planned, 'planned');
  labelled(text, 'pending', pending, 'pending');
  labelled(text, 'in flight', inFlight, 'in-flight');
  labelled(text, 'moved', count(r.moved) + count(r.migrated), 'moved');
  labelled(text, 'failed', count(r.failed) + count(r.timeout), 'failed');
  labelled(text, 'skipped', count(r.skipped), 'skipped');
}

function sessionLabel(id) {
  const s = sessionsById.get(id);
  if (s === undefined) return `session ${String(id).slice(0, 8)} (gone)`;
  return `${s.app ?? '?'}/${s.streamKey ?? '?'} (${s.client ?? '?'})`;
}

function renderPlan(plan, title) {
  const view = $('rebalance-plan-view');
  if (!plan) {
    view.hidden = true;
    return;
  }
  view.hidden = false;
  const moves = Array.isArray(plan.moves) ? plan.moves.slice(0, MAX_MOVES_SHOWN) : [];
  const total = typeof plan.movesTotal === 'number' ? plan.movesTotal : Array.isArray(plan.moves) ? plan.moves.length : 0;
  const stuck = count(plan.stuck);
  $('rebalance-plan-title').textContent =
    `${title}: ${total} move${total === 1 ? '' : 's'}${stuck > 0 ? `, ${stuck} session${stuck === 1 ? '' : 's'} cannot move (too young, moved recently, not movable)` : ''}`;
  const counts = plan.counts ?? {};
  const targets = plan.targets ?? {};
  const names = [...new Set([...Object.keys(counts), ...Object.keys(targets)])];
  $('rebalance-targets').tBodies[0].replaceChildren(
    ...names.map((n) => {
      const tr = document.createElement('tr');
      tr.dataset.backend = n;
      cell(tr, n, 'name');
      cell(tr, count(counts[n]), 'num count');
      cell(tr, Object.hasOwn(targets, n) ? count(targets[n]) : 'takes none now', 'num target');
      return tr;
    }),
  );
  const rows = moves.map((m) => {
    const tr = document.createElement('tr');
    tr.dataset.session = m.session;
    cell(tr, sessionLabel(m.session), 'session');
    cell(tr, m.from, 'from');
    cell(tr, m.to, 'to');
    return tr;
  });
  if (total > moves.length) {
    const tr = document.createElement('tr');
    const td = cell(tr, `… and ${total - moves.length} more`);
    td.colSpan = 3;
    rows.push(tr);
  }
  $('rebalance-moves').tBodies[0].replaceChildren(...rows);
}

/** The panel: progress of the current (or last) run, and the plan (a dry run's, or the run's). */
function renderRebalance(rb) {
  $('rebalance').hidden = false;
  renderProgress(rb);
  if (dryPlan) renderPlan(dryPlan, 'Plan (dry run: nothing moves until Rebalance)');
  else if (rb.startedAt !== null && rb.startedAt !== undefined)
    renderPlan(rb.plan, `Plan of the rebalance started at ${new Date(rb.startedAt).toLocaleTimeString()}`);
  else renderPlan(null);
}

/** Splits a text/event-stream into events: calls `on(event, data)` for each. */
async function readEvents(body, on) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      on(event, data.join('\n'));
    }
  }
}

async function connect() {
  controller?.abort();
  const mine = new AbortController();
  controller = mine;
  setStatus('connecting…');
  try {
    const r = await fetch('/api/events', { headers: authHeaders({ accept: 'text/event-stream' }), signal: mine.signal, cache: 'no-store' });
    if (r.status === 401 || r.status === 403) {
      const answer = await r.json().catch(() => ({}));
      return showLogin(token() === '' ? 'enter the admin token' : `refused: ${answer.error ?? r.status}`);
    }
    if (!r.ok || r.body === null) throw new Error(`HTTP ${r.status}`);
    $('login').hidden = true;
    $('console').hidden = false;
    $('logout').hidden = token() === '';
    await readEvents(r.body, (event, data) => {
      if (event === 'snapshot') {
        const snap = JSON.parse(data);
        renderBackends(snap.backends, snap.at);
        renderSessions(snap.sessions);
        sessionsById = new Map(snap.sessions.map((x) => [x.id, x]));
        // null: this server does not rebalance (a cluster primary); the panel stays hidden.
        if (snap.rebalance) renderRebalance(snap.rebalance);
        else $('rebalance').hidden = true;
        setStatus(`live · ${new Date(snap.at).toLocaleTimeString()}`);
      } else if (event === 'failure') {
        setStatus(`server error: ${JSON.parse(data).error}`);
      }
    });
    throw new Error('stream ended');
  } catch (err) {
    if (mine.signal.aborted) return;
    setStatus(`disconnected (${err.message}); retrying…`);
    setTimeout(() => {
      if (controller === mine) void connect();
    }, RETRY_MS);
  }
}

function start() {
  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
    $('token').value = '';
    void connect();
  });
  $('rebalance-plan').addEventListener('click', () => void rebalance(true));
  $('rebalance-start').addEventListener('click', () => void rebalance(false));
  // Enter in a field does not start moving sessions: only the buttons act.
  $('rebalance-form').addEventListener('submit', (e) => e.preventDefault());
  $('logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('token forgotten');
  });
  void connect();
}

start();
