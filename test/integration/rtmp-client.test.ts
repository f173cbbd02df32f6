// The publisher client through real sockets against the fake backend: what it does once it has
// ended its side of the connection while the server is still talking.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { UserControlEvent, userControlMessage } from '../../src/rtmp/messages.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';

test('a ping arriving after end() is not answered: no write after end, end() resolves', async () => {
  const fake = new FakeRtmpServer();
  await fake.listen();
  const pub = new RtmpPublisher(`rtmp://127.0.0.1:${fake.port}/live/after-end`);
  try {
    await pub.publish();
    const errors: Error[] = [];
    pub.on('error', (err: Error) => errors.push(err));
    const conn = fake.connections.at(-1)!;
    const before = conn.bytesReceived;
    // The ping is on the wire before the client's FIN reaches the server: the client reads it after end().
    conn.send(userControlMessage(UserControlEvent.PingRequest, 1));
    await pub.end();
    assert.deepEqual(
      errors.map((e) => e.message),
      [],
    );
    assert.equal(conn.bytesReceived, before, 'nothing sent after end()');
  } finally {
    pub.destroy();
    await fake.close();
  }
});
