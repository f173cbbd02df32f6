// A Session built directly on in-memory sockets (test/helpers/session-rig.ts), in its `pass`
// phase: every byte the client writes reaches the backend unchanged and in order, every byte the
// backend writes reaches the client unchanged, and the session ends by itself when its client
// leaves, with the reason and byte counts of what happened.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { MessageType } from '../../src/rtmp/constants.js';
import type { MemSocket } from '../helpers/mem-socket.js';
import { type SessionRig, publish, sessionRig, until } from '../helpers/session-rig.js';
import { SyntheticMedia } from '../helpers/synthetic-media.js';

const rigs: SessionRig[] = [];
afterEach(() => {
  for (const r of rigs.splice(0)) r.stop();
});

describe('Session, pass phase (in-memory sockets)', () => {
  test('forwards both directions byte for byte and ends with the client', async () => {
    const rig = sessionRig();
    rigs.push(rig);
    const { session, client, clientSocket } = rig;
    const sid = await publish(client, 'key1');
    assert.equal(session.phase.kind, 'pass');
    assert.equal(session.backendName, 'b1');
    assert.equal(session.state, 'publishing');
    const media = new SyntheticMedia({ gop: 10 });
    for (const c of media.config()) client.media(sid, c.typeId, 0, c.payload);
    // An Acknowledgement of what the client received: nothing was added, so it passes unchanged.
    client.send({ csid: 2, timestamp: 0, typeId: MessageType.Acknowledgement, streamId: 0, payload: Buffer.from([0, 0, 0x0c, 0x01]) });
    for (let i = 0; i < 40; i++) {
      const m = media.next();
      client.media(sid, m.typeId, m.timestamp, m.payload);
    }
    const backend = rig.conn('b1')!;
    const backendSocket = backend.socket as unknown as MemSocket;
    await until(() => backend.bytesReceived === clientSocket.writtenBytes.length, 'the backend received every client byte');
    assert.ok(clientSocket.writtenBytes.equals(backendSocket.receivedBytes), 'client → backend bytes are identical');
    await until(() => clientSocket.receivedBytes.length === backendSocket.writtenBytes.length, 'the client received every backend byte');
    assert.ok(backendSocket.writtenBytes.equals(clientSocket.receivedBytes), 'backend → client bytes are identical');
    assert.equal(backend.messages.filter((m) => m.typeId === MessageType.Video || m.typeId === MessageType.Audio).length, 40 + 2);
    assert.equal(session.bytesIn, clientSocket.writtenBytes.length);
    assert.equal(session.bytesOut, clientSocket.receivedBytes.length);

    clientSocket.end();
    const ended = await rig.closed;
    assert.equal(ended.closeReason, 'client-closed');
    assert.equal(ended.state, 'closed');
    assert.ok(backend.closed || backendSocket.destroyed || backendSocket.readableEnded, 'the backend saw the client go');
  });

  test('a backend that goes first ends the session with backend-closed; the client is told by FIN', async () => {
    const rig = sessionRig();
    rigs.push(rig);
    await publish(rig.client, 'key2');
    rig.conn('b1')!.socket.destroy();
    await until(() => rig.client.ended, 'the client got FIN');
    rig.clientSocket.end();
    const ended = await rig.closed;
    assert.equal(ended.closeReason, 'backend-closed');
  });
});
