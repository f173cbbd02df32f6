/**
 * Sets of IP subnets written as CIDR text (`10.0.0.0/8`, `2001:db8::/32`, a bare address = one
 * host), for the routing rules' `cidr` condition and the PROXY protocol's trusted sources.
 * Matching is `net.BlockList`'s: an IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, what a
 * dual-stack listener reports) counts as its IPv4 address, and IPv6 subnets that contain the
 * mapped range (`::/0`) match IPv4 clients too.
 */
import net from 'node:net';

/** `::ffff:1.2.3.4` → `1.2.3.4`; other addresses unchanged. */
export function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

export class CidrSet {
  private constructor(
    private readonly list: net.BlockList,
    /** The subnets as given (logs, error messages). */
    readonly text: readonly string[],
  ) {}

  /** Compiles `cidrs`; `invalid` lists every entry that is not an address or `address/prefix`. */
  static parse(cidrs: readonly string[]): { set: CidrSet; invalid: string[] } {
    const list = new net.BlockList();
    const invalid: string[] = [];
    const ok: string[] = [];
    for (const c of cidrs) {
      const [addr, bits, extra] = c.trim().split('/');
      const family = net.isIPv4(addr ?? '') ? 'ipv4' : net.isIPv6(addr ?? '') ? 'ipv6' : null;
      const max = family === 'ipv4' ? 32 : 128;
      const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
      if (family === null || extra !== undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > max) {
        invalid.push(c);
        continue;
      }
      list.addSubnet(addr!, prefix, family);
      ok.push(c.trim());
    }
    return { set: new CidrSet(list, ok), invalid };
  }

  get empty(): boolean {
    return this.text.length === 0;
  }

  /** True when `address` (a socket's or a header's, possibly IPv4-mapped) is in one of the subnets. */
  has(address: string | null | undefined): boolean {
    if (address == null) return false;
    const ip = normalizeIp(address);
    const family = net.isIPv4(ip) ? 'ipv4' : net.isIPv6(ip) ? 'ipv6' : null;
    return family !== null && this.list.check(ip, family);
  }
}
