// What operators read must be safe to read: credentials in the app's query string redacted in
// every sink (API, logs, Redis registry, debug tcUrl), log lines valid for strict JSON consumers
// (no duplicate keys), a flood of refused connections costs a bounded number of log lines, and
// drains through the admin API refuse to take the last routable backend away; /readyz tells why.
import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { type RunningProxy, createLogger, startProxy } from '../../src/app.js';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { readRegistry, registryKeys } from '../../src/control/registry.js';
import { loadConfig } from '../../src/config.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { requirePeer } from '../helpers/peers.js';
import { eventually, startTestProxy } from '../helpers/proxy.js';
import { type TestRedis, startRedis } from '../helpers/redis.js';

/**
 * A strict reading of one JSON text: throws on a key repeated in one object (JSON.parse keeps the
 * last one silently; strict consumers drop the line). Walks the text with a small tokenizer.
 */
export function parseStrict(text: string): Record<string, unknown> {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\r\n'.includes(text[i]!)) i++;
  };
  const str = (): string => {
    const start = i;
    i++;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') return void i++;
      for (;;) {
        ws();
        const k = str();
        if (seen.has(k)) throw new Error(`duplicate key "${k}"`);
        seen.add(k);
        ws();
        i++; // :
        value();
        ws();
        if (text[i++] === '}') return;
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') return void i++;
      for (;;) {
        value();
        ws();
        if (text[i++] === ']') return;
      }
    }
    if (c === '"') return void str();
    while (i < text.length && !',}] \t\r\n'.includes(text[i]!)) i++;
  };
  value();
  return JSON.parse(text) as Record<string, unknown>;
}

const SECRET_APP = 'live?user=alice&pass=hunter2';
const SECRET_URL_APP = 'live%3Fuser%3Dalice%26pass%3Dhunter2';

describe('strict JSON log lines', () => {
  test('the duplicate-key detector catches what JSON.parse hides', () => {
    assert.throws(() => parseStrict('{"app":"a","x":{"b":1},"app":"b"}'), /duplicate key "app"/);
    assert.throws(() => parseStrict('{"a":[{"k":1,"k":2}]}'), /duplicate key "k"/);
    assert.deepEqual(parseStrict('{"a":"x\\"y","b":[1,{"c":null}],"d":{}}'), { a: 'x"y', b: [1, { c: null }], d: {} });
  });
});

describe('credentials in the app query string, and log lines', () => {
  let redis: TestRedis | null = null;
  const fake = new FakeRtmpServer();
  const lines: string[] = [];
  let proxy: RunningProxy;

  before(async (ctx) => {
    const exe = requirePeer(ctx as never, 'redis-server');
    if (exe === null) return;
    redis = await startRedis(exe);
    await fake.listen();
    const config = loadConfig({
      flags: {
        listen: '127.0.0.1:0',
        admin: '127.0.0.1:0',
        backend: [`b1=127.0.0.1:${fake.port}`],
        healthEnabled: 'false',
        logLevel: 'debug',
        redisUrl: redis.url,
        redisPrefix: 'rgp-hygiene',
        replicaId: 'hygiene',
        redisHeartbeatMs: '200ms',
      },
      env: {},
    });
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const l of chunk.toString().split('\n')) if (l.trim() !== '') lines.push(l);
        cb();
      },
    });
    // The proxy's own logger, with its `app` base field, as in production.
    proxy = await startProxy(config, createLogger(config, sink));
  });
  after(async () => {
    await proxy?.stop();
    await fake.close();
    await redis?.remove();
  });

  test('redacted in /api/sessions, session start/end, the registry and the debug connect line; no duplicate keys', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    const pub = new RtmpPublisher(`rtmp://127.0.0.1:${proxy.address.port}/${SECRET_URL_APP}/key-123456`, { supportsGoAway: true });
    await pub.publish();
    const base = `http://127.0.0.1:${proxy.adminAddress!.port}`;
    const [s] = (await (await fetch(`${base}/api/sessions`)).json()) as { app: string; streamKey: string }[];
    assert.equal(s!.app, 'live?***(23)');
    assert.equal(s!.streamKey, 'ke***(10)');
    const keys = registryKeys('rgp-hygiene');
    const reg = await eventually(async () => (await readRegistry(redis!.client, keys)).sessions[0], 'the session in the registry');
    assert.equal(reg.app, 'live?***(23)');
    assert.ok(!JSON.stringify(await redis.client.hgetall(keys.sessions('hygiene'))).includes('hunter2'), 'registry record');
    pub.destroy();
    await eventually(() => lines.some((l) => l.includes('"session end"')), 'session end logged');

    for (const l of lines) assert.doesNotThrow(() => parseStrict(l), l);
    assert.ok(!lines.some((l) => l.includes('hunter2')), 'no line holds the password');
    const parsed = lines.map((l) => parseStrict(l));
    const start = parsed.find((l) => l['msg'] === 'session start')!;
    const end = parsed.find((l) => l['msg'] === 'session end')!;
    const connect = parsed.find((l) => l['msg'] === 'connect')!;
    for (const l of [start, end]) {
      assert.equal(l['app'], 'rtmp-goaway-proxy', 'pino base field kept');
      assert.equal(l['rtmpApp'], 'live?***(23)');
      assert.equal(l['capability'], 'goaway');
      assert.equal(l['backend'], 'b1');
    }
    assert.equal(connect['tcUrl'], `rtmp://127.0.0.1:${proxy.address.port}/live?***(23)`);
    assert.equal(connect['rtmpApp'], 'live?***(23)');
  });
});

