/**
 * The benchmark's publishers (its own process, driven over IPC by bench.ts).
 *
 * Every connection sends the same valid RTMP publish (lib/stream.ts): the preamble (its `connect`
 * announcing what its publisher kind supports, `publishers` of each call: a mix by id), then slices
 * of one pre-built buffer of repeated media blocks — nothing is encoded or copied per write.
 * - bulk: as fast as the socket takes it (write until `false`, continue on `drain`);
 * - paced: each connection at a fixed bit rate, written every ~30 ms (a frame interval);
 * - idle: preamble only, then silence; each connection parses what comes back with the
 *   project's ChunkReader and records when a Go Away (type 32) arrives;
 * - ping: one connection in echo mode, small messages ping-ponged one at a time.
 * With `tls: true` every connection is RTMPS (TLS to the middle, which forwards plain RTMP).
 */
import net from 'node:net';
import tls from 'node:tls';
import { ChunkReader } from '../../src/rtmp/chunk-reader.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { HandshakeSkipper } from '../../src/rtmp/handshake.js';
import { C0C1_LENGTH, HANDSHAKE_LENGTH, Mode, type PublisherKind, c0c1, kindOf, pingChunk, publishStream, repeatedBlock } from './lib/stream.js';
import { nowSec, serveRpc, sleep } from './lib/proc.js';

const stream = publishStream();
const big = repeatedBlock(8 * 1024 * 1024);
const BULK_WRITE = 1024 * 1024;

interface Conn {
  id: number;
  sock: net.Socket;
  /** Bytes handed to the socket (preamble included). */
  written: number;
  /** Length of this connection's preamble (its publisher kind's connect). */
  preambleBytes: number;
  /** Offset of the next media byte in `big`. */
  off: number;
  received: number;
  /** Paced: media bytes owed at `rate` since `start`. */
  start: number;
  closed: boolean;
  error: string | null;
  goAwayAt: number | null;
}

/** A TCP connection to the middle, or with `secure` a TLS one (RTMPS; the middle's self-signed certificate is accepted). */
function connect(port: number, host: string, secure = false): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = secure ? tls.connect({ port, host, rejectUnauthorized: false }) : net.connect({ port, host, noDelay: true });
    if (secure) s.setNoDelay(true);
    s.once(secure ? 'secureConnect' : 'connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

function newConn(id: number, sock: net.Socket): Conn {
  const c: Conn = { id, sock, written: 0, preambleBytes: 0, off: 0, received: 0, start: 0, closed: false, error: null, goAwayAt: null };
  sock.on('error', (err) => {
    c.error ??= err.message;
  });
  sock.on('close', () => {
    c.closed = true;
  });
  return c;
}

/** Writes the connection's preamble, for its kind in the mix (`--publishers`). */
function writePreamble(c: Conn, kinds: readonly PublisherKind[] | undefined): void {
  const pre = stream.preambleFor(c.id, Mode.Publish, kindOf(kinds ?? ['plain'], c.id));
  c.sock.write(pre);
  c.written += pre.length;
  c.preambleBytes = pre.length;
}

function writeSlice(c: Conn, max: number): boolean {
  const n = Math.min(max, big.length - c.off);
  const ok = c.sock.write(big.subarray(c.off, c.off + n));
  c.written += n;
  c.off += n;
  if (c.off === big.length) c.off = 0;
  return ok;
}

/** Opens `n` connections with at most `parallel` connects in flight; `init` runs on each as it connects. */
async function openMany(
  port: number,
  host: string,
  idBase: number,
  n: number,
  parallel: number,
  init: (c: Conn) => void | Promise<void>,
  secure = false,
): Promise<{ conns: Conn[]; failed: string[] }> {
  const conns: Conn[] = [];
  const failed: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      try {
        const c = newConn(idBase + i, await connect(port, host, secure));
        conns.push(c);
        await init(c);
      } catch (err) {
        failed.push((err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
  return { conns, failed };
}

function endAll(conns: Conn[], timeoutMs = 20_000): Promise<void> {
  return Promise.all(
    conns.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.closed || c.sock.destroyed) return resolve();
          const t = setTimeout(() => {
            c.sock.destroy();
            resolve();
          }, timeoutMs);
          c.sock.once('close', () => {
            clearTimeout(t);
            resolve();
          });
          c.sock.end();
        }),
    ),
  ).then(() => undefined);
}

