// PlayerProtocol: the proxy's own play on a backend, driven by a scripted server end (handshake,
// chunk reader and writer of the rtmp core) — the exchange, the protocol business, the failures.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { amf0Object } from '../../src/rtmp/amf0.js';
import { type ByteBudget, ChunkReader, type MessageInfo, collectEverything } from '../../src/rtmp/chunk-reader.js';
import { ChunkWriter } from '../../src/rtmp/chunk-writer.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { HandshakeEnd } from '../../src/rtmp/handshake-peer.js';
import { type Command, commandMessage, controlMessage, decodeCommand, userControlMessage, UserControlEvent } from '../../src/rtmp/messages.js';
import { PlayerProtocol } from '../../src/rtmp/player-protocol.js';

/** A server end: answers the handshake, reads the client's messages, writes its own. */
function rig(opts: { rejectConnect?: boolean; notFound?: boolean; budget?: ByteBudget } = {}) {
  const hs = new HandshakeEnd('server');
  const writer = new ChunkWriter(true);
  const got: { info: MessageInfo; payload: Buffer }[] = [];
  const commands: Command[] = [];
  const events = { playing: 0, failed: [] as string[], media: [] as MessageInfo[], stopped: [] as boolean[] };
  // Both ends' bytes are queued and delivered by `pump`: each side writes from inside its own reader's callback.
  const toServer: Buffer[] = [];
  const toClientQ: Buffer[] = [];
  const send = (m: Parameters<ChunkWriter['write']>[0]) => toClientQ.push(writer.write(m));
  const reader = new ChunkReader(
    {
      message: (info, payload) => {
        // The reader reuses its MessageInfo and payload views: keep copies.
        got.push({ info: { ...info }, payload: Buffer.from(payload!) });
        if (info.typeId !== MessageType.CommandAmf0) return;
        const c = decodeCommand(info.typeId, payload!)!;
        commands.push(c);
        if (c.name === 'connect')
          send(commandMessage(3, 0, opts.rejectConnect ? '_error' : '_result', c.transactionId, null, amf0Object({ code: 'NetConnection.Connect.Success' })));
        if (c.name === 'createStream') send(commandMessage(3, 0, '_result', c.transactionId, null, 1));
        if (c.name === 'play') {
          const code = opts.notFound ? 'NetStream.Play.StreamNotFound' : 'NetStream.Play.Start';
          send(commandMessage(5, 1, 'onStatus', 0, null, amf0Object({ level: 'status', code })));
        }
      },
    },
    collectEverything,
  );
  const protocol = new PlayerProtocol(
    { connect: Buffer.from(encodeObject()), streamKey: 'k?t=1' },
    {
      write: (buf) => {
        toServer.push(buf);
        return true;
      },
      playing: () => events.playing++,
      failed: (reason, detail) => events.failed.push(`${reason}: ${detail}`),
      message: (info) => events.media.push({ ...info }),
      stopped: (stopped) => events.stopped.push(stopped),
    },
    {},
    undefined,
    opts.budget,
  );
  let handshook = false;
  const serverReceive = (buf: Buffer): void => {
    let rest = buf;
    if (!handshook) {
      const r = hs.push(buf);
      if (r.reply !== null) toClientQ.push(r.reply);
      if (!hs.done) return;
      handshook = true;
      rest = buf.subarray(r.next);
    }
    if (rest.length > 0) reader.feed(rest);
  };
  const pump = (): void => {
    while (toServer.length > 0 || toClientQ.length > 0) {
      for (let b = toServer.shift(); b !== undefined; b = toServer.shift()) serverReceive(b);
      for (let b = toClientQ.shift(); b !== undefined; b = toClientQ.shift()) protocol.receive(b);
    }
  };
  return {
    protocol,
    got,
    commands,
    events,
    send: (m: Parameters<ChunkWriter['write']>[0]) => {
      send(m);
      pump();
    },
    start: () => {
      protocol.start();
      pump();
    },
    /** The server's bytes of one message, not delivered: the test feeds them itself. */
    bytesOf: (m: Parameters<ChunkWriter['write']>[0]) => writer.write(m),
  };
}

function encodeObject(): Buffer {
  // The player's own connect command object: { app: 'live' }.
  return Buffer.from([0x03, 0x00, 0x03, 0x61, 0x70, 0x70, 0x02, 0x00, 0x04, 0x6c, 0x69, 0x76, 0x65, 0x00, 0x00, 0x09]);
}

