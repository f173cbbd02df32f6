/**
 * The buffer budgets (buffer-budget.ts) and what draws from them: the chunk reader's partly
 * collected messages (copied out of the read they came in), the injector's held `_result`, the
 * migration cache.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ChunkReader, type MessageInfo, collectControlAndCommands } from '../../src/rtmp/chunk-reader.js';
import { ChunkWriter } from '../../src/rtmp/chunk-writer.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { ProtocolError } from '../../src/rtmp/errors.js';
import { encodeCommand } from '../../src/rtmp/messages.js';
import { ProcessBudget, SessionBudget } from '../../src/proxy/buffer-budget.js';
import { ClientBoundInjector } from '../../src/proxy/injector.js';
import { MediaCache } from '../../src/proxy/migration/media-cache.js';
import { incompleteCommands } from '../helpers/hostile-amf.js';
import { plainHandshake, splitAt } from '../helpers/rtmp-fixtures.js';

const KiB = 1024;

function isBudgetError(e: unknown): boolean {
  return e instanceof ProtocolError && e.code === 'buffer-budget';
}

describe('SessionBudget / ProcessBudget accounting', () => {
  it('a take over the session or the process limit takes nothing and says which', () => {
    const proc = new ProcessBudget(1000);
    const a = new SessionBudget(600, proc);
    const b = new SessionBudget(600, proc);
    assert.ok(a.take(500));
    assert.ok(!a.take(101));
    assert.equal(a.exceeded, 'session');
    assert.equal(a.held, 500);
    assert.ok(b.take(500));
    assert.ok(!b.take(1), 'the process is full');
    assert.equal(b.exceeded, 'process');
    assert.deepEqual([a.held, b.held, proc.held], [500, 500, 1000]);
    assert.deepEqual(proc.refused, { session: 1, process: 1 });
    a.give(200);
    assert.ok(b.take(1));
    // Giving more than held gives what is held, never below zero.
    a.give(10_000);
    assert.deepEqual([a.held, proc.held], [0, 501]);
    // The session's end gives everything back; it takes nothing afterwards.
    b.close();
    assert.deepEqual([b.held, proc.held], [0, 0]);
    assert.ok(!b.take(1));
    assert.equal(proc.peak, 1000);
  });

  it('property: the process total is the sum of its sessions and never above its limit', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat({ max: 3 }), fc.boolean(), fc.nat({ max: 400 })), { maxLength: 200 }), (ops) => {
        const proc = new ProcessBudget(1000);
        const sessions = [0, 1, 2, 3].map(() => new SessionBudget(400, proc));
        for (const [i, take, n] of ops) {
          const s = sessions[i]!;
          if (take) s.take(n);
          else s.give(n);
          assert.ok(s.held <= 400);
          assert.ok(proc.held <= 1000);
          assert.equal(
            proc.held,
            sessions.reduce((t, x) => t + x.held, 0),
          );
        }
        for (const s of sessions) s.close();
        assert.equal(proc.held, 0);
      }),
    );
  });
});

describe('ChunkReader: partly collected messages are held as copies, charged to the budget', () => {
  it("the issue's reproduction: 28 incomplete 256 KiB commands (192 KiB each sent) hit a 512 KiB budget", () => {
    const budget = new SessionBudget(512 * KiB, new ProcessBudget(Infinity));
    const reader = new ChunkReader({ message: () => {} }, collectControlAndCommands, { maxCollectedSize: 256 * KiB }, budget);
    let fed = 0;
    let threw: unknown = null;
    for (const buf of incompleteCommands()) {
      try {
        reader.feed(buf);
      } catch (e) {
        threw = e;
        break;
      }
      fed++;
      assert.equal(reader.heldBytes, budget.held);
      assert.ok(budget.held <= 512 * KiB);
    }
    assert.ok(isBudgetError(threw), String(threw));
    assert.ok(fed < 6, `refused after ${fed - 1} messages, not 28`);
    assert.equal(budget.exceeded, 'session');
    reader.release();
    assert.equal(budget.held, 0);
    assert.equal(reader.heldBytes, 0);
  });

  it('without the budget the same client makes the reader hold ~5 MiB (what the budget prevents)', () => {
    const reader = new ChunkReader({ message: () => {} }, collectControlAndCommands, { maxCollectedSize: 256 * KiB });
    for (const buf of incompleteCommands()) reader.feed(buf);
    assert.ok(reader.heldBytes >= 28 * 192 * KiB, `${reader.heldBytes}`);
  });

  it('a small piece of a command in a large read is copied out: the read is not pinned', () => {
    const budget = new SessionBudget(Infinity, new ProcessBudget(Infinity));
    const reader = new ChunkReader({ message: () => {} }, collectControlAndCommands, {}, budget);
    const w = new ChunkWriter();
    const cmd = w.write({ csid: 3, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: 0, payload: Buffer.alloc(300, 5) });
    const media = w.write({ csid: 6, timestamp: 0, typeId: MessageType.Video, streamId: 1, payload: Buffer.alloc(60 * KiB, 0x17) });
    // One read: a whole video message, then the first chunk (128 bytes) of the command.
    const read = Buffer.concat([media, cmd.subarray(0, 12 + 128)]);
    reader.feed(read);
    // The reader holds its own small buffer, not a view of the 60 KiB read.
    assert.ok(reader.heldBytes > 0 && reader.heldBytes <= 512, `${reader.heldBytes}`);
    assert.equal(budget.held, reader.heldBytes);
    const got: Buffer[] = [];
    const r2 = new ChunkReader({ message: (_i, p) => got.push(Buffer.from(p!)) }, collectControlAndCommands, {}, budget);
    for (const part of splitAt(cmd, [5, 140, 141, 200])) r2.feed(part);
    assert.deepEqual(got, [Buffer.alloc(300, 5)]);
  });

  it('property: any split of a message stream reads the same payloads, and the budget is balanced at every read', () => {
    const w = new ChunkWriter();
    const messages = [
      { csid: 3, typeId: MessageType.CommandAmf0, payload: encodeCommand('connect', 1, null, 'x'.repeat(700)) },
      { csid: 5, typeId: MessageType.Video, payload: Buffer.alloc(900, 0x27) },
      { csid: 3, typeId: MessageType.CommandAmf0, payload: encodeCommand('publish', 5, null, 'key') },
      { csid: 2, typeId: MessageType.WindowAckSize, payload: Buffer.from([0, 0, 16, 0]) },
    ];
    const stream = Buffer.concat(messages.map((m) => w.write({ ...m, timestamp: 0, streamId: 0 })));
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 30 }), (cuts) => {
        const proc = new ProcessBudget(Infinity);
        const budget = new SessionBudget(Infinity, proc);
        const got: { typeId: number; payload: string | null }[] = [];
        const reader = new ChunkReader(
          { message: (i: MessageInfo, p) => got.push({ typeId: i.typeId, payload: p?.toString('hex') ?? null }) },
          collectControlAndCommands,
          {},
          budget,
        );
        for (const part of splitAt(
          stream,
          cuts.sort((a, b) => a - b),
        )) {
          reader.feed(part);
          assert.equal(budget.held, reader.heldBytes);
          // Never more than the unfinished command's length (capacity is capped by it).
          assert.ok(reader.heldBytes <= 700 + 64, `${reader.heldBytes}`);
        }
        assert.equal(budget.held, 0, 'every message finished: nothing held');
        assert.deepEqual(
          got,
          messages.map((m) => ({ typeId: m.typeId, payload: m.typeId === MessageType.Video ? null : m.payload.toString('hex') })),
        );
      }),
      { numRuns: 300 },
    );
  });
});

describe('held connect _result and migration cache draw from the same budget', () => {
  it('a _result that does not fit is let through unchanged, counted', () => {
    // Room for the reader's copy of the unfinished message (223 bytes), not for holding its chunks too.
    const budget = new SessionBudget(250, new ProcessBudget(Infinity));
    let rewrites = 0;
    const inj = new ClientBoundInjector(() => {}, undefined, {}, budget);
    inj.setCommandRewriter(() => {
      rewrites++;
      return Buffer.from('changed');
    });
    const w = new ChunkWriter();
    const result = w.write({
      csid: 3,
      timestamp: 0,
      typeId: MessageType.CommandAmf0,
      streamId: 0,
      payload: encodeCommand('_result', 1, null, 'y'.repeat(200)),
    });
    const hs = plainHandshake();
    const out = Buffer.concat([...inj.push(hs.subarray(0, 1537 + 1536)), ...inj.push(result.subarray(0, 100)), ...inj.push(result.subarray(100))]);
    assert.deepEqual(out, Buffer.concat([hs.subarray(0, 1537 + 1536), result]), 'the original bytes, in order');
    assert.equal(inj.failure, null, 'still parsing');
    assert.equal(inj.rewriteOverBudget, 1);
    assert.equal(rewrites, 0);
    assert.equal(budget.held, 0);
  });

  it('a cache message the budget refuses leaves the cache incomplete (not migratable), and gives back what it replaces', () => {
    const budget = new SessionBudget(100, new ProcessBudget(Infinity));
    const cache = new MediaCache(10_000, budget);
    const info = (typeId: number): MessageInfo => ({ csid: 6, timestamp: 0, typeId, length: 0, streamId: 1, head: Buffer.alloc(0) });
    const avc = (n: number): Buffer => Buffer.concat([Buffer.from([0x17, 0x00, 0, 0, 0]), Buffer.alloc(n - 5, 1)]);
    cache.offer(info(MessageType.Video), avc(60));
    assert.equal(budget.held, 60);
    cache.offer(info(MessageType.Video), avc(40));
    assert.equal(budget.held, 40, 'the smaller one replaced the larger');
    cache.offer(info(MessageType.Video), avc(101));
    assert.ok(cache.overflow && cache.refused);
    assert.equal(budget.held, 40);
    cache.clear();
    assert.equal(budget.held, 0);
  });
});