describe('log.streamKeys shows them in clear', () => {
  test('the app query string too', async () => {
    const fake = new FakeRtmpServer();
    await fake.listen();
    const tp = await startTestProxy({ b1: fake.port }, { healthEnabled: 'false', logStreamKeys: 'true' });
    const pub = new RtmpPublisher(tp.url(SECRET_URL_APP, 'key-123456'));
    try {
      await pub.publish();
      const [s] = await tp.api<{ app: string; streamKey: string }[]>('/api/sessions');
      assert.equal(s!.app, SECRET_APP);
      assert.equal(s!.streamKey, 'key-123456');
    } finally {
      pub.destroy();
      await tp.stop();
      await fake.close();
    }
  });
});

describe('a flood of refused connections', () => {
  test('every refusal counted, log lines bounded by the token bucket, the live publisher unaffected', async () => {
    const fake = new FakeRtmpServer();
    await fake.listen();
    const tp = await startTestProxy({ b1: fake.port }, { healthEnabled: 'false', limitsMaxSessions: '1', logLevel: 'info' });
    const pub = new RtmpPublisher(tp.url('live', 'the-one'));
    try {
      await pub.publish();
      const N = 3_000;
      const started = Date.now();
      let closed = 0;
      await new Promise<void>((resolve) => {
        let opened = 0;
        const one = (): void => {
          if (opened >= N) return;
          opened++;
          const c = net.connect(tp.proxy.address.port, '127.0.0.1');
          c.on('error', () => {});
          c.on('close', () => {
            if (++closed === N) resolve();
            else one();
          });
        };
        for (let i = 0; i < 100; i++) one();
      });
      const text = await (await tp.admin('/metrics')).text();
      const counted = Number(/rtmp_goaway_sessions_rejected_total\{reason="max-sessions"\} (\d+)/.exec(text)?.[1]);
      assert.equal(counted, N);
      const seconds = (Date.now() - started) / 1000;
      const refusedLines = tp.logs.filter((l) => l['msg'] === 'connection refused');
      assert.ok(refusedLines.length <= 10 + Math.ceil(seconds) + 1, `${refusedLines.length} lines for ${N} refusals in ${seconds.toFixed(1)} s`);
      // What was not written is accounted for (on the next line or a summary once the bucket allows).
      await eventually(
        () => {
          const l = tp.logs.filter((x) => x['msg'] === 'connection refused');
          return l.filter((x) => x['summary'] !== true).length + l.reduce((n, x) => n + Number(x['suppressed'] ?? 0), 0) === N;
        },
        'every refusal written or counted as suppressed',
        20_000,
      );
      console.log(`# ${N} refused connections → ${refusedLines.length} log lines in ${seconds.toFixed(1)} s`);
      assert.equal((await tp.api<unknown[]>('/api/sessions')).length, 1);
    } finally {
      pub.destroy();
      await tp.stop();
      await fake.close();
    }
  });
});

describe('fail-safe drains through the admin API', () => {
  test('the last routable backend is refused (409) unless forced; /readyz then says all backends draining', async () => {
    const b1 = new FakeRtmpServer();
    const b2 = new FakeRtmpServer();
    await b1.listen();
    await b2.listen();
    const tp = await startTestProxy({ b1: b1.port, b2: b2.port }, { healthEnabled: 'false' });
    try {
      const post = (path: string, body: unknown) =>
        tp.admin(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal((await post('/api/backends/b1/drain', {})).status, 200);
      const refused = await post('/api/backends/b2/drain', {});
      assert.equal(refused.status, 409);
      assert.match(((await refused.json()) as { error: string }).error, /last backend that can take new sessions/);
      assert.equal((await tp.api<{ name: string; draining: boolean }[]>('/api/backends')).find((b) => b.name === 'b2')!.draining, false);
      assert.equal((await tp.admin('/readyz')).status, 200);
      assert.ok(tp.logs.some((l) => l['msg'] === 'drain refused: last routable backend (not forced)' && l['backend'] === 'b2'));
      // A re-drain of a backend already draining is not refused.
      assert.equal((await post('/api/backends/b1/drain', { deadlineMs: 60_000 })).status, 200);

      assert.equal((await post('/api/backends/b2/drain', { force: true })).status, 200);
      const ready = await tp.admin('/readyz');
      assert.equal(ready.status, 503);
      assert.equal(((await ready.json()) as { reason: string }).reason, 'all backends draining');
    } finally {
      await tp.stop();
      await b1.close();
      await b2.close();
    }
  });

  test('/readyz is not ready before a health check found a backend up', async () => {
    // Nobody listens there: the first probe fails, but `fall` 3 keeps the backend nominally up.
    const dead = await new Promise<number>((r) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => r(p));
      });
    });
    const alive = new FakeRtmpServer();
    await alive.listen();
    const tp = await startTestProxy({ dead }, { healthIntervalMs: '60s', healthTimeoutMs: '1s', healthFall: '3' });
    const tp2 = await startTestProxy({ alive: alive.port }, { healthIntervalMs: '60s', healthTimeoutMs: '1s' });
    try {
      await eventually(async () => (await tp.api<{ lastCheckAt?: number }[]>('/api/backends'))[0]!.lastCheckAt, 'the first health round done');
      assert.equal((await tp.api<{ health: string }[]>('/api/backends'))[0]!.health, 'up', 'still nominally up after one failure');
      const r = await tp.admin('/readyz');
      assert.equal(r.status, 503);
      assert.match(((await r.json()) as { reason: string }).reason, /first health check/);
      await eventually(async () => (await tp2.admin('/readyz')).status === 200, 'ready once a probe succeeded');
    } finally {
      await tp.stop();
      await tp2.stop();
      await alive.close();
    }
  });
});
