import { BlockList, isIP } from "node:net";

/**
 * The address an audit event records: the TCP peer, unless the peer is one of
 * our own proxies (TRUSTED_PROXIES), in which case it is the first hop in
 * X-Forwarded-For, read from the right, that is not one of them. Anything a
 * client could have written itself (further left) is never trusted.
 */
export function createClientAddressResolver(trustedProxies: readonly string[]) {
  const trusted = new BlockList();
  for (const cidr of trustedProxies) {
    const [address, bits] = cidr.split("/");
    const family = isIP(address ?? "") === 6 ? "ipv6" : "ipv4";
    if (bits === undefined) trusted.addAddress(address!, family);
    else trusted.addSubnet(address!, Number(bits), family);
  }
  const isTrusted = (ip: string) => {
    const family = isIP(ip);
    return family !== 0 && trusted.check(ip, family === 6 ? "ipv6" : "ipv4");
  };

  return function clientAddress(peer: string | undefined, forwardedFor: string | null): string | undefined {
    const peerIp = normaliseAddress(peer);
    if (peerIp === undefined || !isTrusted(peerIp) || !forwardedFor) return peerIp;
    const hops = forwardedFor.split(",").map((h) => normaliseAddress(h.trim())).filter((h): h is string => !!h && isIP(h) !== 0);
    for (let i = hops.length - 1; i >= 0; i--) {
      if (!isTrusted(hops[i]!)) return hops[i];
    }
    return hops[0] ?? peerIp;
  };
}

/** Node reports IPv4 peers on dual-stack sockets as "::ffff:127.0.0.1"; this gives "127.0.0.1". */
export function normaliseAddress(address: string | undefined): string | undefined {
  if (!address) return undefined;
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/** Validates TRUSTED_PROXIES entries: an IP or a CIDR. Returns a problem, or undefined. */
export function cidrProblem(entry: string): string | undefined {
  const [address, bits, extra] = entry.split("/");
  const family = isIP(address ?? "");
  if (family === 0 || extra !== undefined) return `"${entry}" is not an IP address or CIDR`;
  if (bits !== undefined) {
    const n = Number(bits);
    if (!/^\d+$/.test(bits) || n > (family === 6 ? 128 : 32)) return `"${entry}" has an invalid prefix length`;
  }
  return undefined;
}
