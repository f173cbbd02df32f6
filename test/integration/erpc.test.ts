// E-RTMP reconnect through the proxy (docs/protocol.md#e-rtmp-reconnect): capsEx Reconnect added to the connect
// `_result`, NetConnection.Connect.ReconnectRequest on drain, a lossless reconnect, Go Away
// preferred over it, and acknowledgements translated by the bytes the proxy added.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { type Amf0Value, amf0Object, isAmf0Object } from '../../src/rtmp/amf0.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { type Command, RECONNECT_REQUEST_CODE, controlMessage, decodeCommand, encodeCommand, readStatusCode } from '../../src/rtmp/messages.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';
import { RecordingRtmpServer } from '../helpers/recording-rtmp-server.js';
import { type MediaMessage, SyntheticMedia } from '../helpers/synthetic-media.js';

interface ApiSession {
  id: string;
  backend: string;
  capability: string;
  state: string;
  reconnectRequestSentAt: string | null;
}

function sendConfig(pub: RtmpPublisher, media: SyntheticMedia, timestamp: number): void {
  for (const c of media.config()) pub.sendMedia(c.typeId, timestamp, c.payload);
}

const isReconnectRequest = (c: Command) => c.name === 'onStatus' && readStatusCode(c) === RECONNECT_REQUEST_CODE;

async function sessionsOf(tp: TestProxy): Promise<ApiSession[]> {
  return tp.api<ApiSession[]>('/api/sessions');
}

