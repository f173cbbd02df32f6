// What the proxy answers in the backend's place before a late-bound session is routed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isAmf0Object } from '../../src/rtmp/amf0.js';
import { ChunkReader, type MessageInfo } from '../../src/rtmp/chunk-reader.js';
import { ChunkWriter } from '../../src/rtmp/chunk-writer.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { decodeCommand, readCreateStreamResult, readStatusCode } from '../../src/rtmp/messages.js';
import {
  CONNECT_REJECTED,
  LOCAL_CHUNK_SIZE,
  LOCAL_STREAM_ID,
  LOCAL_WINDOW,
  connectAnswer,
  createStreamAnswer,
  localChunkSize,
  rejection,
} from '../../src/proxy/local-answers.js';

/** Writes the messages as the session does (our chunk size first) and reads them back as a client would. */
function roundTrip(...msgs: Parameters<ChunkWriter['write']>[0][]): { info: MessageInfo; payload: Buffer }[] {
  const w = new ChunkWriter();
  const bytes = [w.write(localChunkSize())];
  w.chunkSize = LOCAL_CHUNK_SIZE;
  for (const m of msgs) bytes.push(w.write(m));
  const out: { info: MessageInfo; payload: Buffer }[] = [];
  const r = new ChunkReader({ message: (info, payload) => out.push({ info: { ...info }, payload: Buffer.from(payload!) }) }, () => true);
  r.feed(Buffer.concat(bytes));
  assert.equal(r.chunkSize, LOCAL_CHUNK_SIZE);
  return out;
}

describe('local answers', () => {
  it("connect: Window Ack Size, Set Peer Bandwidth (dynamic), then _result Connect.Success with the client's objectEncoding", () => {
    const got = roundTrip(...connectAnswer(1, { objectEncoding: 3, capsEx: null }));
    assert.deepEqual(
      got.map((m) => m.info.typeId),
      [MessageType.SetChunkSize, MessageType.WindowAckSize, MessageType.SetPeerBandwidth, MessageType.CommandAmf0],
    );
    assert.equal(got[1]!.payload.readUInt32BE(0), LOCAL_WINDOW);
    assert.equal(got[2]!.payload[4], 2);
    const cmd = decodeCommand(MessageType.CommandAmf0, got[3]!.payload)!;
    assert.equal(cmd.name, '_result');
    assert.equal(cmd.transactionId, 1);
    assert.ok(isAmf0Object(cmd.commandObject));
    assert.equal((cmd.commandObject as Record<string, unknown>)['capsEx'], undefined);
    assert.equal(readStatusCode(cmd), 'NetConnection.Connect.Success');
    assert.equal((cmd.args[0] as Record<string, unknown>)['objectEncoding'], 3);
  });

  it('connect with capsEx: the properties object carries it (E-RTMP)', () => {
    const got = roundTrip(...connectAnswer(7, { objectEncoding: null, capsEx: 1 }));
    const cmd = decodeCommand(MessageType.CommandAmf0, got.at(-1)!.payload)!;
    assert.equal((cmd.commandObject as Record<string, unknown>)['capsEx'], 1);
    assert.equal((cmd.args[0] as Record<string, unknown>)['objectEncoding'], 0);
  });

  it('createStream: _result with stream id 1', () => {
    const [, m] = roundTrip(createStreamAnswer(4));
    const cmd = decodeCommand(MessageType.CommandAmf0, m!.payload)!;
    assert.equal(cmd.transactionId, 4);
    assert.equal(readCreateStreamResult(cmd), LOCAL_STREAM_ID);
  });

  it('rejection: _error NetConnection.Connect.Rejected, level error, with the description, on the given stream', () => {
    const [, m] = roundTrip(rejection(5, 1, 'No route for this stream'));
    assert.equal(m!.info.streamId, 1);
    const cmd = decodeCommand(MessageType.CommandAmf0, m!.payload)!;
    assert.equal(cmd.name, '_error');
    assert.equal(cmd.transactionId, 5);
    const info = cmd.args[0] as Record<string, unknown>;
    assert.deepEqual({ ...info }, { level: 'error', code: CONNECT_REJECTED, description: 'No route for this stream' });
  });
});
