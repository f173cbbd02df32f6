/**
 * SessionView: the createStream → _result pairing (the stream id a migration replays and maps),
 * including interleaved and unanswered createStreams.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MessageInfo } from '../../src/rtmp/chunk-reader.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { encodeCommand } from '../../src/rtmp/messages.js';
import { SessionView } from '../../src/rtmp/session-view.js';

function info(payload: Buffer): MessageInfo {
  return { csid: 3, timestamp: 0, typeId: MessageType.CommandAmf0, length: payload.length, streamId: 0, head: payload.subarray(0, 8) };
}

function client(view: SessionView, name: string, txn: number, ...args: (string | number | null)[]): void {
  const p = encodeCommand(name, txn, null, ...args);
  view.clientMessage(info(p), p);
}

function server(view: SessionView, name: string, txn: number, ...args: (string | number | null)[]): void {
  const p = encodeCommand(name, txn, null, ...args);
  view.serverMessage(info(p), p);
}

test('session view: the _result of a createStream sets the stream id; other _results do not', () => {
  const view = new SessionView();
  client(view, 'createStream', 4);
  server(view, '_result', 3, 9); // not a createStream transaction
  assert.equal(view.facts.streamId, null);
  server(view, '_result', 4, 1);
  assert.equal(view.facts.streamId, 1);
  // Answered once: a repeated _result for the same transaction changes nothing.
  server(view, '_result', 4, 7);
  assert.equal(view.facts.streamId, 1);
});

test('session view: two createStreams answered out of order; the last answer wins', () => {
  const view = new SessionView();
  client(view, 'createStream', 4);
  client(view, 'createStream', 5);
  client(view, 'createStream', 5); // a repeated transaction id is awaited once
  server(view, '_result', 5, 2);
  assert.equal(view.facts.streamId, 2);
  server(view, '_result', 4, 1);
  assert.equal(view.facts.streamId, 1);
  server(view, '_result', 5, 3);
  assert.equal(view.facts.streamId, 1);
});

test('session view: at most 16 unanswered createStreams are remembered', () => {
  const view = new SessionView();
  for (let t = 10; t < 40; t++) client(view, 'createStream', t);
  server(view, '_result', 25, 8); // the 16th
  assert.equal(view.facts.streamId, 8);
  server(view, '_result', 26, 9); // the 17th was never remembered
  assert.equal(view.facts.streamId, 8);
});
