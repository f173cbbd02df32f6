/**
 * Client-controlled memory of one proxy process, measured (issue 14): the proxy runs as its own
 * process (bin/, so `npm run build` first) with `--max-old-space-size=256` (the chart's memory
 * setting), a fake RTMP backend and the hostile clients run here. Reported from the proxy's
 * /metrics: RSS, V8 heap used, external (Buffer) memory, and the bytes held against the process
 * buffer budget, before and while the clients hold their worst:
 *
 *   - `commands`: N sessions each leaving unfinished command messages on `--csids` chunk streams
 *     (192 KiB sent of 256 KiB each: 2 streams stay just under the 512 KiB session budget, the
 *     most a session can hold without being cut off; more streams push it over);
 *   - `connect`: N sessions each sending the hostile connect (strict arrays of 1,024 empty
 *     objects, ~256 KiB), then staying connected;
 *   - a live publisher sends frames throughout; the report says whether it lost any.
 *
 *   node --import tsx test/bench/hostile-memory.ts [--sessions 20] [--csids 2] [--kind commands|connect] [--proxy-dir .] [-- extra proxy flags]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { ChunkWriter } from '../../src/rtmp/chunk-writer.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { hostileConnect, incompleteCommands } from '../helpers/hostile-amf.js';

const { values: opts, positionals: extra } = parseArgs({
  options: {
    sessions: { type: 'string', default: '20' },
    csids: { type: 'string', default: '2' },
    kind: { type: 'string', default: 'commands' },
    'proxy-dir': { type: 'string', default: '.' },
    'old-space': { type: 'string', default: '256' },
  },
  allowPositionals: true,
});
const N = Number(opts.sessions);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function metrics(admin: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(rtmp_goaway_(?:process_resident_memory_bytes|nodejs_heap_size_used_bytes|nodejs_external_memory_bytes|buffered_bytes)) (\S+)$/.exec(line);
    if (m !== null) out[m[1]!.replace('rtmp_goaway_', '')] = Number(m[2]);
    const f = /^rtmp_goaway_(buffer_budget_exceeded_total|parse_fallbacks_total)\{([^}]*)\} (\S+)$/.exec(line);
    if (f !== null) out[`${f[1]}{${f[2]}}`] = Number(f[3]);
  }
  return out;
}

const MiB = (n: number | undefined): string => `${((n ?? 0) / 1024 / 1024).toFixed(1)} MiB`;

async function main(): Promise<void> {
  const fake = new FakeRtmpServer();
  await fake.listen();
  const [port, admin] = [await freePort(), await freePort()];
  const proxy = spawn(
    process.execPath,
    [
      `--max-old-space-size=${opts['old-space']}`,
      join(opts['proxy-dir']!, 'bin/rtmp-goaway-proxy.js'),
      'serve',
      '--listen',
      `127.0.0.1:${port}`,
      '--admin',
      `127.0.0.1:${admin}`,
      '--backend',
      `fake=127.0.0.1:${fake.port}`,
      '--health-enabled',
      'false',
      '--log-level',
      'error',
      ...extra,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  try {
    for (let i = 0; ; i++) {
      try {
        await metrics(admin);
        break;
      } catch {
        if (i > 100) throw new Error('proxy did not start');
        await sleep(100);
      }
    }
    const live = new RtmpPublisher(`rtmp://127.0.0.1:${port}/live/live`, { supportsGoAway: true, chunkSize: 4096 });
    await live.publish();
    live.on('error', () => {});
    const liveConn = fake.connections.at(-1)!;
    let sent = 0;
    const timer = setInterval(() => {
      if (!live.socket?.destroyed) live.sendMedia(MessageType.Video, sent * 33, Buffer.alloc(3000, sent++ & 0xff));
    }, 20);
    await sleep(1500);
    const base = await metrics(admin);

    const handshake = (): Buffer => {
      const b = randomBytes(3073);
      b[0] = 3;
      return b;
    };
    let bytes: Buffer[];
    if (opts.kind === 'connect') {
      const w = new ChunkWriter();
      const chunkSize = w.write({ csid: 2, timestamp: 0, typeId: MessageType.SetChunkSize, streamId: 0, payload: Buffer.from([0, 0, 16, 0]) });
      w.chunkSize = 4096;
      bytes = [handshake(), chunkSize, w.write({ csid: 3, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: 0, payload: hostileConnect() })];
    } else {
      bytes = [handshake(), ...incompleteCommands({ csids: Number(opts.csids) })];
    }
    const clients: net.Socket[] = [];
    let peak: Record<string, number> = base;
    let died = false;
    const sample = async (): Promise<void> => {
      if (died) return;
      let m: Record<string, number>;
      try {
        m = await metrics(admin);
      } catch {
        died = true;
        return;
      }
      if ((m['process_resident_memory_bytes'] ?? 0) > (peak['process_resident_memory_bytes'] ?? 0)) peak = m;
    };
    for (let i = 0; i < N; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      s.on('data', () => {});
      clients.push(s);
      for (const b of bytes) await new Promise<void>((r) => s.write(b, () => r()));
      if (i % 5 === 4) await sample();
    }
    for (let i = 0; i < 10; i++) {
      await sleep(300);
      await sample();
    }
    const held = died ? {} : await metrics(admin).catch(() => ({}) as Record<string, number>);
    clearInterval(timer);
    const deadline = Date.now() + 10_000;
    while (liveConn.media < sent && Date.now() < deadline) await sleep(50);
    const alive = proxy.exitCode === null && proxy.signalCode === null;
    console.log(
      `kind=${opts.kind} sessions=${N}${opts.kind === 'commands' ? ` csids=${opts.csids}` : ''} proxy=${opts['proxy-dir']} old-space=${opts['old-space']} MiB ${extra.join(' ')}`,
    );
    console.log(
      `  baseline: rss ${MiB(base['process_resident_memory_bytes'])}, heap ${MiB(base['nodejs_heap_size_used_bytes'])}, external ${MiB(base['nodejs_external_memory_bytes'])}`,
    );
    console.log(
      `  peak:     rss ${MiB(peak['process_resident_memory_bytes'])}, heap ${MiB(peak['nodejs_heap_size_used_bytes'])}, external ${MiB(peak['nodejs_external_memory_bytes'])}, budget held ${MiB(peak['buffered_bytes'])}`,
    );
    console.log(
      `  settled:  rss ${MiB(held['process_resident_memory_bytes'])}, heap ${MiB(held['nodejs_heap_size_used_bytes'])}, external ${MiB(held['nodejs_external_memory_bytes'])}, budget held ${MiB(held['buffered_bytes'])}`,
    );
    const d = (peak['process_resident_memory_bytes'] ?? 0) - (base['process_resident_memory_bytes'] ?? 0);
    console.log(`  rss growth ${MiB(d)} = ${(d / N / 1024).toFixed(0)} KiB per hostile session`);
    for (const [k, v] of Object.entries(held)) if (k.includes('{')) console.log(`  ${k} ${v}`);
    console.log(`  proxy alive: ${alive}; live publisher: ${liveConn.media} of ${sent} frames at the backend`);
    for (const s of clients) s.destroy();
    live.destroy();
  } finally {
    proxy.kill();
    await fake.close();
  }
}

await main();
