// Runs one node-media-server RTMP backend on an ephemeral port and prints `PORT <n>` when ready.
// node-media-server keeps its state in a process-wide singleton, so each backend is its own process.
const NodeMediaServer = require('node-media-server');
const logger = require('node-media-server/src/core/logger.js');
const nms = new NodeMediaServer({ bind: '127.0.0.1', rtmp: { port: 1 }, store: { path: process.cwd() }, webadmin: { enable: false } });
logger.level = process.env.NMS_LOG_LEVEL || 'error';
// Listen on port 0 instead of the configured one: patch the listen call through the server object.
const srv = nms.rtmpServer.tcpServer;
const origListen = srv.listen.bind(srv);
srv.listen = (_port, host, cb) => origListen(0, host, () => {
  if (cb) cb();
  process.stdout.write(`PORT ${srv.address().port}\n`);
});
nms.run();
process.on('SIGTERM', () => { srv.close(); process.exit(0); });
