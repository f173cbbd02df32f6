// Proxy-side migration to node-media-server (a real, independent RTMP server implementation): the
// replayed connect … publish is accepted, the relayed media is recorded, and the frames recorded by
// the old backend plus node-media-server's recording are exactly the frames sent.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { parseFlv } from '../../src/client/flv.js';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { type EmbeddedBackend, startNodeMediaServer } from '../../src/demo/backends.js';
import { tempDir } from '../helpers/peers.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';
import { RecordingRtmpServer, hashBody } from '../helpers/recording-rtmp-server.js';
import { type MediaMessage, SyntheticMedia } from '../helpers/synthetic-media.js';

describe('migration to node-media-server', () => {
  let b1: RecordingRtmpServer;
  let nms: EmbeddedBackend;
  let tp: TestProxy;
  const dir = tempDir('nms-migration');

  after(async () => {
    await tp?.stop();
    await b1?.close();
    await nms?.stop();
    dir.remove();
  });

  test('node-media-server accepts the replayed publish and records the rest of the stream; nothing lost', async () => {
    b1 = new RecordingRtmpServer({ chunkSize: 4096 });
    await b1.listen();
    nms = await startNodeMediaServer({ dir: dir.path });
    tp = await startTestProxy({ b1: b1.port, nms: nms.port }, { healthEnabled: 'false', drainDeadlineMs: '20s' });
    const pub = new RtmpPublisher(tp.url('live', 'nmskey'), { compressHeaders: true });
    await pub.publish();
    const media = new SyntheticMedia({ gop: 10, seed: 9 });
    const sent: MediaMessage[] = [];
    const send = (n: number): void => {
      for (let i = 0; i < n; i++) {
        const m = media.next();
        pub.sendMedia(m.typeId, m.timestamp, m.payload);
        sent.push(m);
      }
    };
    for (const c of media.config()) pub.sendMedia(c.typeId, 0, c.payload);
    send(30);
    await eventually(
      async () => (await tp.api<{ state: string; backend: string }[]>('/api/sessions')).find((s) => s.state === 'publishing' && s.backend === 'b1'),
      'publishing on b1',
    );
    await tp.api('/api/backends/b1/drain', { method: 'POST' });
    await eventually(async () => {
      send(3);
      await new Promise((r) => setTimeout(r, 10));
      return (await tp.api<{ backend: string; migrations: number }[]>('/api/sessions')).find((s) => s.migrations === 1 && s.backend === 'nms');
    }, 'switched to node-media-server');
    send(60);
    await pub.unpublish();

    const first = b1.publishersOf('nmskey')[0]!;
    await eventually(() => first.closed, 'b1 connection closed');
    const [file] = await eventually(() => {
      const files = nms.recordings('nmskey');
      return files.length === 1 && nms.openRecordings().length === 0 ? files : null;
    }, 'node-media-server recording closed');
    const recorded = parseFlv(readFileSync(file!)).tags.filter((t) => (t.type === 8 || t.type === 9) && !(t.data[1] === 0));
    const got = [
      ...first.messages.filter((m) => m.kind === 'keyframe' || m.kind === 'video' || m.kind === 'audio').map((m) => m.hash),
      ...recorded.map((t) => hashBody(t.data)),
    ];
    assert.deepEqual(
      got,
      sent.map((m) => m.hash),
      'b1 + node-media-server recording = every frame sent, once, in order',
    );
    assert.ok(recorded.length > 0);
    assert.equal(recorded.find((t) => t.type === 9)!.data[0], 0x17, 'node-media-server’s recording starts at the keyframe');
  });
});
