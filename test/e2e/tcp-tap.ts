/**
 * A recording TCP relay for byte-exactness checks: every connection to `port` is relayed to
 * `target` and the bytes of both directions are kept. Half-close is passed on.
 */
import net from 'node:net';

export interface TapConnection {
  c2s: Buffer[];
  s2c: Buffer[];
  closed: boolean;
  /** Everything the client sent / the server sent, joined. */
  clientBytes(): Buffer;
  serverBytes(): Buffer;
}

export class TcpTap {
  readonly connections: TapConnection[] = [];
  port = 0;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly targetPort: number) {
    this.server = net.createServer({ allowHalfOpen: true }, (client) => this.accept(client));
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  private accept(client: net.Socket): void {
    const conn: TapConnection = {
      c2s: [],
      s2c: [],
      closed: false,
      clientBytes: () => Buffer.concat(conn.c2s),
      serverBytes: () => Buffer.concat(conn.s2c),
    };
    this.connections.push(conn);
    const upstream = net.connect({ host: '127.0.0.1', port: this.targetPort, allowHalfOpen: true });
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      s.on('close', () => {
        this.sockets.delete(s);
        client.destroy();
        upstream.destroy();
        conn.closed = true;
      });
    }
    client.on('data', (d: Buffer) => conn.c2s.push(Buffer.from(d)));
    upstream.on('data', (d: Buffer) => conn.s2c.push(Buffer.from(d)));
    client.pipe(upstream);
    upstream.pipe(client);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
