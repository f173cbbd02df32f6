// The client-bound injector: message injections encoded at placement, the one-shot command
// rewriter (connect `_result` + E-RTMP capsEx), byte accounting for acks, and sealing (migration).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { amf0Object, isAmf0Object } from '../../src/rtmp/amf0.js';
import { ChunkReader, type MessageInfo } from '../../src/rtmp/chunk-reader.js';
import { ChunkWriter, type OutgoingMessage } from '../../src/rtmp/chunk-writer.js';
import { HANDSHAKE_PACKET_SIZE, MessageType } from '../../src/rtmp/constants.js';
import { HandshakeSkipper } from '../../src/rtmp/handshake.js';
import {
  CAPS_EX_RECONNECT,
  RECONNECT_REQUEST_CODE,
  commandMessage,
  controlMessage,
  decodeCommand,
  encodeCommand,
  reconnectRequestMessage,
  readStatusCode,
  withCapsEx,
} from '../../src/rtmp/messages.js';
import { ClientBoundInjector } from '../../src/proxy/injector.js';
import { splitAt } from '../helpers/rtmp-fixtures.js';

const S0S1S2 = Buffer.concat([Buffer.of(3), Buffer.alloc(2 * HANDSHAKE_PACKET_SIZE, 9)]);

interface Seen {
  typeId: number;
  csid: number;
  streamId: number;
  timestamp: number;
  payload: string;
}

/** What a client decodes from `bytes` (server handshake first). */
function decodeClientStream(bytes: Buffer): Seen[] {
  const seen: Seen[] = [];
  const hs = new HandshakeSkipper();
  const reader = new ChunkReader(
    { message: (i, p) => seen.push({ typeId: i.typeId, csid: i.csid, streamId: i.streamId, timestamp: i.timestamp, payload: p!.toString('hex') }) },
    () => true,
  );
  const start = hs.consume(bytes, 0);
  reader.feed(bytes, start);
  assert.equal(reader.atChunkBoundary, true, 'the client stream ends between chunks');
  return seen;
}

const seenOf = (m: OutgoingMessage): Seen => ({
  typeId: m.typeId,
  csid: m.csid,
  streamId: m.streamId,
  timestamp: m.timestamp,
  payload: Buffer.from(m.payload).toString('hex'),
});

function connectResult(txn = 1): OutgoingMessage {
  return commandMessage(
    3,
    0,
    '_result',
    txn,
    amf0Object({ fmsVer: 'FMS/3,0,1,123', capabilities: 31 }),
    amf0Object({ level: 'status', code: 'NetConnection.Connect.Success', description: 'Connection succeeded.', objectEncoding: 0 }),
  );
}

/** A connect exchange like nginx-rtmp's, written with fmt 1/2/3 where possible (so fix-ups are needed). */
function serverMessages(): OutgoingMessage[] {
  return [
    controlMessage(MessageType.WindowAckSize, 5_000_000),
    { ...controlMessage(MessageType.SetPeerBandwidth, 5_000_000), payload: Buffer.of(0, 0x4c, 0x4b, 0x40, 2) },
    controlMessage(MessageType.SetChunkSize, 4096),
    connectResult(),
    // Same csid, fmt 1: resolved against the header before it — our re-encoded one, unless fixed up.
    { ...commandMessage(3, 0, 'onBWDone', 0, null), timestamp: 5 },
    commandMessage(3, 0, '_result', 4, null, 1),
    { ...commandMessage(5, 1, 'onStatus', 0, null, amf0Object({ level: 'status', code: 'NetStream.Publish.Start' })), timestamp: 7 },
  ];
}

function encodeAll(msgs: OutgoingMessage[], compress = true): Buffer {
  const w = new ChunkWriter(compress);
  const parts: Buffer[] = [S0S1S2];
  for (const m of msgs) {
    parts.push(w.write(m));
    if (m.typeId === MessageType.SetChunkSize && m.streamId === 0) w.chunkSize = Buffer.from(m.payload).readUInt32BE(0);
  }
  return Buffer.concat(parts);
}

function rewriterFor(inj: ClientBoundInjector) {
  return (info: MessageInfo, payload: Buffer) => {
    const cmd = decodeCommand(info.typeId, payload);
    if (cmd === null || cmd.name !== '_result' || cmd.transactionId !== 1) return null;
    inj.setCommandRewriter(null);
    return withCapsEx(info.typeId, payload, CAPS_EX_RECONNECT);
  };
}

function run(inj: ClientBoundInjector, pieces: Buffer[]): Buffer {
  const out: Buffer[] = [];
  for (const p of pieces) out.push(...inj.push(p));
  return Buffer.concat(out);
}

