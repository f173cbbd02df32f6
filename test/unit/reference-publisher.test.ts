// The pure Go Away state machine of the reference publisher (docs/protocol.md#client-reconnect): what is sent on
// which connection, where the switch happens, what is replayed, and that nothing is lost.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { FlvTag } from '../../src/client/flv.js';
import { type Action, type SendItem, GoAwayState } from '../../src/client/reference-publisher.js';
import { encodeAmf0 } from '../../src/rtmp/amf0.js';

let serial = 0;
const body = (...head: number[]): Buffer => Buffer.from([...head, serial++ & 0xff, (serial >> 8) & 0xff]);
const meta = (ts = 0, width = 320): FlvTag => ({ type: 18, timestamp: ts, data: encodeAmf0(['onMetaData', { width }]) });
const vcfg = (ts = 0, v = 1): FlvTag => ({ type: 9, timestamp: ts, data: Buffer.from([0x17, 0, 0, 0, 0, v]) });
const acfg = (ts = 0, v = 0x12): FlvTag => ({ type: 8, timestamp: ts, data: Buffer.from([0xaf, 0, v, 0x10]) });
const key = (ts: number): FlvTag => ({ type: 9, timestamp: ts, data: body(0x17, 1, 0, 0, 0) });
const inter = (ts: number): FlvTag => ({ type: 9, timestamp: ts, data: body(0x27, 1, 0, 0, 0) });
const aud = (ts: number): FlvTag => ({ type: 8, timestamp: ts, data: body(0xaf, 1) });

interface Wire {
  conn: number;
  item: SendItem;
}

/**
 * Drives the state machine like the socket driver does, synchronously: `events` maps "before
 * the n-th action" to a Go Away or a lost connection. Returns everything written, per connection.
 */
function drive(tags: FlvTag[], events: Map<number, 'goaway' | 'lost'> = new Map()): { state: GoAwayState; wire: Wire[]; actions: Action['type'][] } {
  const st = new GoAwayState();
  const wire: Wire[] = [];
  const actions: Action['type'][] = [];
  let i = 0;
  for (let step = 0; step < 100_000; step++) {
    const ev = events.get(step);
    if (ev === 'goaway') st.goAway();
    if (ev === 'lost') st.lost();
    const a = st.next();
    actions.push(a.type);
    if (a.type === 'finish') return { state: st, wire, actions };
    if (a.type === 'read') {
      if (i < tags.length) st.enqueue(tags[i++]!);
      else st.endOfInput();
    } else if (a.type === 'connect') st.connected();
    else if (a.type === 'close') st.closed(a.reason);
    else {
      wire.push({ conn: st.connection!.index, item: a.item });
      st.markSent(a.item);
    }
  }
  throw new Error('did not finish');
}

const media = (w: Wire[]): FlvTag[] => w.filter((x) => !x.item.replay && ['keyframe', 'video', 'audio'].includes(x.item.kind)).map((x) => x.item.tag);

/** A stream like FFmpeg writes: metadata, sequence headers, then GOPs of `gop` frames at 10 fps with 2 audio frames per video frame. */
function stream(gops: number, gop = 5): FlvTag[] {
  const out = [meta(), vcfg(), acfg()];
  for (let f = 0; f < gops * gop; f++) {
    out.push(f % gop === 0 ? key(f * 100) : inter(f * 100));
    out.push(aud(f * 100), aud(f * 100 + 50));
  }
  return out;
}

