/**
 * Micro-benchmark of the per-byte work the proxy adds to a relay on the publisher → server path:
 * HandshakeSkipper + ChunkReader + SessionView over the bench's RTMP stream, fed in 64 KiB
 * pieces (what Node's socket reads deliver). Prints CPU-s per Gbit of parsing alone — add it to
 * the Node relay's CPU-s/Gbit from `npm run bench` to see what the hot path costs.
 *
 * Usage: node --import tsx test/bench/micro.ts [seconds per case, default 2]
 */
import { ChunkReader } from '../../src/rtmp/chunk-reader.js';
import { HandshakeSkipper } from '../../src/rtmp/handshake.js';
import { SessionView } from '../../src/rtmp/session-view.js';
import { publishStream, repeatedBlock } from './lib/stream.js';

const seconds = Number(process.argv[2] ?? 2);
const READ = 64 * 1024;
const stream = publishStream();
const big = Buffer.concat([stream.preambleFor(1), repeatedBlock(16 * 1024 * 1024)]);
const pieces: Buffer[] = [];
for (let i = 0; i < big.length; i += READ) pieces.push(big.subarray(i, i + READ));

function run(name: string, make: () => (buf: Buffer) => void): void {
  // Warm up (JIT), then measure whole passes over the stream for about `seconds`.
  for (let k = 0; k < 2; k++) {
    const feed = make();
    for (const p of pieces) feed(p);
  }
  let bytes = 0;
  const t0 = process.cpuUsage();
  const w0 = process.hrtime.bigint();
  while (Number(process.hrtime.bigint() - w0) / 1e9 < seconds) {
    const feed = make();
    for (const p of pieces) feed(p);
    bytes += big.length;
  }
  const cpu = process.cpuUsage(t0);
  const cpuSec = (cpu.user + cpu.system) / 1e6;
  const gbit = (bytes * 8) / 1e9;
  console.log(`${name.padEnd(44)} ${(gbit / cpuSec).toFixed(1).padStart(6)} Gbit/s of one core   ${(cpuSec / gbit).toFixed(4)} CPU-s/Gbit   ${((cpuSec / (bytes / READ)) * 1e9).toFixed(0).padStart(6)} ns per 64 KiB read`);
}

console.log(`stream: ${stream.blockMessages} media messages per ${stream.block.length} byte block, chunk size 4096\n`);
run('ChunkReader, no-op handler', () => {
  const hs = new HandshakeSkipper();
  const r = new ChunkReader({ message() {} });
  return (buf) => {
    const s = hs.done ? 0 : hs.consume(buf, 0);
    if (s < buf.length) r.feed(buf, s);
  };
});
run('ChunkReader + SessionView (as session.ts)', () => {
  const hs = new HandshakeSkipper();
  const view = new SessionView({});
  const r = new ChunkReader({ message: (info, payload) => view.clientMessage(info, payload) });
  return (buf) => {
    const s = hs.done ? 0 : hs.consume(buf, 0);
    if (s < buf.length) r.feed(buf, s);
  };
});