/** Bytes each connection handed to its socket; connections that saw a socket error are listed apart (their bytes may legitimately be cut short). */
function summary(conns: Conn[]): { written: Record<number, number>; errors: string[]; failedIds: number[] } {
  const written: Record<number, number> = {};
  const errors: string[] = [];
  const failedIds: number[] = [];
  for (const c of conns) {
    written[c.id] = c.written;
    if (c.error !== null) {
      errors.push(`conn ${c.id}: ${c.error}`);
      failedIds.push(c.id);
    }
  }
  return { written, errors, failedIds };
}

// --- bulk -----------------------------------------------------------------------------------

let bulk: { conns: Conn[]; running: boolean } | null = null;

function pump(c: Conn): void {
  if (bulk === null || !bulk.running || c.sock.destroyed) return;
  while (writeSlice(c, BULK_WRITE)) {
    if (!bulk.running) return;
  }
}

// --- paced ----------------------------------------------------------------------------------

let paced: { conns: Conn[]; timer: NodeJS.Timeout; bytesPerSec: number; tick: number; skipped: number } | null = null;
const PACE_TICK_MS = 10;
const PACE_GROUPS = 3;
/** A connection whose socket already holds this much unsent data is skipped this round (it falls behind). */
const PACE_MAX_QUEUED = 512 * 1024;

function paceTick(): void {
  const p = paced!;
  const g = p.tick++ % PACE_GROUPS;
  const now = nowSec();
  for (let i = g; i < p.conns.length; i += PACE_GROUPS) {
    const c = p.conns[i]!;
    if (c.closed) continue;
    let due = Math.floor((now - c.start) * p.bytesPerSec) - (c.written - c.preambleBytes);
    if (due < 1024) continue;
    if (c.sock.writableLength > PACE_MAX_QUEUED) {
      p.skipped++;
      continue;
    }
    while (due > 0) {
      const before = c.written;
      writeSlice(c, due);
      due -= c.written - before;
    }
  }
}

// --- idle -----------------------------------------------------------------------------------

let idle: Conn[] = [];

function watchServer(c: Conn, established: () => void): void {
  const hs = new HandshakeSkipper();
  let answered = false;
  const reader = new ChunkReader({
    message(info) {
      if (info.typeId === MessageType.GoAway && c.goAwayAt === null) c.goAwayAt = nowSec();
    },
  });
  c.sock.on('data', (buf: Buffer) => {
    c.received += buf.length;
    const start = hs.consume(buf, 0);
    if (start < buf.length) reader.feed(buf, start);
    if (!answered && c.received >= stream.serverAnswer.length) {
      answered = true;
      established();
    }
  });
}

