import { BlockList, isIP } from 'node:net';

/** Parses "10.0.0.0/8", "fd00::/8" or a single address; undefined when it is neither. */
export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const parts = text.trim().split('/');
  if (parts.length > 2) return undefined;
  const [address = '', bits] = parts;
  const v = isIP(address);
  if (v === 0) return undefined;
  const max = v === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (bits !== undefined && !/^\d+$/.test(bits))) return undefined;
  return { address, prefix, family: v === 4 ? 'ipv4' : 'ipv6' };
}

/** True for a loopback address (127.0.0.0/8, ::1, also IPv4-mapped), or the name localhost. */
export function isLoopbackAddress(address: string): boolean {
  const a = unmapped(address);
  return a === 'localhost' || a === '::1' || /^127\./.test(a);
}

/** An IPv4 address mapped into IPv6 ("::ffff:10.1.2.3") as the IPv4 address it is. */
export function unmapped(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/** Loopback plus the given CIDRs: who may use an ingress. */
export class AllowList {
  readonly #list = new BlockList();

  constructor(cidrs: readonly string[]) {
    this.#list.addSubnet('127.0.0.0', 8, 'ipv4');
    this.#list.addAddress('::1', 'ipv6');
    for (const c of cidrs) {
      const p = parseCidr(c);
      if (!p) throw new RangeError(`not an IP address or CIDR: ${c}`);
      this.#list.addSubnet(p.address, p.prefix, p.family);
    }
  }

  allows(address: string | undefined): boolean {
    if (address === undefined) return false;
    const a = unmapped(address);
    const v = isIP(a);
    return v !== 0 && this.#list.check(a, v === 4 ? 'ipv4' : 'ipv6');
  }
}
