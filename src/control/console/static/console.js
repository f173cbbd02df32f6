// The console's one script: reads /api/events (server-sent events, through fetch so that the
// token goes in the Authorization header, never in a URL) and drains through the admin API.
// Every value from the server reaches the page through textContent or an attribute, never as HTML.
const TOKEN_KEY = 'rtmp-goaway-admin-token';
const RETRY_MS = 2000;

const $ = (id) => document.getElementById(id);
let controller = null;

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

async function command(name, action, button) {
  button.disabled = true;
  $('message').textContent = '';
  const post = (body) =>
    fetch(`/api/backends/${encodeURIComponent(name)}/${action}`, {
      method: 'POST',
      headers: authHeaders({ 'content-type': 'application/json' }),
      body: JSON.stringify(body),
    });
  try {
    let r = await post(action === 'drain' ? { reason: 'console' } : {});
    if (r.status === 409 && window.confirm(`${name} is the last backend taking publishers. Drain it anyway?`)) {
      r = await post({ reason: 'console', force: true });
    }
    if (r.status === 401) return showLogin('the token was refused');
    if (!r.ok) {
      const answer = await r.json().catch(() => ({}));
      $('message').textContent = `${action} ${name}: HTTP ${r.status} ${answer.error ?? ''}`;
    }
  } catch (err) {
    $('message').textContent = `${action} ${name}: ${err.message}`;
  } finally {
    button.disabled = false;
  }
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
  $('logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('token forgotten');
  });
  void connect();
}

start();