serveRpc({
  async bulkStart(args: { port: number; host?: string; tls?: boolean; conns: number; idBase: number; publishers?: PublisherKind[] }) {
    bulk = { conns: [], running: true };
    const { conns, failed } = await openMany(
      args.port,
      args.host ?? '127.0.0.1',
      args.idBase,
      args.conns,
      args.conns,
      (c) => {
        c.sock.on('data', (b: Buffer) => {
          c.received += b.length;
        });
        c.sock.on('drain', () => pump(c));
        writePreamble(c, args.publishers);
      },
      args.tls === true,
    );
    if (failed.length > 0) throw new Error(`bulk: ${failed.length} connections failed: ${failed[0]}`);
    bulk.conns = conns;
    for (const c of conns) pump(c);
    return { opened: conns.length };
  },
  async bulkStop() {
    const b = bulk!;
    b.running = false;
    await endAll(b.conns);
    bulk = null;
    return summary(b.conns);
  },

  async pacedStart(args: {
    port: number;
    host?: string;
    tls?: boolean;
    n: number;
    idBase: number;
    bitsPerSec: number;
    parallel?: number;
    publishers?: PublisherKind[];
  }) {
    const { conns, failed } = await openMany(
      args.port,
      args.host ?? '127.0.0.1',
      args.idBase,
      args.n,
      args.parallel ?? 64,
      (c) => {
        c.sock.on('data', (b: Buffer) => {
          c.received += b.length;
        });
        writePreamble(c, args.publishers);
      },
      args.tls === true,
    );
    // Every publisher's clock starts now, not at its connect: otherwise the first ones would
    // owe the whole set-up time and burst to catch up inside the measured window.
    const start = nowSec();
    for (const c of conns) c.start = start + (c.id % PACE_GROUPS) * 0.001;
    if (failed.length > 0) {
      for (const c of conns) c.sock.destroy();
      throw new Error(`paced: ${failed.length} of ${args.n} connections failed: ${failed[0]}`);
    }
    paced = { conns, timer: setInterval(paceTick, PACE_TICK_MS), bytesPerSec: args.bitsPerSec / 8, tick: 0, skipped: 0 };
    return { opened: conns.length };
  },
  async pacedStop() {
    const p = paced!;
    clearInterval(p.timer);
    paced = null;
    await endAll(p.conns);
    return { ...summary(p.conns), skipped: p.skipped };
  },

  async idleOpen(args: {
    port: number;
    host?: string;
    tls?: boolean;
    n: number;
    idBase: number;
    parallel?: number;
    timeoutMs?: number;
    publishers?: PublisherKind[];
  }) {
    const t0 = nowSec();
    const { conns, failed } = await openMany(
      args.port,
      args.host ?? '127.0.0.1',
      args.idBase,
      args.n,
      args.parallel ?? 100,
      (c) =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`conn ${c.id}: no server answer within ${args.timeoutMs ?? 15_000} ms (got ${c.received} bytes)`)),
            args.timeoutMs ?? 15_000,
          );
          c.sock.once('close', () => reject(new Error(`conn ${c.id}: closed before the server answered`)));
          watchServer(c, () => {
            clearTimeout(timer);
            resolve();
          });
          writePreamble(c, args.publishers);
        }),
      args.tls === true,
    );
    idle.push(...conns);
    return { opened: conns.length - failed.length, failed: failed.length, firstError: failed[0] ?? null, seconds: nowSec() - t0 };
  },
  goAwayStatus() {
    const times = idle.map((c) => c.goAwayAt).filter((t): t is number => t !== null);
    times.sort((a, b) => a - b);
    return {
      sessions: idle.length,
      received: times.length,
      first: times[0] ?? null,
      last: times.at(-1) ?? null,
      median: times[Math.floor(times.length / 2)] ?? null,
      closed: idle.filter((c) => c.closed).length,
    };
  },
  async idleClose() {
    for (const c of idle) c.sock.destroy();
    await sleep(50);
    const n = idle.length;
    idle = [];
    return { closed: n };
  },

  async ping(args: { port: number; host?: string; tls?: boolean; id: number; count: number; warmup: number }) {
    const sock = await connect(args.port, args.host ?? '127.0.0.1', args.tls === true);
    sock.on('error', () => {});
    let need = 0;
    let got = 0;
    let wake: (() => void) | null = null;
    sock.on('data', (b: Buffer) => {
      got += b.length;
      if (got >= need && wake !== null) {
        const w = wake;
        wake = null;
        w();
      }
    });
    const until = (n: number): Promise<void> => {
      need = n;
      if (got >= n) return Promise.resolve();
      return new Promise((r) => (wake = r));
    };
    sock.write(c0c1(Mode.Echo, args.id));
    await until(HANDSHAKE_LENGTH);
    sock.write(Buffer.alloc(HANDSHAKE_LENGTH - C0C1_LENGTH, 5)); // C2
    got -= HANDSHAKE_LENGTH;
    const probe = pingChunk(0);
    const rtts: number[] = [];
    for (let i = 0; i < args.warmup + args.count; i++) {
      probe.writeUInt32BE(i >>> 0, 14);
      const t = process.hrtime.bigint();
      sock.write(probe);
      await until(probe.length);
      const dt = Number(process.hrtime.bigint() - t) / 1000;
      got -= probe.length;
      if (i >= args.warmup) rtts.push(dt);
    }
    sock.destroy();
    rtts.sort((a, b) => a - b);
    const q = (p: number): number => rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))]!;
    return { count: rtts.length, p50: q(0.5), p99: q(0.99), min: rtts[0]!, max: rtts.at(-1)! };
  },
});
