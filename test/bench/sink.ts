/**
 * The benchmark's ingest server (its own process, driven over IPC by bench.ts).
 *
 * For a publisher connection it answers like nginx-rtmp — the captured S0+S1+S2, Window Ack
 * Size, Set Peer Bandwidth, Set Chunk Size, `_result`s and `NetStream.Publish.Start`, sent once
 * C0+C1 is in — then discards what follows, sending an Acknowledgement every 5,000,000 bytes
 * like nginx-rtmp. For a ping connection (mode in C1) it echoes every byte after C2.
 *
 * It counts the bytes of every connection (by the id the load generator put in C1) and, with
 * `verify`, checks each byte against the stream the generator sends, so a middle that drops,
 * duplicates or reorders a byte is caught.
 */
import net from 'node:net';
import { ACK_WINDOW, C0C1_LENGTH, HANDSHAKE_LENGTH, Mode, ackChunk, parseC0C1, publishStream, serverHandshake } from './lib/stream.js';
import { nowSec, serveRpc } from './lib/proc.js';

interface ConnStats {
  id: number;
  mode: number;
  bytes: number;
  ended: boolean;
  closed: boolean;
  /** Stream offset of the first byte that differed from what the generator sends, or -1. */
  mismatchAt: number;
}

const stream = publishStream();
const { block } = stream;
const stats = new Map<number, ConnStats>();
let verify = false;
let anonymous = 0x7fffffff;
let connections = 0;

/** Compares `buf`, which sits at stream offset `o`, with what the generator sends; returns the first bad offset or -1. */
function check(pre: Buffer, buf: Buffer, o: number): number {
  let i = 0;
  while (i < buf.length) {
    let n: number;
    let bad: boolean;
    if (o < pre.length) {
      n = Math.min(pre.length - o, buf.length - i);
      bad = buf.compare(pre, o, o + n, i, i + n) !== 0;
    } else {
      const bo = (o - pre.length) % block.length;
      n = Math.min(block.length - bo, buf.length - i);
      bad = buf.compare(block, bo, bo + n, i, i + n) !== 0;
    }
    if (bad) {
      for (let k = 0; k < n; k++) {
        const want = o + k < pre.length ? pre[o + k] : block[(o + k - pre.length) % block.length];
        if (buf[i + k] !== want) return o + k;
      }
    }
    i += n;
    o += n;
  }
  return -1;
}

function accept(sock: net.Socket): void {
  connections++;
  sock.setNoDelay(true);
  let head: Buffer | null = Buffer.alloc(0);
  let st: ConnStats | null = null;
  let nextAck = ACK_WINDOW;
  let pre: Buffer | null = null;
  let echoFrom = 0;
  sock.on('error', () => {});
  sock.on('end', () => {
    if (st !== null) st.ended = true;
    sock.end();
  });
  sock.on('close', () => {
    connections--;
    if (st !== null) st.closed = true;
  });
  const onData = (buf: Buffer): void => {
    if (st === null) {
      head = Buffer.concat([head!, buf]);
      if (head.length < C0C1_LENGTH) return;
      const m = parseC0C1(head);
      st = { id: m?.id ?? anonymous--, mode: m?.mode ?? Mode.Publish, bytes: 0, ended: false, closed: false, mismatchAt: -1 };
      stats.set(st.id, st);
      if (st.mode === Mode.Echo) {
        sock.write(serverHandshake(head));
        echoFrom = HANDSHAKE_LENGTH;
      } else {
        sock.write(stream.serverAnswer);
        if (verify && m !== null) pre = stream.preambleFor(m.id, Mode.Publish, m.kind);
      }
      buf = head;
      head = null;
    }
    const o = st.bytes;
    st.bytes += buf.length;
    if (st.mode === Mode.Echo) {
      if (st.bytes > echoFrom) sock.write(o >= echoFrom ? buf : buf.subarray(echoFrom - o));
      return;
    }
    if (pre !== null && st.mismatchAt < 0) st.mismatchAt = check(pre, buf, o);
    if (st.bytes >= nextAck) {
      sock.write(ackChunk(st.bytes));
      nextAck = st.bytes + ACK_WINDOW;
    }
  };
  sock.on('data', onData);
}

const servers = new Map<number, net.Server>();

serveRpc({
  /** Opens a new listener (one per middle instance, so no two phases share a port and its TIME_WAITs). */
  async listen(args: { host?: string; verify?: boolean }) {
    if (args.verify !== undefined) verify = args.verify;
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, accept);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: args.host ?? '127.0.0.1', port: 0, backlog: 4096 }, () => resolve());
    });
    const port = (server.address() as net.AddressInfo).port;
    servers.set(port, server);
    return { port };
  },
  closeServer(args: { port: number }) {
    servers.get(args.port)?.close();
    servers.delete(args.port);
    return null;
  },
  /** Byte counts of connections lo ≤ id < hi (per connection, indexed by id - lo). */
  snapshot(args: { lo: number; hi: number; perConn?: boolean }) {
    const t = nowSec();
    let total = 0;
    let seen = 0;
    let ended = 0;
    let closed = 0;
    const mismatches: { id: number; at: number }[] = [];
    const per: number[] | null = args.perConn ? new Array<number>(args.hi - args.lo).fill(0) : null;
    for (let id = args.lo; id < args.hi; id++) {
      const s = stats.get(id);
      if (s === undefined) continue;
      seen++;
      total += s.bytes;
      if (s.ended) ended++;
      if (s.closed) closed++;
      if (s.mismatchAt >= 0) mismatches.push({ id, at: s.mismatchAt });
      if (per !== null) per[id - args.lo] = s.bytes;
    }
    return { t, total, seen, ended, closed, mismatches, per, connections };
  },
  forget(args: { lo: number; hi: number }) {
    for (let id = args.lo; id < args.hi; id++) stats.delete(id);
    return null;
  },
  setVerify(args: { verify: boolean }) {
    verify = args.verify;
    return null;
  },
});
