import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Amf0Error, type Amf0Value, amf0Object, encodeAmf0 } from '../../src/rtmp/amf0.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { ProtocolError } from '../../src/rtmp/errors.js';
import {
  CAPS_EX_RECONNECT,
  type Command,
  decodeCommand,
  encodeCommand,
  readConnect,
  readCreateStreamResult,
  readPublish,
  readStatusCode,
} from '../../src/rtmp/messages.js';
import { hex } from '../helpers/rtmp-fixtures.js';

/** A command as a client would send it, decoded back. */
function cmd(name: string, txn: number, obj: Amf0Value, ...args: Amf0Value[]): Command {
  const c = decodeCommand(MessageType.CommandAmf0, encodeCommand(name, txn, obj, ...args));
  assert.ok(c !== null);
  return c;
}

const connectWith = (entries: Record<string, Amf0Value>) => readConnect(cmd('connect', 1, amf0Object({ app: 'live', tcUrl: 'rtmp://h/live', ...entries })));

/** The decoded fields of a command, without the raw body offsets. */
const decoded = (c: Command | null) => (c === null ? null : { name: c.name, transactionId: c.transactionId, commandObject: c.commandObject, args: c.args });

function throwsBadAmf(fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `expected ProtocolError, got ${String(err)}`);
    assert.equal(err.code, 'bad-amf');
    return true;
  });
}

