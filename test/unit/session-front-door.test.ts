// A Session's front door on in-memory sockets: with routing rules that need the stream key the
// proxy is the client's server until `publish` (handshake, connect `_result`, createStream
// answered locally, no backend opened), then opens the chosen backend with its own handshake and
// passes the client's RTMP bytes from the first chunk on unchanged, dropping the backend's
// replies to what it answered itself. With no backend to take a new client (admission), the
// client is answered and refused at `connect` with the reason, and the session ends with it.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { HANDSHAKE_TOTAL, MessageType } from '../../src/rtmp/constants.js';
import { LOCAL_STREAM_ID } from '../../src/proxy/local-answers.js';
import type { MemSocket } from '../helpers/mem-socket.js';
import { statusCode } from '../helpers/scripted-client.js';
import { type SessionRig, sessionRig, until } from '../helpers/session-rig.js';

const rigs: SessionRig[] = [];
afterEach(() => {
  for (const r of rigs.splice(0)) r.stop();
});

const BY_KEY = { groups: { all: { backends: ['*'] } }, rules: [{ match: { keyPrefix: 'cam' }, group: 'all' }] };

describe('Session, front door (in-memory sockets)', () => {
  test('stream-key rules: connect and createStream answered by the proxy, the backend opened at publish', async () => {
    const rig = sessionRig({ backends: ['b1', 'b2'], router: BY_KEY });
    rigs.push(rig);
    const { session, client, network } = rig;
    assert.equal(session.late, true);
    await client.handshake();
    client.setChunkSize(4096);
    client.connect('live');
    const connected = await client.waitFor((m) => m.command?.name === '_result' && m.command.transactionId === 1);
    assert.equal(statusCode(connected.command!), 'NetConnection.Connect.Success');
    client.prepare('cam-7');
    const created = await client.waitFor((m) => m.command?.name === '_result' && m.command.transactionId === 4);
    assert.equal(created.command!.args[0], LOCAL_STREAM_ID);
    assert.deepEqual(network.dialed, [], 'no backend before publish');
    assert.equal(session.backendName, null);

    client.publish(LOCAL_STREAM_ID, 'cam-7');
    await client.waitCommand('onStatus', 'NetStream.Publish.Start');
    assert.equal(network.dialed.length, 1);
    const name = session.backendName!;
    const backend = rig.conn(name)!;
    assert.deepEqual(
      backend.commands.map((c) => c.name),
      ['connect', 'releaseStream', 'FCPublish', 'createStream', 'publish'],
    );
    assert.equal(backend.streamKey, 'cam-7');
    client.media(LOCAL_STREAM_ID, MessageType.Video, 0, Buffer.from([0x17, 1, 0, 0, 0, 9, 9, 9]));
    const clientSocket = rig.clientSocket;
    await until(() => backend.bytesReceived === clientSocket.writtenBytes.length, 'the backend received every client byte');
    // After the two handshakes (the proxy's with each side), the client's RTMP bytes reach the backend unchanged.
    const backendIn = (backend.socket as unknown as MemSocket).receivedBytes;
    assert.ok(backendIn.subarray(HANDSHAKE_TOTAL).equals(clientSocket.writtenBytes.subarray(HANDSHAKE_TOTAL)));
    // The backend's own connect and createStream replies were dropped: the client saw one of each.
    assert.equal(client.received.filter((m) => m.command?.name === '_result').length, 2);
    assert.equal(session.routeLabel(), 'rules[0]: least-connections');
  });

  test('admission: no backend to take the client — answered, refused at connect, closed with no-backend', async () => {
    const rig = sessionRig({ backends: ['b1'] });
    rigs.push(rig);
    rig.pool.drain('b1');
    const { session, client } = rig;
    await client.handshake();
    assert.equal(session.front !== null, true, 'the proxy answered the handshake itself');
    client.connect('live');
    const refused = await client.waitCommand('_error');
    assert.equal(statusCode(refused.command!), 'NetConnection.Connect.Rejected');
    assert.equal(refused.command!.transactionId, 1);
    assert.match(JSON.stringify(refused.command!.args[0]), /No ingest server available/);
    await until(() => client.ended, 'the client got FIN');
    const ended = await rig.closed;
    assert.equal(ended.closeReason, 'no-backend');
    assert.deepEqual(rig.network.dialed, [], 'no backend connection was tried');
  });
});
