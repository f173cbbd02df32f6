// The console's routes through real sockets on an admin API with a token: the page and its two
// files are open (no data, a Content-Security-Policy of its own origin), anything else under /ui
// is not served; the event stream needs the token, refuses a foreign Origin, sends snapshots of
// the backends and the rebalance progress (bounded, no stream key), and is bounded (the stream past the limit is answered 503) and counted; an open
// stream does not hold up the proxy's stop.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CONSOLE_DEFAULTS } from '../../src/control/console/console-routes.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';

const TOKEN = 'console-integration-token';
const AUTH = { authorization: `Bearer ${TOKEN}` };

async function metric(tp: TestProxy, name: string): Promise<number> {
  const text = await (await tp.admin('/metrics')).text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m === null ? 0 : Number(m[1]);
}

/** Opens /api/events and reads up to the first complete event. */
async function firstEvent(tp: TestProxy, signal: AbortSignal): Promise<{ status: number; event: string; data: unknown }> {
  const r = await tp.admin('/api/events', { headers: AUTH, signal });
  if (r.status !== 200) return { status: r.status, event: '', data: await r.json() };
  assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/);
  const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  while (!buf.includes('\n\n')) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`stream ended before an event: ${buf}`);
    buf += value;
  }
  const block = buf.slice(0, buf.indexOf('\n\n'));
  const event = /^event: (.*)$/m.exec(block)![1]!;
  const data: unknown = JSON.parse(/^data: (.*)$/m.exec(block)![1]!);
  return { status: 200, event, data };
}

describe('admin console routes (token, non-loopback)', () => {
  let fake: FakeRtmpServer;
  let tp: TestProxy;
  before(async () => {
    fake = new FakeRtmpServer();
    await fake.listen();
    tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', admin: '0.0.0.0:0', adminToken: TOKEN });
  });
  after(async () => {
    await tp.stop();
    await fake.close();
  });

  test('the page, its script and style are open, with a same-origin CSP; nothing else under /ui is served', async () => {
    for (const [path, type] of [
      ['/ui', /^text\/html/],
      ['/ui/', /^text\/html/],
      ['/ui/console.js', /^text\/javascript/],
      ['/ui/console.css', /^text\/css/],
    ] as const) {
      const r = await tp.admin(path);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get('content-type') ?? '', type, path);
      assert.match(r.headers.get('content-security-policy') ?? '', /^default-src 'self'/, path);
      assert.ok((await r.text()).length > 0);
    }
    const html = await (await tp.admin('/ui')).text();
    assert.doesNotMatch(html, /<script>|\sstyle=|\son\w+=/, 'no inline script, style or handler (the CSP would block them)');
    const js = await (await tp.admin('/ui/console.js')).text();
    assert.doesNotMatch(js, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/, 'values reach the page as text, never parsed as HTML or code');
    for (const path of ['/ui/index.html', '/ui/../package.json', '/ui/%2e%2e/package.json', '/ui/other.js']) {
      assert.equal((await tp.admin(path)).status, 401, `${path}: guarded, not served`);
    }
    assert.equal((await tp.admin('/ui/console.js', { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: '{}' })).status, 405);
  });

  test('the event stream needs the token and the own Origin', async () => {
    assert.equal((await tp.admin('/api/events')).status, 401);
    assert.equal((await tp.admin('/api/events', { headers: { authorization: 'Bearer wrong' } })).status, 401);
    assert.equal((await tp.admin('/api/events', { headers: { ...AUTH, origin: 'http://evil.example' } })).status, 403);
  });

  test('a snapshot carries the rebalance status: idle before any run, the run once one was started', async () => {
    const a = new AbortController();
    const idle = (await firstEvent(tp, a.signal)).data as { rebalance: { running: boolean; startedAt: number | null; plan: unknown } | null };
    a.abort();
    assert.deepEqual(idle.rebalance, {
      running: false,
      startedAt: null,
      planned: 0,
      pending: 0,
      inFlight: 0,
      results: { moved: 0, migrated: 0, failed: 0, timeout: 0, skipped: 0 },
      plan: null,
    });
    const origin = `http://127.0.0.1:${tp.proxy.adminAddress!.port}`;
    const r = await tp.admin('/api/rebalance', {
      method: 'POST',
      headers: { ...AUTH, origin, 'content-type': 'application/json' },
      body: '{"reason":"console"}',
    });
    assert.equal(r.status, 200);
    const b = new AbortController();
    const ran = (await firstEvent(tp, b.signal)).data as {
      rebalance: { running: boolean; startedAt: number | null; plan: { counts: Record<string, number>; movesTotal: number } };
    };
    b.abort();
    assert.equal(typeof ran.rebalance.startedAt, 'number');
    assert.equal(ran.rebalance.running, false);
    assert.deepEqual(ran.rebalance.plan.counts, { fake: 0 });
    assert.equal(ran.rebalance.plan.movesTotal, 0);
    // The console's POST from a foreign page is refused like a drain's.
    const foreign = await tp.admin('/api/rebalance', {
      method: 'POST',
      headers: { ...AUTH, origin: 'http://evil.example', 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(foreign.status, 403);
  });

  test('a stream sends snapshots; streams are bounded and counted', async () => {
    const aborts: AbortController[] = [];
    try {
      for (let i = 0; i < CONSOLE_DEFAULTS.maxClients; i++) {
        const a = new AbortController();
        aborts.push(a);
        const e = await firstEvent(tp, a.signal);
        assert.equal(e.status, 200);
        assert.equal(e.event, 'snapshot');
        const snap = e.data as { backends: { name: string }[]; sessions: unknown[] };
        assert.deepEqual(
          snap.backends.map((b) => b.name),
          ['fake'],
        );
        assert.deepEqual(snap.sessions, []);
      }
      assert.equal(await metric(tp, 'rtmp_goaway_admin_console_clients'), CONSOLE_DEFAULTS.maxClients);
      const over = await firstEvent(tp, new AbortController().signal);
      assert.equal(over.status, 503);
      assert.match((over.data as { error: string }).error, /too many console streams/);
      const text = await (await tp.admin('/metrics')).text();
      assert.match(text, /rtmp_goaway_admin_console_streams_total\{result="refused"\} 1/);
    } finally {
      for (const a of aborts) a.abort();
    }
    await eventually(async () => (await metric(tp, 'rtmp_goaway_admin_console_clients')) === 0, 'closed streams uncounted');
    const a = new AbortController();
    const again = await firstEvent(tp, a.signal);
    a.abort();
    assert.equal(again.status, 200, 'a stream opens again once the others closed');
  });
});

test('a console stream still open does not hold up the proxy stopping', async () => {
  const fake = new FakeRtmpServer();
  await fake.listen();
  const tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', adminToken: TOKEN });
  try {
    const e = await firstEvent(tp, new AbortController().signal);
    assert.equal(e.status, 200);
    // The stream stays open (never aborted): stop must end it rather than wait for the browser.
    await tp.stop();
  } finally {
    await fake.close();
  }
});
