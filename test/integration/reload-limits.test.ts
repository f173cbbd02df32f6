// A configuration reload applies limits and drain settings to what starts from then on, through
// real sockets: a lower limits.maxSessions refuses the next connection while the live sessions
// stay; per-IP limits turned on by a reload apply to new connections; a new drain.deadlineMs is the
// deadline of the next drain.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { loadConfig } from '../../src/config.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';

async function metric(tp: TestProxy, series: string): Promise<number> {
  const text = await (await tp.admin('/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

function connectFrom(port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress }, () => resolve(s));
    s.on('error', () => {});
  });
}

describe('reload: limits and drain settings', () => {
  const a = new FakeRtmpServer();
  const b = new FakeRtmpServer();
  let tp: TestProxy;
  const pubs: RtmpPublisher[] = [];
  const flags = (extra: Record<string, unknown>) => ({
    listen: '127.0.0.1:0',
    admin: '127.0.0.1:0',
    backend: [`a=127.0.0.1:${a.port}`, `b=127.0.0.1:${b.port}`],
    healthEnabled: false,
    drainNonCapable: 'deadline-close',
    ...extra,
  });
  const reload = (extra: Record<string, unknown>) => tp.proxy.reload(loadConfig({ flags: flags(extra), env: {} }));

  before(async () => {
    await a.listen();
    await b.listen();
    tp = await startTestProxy({ a: a.port, b: b.port }, { healthEnabled: false, drainNonCapable: 'deadline-close' });
  });
  after(async () => {
    for (const p of pubs) p.destroy();
    await tp.stop();
    await a.close();
    await b.close();
  });

  test('a lower maxSessions refuses new connections; the live sessions stay; the limit gauge follows', async () => {
    const pub = new RtmpPublisher(tp.url('live', 'one'));
    pubs.push(pub);
    await pub.publish();
    const r = reload({ limitsMaxSessions: '1' });
    assert.deepEqual(r.applied, ['limits.maxSessions']);
    assert.equal(await metric(tp, 'rtmp_goaway_session_limit{limit="max-sessions"}'), 1);
    const refused = new RtmpPublisher(tp.url('live', 'two'), { timeoutMs: 5_000 });
    pubs.push(refused);
    await assert.rejects(refused.publish());
    assert.equal(await metric(tp, 'rtmp_goaway_sessions_rejected_total{reason="max-sessions"}'), 1);
    const conn = [...a.connections, ...b.connections].find((c) => c.commands.includes('publish'))!;
    const before = conn.media;
    pub.sendMedia(MessageType.Audio, 0, Buffer.from([0xaf, 1, 2]));
    await eventually(() => conn.media === before + 1, 'the live session still forwards');
    reload({});
  });

  test('per-IP limits turned on by a reload apply to new connections', async () => {
    reload({ limitsMaxSessionsPerIp: '1' });
    const first = await connectFrom(tp.proxy.address.port, '127.0.0.2');
    const second = await connectFrom(tp.proxy.address.port, '127.0.0.2');
    await eventually(() => second.destroyed || second.readableEnded, 'the second connection from 127.0.0.2 is refused');
    assert.equal(await metric(tp, 'rtmp_goaway_sessions_rejected_total{reason="per-ip-sessions"}'), 1);
    assert.equal(first.destroyed, false);
    first.destroy();
    reload({});
  });

  test('the next drain uses the reloaded drain.deadlineMs', () => {
    reload({ drainDeadlineMs: '42s' });
    const started = Date.now();
    const r = tp.proxy.control.drain('b');
    assert.ok(r.deadlineAt !== undefined && r.deadlineAt - started >= 42_000 && r.deadlineAt - started < 60_000, `deadline ${r.deadlineAt! - started} ms`);
    tp.proxy.control.undrain('b');
  });
});
