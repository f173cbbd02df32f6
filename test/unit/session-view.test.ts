/**
 * SessionView: the createStream → _result pairing (the stream id a migration replays and maps),
 * including interleaved and unanswered createStreams.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MessageInfo } from '../../src/rtmp/chunk-reader.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { amf0Object, encodeAmf0 } from '../../src/rtmp/amf0.js';
import { ProtocolError } from '../../src/rtmp/errors.js';
import { encodeCommand } from '../../src/rtmp/messages.js';
import { MAX_REPLAY_BYTES, SessionView } from '../../src/rtmp/session-view.js';
import { hostileConnect } from '../helpers/hostile-amf.js';

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

const APP_AMF_LIMITS = { maxItems: 1024, maxTotalValues: 1024, maxStringBytes: 65_536, maxTotalStringBytes: 65_536 };

test('session view: the hostile connect (~256 KiB of nested empty objects) is refused as bad-amf, nothing kept', () => {
  const view = new SessionView({}, APP_AMF_LIMITS);
  const p = hostileConnect();
  assert.throws(
    () => view.clientMessage(info(p), p),
    (e: unknown) => e instanceof ProtocolError && e.code === 'bad-amf',
  );
  assert.equal(view.facts.connect, null);
  assert.equal(view.facts.connectReplay, null);
});

test('session view: what a session keeps of connect and publish is their bytes, at most MAX_REPLAY_BYTES each', () => {
  const view = new SessionView({}, APP_AMF_LIMITS);
  const obj = amf0Object({ app: 'live', tcUrl: 'rtmp://h/live', flashVer: 'FMLE/3.0', supportsGoAway: true });
  const p = encodeCommand('connect', 1, obj, 'extra');
  view.clientMessage(info(p), p);
  // The client's own AMF0 after the transaction id, copied (not a view of the socket's buffer).
  assert.deepEqual(view.facts.connectReplay, encodeAmf0([obj, 'extra']));
  p.fill(0);
  assert.deepEqual(view.facts.connectReplay, encodeAmf0([obj, 'extra']), 'a copy: the message buffer is reused by then');
  const pub = encodeCommand('publish', 5, null, 'key', 'live');
  view.clientMessage(info(pub), pub);
  assert.deepEqual(view.facts.publishReplay, encodeAmf0(['key', 'live']));
  // Nothing else of the decoded commands is held: the facts are small scalars and these bytes.
  for (const [k, v] of Object.entries(view.facts)) {
    assert.ok(v === null || ['number', 'string', 'boolean'].includes(typeof v) || Buffer.isBuffer(v) || k === 'connect', `${k} is a ${typeof v}`);
  }
});

test('session view: a connect larger than MAX_REPLAY_BYTES (a valid one, whatever its size) is refused; one at the bound is kept', () => {
  for (const size of [MAX_REPLAY_BYTES + 1, 64 * 1024, 250 * 1024]) {
    const view = new SessionView({}, { ...APP_AMF_LIMITS, maxStringBytes: Infinity, maxTotalStringBytes: Infinity });
    const pad = 'x'.repeat(size);
    const p = encodeCommand('connect', 1, amf0Object({ app: 'live', tcUrl: 'rtmp://h/live', pad }));
    assert.throws(
      () => view.clientMessage(info(p), p),
      (e: unknown) => e instanceof ProtocolError && e.code === 'bad-amf',
      `${size}`,
    );
    assert.equal(view.facts.connectReplay, null);
    assert.equal(view.facts.connect, null);
  }
  const view = new SessionView({}, APP_AMF_LIMITS);
  const base = encodeAmf0([amf0Object({ app: 'live', pad: '' })]).length;
  const obj = amf0Object({ app: 'live', pad: 'x'.repeat(MAX_REPLAY_BYTES - base) });
  const p = encodeCommand('connect', 1, obj);
  view.clientMessage(info(p), p);
  assert.equal(view.facts.connectReplay!.length, MAX_REPLAY_BYTES);
  // Same bound for publish arguments.
  const pub = encodeCommand('publish', 5, null, 'k'.repeat(MAX_REPLAY_BYTES));
  assert.throws(
    () => view.clientMessage(info(pub), pub),
    (e: unknown) => e instanceof ProtocolError && e.code === 'bad-amf',
  );
  assert.equal(view.facts.publishReplay, null);
});

function status(view: SessionView, code: string): void {
  const p = encodeCommand('onStatus', 0, null, amf0Object({ level: 'status', code, description: '' }));
  view.serverMessage(info(p), p);
}

test('session view: play names the stream and makes a player; Play.Start → playing, UnpublishNotify/Play.Stop → stopped', () => {
  const plays: (string | null)[] = [];
  const view = new SessionView({ play: (k) => plays.push(k) });
  client(view, 'connect', 1);
  assert.equal(view.facts.role, null);
  client(view, 'FCSubscribe', 0, 'k?token=1');
  client(view, 'play', 4, 'other', -2000);
  assert.equal(view.facts.role, 'player');
  assert.equal(view.facts.streamKey, 'k?token=1', 'the first command naming the stream wins');
  assert.deepEqual(plays, ['k?token=1']);
  status(view, 'NetStream.Play.Reset');
  assert.equal(view.facts.playing, false);
  status(view, 'NetStream.Play.Start');
  assert.equal(view.facts.playing, true);
  assert.equal(view.facts.publishing, false);
  status(view, 'NetStream.Play.UnpublishNotify');
  assert.equal(view.facts.playStopped, true);
  status(view, 'NetStream.Play.Start');
  assert.equal(view.facts.playStopped, false);
  // A player's publish does not make it a publisher, nor replace the key.
  client(view, 'publish', 5, 'x', 'live');
  assert.equal(view.facts.role, 'player');
  assert.equal(view.facts.streamKey, 'k?token=1');
  assert.equal(view.facts.publishReplay, null);
});

test('session view: play2 names the stream by its parameters object; a malformed play names none', () => {
  const view = new SessionView();
  const p = encodeCommand('play2', 0, null, amf0Object({ streamName: 'live2', start: 0 }));
  view.clientMessage(info(p), p);
  assert.equal(view.facts.role, 'player');
  assert.equal(view.facts.streamKey, 'live2');
  const bad = new SessionView();
  client(bad, 'play', 0, 42);
  assert.equal(bad.facts.role, 'player');
  assert.equal(bad.facts.streamKey, null);
});

test('session view: a publisher stays a publisher; Play.Start from the server does not make it playing', () => {
  const view = new SessionView();
  client(view, 'publish', 5, 'k', 'live');
  client(view, 'play', 6, 'other');
  assert.equal(view.facts.role, 'publisher');
  assert.equal(view.facts.streamKey, 'k');
  status(view, 'NetStream.Play.Start');
  assert.equal(view.facts.playing, false);
});

test('session view: Stream EOF (how nginx-rtmp tells a player its publisher left) stops a playing stream once; Stream Begin resumes it', () => {
  let stopped = 0;
  let started = 0;
  const view = new SessionView({ streamStopped: () => stopped++, streamStarted: () => started++ });
  const userControl = (event: number): void => {
    const p = Buffer.from([0, event, 0, 0, 0, 1]);
    view.serverMessage({ csid: 2, timestamp: 0, typeId: MessageType.UserControl, length: 6, streamId: 0, head: p }, p);
  };
  userControl(1);
  assert.equal(view.facts.playStopped, false, 'not a player yet');
  client(view, 'play', 4, 'k');
  userControl(0);
  status(view, 'NetStream.Play.Start');
  userControl(1);
  userControl(1);
  status(view, 'NetStream.Play.UnpublishNotify');
  assert.equal(view.facts.playStopped, true);
  assert.equal(stopped, 1, 'one stop, however many messages say it');
  assert.equal(started, 0, 'Stream Begin at play is no restart');
  userControl(0);
  assert.equal(view.facts.playStopped, false);
  assert.equal(started, 1, 'the stream started again');
  status(view, 'NetStream.Play.UnpublishNotify');
  status(view, 'NetStream.Play.PublishNotify');
  userControl(0);
  assert.deepEqual([stopped, started, view.facts.playStopped], [2, 2, false], 'PublishNotify says it too, once');
  // A truncated user control message is ignored.
  view.serverMessage({ csid: 2, timestamp: 0, typeId: MessageType.UserControl, length: 1, streamId: 0, head: Buffer.from([0]) }, Buffer.from([0]));
  assert.equal(view.facts.playStopped, false);
});
