// A Session's proxy-side migration on in-memory sockets, phase by phase: `pass` on b1; a drain of
// b1 (drain.nonCapable: migrate) opens b2 and publishes there as the client (`pass` → `armed`);
// at the client's next video keyframe the session switches (`armed` → `relay`): b1 gets every
// frame before the keyframe then FCUnpublish + deleteStream, b2 gets the cached metadata and
// decoder configuration, then the keyframe and everything after it. No frame lost or doubled.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { type SessionRig, publish, sessionRig, until } from '../helpers/session-rig.js';
import { type MediaMessage, SyntheticMedia } from '../helpers/synthetic-media.js';

const rigs: SessionRig[] = [];
afterEach(() => {
  for (const r of rigs.splice(0)) r.stop();
});

const isFrame = (kind: string): boolean => kind === 'keyframe' || kind === 'video' || kind === 'audio';

describe('Session, migration phases (in-memory sockets)', () => {
  test('pass → armed → relay at a keyframe, with a fake upstream; every frame on exactly one backend', async () => {
    const rig = sessionRig({ backends: ['b1', 'b2'], migration: true, nonCapable: 'migrate' });
    rigs.push(rig);
    const { session, client } = rig;
    const sid = await publish(client, 'k');
    assert.equal(session.capability, 'none');
    const media = new SyntheticMedia({ gop: 5 });
    const sent: MediaMessage[] = [];
    const send = (n: number): void => {
      for (let i = 0; i < n; i++) {
        const m = media.next();
        sent.push(m);
        client.media(sid, m.typeId, m.timestamp, m.payload);
      }
    };
    for (const c of media.config()) client.media(sid, c.typeId, 0, c.payload);
    send(12);
    const b1 = rig.conn('b1')!;
    await until(() => b1.messages.filter((m) => isFrame(m.kind)).length === 12, 'b1 got the first frames');
    assert.equal(session.phase.kind, 'pass');

    rig.pool.drain('b1');
    await until(() => session.phase.kind === 'armed', 'armed once b2 publishes');
    assert.equal(session.state, 'migrating');
    const b2 = rig.conn('b2')!;
    assert.equal(b2.published, true);
    assert.equal(b2.streamKey, 'k');
    assert.deepEqual(rig.network.dialed, ['b1', 'b2']);

    send(20);
    await until(() => session.phase.kind === 'relay', 'switched at a keyframe');
    await until(() => b1.commands.some((c) => c.name === 'deleteStream'), 'b1 unpublished');
    const b1Frames = b1.messages.filter((m) => isFrame(m.kind)).map((m) => m.hash);
    const cut = b1Frames.length;
    assert.equal(sent[cut]!.kind, 'keyframe', 'the switch message is a keyframe');
    assert.deepEqual(
      b1Frames,
      sent.slice(0, cut).map((m) => m.hash),
      'b1: every frame before the keyframe, in order',
    );
    assert.deepEqual(
      b1.commands.slice(-2).map((c) => c.name),
      ['FCUnpublish', 'deleteStream'],
    );
    await until(() => b2.messages.filter((m) => isFrame(m.kind)).length === sent.length - cut, 'b2 got the rest');
    assert.deepEqual(
      b2.messages.slice(0, 3).map((m) => m.kind),
      ['metadata', 'video-config', 'audio-config'],
      'configuration replayed first',
    );
    assert.deepEqual(
      b2.messages.filter((m) => isFrame(m.kind)).map((m) => m.hash),
      sent.slice(cut).map((m) => m.hash),
      'b2: the keyframe and everything after',
    );
    assert.equal(session.migrations, 1);
    assert.equal(session.backendName, 'b2');
    assert.equal(session.state, 'publishing');

    // Relaying: later frames are re-chunked for b2.
    send(5);
    await until(() => b2.messages.filter((m) => isFrame(m.kind)).length === sent.length - cut, 'relayed frames reach b2');
    rig.clientSocket.end();
    const ended = await rig.closed;
    assert.equal(ended.closeReason, 'client-closed');
  });
});