describe('GoAwayState', () => {
  test('one connection: everything in source order, no replay', () => {
    const tags = stream(2);
    const { state, wire } = drive(tags);
    assert.deepEqual(
      wire.map((w) => w.item.tag),
      tags,
    );
    assert.equal(state.connections.length, 1);
    assert.deepEqual(state.connections[0], {
      index: 1,
      video: 10,
      keyframes: 2,
      audio: 20,
      data: 0,
      config: 3,
      replayed: 0,
      firstTimestamp: 0,
      lastTimestamp: 950,
      endReason: null,
    });
  });

  test('Go Away mid-GOP: keep sending to the next keyframe, close, replay config at its timestamp, continue', () => {
    const tags = stream(3);
    // Step 20 is inside the first GOP (after the keyframe at 0 went out).
    const { state, wire, actions } = drive(tags, new Map([[20, 'goaway']]));
    assert.equal(actions.filter((a) => a === 'close').length, 1);
    assert.equal(state.connections.length, 2);
    const c1 = wire.filter((w) => w.conn === 1);
    const c2 = wire.filter((w) => w.conn === 2);
    // Connection 1 ends right before the keyframe at 500 ms.
    assert.equal(c1.at(-1)!.item.tag.timestamp, 450);
    assert.equal(c1.at(-1)!.item.kind, 'audio');
    // Connection 2: metadata, AVC and AAC headers stamped 500, then the keyframe at 500.
    assert.deepEqual(
      c2.slice(0, 4).map((w) => [w.item.kind, w.item.replay, w.item.tag.timestamp]),
      [
        ['metadata', true, 500],
        ['video-config', true, 500],
        ['audio-config', true, 500],
        ['keyframe', false, 500],
      ],
    );
    assert.deepEqual(c2[0]!.item.tag.data, tags[0]!.data);
    // Every media frame exactly once, in order, timestamps continuing.
    assert.deepEqual(
      media(wire),
      tags.filter((t) => t.type !== 18 && t.data[1] !== 0),
    );
    assert.equal(state.connections[0]!.endReason, 'go-away');
    assert.deepEqual([state.connections[0]!.video, state.connections[1]!.video], [5, 10]);
    assert.deepEqual([state.connections[1]!.firstTimestamp, state.connections[1]!.replayed], [500, 3]);
    assert.deepEqual(state.dropped, { video: 0, audio: 0, data: 0, config: 0 });
    assert.equal(state.queued, 0);
  });

  test('Go Away while the next frame is already a keyframe switches at once', () => {
    const st = new GoAwayState();
    for (const t of [vcfg(), key(0), aud(0), key(100), aud(100)]) st.enqueue(t);
    st.endOfInput();
    assert.equal(st.next().type, 'connect');
    st.connected();
    for (let n = 0; n < 3; n++) {
      const a = st.next();
      assert.equal(a.type, 'send');
      if (a.type === 'send') st.markSent(a.item);
    }
    st.goAway();
    assert.deepEqual(st.next(), { type: 'close', reason: 'go-away' });
  });

  test('a Go Away before any frame went out on a connection waits for one frame first', () => {
    const st = new GoAwayState();
    for (const t of [key(0), key(100), key(200)]) st.enqueue(t);
    st.endOfInput();
    st.next();
    st.connected();
    st.goAway();
    const a = st.next();
    assert.equal(a.type, 'send', 'the first keyframe goes out: the reconnect must make progress');
    if (a.type === 'send') st.markSent(a.item);
    assert.equal(st.next().type, 'close');
  });

  test('Go Away with nothing left before the end of input: finish on the same connection', () => {
    const { state, actions } = drive([vcfg(), key(0), inter(100)], new Map([[5, 'goaway']]));
    assert.ok(!actions.includes('close'));
    assert.equal(state.connections.length, 1);
  });

  test('the replay uses the configuration in force at the switch, not a later one', () => {
    const tags = [meta(0, 320), vcfg(0, 1), acfg(0), key(0), inter(100), key(200), meta(300, 640), vcfg(300, 2), key(300), inter(400), key(500)];
    // Go Away after the keyframe at 0 went out: switch at 200, while config v1 is in force.
    const { wire } = drive(tags, new Map([[7, 'goaway']]));
    const replay = wire.filter((w) => w.item.replay);
    assert.deepEqual(
      replay.map((w) => [w.item.kind, w.item.tag.timestamp, w.item.tag.data]),
      [
        ['metadata', 200, tags[0]!.data],
        ['video-config', 200, tags[1]!.data],
        ['audio-config', 200, tags[2]!.data],
      ],
    );
  });

  test('audio-only source: any audio frame is a switch point', () => {
    const tags = [acfg(), aud(0), aud(23), aud(46), aud(69)];
    const { state, wire } = drive(tags, new Map([[5, 'goaway']]));
    assert.equal(state.connections.length, 2);
    assert.deepEqual(media(wire), tags.slice(1));
  });

  test('a lost connection (not a Go Away) drops frames until the next keyframe and counts them', () => {
    const tags = stream(2);
    const { state, wire } = drive(tags, new Map([[12, 'lost']]));
    assert.equal(state.connections[0]!.endReason, 'connection-lost');
    assert.ok(state.dropped.video + state.dropped.audio > 0);
    const c2 = wire.filter((w) => w.conn === 2 && !w.item.replay);
    assert.equal(c2[0]!.item.kind, 'keyframe');
    assert.equal(media(wire).length + state.dropped.video + state.dropped.audio, 30);
  });

  test('an unknown Go Away without a connection is ignored', () => {
    const st = new GoAwayState();
    st.goAway();
    assert.equal(st.goingAway, null);
  });

  test('property: for any stream and any Go Away times, every frame is sent exactly once, connections start at keyframes, timestamps continue', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 0, max: 3 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 200 }), { maxLength: 6 }),
        (gops, gop, audioPerFrame, goAwaySteps) => {
          const tags: FlvTag[] = [meta(), vcfg(), acfg()];
          for (let f = 0; f < gops * gop; f++) {
            tags.push(f % gop === 0 ? key(f * 40) : inter(f * 40));
            for (let a = 0; a < audioPerFrame; a++) tags.push(aud(f * 40 + a * 10));
          }
          const { state, wire } = drive(tags, new Map(goAwaySteps.map((s) => [s, 'goaway'] as const)));
          const sentMedia = media(wire);
          const srcMedia = tags.filter((t) => t.type !== 18 && t.data[1] !== 0);
          assert.deepEqual(sentMedia, srcMedia, 'every media frame exactly once, in order');
          assert.deepEqual(state.dropped, { video: 0, audio: 0, data: 0, config: 0 });
          for (const c of state.connections.slice(1)) {
            const first = wire.find((w) => w.conn === c.index && !w.item.replay)!;
            assert.equal(first.item.kind, 'keyframe', `connection ${c.index} starts at a keyframe`);
            const replay = wire.filter((w) => w.conn === c.index && w.item.replay);
            assert.deepEqual(
              replay.map((w) => w.item.kind),
              ['metadata', 'video-config', 'audio-config'],
            );
            assert.ok(replay.every((w) => w.item.tag.timestamp === first.item.tag.timestamp));
          }
          for (let k = 1; k < state.connections.length; k++) {
            assert.ok(state.connections[k]!.firstTimestamp! >= state.connections[k - 1]!.lastTimestamp!, 'timestamps keep running');
            assert.equal(state.connections[k - 1]!.endReason, 'go-away');
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