describe('withCapsEx / reconnectRequestMessage', () => {
  it('adds capsEx Reconnect to the properties, keeping every other value', () => {
    const m = connectResult();
    const out = withCapsEx(m.typeId, Buffer.from(m.payload), CAPS_EX_RECONNECT)!;
    const cmd = decodeCommand(MessageType.CommandAmf0, out)!;
    assert.equal(cmd.name, '_result');
    assert.equal(cmd.transactionId, 1);
    assert.ok(isAmf0Object(cmd.commandObject));
    assert.deepEqual({ ...cmd.commandObject }, { fmsVer: 'FMS/3,0,1,123', capabilities: 31, capsEx: 1 });
    assert.equal(readStatusCode(cmd), 'NetConnection.Connect.Success');
  });

  it('ORs into a server capsEx, returns null when the bit is there, and makes an object of a null one', () => {
    const withTwo = encodeCommand('_result', 1, amf0Object({ capsEx: 2 }), null);
    assert.equal((decodeCommand(20, withCapsEx(20, withTwo, 1)!)!.commandObject as Record<string, unknown>)['capsEx'], 3);
    assert.equal(withCapsEx(20, encodeCommand('_result', 1, amf0Object({ capsEx: 1 }), null), 1), null);
    assert.deepEqual({ ...(decodeCommand(20, withCapsEx(20, encodeCommand('_result', 1, null, null), 1)!)!.commandObject as object) }, { capsEx: 1 });
  });

  it('keeps the 0x00 prefix of a type 17 command', () => {
    const body = Buffer.concat([Buffer.of(0), encodeCommand('_result', 1, null, null)]);
    const out = withCapsEx(17, body, 1)!;
    assert.equal(out[0], 0);
    assert.equal(decodeCommand(17, out)!.name, '_result');
  });

  it('builds the E-RTMP reconnect request: onStatus, txn 0, null, info object; type 20, msid 0, csid 3', () => {
    const m = reconnectRequestMessage({ tcUrl: 'rtmp://other/live' });
    assert.deepEqual([m.typeId, m.streamId, m.csid], [20, 0, 3]);
    const cmd = decodeCommand(20, Buffer.from(m.payload))!;
    assert.equal(cmd.name, 'onStatus');
    assert.equal(cmd.transactionId, 0);
    assert.equal(cmd.commandObject, null);
    const info = cmd.args[0] as Record<string, unknown>;
    assert.equal(info['level'], 'status');
    assert.equal(info['code'], RECONNECT_REQUEST_CODE);
    assert.equal(info['tcUrl'], 'rtmp://other/live');
    assert.equal(typeof info['description'], 'string');
    assert.equal('tcUrl' in (decodeCommand(20, Buffer.from(reconnectRequestMessage().payload))!.args[0] as object), false);
  });
});

describe('command rewriter', () => {
  const msgs = serverMessages();
  const input = encodeAll(msgs);
  const expectedPayload = withCapsEx(20, Buffer.from(msgs[3]!.payload), CAPS_EX_RECONNECT)!;
  const expected = msgs.map(seenOf);
  expected[3] = { ...expected[3]!, payload: expectedPayload.toString('hex') };

  it('replaces the connect _result at any split of the server stream; the client decodes every message right', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: input.length }), { maxLength: 12 }), (cuts) => {
        const inj = new ClientBoundInjector(() => {});
        inj.setCommandRewriter(rewriterFor(inj));
        const out = run(inj, splitAt(input, cuts));
        assert.deepEqual(decodeClientStream(out), expected);
        assert.equal(inj.addedBytes, out.length - input.length, 'addedBytes is the size change');
        assert.ok(inj.addedBytes > 0);
        assert.equal(inj.rewritten, 1);
        assert.equal(inj.rewriteInterleaved, 0);
      }),
      { numRuns: 300 },
    );
  });

  it('every split point, one byte at a time around the _result', () => {
    for (let cut = 3073; cut < input.length; cut++) {
      const inj = new ClientBoundInjector(() => {});
      inj.setCommandRewriter(rewriterFor(inj));
      const out = run(inj, splitAt(input, [cut, cut + 1]));
      assert.deepEqual(decodeClientStream(out), expected, `cut at ${cut}`);
    }
  });

  it('armed at any point of the stream (even mid-header): nothing lost, the _result rewritten iff it starts after', () => {
    fc.assert(
      fc.property(fc.integer({ min: 3073, max: input.length }), fc.array(fc.integer({ min: 0, max: input.length }), { maxLength: 8 }), (armAt, rawCuts) => {
        const inj = new ClientBoundInjector(() => {});
        const out = [...inj.push(input.subarray(0, armAt))];
        inj.setCommandRewriter(rewriterFor(inj));
        const rest = input.subarray(armAt);
        for (const p of splitAt(
          rest,
          rawCuts.map((c) => c % (rest.length + 1)),
        ))
          out.push(...inj.push(p));
        const seen = decodeClientStream(Buffer.concat(out));
        assert.equal(seen.length, msgs.length);
        assert.ok(seen[3]!.payload === expected[3]!.payload || seen[3]!.payload === seenOf(msgs[3]!).payload);
        for (const i of [0, 1, 2, 4, 5, 6]) assert.deepEqual(seen[i], expected[i]);
      }),
      { numRuns: 300 },
    );
  });

  it('leaves other commands byte-exact, and everything after the rewriter is cleared', () => {
    const inj = new ClientBoundInjector(() => {});
    inj.setCommandRewriter(() => null);
    assert.deepEqual(run(inj, splitAt(input, [3100, 3200])), input);
  });

  it('lets the held message through unchanged when another csid interleaves with it', () => {
    // A _result larger than the 128-byte chunk size, with a complete csid-2 message between its chunks.
    const big = commandMessage(3, 0, '_result', 1, amf0Object({ fmsVer: 'x'.repeat(200) }), null);
    const w = new ChunkWriter();
    const bytes = w.write(big);
    const firstChunk = bytes.subarray(0, 12 + 128);
    const rest = bytes.subarray(12 + 128);
    const ack = w.write(controlMessage(MessageType.Acknowledgement, 42));
    const stream = Buffer.concat([S0S1S2, firstChunk, ack, rest]);
    for (const cuts of [[], [3073 + 5], [3073 + 12 + 128 + 3], [stream.length - 2]]) {
      const inj = new ClientBoundInjector(() => {});
      inj.setCommandRewriter(rewriterFor(inj));
      assert.deepEqual(run(inj, splitAt(stream, cuts)), stream, `cuts ${cuts.join(',')}`);
      assert.equal(inj.rewriteInterleaved, 1);
      assert.equal(inj.addedBytes, 0);
    }
  });
});