test("player protocol: connect (replayed), createStream, Set Buffer Length, play(key) → playing; then the stream's media", () => {
  const r = rig();
  r.start();
  assert.deepEqual(
    r.commands.map((c) => c.name),
    ['connect', 'createStream', 'play'],
  );
  assert.deepEqual({ ...(r.commands[0]!.commandObject as object) }, { app: 'live' }, 'the player’s connect object, as it sent it');
  assert.deepEqual(r.commands[2]!.args, ['k?t=1', -2]);
  const bufferLength = r.got.find((m) => m.info.typeId === MessageType.UserControl)!;
  assert.equal(bufferLength.payload.readUInt16BE(0), UserControlEvent.SetBufferLength);
  assert.equal(r.events.playing, 1);
  assert.equal(r.protocol.streamId, 1);
  r.send({ csid: 6, timestamp: 40, typeId: MessageType.Video, streamId: 1, payload: Buffer.from([0x17, 1, 0, 0, 0]) });
  r.send({ csid: 4, timestamp: 41, typeId: MessageType.Audio, streamId: 1, payload: Buffer.from([0xaf, 1]) });
  assert.deepEqual(
    r.events.media.map((m) => [m.typeId, m.timestamp]),
    [
      [MessageType.Video, 40],
      [MessageType.Audio, 41],
    ],
  );
  assert.deepEqual(r.events.failed, []);
});

test('player protocol: pings answered, acknowledgements by the window, commands never passed on', () => {
  const r = rig();
  r.start();
  const before = r.got.length;
  r.send(userControlMessage(UserControlEvent.PingRequest, 1234));
  const pong = r.got.at(-1)!;
  assert.equal(pong.payload.readUInt16BE(0), UserControlEvent.PingResponse);
  assert.equal(pong.payload.readUInt32BE(2), 1234);
  r.send(controlMessage(MessageType.WindowAckSize, 100));
  r.send({ csid: 6, timestamp: 1, typeId: MessageType.Video, streamId: 1, payload: Buffer.alloc(200, 0x27) });
  assert.ok(
    r.got.slice(before).some((m) => m.info.typeId === MessageType.Acknowledgement),
    `an acknowledgement: ${r.got
      .slice(before)
      .map((m) => m.info.typeId)
      .join(',')}`,
  );
  r.send(commandMessage(5, 1, 'onStatus', 0, null, amf0Object({ level: 'status', code: 'NetStream.Play.UnpublishNotify' })));
  assert.ok(r.events.media.every((m) => m.typeId !== MessageType.CommandAmf0));
});

test('player protocol: a refused connect or an unknown stream fails, once', () => {
  const a = rig({ rejectConnect: true });
  a.start();
  assert.equal(a.events.failed.length, 1);
  assert.match(a.events.failed[0]!, /^connect-rejected/);
  assert.equal(a.protocol.phase, 'failed');
  const b = rig({ notFound: true });
  b.start();
  assert.deepEqual(b.events.failed, ['play-rejected: NetStream.Play.StreamNotFound']);
  assert.equal(b.events.playing, 0);
});

test("player protocol: the stream's publisher leaving and coming back is said once per change (Stream EOF and UnpublishNotify both mean gone)", () => {
  const r = rig();
  r.start();
  const status = (code: string) => r.send(commandMessage(5, 1, 'onStatus', 0, null, amf0Object({ level: 'status', code })));
  r.send(userControlMessage(UserControlEvent.StreamBegin, 1));
  assert.deepEqual(r.events.stopped, [], 'Stream Begin at play: nothing stopped');
  r.send(userControlMessage(UserControlEvent.StreamEOF, 1));
  status('NetStream.Play.UnpublishNotify');
  assert.deepEqual(r.events.stopped, [true]);
  status('NetStream.Play.PublishNotify');
  r.send(userControlMessage(UserControlEvent.StreamBegin, 1));
  assert.deepEqual(r.events.stopped, [true, false]);
  status('NetStream.Play.Stop');
  assert.deepEqual(r.events.stopped, [true, false, true]);
  assert.deepEqual(r.events.failed, []);
});

test('player protocol: a message cut by the connection’s end gives its bytes back to the budget (release)', () => {
  let held = 0;
  const budget: ByteBudget = {
    take: (n) => {
      held += n;
      return true;
    },
    give: (n) => {
      held -= n;
    },
  };
  const r = rig({ budget });
  r.start();
  const whole = r.bytesOf({ csid: 6, timestamp: 1, typeId: MessageType.Video, streamId: 1, payload: Buffer.alloc(20_000, 0x27) });
  r.protocol.receive(whole.subarray(0, 10_000));
  assert.ok(held > 0, 'part of the message is held against the budget');
  r.protocol.release();
  assert.equal(held, 0);
});
