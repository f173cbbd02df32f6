/**
 * One node-media-server RTMP backend in its own process (node-media-server keeps its state in a
 * process-wide singleton). Usage: node nms-backend.js <recordDir> <storeDir>
 *
 * Listens on 127.0.0.1 and a free port, records every publish to <recordDir>/<app>/<key>/<ms>.flv,
 * and reports on stdout, one per line: `PORT <n>`, `RECORD_START <path>`, `RECORD_DONE <path>`.
 */
import { createRequire } from 'node:module';
import type net from 'node:net';

interface NmsSession {
  filePath?: string;
  streamPath?: string;
}
interface NodeMediaServerInstance {
  rtmpServer: { tcpServer: net.Server };
  on(event: string, listener: (session: NmsSession) => void): void;
  run(): Promise<void> | void;
  stop(): Promise<void>;
}

const [recordDir, storeDir] = process.argv.slice(2);
if (recordDir === undefined || storeDir === undefined) {
  process.stderr.write('usage: nms-backend <recordDir> <storeDir>\n');
  process.exit(2);
}

const require = createRequire(import.meta.url);
let NodeMediaServer: new (config: unknown) => NodeMediaServerInstance;
let logger: { level: string };
let context: { broadcasts: Map<string, { publishGraceMs: number }> };
try {
  NodeMediaServer = require('node-media-server') as typeof NodeMediaServer;
  logger = require('node-media-server/src/core/logger.js') as typeof logger;
  context = require('node-media-server/src/core/context.js') as typeof context;
} catch {
  process.stderr.write('node-media-server is not installed (it is a devDependency: run `npm ci`)\n');
  process.exit(3);
}

const nms = new NodeMediaServer({
  bind: '127.0.0.1',
  rtmp: { port: 1 }, // replaced by a free port below
  record: { path: recordDir },
  store: { path: storeDir },
  webadmin: { enable: false },
});
logger.level = process.env['NMS_LOG_LEVEL'] ?? 'error';
// Listen on a free port instead of the configured one.
const srv = nms.rtmpServer.tcpServer;
const listen = srv.listen.bind(srv) as (port: number, host: string, cb: () => void) => net.Server;
(srv as unknown as { listen: (port: number, host: string, cb?: () => void) => net.Server }).listen = (_port, host, cb) =>
  listen(0, host, () => {
    cb?.();
    process.stdout.write(`PORT ${(srv.address() as net.AddressInfo).port}\n`);
  });
// node-media-server 4.4 keeps a publish (and its recording) open for 30 s after the publisher
// disconnects, so that "the same client" (same IP) may resume — shifting the resumed stream's
// timestamps past the old ones. An ingest server behind the proxy should end the publish when
// the connection ends, as nginx-rtmp does: no grace window.
nms.on('postPublish', (s) => {
  const b = s.streamPath === undefined ? undefined : context.broadcasts.get(s.streamPath);
  if (b !== undefined) b.publishGraceMs = 0;
});
nms.on('postRecord', (s) => process.stdout.write(`RECORD_START ${s.filePath}\n`));
nms.on('doneRecord', (s) => process.stdout.write(`RECORD_DONE ${s.filePath}\n`));
void nms.run();

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  const done = (): never => process.exit(0);
  setTimeout(done, 2000).unref();
  nms.stop().then(done, done);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
