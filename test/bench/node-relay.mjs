// The baseline middle: a plain Node TCP relay, `socket.pipe` both ways, nothing else.
// TCP_NODELAY on both sockets, as the proxy and HAProxy/nginx use for a real-time stream.
// Usage: node test/bench/node-relay.mjs <backendPort> [backendHost]
// Prints {"port": N} once listening.
import net from 'node:net';

const backendPort = Number(process.argv[2]);
const backendHost = process.argv[3] ?? '127.0.0.1';
const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
  const backend = net.connect({ port: backendPort, host: backendHost, allowHalfOpen: true, noDelay: true });
  client.pipe(backend);
  backend.pipe(client);
  client.on('error', () => backend.destroy());
  backend.on('error', () => client.destroy());
  client.on('close', () => backend.destroy());
  backend.on('close', () => client.destroy());
});
server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
// The bench sends SIGWINCH to read RSS after a full GC too (node runs with --expose-gc).
process.on('SIGWINCH', () => globalThis.gc?.());