describe('message injection', () => {
  it('encodes a queued message with the chunk size in force where it is placed, and counts its bytes', () => {
    const big = reconnectRequestMessage({ tcUrl: `rtmp://example.com/${'a'.repeat(300)}` });
    const msgs = [controlMessage(MessageType.SetChunkSize, 4096), commandMessage(3, 0, 'onBWDone', 0, null)];
    const input = encodeAll(msgs, false);
    const inj = new ClientBoundInjector(() => {});
    const out: Buffer[] = [...inj.push(input.subarray(0, 3073 + 16))]; // handshake + Set Chunk Size
    const now = inj.inject(3, big)!;
    assert.equal(now.length, 1, 'placed at once: the stream is between chunks');
    assert.equal(now[0]!.length, 12 + big.payload.length, 'one chunk: the 4096 chunk size already applies');
    out.push(...now, ...inj.push(input.subarray(3073 + 16)));
    assert.equal(inj.addedBytes, now[0]!.length);
    const seen = decodeClientStream(Buffer.concat(out));
    assert.deepEqual(
      seen.map((m) => m.typeId),
      [1, 20, 20],
    );
    assert.equal(readStatusCode(decodeCommand(20, Buffer.from(seen[1]!.payload, 'hex'))!), RECONNECT_REQUEST_CODE);
  });

  it('waits while a message is half-sent on its csid', () => {
    const long = commandMessage(3, 0, 'onStatus', 0, null, amf0Object({ code: 'x'.repeat(300) }));
    const input = encodeAll([long], false);
    const inj = new ClientBoundInjector(() => {});
    const out: Buffer[] = [...inj.push(input.subarray(0, 3073 + 12 + 128))]; // mid-message on csid 3
    let written = false;
    assert.deepEqual(
      inj.inject(3, reconnectRequestMessage(), () => (written = true)),
      [],
    );
    assert.equal(written, false);
    out.push(...inj.push(input.subarray(3073 + 12 + 128)));
    assert.equal(written, true);
    assert.deepEqual(
      decodeClientStream(Buffer.concat(out)).map((m) => decodeCommand(20, Buffer.from(m.payload, 'hex'))!.name),
      ['onStatus', 'onStatus'],
    );
  });
});

describe('seal', () => {
  it('seals at once between messages; nothing more comes out', () => {
    const input = encodeAll(serverMessages());
    const inj = new ClientBoundInjector(() => {});
    const first = run(inj, [input.subarray(0, 3073 + 16)]);
    assert.equal(inj.seal(), true);
    assert.equal(inj.sealed, true);
    assert.deepEqual(inj.push(input.subarray(3073 + 16)), []);
    assert.equal(first.length, 3073 + 16);
  });

  it('mid-message: lets that message finish, then stops at its end', () => {
    const long = commandMessage(3, 0, 'onStatus', 0, null, amf0Object({ code: 'x'.repeat(300) }));
    const input = encodeAll([long, commandMessage(3, 0, 'onBWDone', 0, null)], false);
    const inj = new ClientBoundInjector(() => {});
    const out: Buffer[] = [...inj.push(input.subarray(0, 3073 + 20))];
    assert.equal(inj.seal(), false);
    assert.equal(inj.inject(2, controlMessage(MessageType.Acknowledgement, 1)), null, 'no injection once sealing');
    out.push(...inj.push(input.subarray(3073 + 20)));
    assert.equal(inj.sealed, true);
    const seen = decodeClientStream(Buffer.concat(out));
    assert.equal(seen.length, 1, 'only the message that was half-sent');
    assert.equal(decodeCommand(20, Buffer.from(seen[0]!.payload, 'hex'))!.name, 'onStatus');
  });
});