describe('decodeCommand', () => {
  // RTMP spec §7.1.1: name, transaction id, command object, then arguments.
  it('type 20: name, transaction id, command object, args', () => {
    const c = cmd('publish', 5, null, 'key', 'live');
    assert.deepEqual(decoded(c), { name: 'publish', transactionId: 5, commandObject: null, args: ['key', 'live'] });
    // The raw bytes of the command object and of the arguments, for replay.
    assert.deepEqual(c.body.subarray(c.objectAt), encodeAmf0([null, 'key', 'live']));
    assert.deepEqual(c.body.subarray(c.argsAt), encodeAmf0(['key', 'live']));
  });

  it('`only`: a command not named there is decoded no further than its name', () => {
    const only = new Set(['publish']);
    assert.equal(decodeCommand(20, encodeCommand('publish', 5, null, 'key'), undefined, only)?.name, 'publish');
    // A body that is garbage after the name costs nothing when the name is not wanted.
    const junk = Buffer.concat([encodeAmf0(['onJunk']), Buffer.of(0xff, 0xff)]);
    assert.equal(decodeCommand(20, junk, undefined, only), null);
    throwsBadAmf(() => decodeCommand(20, junk));
  });

  // docs/protocol.md#commands: type 17 (AMF3 command) starts with one 0x00 byte, then AMF0.
  it('type 17 with a leading 0x00 decodes like type 20', () => {
    const body = encodeCommand('connect', 1, amf0Object({ app: 'live' }));
    const a = decodeCommand(MessageType.CommandAmf3, Buffer.concat([Buffer.of(0), body]));
    const b = decodeCommand(MessageType.CommandAmf0, body);
    assert.ok(a !== null && b !== null);
    assert.equal(a.name, 'connect');
    assert.deepEqual({ ...(a.commandObject as object) }, { app: 'live' });
    assert.deepEqual({ ...a, commandObject: null }, { ...b, commandObject: null });
    // a type 17 body without the marker byte is read as plain AMF0
    assert.equal(decodeCommand(MessageType.CommandAmf3, body)?.name, 'connect');
  });

  // The leading 0x00 is only special on type 17: on type 20 it is an AMF0 number marker.
  it('type 20 starting with a number is not a command (null)', () => {
    assert.equal(decodeCommand(MessageType.CommandAmf0, encodeAmf0([1, 'connect'])), null);
    assert.equal(decodeCommand(MessageType.CommandAmf0, Buffer.alloc(0)), null);
    assert.equal(decodeCommand(MessageType.CommandAmf3, Buffer.of(0)), null);
  });

  // Missing or odd fields default instead of throwing: transaction id 0, command object null.
  it('missing transaction id / command object', () => {
    assert.deepEqual(decoded(decodeCommand(20, encodeAmf0(['onBWDone']))), { name: 'onBWDone', transactionId: 0, commandObject: null, args: [] });
    assert.equal(decodeCommand(20, encodeAmf0(['x', 'not a number']))!.transactionId, 0);
  });

  // Untrusted input: AMF0 failures surface as ProtocolError('bad-amf'), never as Amf0Error.
  it("broken AMF → ProtocolError 'bad-amf'", () => {
    throwsBadAmf(() => decodeCommand(20, hex('02 0007 636f6e6e'))); // string cut short
    throwsBadAmf(() => decodeCommand(20, hex('02 0001 61 | 04'))); // reserved MovieClip marker
    throwsBadAmf(() => decodeCommand(20, hex('02 0001 61 | 00 3ff0'))); // number cut short
    throwsBadAmf(() => decodeCommand(20, hex('02 0001 61 | 03 0001 62 02 0001'))); // object cut short
    throwsBadAmf(() => decodeCommand(17, hex('00 | 02 0005 6162'))); // type 17, truncated
    throwsBadAmf(() => decodeCommand(20, hex('02 0001 61 | 11 02'))); // AMF3 switch marker
  });

  // Limits are passed through to the AMF0 decoder (nesting depth bound).
  it('AMF0 limits apply (maxDepth)', () => {
    const nested = encodeCommand('connect', 1, amf0Object({ a: amf0Object({ b: amf0Object({ c: 1 }) }) }));
    assert.ok(decodeCommand(20, nested) !== null);
    throwsBadAmf(() => decodeCommand(20, nested, { maxDepth: 1 }));
  });

  // Fuzz: any bytes give a Command, null, or ProtocolError('bad-amf') — nothing else escapes.
  it('random bytes never throw anything but bad-amf', () => {
    fc.assert(
      fc.property(fc.constantFrom(17, 20), fc.uint8Array({ maxLength: 300 }), (typeId, bytes) => {
        try {
          const c = decodeCommand(typeId, Buffer.from(bytes));
          if (c !== null) assert.equal(typeof c.name, 'string');
        } catch (err) {
          assert.ok(!(err instanceof Amf0Error), 'Amf0Error leaked');
          assert.ok(err instanceof ProtocolError && err.code === 'bad-amf', String(err));
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('readConnect', () => {
  // docs/protocol.md#capabilities-in-connect: OBS and the FFmpeg patch send supportsGoAway as AMF0 boolean true
  // (00 0E "supportsGoAway" 01 01 on the wire).
  it('supportsGoAway: true (boolean, as on the wire)', () => {
    const body = encodeCommand('connect', 1, amf0Object({ app: 'live', supportsGoAway: true }));
    assert.ok(body.includes(hex('000e 737570706f727473476f41776179 01 01')));
    const info = readConnect(decodeCommand(20, body)!);
    assert.equal(info.supportsGoAway, true);
    assert.equal(info.goAwayKey, 'supportsGoAway');
  });

  // docs/protocol.md#capabilities-in-connect: the spec's example uses the number 1; accept any non-zero number.
  it('supportsGoAway: 1, -1 and 0.5 accepted; 0 and NaN not', () => {
    for (const v of [1, -1, 0.5]) assert.equal(connectWith({ supportsGoAway: v }).supportsGoAway, true, String(v));
    for (const v of [0, Number.NaN]) {
      const info = connectWith({ supportsGoAway: v });
      assert.equal(info.supportsGoAway, false, String(v));
      assert.equal(info.goAwayKey, null);
    }
  });

  // Only boolean/number count: a string "yes" or "true" is not an announcement.
  it('supportsGoAway: false, "yes", "true", null, object → not supported', () => {
    for (const v of [false, 'yes', 'true', null, amf0Object({})]) {
      const info = connectWith({ supportsGoAway: v });
      assert.equal(info.supportsGoAway, false, JSON.stringify(v));
      assert.equal(info.goAwayKey, null);
    }
    assert.equal(connectWith({}).supportsGoAway, false);
  });

  // docs/protocol.md#capabilities-in-connect: an early FFmpeg patch used the key `goaway`; accept it and report which key.
  it('legacy key `goaway` → goAwayKey "goaway"; supportsGoAway wins when both are set', () => {
    assert.deepEqual(pick(connectWith({ goaway: true })), [true, 'goaway']);
    assert.deepEqual(pick(connectWith({ goaway: 1 })), [true, 'goaway']);
    assert.deepEqual(pick(connectWith({ goaway: 0 })), [false, null]);
    assert.deepEqual(pick(connectWith({ supportsGoAway: true, goaway: true })), [true, 'supportsGoAway']);
    assert.deepEqual(pick(connectWith({ supportsGoAway: false, goaway: true })), [true, 'goaway']);
    function pick(i: ReturnType<typeof readConnect>) {
      return [i.supportsGoAway, i.goAwayKey];
    }
  });

  // docs/protocol.md#capabilities-in-connect: E-RTMP capsEx is a number bitmask; 0x01 = Reconnect.
  it('capsEx: 1 → 1 (Reconnect bit), 15 → 15, missing / string / NaN → null', () => {
    assert.equal(CAPS_EX_RECONNECT, 1);
    assert.equal(connectWith({ capsEx: 1 }).capsEx, 1);
    assert.equal(connectWith({ capsEx: 15 }).capsEx! & CAPS_EX_RECONNECT, 1);
    assert.equal(connectWith({ capsEx: 0 }).capsEx, 0);
    assert.equal(connectWith({}).capsEx, null);
    assert.equal(connectWith({ capsEx: '1' }).capsEx, null);
    assert.equal(connectWith({ capsEx: Number.NaN }).capsEx, null);
  });

  // docs/protocol.md#publisher-command-flow: app and tcUrl are in the connect command object.
  it('app, tcUrl, flashVer, objectEncoding', () => {
    const info = connectWith({ flashVer: 'FMLE/3.0', objectEncoding: 0 });
    assert.deepEqual(
      { ...info },
      {
        app: 'live',
        tcUrl: 'rtmp://h/live',
        flashVer: 'FMLE/3.0',
        supportsGoAway: false,
        goAwayKey: null,
        capsEx: null,
        objectEncoding: 0,
      },
    );
    assert.equal(connectWith({ app: 5 }).app, null);
  });

  // A connect without a command object (or with a non-object) yields nulls, not a crash.
  it('null or non-object command object', () => {
    for (const obj of [null, 'live', 3, ['app']] as Amf0Value[]) {
      const info = readConnect(cmd('connect', 1, obj));
      assert.deepEqual([info.app, info.tcUrl, info.supportsGoAway, info.capsEx], [null, null, false, null]);
    }
  });
});

describe('readPublish', () => {
  // docs/protocol.md#publisher-command-flow: the stream key is the first string argument of publish.
  it('publish(key, type)', () => {
    assert.deepEqual(readPublish(cmd('publish', 5, null, 'obs', 'live')), { streamKey: 'obs', publishType: 'live' });
    assert.deepEqual(readPublish(cmd('publish', 5, null, 'k?token=1')), { streamKey: 'k?token=1', publishType: null });
    assert.deepEqual(readPublish(cmd('publish', 5, null)), { streamKey: null, publishType: null });
    assert.deepEqual(readPublish(cmd('publish', 5, null, 42, 'live')), { streamKey: null, publishType: 'live' });
  });
});

describe('readCreateStreamResult', () => {
  // RTMP spec §7.2.1.3: _result(txn, null, streamId).
  it('a non-negative integer stream id', () => {
    assert.equal(readCreateStreamResult(cmd('_result', 4, null, 1)), 1);
    assert.equal(readCreateStreamResult(cmd('_result', 4, null, 0)), 0);
    assert.equal(readCreateStreamResult(cmd('_result', 4, null, 0xffffffff)), 0xffffffff);
  });

  // Bad values must not become a stream id.
  it('bad values → null', () => {
    const bad: Amf0Value[] = [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '1', null, true, undefined, amf0Object({ id: 1 })];
    bad.forEach((v, i) => assert.equal(readCreateStreamResult(cmd('_result', 4, null, v)), null, `bad value #${i}`));
    assert.equal(readCreateStreamResult(cmd('_result', 4, null)), null);
  });
});

describe('readStatusCode', () => {
  // RTMP spec §7.2.2: onStatus(0, null, {level, code, description}).
  it('onStatus info object code', () => {
    const c = cmd('onStatus', 0, null, amf0Object({ level: 'status', code: 'NetStream.Publish.Start', description: 'x' }));
    assert.equal(readStatusCode(c), 'NetStream.Publish.Start');
    // docs/protocol.md#e-rtmp-reconnect: the E-RTMP reconnect request is an onStatus too
    const rr = cmd('onStatus', 0, null, amf0Object({ level: 'status', code: 'NetConnection.Connect.ReconnectRequest' }));
    assert.equal(readStatusCode(rr), 'NetConnection.Connect.ReconnectRequest');
  });

  // Missing, non-object info or non-string code → null.
  it('no info object / no string code → null', () => {
    assert.equal(readStatusCode(cmd('onStatus', 0, null)), null);
    assert.equal(readStatusCode(cmd('onStatus', 0, null, 'NetStream.Publish.Start')), null);
    assert.equal(readStatusCode(cmd('onStatus', 0, null, amf0Object({ code: 5 }))), null);
    assert.equal(readStatusCode(cmd('onStatus', 0, null, null)), null);
  });
});