describe('E-RTMP reconnect through the proxy', () => {
  let b1: RecordingRtmpServer;
  let b2: RecordingRtmpServer;
  let tp: TestProxy;

  before(async () => {
    b1 = new RecordingRtmpServer({ chunkSize: 4096 });
    b2 = new RecordingRtmpServer({ chunkSize: 4096 });
    await b1.listen();
    await b2.listen();
    // Pass-through sessions (players balanced): the capsEx rewrite in the server's own `_result` is what is tested.
    tp = await startTestProxy({ b1: b1.port, b2: b2.port }, { healthEnabled: 'false', drainDeadlineMs: '20s', playersRouting: 'balance' });
  });
  after(async () => {
    await tp.stop();
    await b1.close();
    await b2.close();
  });

  test('capsEx Reconnect in the _result, ReconnectRequest on drain, and a reconnect that loses nothing', async () => {
    const url = tp.url('live', 'erpc-key');
    const media = new SyntheticMedia({ gop: 15, seed: 11 });
    const sent: MediaMessage[] = [];
    let pub = new RtmpPublisher(url, { capsEx: 1, chunkSize: 4096 });
    const commands: Command[] = [];
    pub.on('command', (c) => commands.push(c));
    await pub.publish();

    const result = commands.find((c) => c.name === '_result' && c.transactionId === 1)!;
    assert.ok(isAmf0Object(result.commandObject));
    assert.equal(result.commandObject['capsEx'], 1, 'the proxy offers capsEx Reconnect');
    assert.equal(result.commandObject['fmsVer'], 'FMS/3,0,1,123', 'the rest of the properties is the server’s');

    sendConfig(pub, media, 0);
    for (let i = 0; i < 40; i++) {
      const m = media.next();
      pub.sendMedia(m.typeId, m.timestamp, m.payload);
      sent.push(m);
    }
    const [s] = await eventually(async () => {
      const list = await sessionsOf(tp);
      return list.length === 1 && list[0]!.state === 'publishing' ? list : null;
    }, 'publishing session');
    assert.equal(s!.capability, 'erpc');
    const from = s!.backend;
    const fromServer = from === 'b1' ? b1 : b2;
    const toServer = from === 'b1' ? b2 : b1;

    const drained = await tp.api<{ outcomes: Record<string, number> }>(`/api/backends/${from}/drain`, { method: 'POST' });
    assert.equal(drained.outcomes['reconnect-request'], 1);
    await eventually(() => commands.some(isReconnectRequest), 'ReconnectRequest at the client');
    const req = commands.find(isReconnectRequest)!;
    assert.equal(req.transactionId, 0);
    assert.equal(req.commandObject, null);
    assert.equal('tcUrl' in (req.args[0] as object), false, 'no tcUrl: reconnect to the same URL');
    const received = pub.received.find(
      (m) => m.typeId === MessageType.CommandAmf0 && m.payload !== null && m.payload.includes(Buffer.from(RECONNECT_REQUEST_CODE)),
    )!;
    assert.equal(received.csid, 3);

    // Like a reconnect-capable publisher: go on until the next keyframe, close without unpublishing,
    // reconnect to the same URL and continue from that keyframe.
    let m = media.next();
    while (m.kind !== 'keyframe') {
      pub.sendMedia(m.typeId, m.timestamp, m.payload);
      sent.push(m);
      m = media.next();
    }
    await pub.end();
    pub = new RtmpPublisher(url, { capsEx: 1, chunkSize: 4096 });
    await pub.publish();
    sendConfig(pub, media, m.timestamp);
    pub.sendMedia(m.typeId, m.timestamp, m.payload);
    sent.push(m);
    for (let i = 0; i < 40; i++) {
      m = media.next();
      pub.sendMedia(m.typeId, m.timestamp, m.payload);
      sent.push(m);
    }
    await pub.unpublish();

    const first = fromServer.publishersOf('erpc-key');
    const second = toServer.publishersOf('erpc-key');
    assert.equal(first.length, 1);
    assert.equal(second.length, 1, 'the reconnect landed on the other backend');
    await eventually(() => first[0]!.closed && second[0]!.closed, 'both backend connections closed');
    const got = [...first[0]!.messages, ...second[0]!.messages].filter((x) => x.kind === 'keyframe' || x.kind === 'video' || x.kind === 'audio');
    assert.deepEqual(
      got.map((x) => x.hash),
      sent.map((x) => x.hash),
      'every frame sent arrived exactly once, in order',
    );
    assert.deepEqual(
      got.map((x) => x.timestamp),
      sent.map((x) => x.timestamp),
    );
    await tp.api(`/api/backends/${from}/undrain`, { method: 'POST' });
  });

  test('a client that announced Go Away and capsEx gets Go Away only', async () => {
    const pub = new RtmpPublisher(tp.url('live', 'both-key'), { capsEx: 1, supportsGoAway: true });
    const commands: Command[] = [];
    pub.on('command', (c) => commands.push(c));
    try {
      await pub.publish();
      const [s] = await eventually(async () => {
        const list = (await sessionsOf(tp)).filter((x) => x.state === 'publishing');
        return list.length === 1 ? list : null;
      }, 'publishing session');
      assert.equal(s!.capability, 'goaway');
      const wentAway = new Promise<void>((r) => pub.once('goaway', () => r()));
      const drained = await tp.api<{ outcomes: Record<string, number> }>(`/api/backends/${s!.backend}/drain`, { method: 'POST' });
      assert.deepEqual(drained.outcomes, { 'go-away': 1 });
      await wentAway;
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(commands.some(isReconnectRequest), false);
      await tp.api(`/api/backends/${s!.backend}/undrain`, { method: 'POST' });
    } finally {
      pub.destroy();
    }
  });

  test('client acknowledgements are lowered by the bytes the proxy added (the larger _result)', async () => {
    const pub = new RtmpPublisher(tp.url('live', 'ack-key'), { capsEx: 1 });
    try {
      await pub.publish();
      const resultMsg = pub.received.find((m) => m.typeId === MessageType.CommandAmf0 && m.payload!.subarray(3, 10).toString() === '_result')!;
      const conn = await eventually(() => [...b1.connections, ...b2.connections].find((c) => c.streamKey === 'ack-key'), 'backend connection');
      // The server's own _result is the received one without capsEx; one chunk either way at 4096.
      const cmd = decodeCommand(MessageType.CommandAmf0, resultMsg.payload!)!;
      const props = amf0Object(cmd.commandObject as Record<string, Amf0Value>);
      delete props['capsEx'];
      const added = resultMsg.length - encodeCommand(cmd.name, cmd.transactionId, props, ...cmd.args).length;
      assert.equal(added, 17, '`capsEx` key (2 + 6 bytes) and number (9 bytes)');
      pub.sendMessage(controlMessage(MessageType.Acknowledgement, 100_000));
      await eventually(() => conn.acks.length === 1, 'ack at the server');
      assert.equal(conn.acks[0], 100_000 - added);
      const metrics = await (await tp.admin('/metrics')).text();
      assert.match(metrics, /rtmp_goaway_ack_translations_total\{result="rewritten"\} 1/);
      assert.match(metrics, /rtmp_goaway_erpc_caps_offered_total\{result="rewritten"\} [1-9]/);
      await pub.unpublish();
    } finally {
      pub.destroy();
    }
  });
});

describe('E-RTMP reconnect not offered (erpc.offer false)', () => {
  test('the _result reaches the client unchanged and a drain falls back to the non-capable policy', async () => {
    const b = new RecordingRtmpServer({ chunkSize: 4096 });
    await b.listen();
    const tp = await startTestProxy({ b: b.port }, { healthEnabled: 'false', erpcOffer: 'false', drainNonCapable: 'deadline-close', drainDeadlineMs: '300ms' });
    const pub = new RtmpPublisher(tp.url('live', 'k'), { capsEx: 1 });
    const commands: Command[] = [];
    pub.on('command', (c) => commands.push(c));
    try {
      await pub.publish();
      const result = commands.find((c) => c.name === '_result' && c.transactionId === 1)!;
      assert.equal((result.commandObject as Record<string, unknown>)['capsEx'], undefined);
      const drained = await tp.api<{ outcomes: Record<string, number> }>('/api/backends/b/drain?force=1', { method: 'POST' });
      assert.deepEqual(drained.outcomes, { waiting: 1 });
      await eventually(() => pub.socket?.destroyed, 'closed at the deadline');
      assert.equal(commands.some(isReconnectRequest), false);
    } finally {
      pub.destroy();
      await tp.stop();
      await b.close();
    }
  });
});
