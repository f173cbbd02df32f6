/**
 * A tiny authoritative UDP DNS responder for tests, on 127.0.0.1 only. It answers A, AAAA and SRV
 * questions from a mutable table (change `records` during a test and the next query sees it):
 * a name in the table without records of the asked type gets NOERROR with no answer (NODATA), a name
 * not in the table NXDOMAIN. `fail` makes it answer SERVFAIL; `drop` makes it ignore queries.
 * Point a `dns.promises.Resolver` at it with `setServers([server.address])`.
 */
import dgram from 'node:dgram';
import net from 'node:net';

export interface SrvRecord {
  priority?: number;
  weight?: number;
  port: number;
  target: string;
}

export interface DnsRecords {
  A?: string[];
  AAAA?: string[];
  SRV?: SrvRecord[];
}

const TYPE = { A: 1, AAAA: 28, SRV: 33 } as const;

function encodeName(name: string): Buffer {
  const parts = name
    .replace(/\.$/, '')
    .split('.')
    .filter((p) => p !== '');
  const out: Buffer[] = [];
  for (const p of parts) {
    const b = Buffer.from(p, 'ascii');
    out.push(Buffer.of(b.length), b);
  }
  out.push(Buffer.of(0));
  return Buffer.concat(out);
}

/** Reads the question name at `off`; returns it and the offset after it (no compression in questions). */
function readName(msg: Buffer, off: number): [string, number] {
  const labels: string[] = [];
  for (;;) {
    const len = msg[off];
    if (len === undefined) throw new Error('truncated name');
    if (len === 0) return [labels.join('.'), off + 1];
    if (len >= 0xc0) throw new Error('compressed question name');
    labels.push(msg.toString('ascii', off + 1, off + 1 + len));
    off += 1 + len;
  }
}

function ipv6Bytes(ip: string): Buffer {
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const h = head ? head.split(':').filter((x) => x !== '') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

export class TestDnsServer {
  /** name (lowercase, no trailing dot) → records. Mutate freely. */
  records = new Map<string, DnsRecords>();
  /** Answer SERVFAIL to everything. */
  fail = false;
  /** Ignore queries (the client times out). */
  drop = false;
  /** Questions received, `TYPE name`. */
  readonly queries: string[] = [];
  private readonly socket = dgram.createSocket('udp4');
  port = 0;

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  set(name: string, records: DnsRecords): void {
    this.records.set(name.toLowerCase().replace(/\.$/, ''), records);
  }

  delete(name: string): void {
    this.records.delete(name.toLowerCase().replace(/\.$/, ''));
  }

  async start(): Promise<this> {
    this.socket.on('message', (msg, rinfo) => {
      if (this.drop) return;
      let reply: Buffer | null;
      try {
        reply = this.answer(msg);
      } catch {
        reply = null;
      }
      if (reply) this.socket.send(reply, rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.bind(0, '127.0.0.1', () => {
        this.socket.off('error', reject);
        resolve();
      });
    });
    this.port = this.socket.address().port;
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => this.socket.close(() => r()));
  }

  private answer(msg: Buffer): Buffer | null {
    if (msg.length < 12) return null;
    const id = msg.readUInt16BE(0);
    const flags = msg.readUInt16BE(2);
    if (flags & 0x8000) return null; // a response, not a query
    const qd = msg.readUInt16BE(4);
    if (qd !== 1) return null;
    const [qname, after] = readName(msg, 12);
    const qtype = msg.readUInt16BE(after);
    const question = msg.subarray(12, after + 4);
    const name = qname.toLowerCase();
    this.queries.push(`${Object.entries(TYPE).find(([, v]) => v === qtype)?.[0] ?? qtype} ${name}`);
    const rd = flags & 0x0100;
    const header = (rcode: number, ancount: number): Buffer => {
      const h = Buffer.alloc(12);
      h.writeUInt16BE(id, 0);
      h.writeUInt16BE(0x8000 | 0x0400 | rd | 0x0080 | rcode, 2); // QR, AA, RD echoed, RA
      h.writeUInt16BE(1, 4);
      h.writeUInt16BE(ancount, 6);
      return h;
    };
    if (this.fail) return Buffer.concat([header(2, 0), question]);
    const rec = this.records.get(name);
    if (!rec) return Buffer.concat([header(3, 0), question]);
    const answers: Buffer[] = [];
    const rr = (type: number, rdata: Buffer): Buffer => {
      const b = Buffer.alloc(12);
      b.writeUInt16BE(0xc00c, 0); // name: pointer to the question
      b.writeUInt16BE(type, 2);
      b.writeUInt16BE(1, 4); // IN
      b.writeUInt32BE(1, 6); // TTL 1 s
      b.writeUInt16BE(rdata.length, 10);
      return Buffer.concat([b, rdata]);
    };
    if (qtype === TYPE.A) for (const ip of rec.A ?? []) if (net.isIPv4(ip)) answers.push(rr(TYPE.A, Buffer.from(ip.split('.').map(Number))));
    if (qtype === TYPE.AAAA) for (const ip of rec.AAAA ?? []) if (net.isIPv6(ip)) answers.push(rr(TYPE.AAAA, ipv6Bytes(ip)));
    if (qtype === TYPE.SRV) {
      for (const s of rec.SRV ?? []) {
        const fixed = Buffer.alloc(6);
        fixed.writeUInt16BE(s.priority ?? 0, 0);
        fixed.writeUInt16BE(s.weight ?? 0, 2);
        fixed.writeUInt16BE(s.port, 4);
        answers.push(rr(TYPE.SRV, Buffer.concat([fixed, encodeName(s.target)])));
      }
    }
    return Buffer.concat([header(0, answers.length), question, ...answers]);
  }
}
