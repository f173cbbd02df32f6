/**
 * Micro-benchmark of the per-byte work the proxy adds to a relay on the publisher → server path:
 * HandshakeSkipper + ChunkReader + SessionView over the bench's RTMP stream, fed in 64 KiB
 * pieces (what Node's socket reads deliver), for a publisher that announces Go Away and for one
 * that does not (which, under the default `drain.nonCapable: migrate`, keeps its sequence headers
 * and metadata for a migration). Prints CPU-s per Gbit of parsing alone — add it to the Node
 * relay's CPU-s/Gbit from `npm run bench` to see what the hot path costs. The cases run
 * interleaved, `rounds` times, and the median is printed: on a shared machine compare the cases
 * of one run, not runs.
 *
 * Usage: node --import tsx test/bench/micro.ts [seconds per case and round, default 1] [rounds, default 5]
 *        MICRO_CASE=i MICRO_PASSES=n node --import tsx test/bench/micro.ts   one case, a fixed n passes
 *        over the stream after the warm-up, nothing timed: for instruction counts (valgrind
 *        --tool=callgrind; the difference between two pass counts is the work of the passes).
 */
import { ChunkReader, type MessageInfo } from '../../src/rtmp/chunk-reader.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { HandshakeSkipper } from '../../src/rtmp/handshake.js';
import { SessionView } from '../../src/rtmp/session-view.js';
import { MediaCache, migrationCollectPolicy } from '../../src/proxy/migration/media-cache.js';
import { type PublisherKind, publishStream, repeatedBlock } from './lib/stream.js';

const seconds = Number(process.argv[2] ?? 1);
const rounds = Number(process.argv[3] ?? 5);
const READ = 64 * 1024;
const stream = publishStream();
const bodies = repeatedBlock(16 * 1024 * 1024);
const piecesOf = (kind: PublisherKind): { bytes: number; pieces: Buffer[] } => {
  const big = Buffer.concat([stream.preambleFor(1, undefined, kind), bodies]);
  const pieces: Buffer[] = [];
  for (let i = 0; i < big.length; i += READ) pieces.push(big.subarray(i, i + READ));
  return { bytes: big.length, pieces };
};
const plain = piecesOf('plain');
const goaway = piecesOf('goaway');

/** The C→S side of a Session in pass mode (session.ts onClientData / onClientMessage / onConnectSeen), without sockets. */
function sessionFeed(): (buf: Buffer) => void {
  const hs = new HandshakeSkipper();
  const view = new SessionView({});
  let cache: MediaCache | null = null;
  const reader = new ChunkReader({
    message(info: MessageInfo, payload: Buffer | null) {
      if (payload !== null) {
        const t = info.typeId;
        if (cache !== null && (t === MessageType.Video || t === MessageType.Audio || t === MessageType.DataAmf0 || t === MessageType.DataAmf3))
          cache.offer(info, payload);
      }
      view.clientMessage(info, payload);
    },
  });
  return (buf) => {
    const s = hs.done ? 0 : hs.consume(buf, 0);
    if (s >= buf.length) return;
    const hadConnect = view.facts.connect !== null;
    reader.feed(buf, s);
    if (!hadConnect && view.facts.connect !== null && !view.facts.connect.supportsGoAway) {
      cache = new MediaCache(64 * 1024);
      reader.setCollectPolicy(migrationCollectPolicy);
    }
  };
}

interface Case {
  name: string;
  input: { bytes: number; pieces: Buffer[] };
  make: () => (buf: Buffer) => void;
  samples: number[];
}

const cases: Case[] = [
  {
    name: 'ChunkReader, no-op handler',
    input: goaway,
    make: () => {
      const hs = new HandshakeSkipper();
      const r = new ChunkReader({ message() {} });
      return (buf) => {
        const s = hs.done ? 0 : hs.consume(buf, 0);
        if (s < buf.length) r.feed(buf, s);
      };
    },
    samples: [],
  },
  { name: 'as session.ts, publisher with Go Away', input: goaway, make: sessionFeed, samples: [] },
  { name: 'as session.ts, plain publisher (migrate)', input: plain, make: sessionFeed, samples: [] },
];

function measure(c: Case): number {
  let bytes = 0;
  const t0 = process.cpuUsage();
  const w0 = process.hrtime.bigint();
  while (Number(process.hrtime.bigint() - w0) / 1e9 < seconds) {
    const feed = c.make();
    for (const p of c.input.pieces) feed(p);
    bytes += c.input.bytes;
  }
  const cpu = process.cpuUsage(t0);
  return (cpu.user + cpu.system) / 1e6 / ((bytes * 8) / 1e9);
}

const pass = (c: Case): void => {
  const feed = c.make();
  for (const p of c.input.pieces) feed(p);
};
if (process.env['MICRO_CASE'] !== undefined) {
  const c = cases[Number(process.env['MICRO_CASE'])]!;
  for (let k = 0; k < 2; k++) pass(c);
  for (let k = Number(process.env['MICRO_PASSES'] ?? 1); k > 0; k--) pass(c);
  process.exit(0);
}
// Warm up (JIT) every case, then interleave.
for (const c of cases) for (let k = 0; k < 2; k++) pass(c);
for (let r = 0; r < rounds; r++) for (const c of cases) c.samples.push(measure(c));

console.log(
  `stream: ${stream.blockMessages} media messages per ${stream.block.length} byte block, chunk size 4096; ${rounds} rounds of ${seconds} s, median (min–max)\n`,
);
for (const c of cases) {
  const s = [...c.samples].sort((a, b) => a - b);
  const med = s[Math.floor(s.length / 2)]!;
  const perRead = (x: number): number => x * ((READ * 8) / 1e9) * 1e9;
  console.log(
    `${c.name.padEnd(44)} ${med.toFixed(5)} CPU-s/Gbit (${s[0]!.toFixed(5)}–${s.at(-1)!.toFixed(5)})   ${perRead(med).toFixed(0).padStart(6)} ns per 64 KiB read`,
  );
}
