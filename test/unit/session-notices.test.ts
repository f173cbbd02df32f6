// What a draining backend makes a Session tell its client, on in-memory sockets: RTMP Go Away
// (type 32) injected between two chunks of the server's stream for a client that announced it;
// for an E-RTMP client (capsEx Reconnect), capsEx added to the backend's connect `_result` and
// the ReconnectRequest with the configured tcUrl. The backend's own bytes still all reach the
// client, in order, around the injected message.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { MessageType } from '../../src/rtmp/constants.js';
import { CAPS_EX_RECONNECT } from '../../src/rtmp/messages.js';
import type { MemSocket } from '../helpers/mem-socket.js';
import { statusCode } from '../helpers/scripted-client.js';
import { type SessionRig, publish, sessionRig, until } from '../helpers/session-rig.js';

const rigs: SessionRig[] = [];
afterEach(() => {
  for (const r of rigs.splice(0)) r.stop();
});

describe('Session notices (in-memory sockets)', () => {
  test('Go Away: injected once on a drain, counted in the byte stream, state going-away', async () => {
    const rig = sessionRig();
    rigs.push(rig);
    const { session, client, clientSocket } = rig;
    await publish(client, 'k', { supportsGoAway: true });
    assert.equal(session.capability, 'goaway');
    const backendSocket = rig.conn('b1')!.socket as unknown as MemSocket;
    await until(() => clientSocket.receivedBytes.length === backendSocket.writtenBytes.length, 'the backend bytes reached the client');
    const before = clientSocket.receivedBytes.length;
    rig.pool.drain('b1');
    const goAway = await client.waitFor((m) => m.typeId === MessageType.GoAway);
    assert.equal(goAway.csid, 2);
    assert.notEqual(session.goAwaySentAt, null);
    assert.equal(session.state, 'going-away');
    assert.equal(session.goAway(), true, 'idempotent');
    // Injected bytes are the only ones added: the server's stream is unchanged around them.
    const added = clientSocket.receivedBytes.length - before;
    assert.equal(added, session.out.s2c.addedBytes);
    assert.ok(clientSocket.receivedBytes.subarray(0, before).equals(backendSocket.writtenBytes.subarray(0, before)));
    assert.equal(client.received.filter((m) => m.typeId === MessageType.GoAway).length, 1);
  });

  test('E-RTMP: capsEx Reconnect offered in the connect _result, then ReconnectRequest with the tcUrl', async () => {
    const rig = sessionRig({ erpc: true });
    rigs.push(rig);
    const { session, client } = rig;
    await publish(client, 'k', { capsEx: CAPS_EX_RECONNECT });
    const result = client.received.find((m) => m.command?.name === '_result' && m.command.transactionId === 1)!;
    const props = result.command!.commandObject as Record<string, unknown>;
    assert.equal(props['capsEx'], CAPS_EX_RECONNECT, 'capsEx added to the backend’s connect _result');
    assert.equal(session.capability, 'erpc');
    rig.pool.drain('b1');
    const req = await client.waitCommand('onStatus', 'NetConnection.Connect.ReconnectRequest');
    assert.equal((req.command!.args[0] as Record<string, unknown>)['tcUrl'], 'rtmp://elsewhere.example/live');
    assert.notEqual(session.reconnectRequestSentAt, null);
    assert.equal(session.goAway(), false, 'no Go Away for a client that did not announce it');
    assert.equal(statusCode(req.command!), 'NetConnection.Connect.ReconnectRequest');
  });
});
