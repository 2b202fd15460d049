import net from "node:net";

/**
 * Which hosts a user's callback may never reach (SSRF): anything that is not a public unicast
 * address, and the names that always lead inside (localhost, cloud metadata). Pure functions,
 * no DNS: callers resolve names themselves and check every answer.
 *
 * The same classes are refused at connect time by request-filtering-agent (see safe-http.ts);
 * this list is at least as strict, so a URL accepted here is never one the agent would refuse
 * on its face.
 */

interface Range {
  family: 4 | 6;
  base: bigint;
  bits: number;
  reason: string;
}

const V4_BITS = 32;
const V6_BITS = 128;

/** First match wins: metadata endpoints come first so that refusals name them. */
const RANGES: Range[] = [
  // AWS, GCP, Azure, OpenStack; ECS task metadata; Alibaba; AWS over IPv6.
  range("169.254.169.254/32", "cloud metadata"),
  range("169.254.170.2/32", "cloud metadata"),
  range("100.100.100.200/32", "cloud metadata"),
  range("fd00:ec2::254/128", "cloud metadata"),

  range("0.0.0.0/8", "unspecified"),
  range("10.0.0.0/8", "private"),
  range("100.64.0.0/10", "carrier-grade NAT"),
  range("127.0.0.0/8", "loopback"),
  range("169.254.0.0/16", "link-local"),
  range("172.16.0.0/12", "private"),
  range("192.0.0.0/24", "reserved"),
  range("192.0.2.0/24", "documentation"),
  range("192.88.99.0/24", "reserved"),
  range("192.168.0.0/16", "private"),
  range("198.18.0.0/15", "benchmarking"),
  range("198.51.100.0/24", "documentation"),
  range("203.0.113.0/24", "documentation"),
  range("224.0.0.0/4", "multicast"),
  range("240.0.0.0/4", "reserved"),

  range("::/128", "unspecified"),
  range("::1/128", "loopback"),
  range("64:ff9b::/96", "NAT64"),
  range("64:ff9b:1::/48", "NAT64"),
  range("100::/64", "discard"),
  range("2001::/23", "reserved"),
  range("2001:db8::/32", "documentation"),
  range("2002::/16", "6to4"),
  range("3fff::/20", "documentation"),
  range("fc00::/7", "unique local"),
  range("fe80::/10", "link-local"),
  range("fec0::/10", "site-local"),
  range("ff00::/8", "multicast"),
];

const V4_MAPPED = range("::ffff:0:0/96", "IPv4-mapped");
/** IPv6 global unicast: every other IPv6 block is reserved or special-purpose. */
const V6_GLOBAL = range("2000::/3", "global unicast");

/** Names refused without asking DNS; each suffix also covers its subdomains. */
const FORBIDDEN_NAMES: Array<{ suffix: string; reason: string }> = [
  { suffix: "localhost", reason: "loopback" },
  { suffix: "localhost.localdomain", reason: "loopback" },
  { suffix: "metadata.google.internal", reason: "cloud metadata" },
  { suffix: "metadata", reason: "cloud metadata" },
  { suffix: "instance-data", reason: "cloud metadata" },
  // Reserved for private use (ICANN, 2024) and multicast DNS: never public.
  { suffix: "internal", reason: "internal name" },
  { suffix: "local", reason: "internal name" },
];

/**
 * Why this IP address may not be called back, or null when it is a public unicast address.
 * Takes an address in the usual notation (`127.0.0.1`, `::1`, `::ffff:7f00:1`); anything else
 * (a name, a number that is not an address) is refused as "not an IP address".
 */
export function forbiddenAddressReason(ip: string): string | null {
  const parsed = parseIp(ip);
  if (!parsed) return "not an IP address";
  const { family, value } = parsed;
  if (family === 6 && inRange(V4_MAPPED, 6, value)) {
    // Such an address connects to its IPv4 half; public ones are refused too (the connect-time
    // filter does the same, and no public service publishes a mapped address in DNS).
    const inner = forbiddenAddressReason(v4String(value & 0xffffffffn));
    return inner ? `${inner} (IPv4-mapped)` : "IPv4-mapped";
  }
  const hit = RANGES.find((r) => inRange(r, family, value));
  if (hit) return hit.reason;
  if (family === 6 && !inRange(V6_GLOBAL, 6, value)) return "reserved";
  return null;
}

export function isForbiddenAddress(ip: string): boolean {
  return forbiddenAddressReason(ip) !== null;
}

/**
 * A URL host as every HTTP client will read it: lowercased, IDNA-mapped, IPv4 in dotted-quad
 * form, IPv6 in brackets. The legacy IPv4 spellings that URL parsers and `inet_aton` still
 * honour (`2130706433`, `0x7f.1`, `017700000001`, `127.1`) and percent-escapes come out as the
 * address they stand for. Null when the text is not a host on its own (it holds a path, a
 * port, credentials...) or not a valid host at all.
 */
export function canonicalHost(host: string): string | null {
  // A port, credentials, a path, a query or a fragment: not a host on its own.
  if (/[@/\\?#]/.test(host) || /:(?![^[]*\])/.test(host)) return null;
  let url: URL;
  try {
    url = new URL(`http://${host}/`);
  } catch {
    return null;
  }
  return url.pathname === "/" ? url.hostname : null;
}

/** The IP address a URL host stands for, in canonical notation, or null for a name. */
export function ipLiteral(host: string): string | null {
  if (net.isIP(host)) return host;
  const canonical = canonicalHost(host);
  if (!canonical) return null;
  const bare = canonical.startsWith("[") ? canonical.slice(1, -1) : canonical;
  return net.isIP(bare) ? bare : null;
}

/**
 * Why a URL host may not be called back without looking at DNS, or null when only its DNS
 * answers can tell. IP literals in any spelling are judged by their address; names by the
 * list above (case, IDNA look-alikes and a trailing dot do not matter).
 */
export function forbiddenHostReason(host: string): string | null {
  const ip = ipLiteral(host);
  if (ip) return forbiddenAddressReason(ip);
  const canonical = canonicalHost(host);
  if (!canonical) return "not a valid host name";
  const name = canonical.replace(/\.$/, "");
  if (!name) return "not a valid host name";
  const hit = FORBIDDEN_NAMES.find((n) => name === n.suffix || name.endsWith(`.${n.suffix}`));
  return hit ? hit.reason : null;
}

function range(cidr: string, reason: string): Range {
  const [ip, bits] = cidr.split("/") as [string, string];
  const parsed = parseIp(ip);
  if (!parsed) throw new Error(`bad CIDR ${cidr}`);
  return { family: parsed.family, base: parsed.value, bits: Number(bits), reason };
}

function inRange(r: Range, family: 4 | 6, value: bigint): boolean {
  if (r.family !== family) return false;
  const shift = BigInt((family === 4 ? V4_BITS : V6_BITS) - r.bits);
  return value >> shift === r.base >> shift;
}

function parseIp(ip: string): { family: 4 | 6; value: bigint } | null {
  if (net.isIPv4(ip)) return { family: 4, value: v4Value(ip) };
  // A zone (`fe80::1%eth0`) names an interface, not an address.
  const bare = ip.split("%")[0]!;
  if (!net.isIPv6(bare)) return null;
  let text = bare.toLowerCase();
  const lastColon = text.lastIndexOf(":");
  const tail = text.slice(lastColon + 1);
  if (tail.includes(".")) {
    // Trailing dotted quad (`::ffff:127.0.0.1`): two more 16-bit groups.
    const v4 = v4Value(tail);
    text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, rest] = text.split("::") as [string, string | undefined];
  const headGroups = head ? head.split(":") : [];
  const restGroups = rest ? rest.split(":") : [];
  const zeros =
    rest === undefined ? [] : Array(8 - headGroups.length - restGroups.length).fill("0");
  const groups = [...headGroups, ...zeros, ...restGroups];
  const value = groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
  return { family: 6, value };
}

function v4Value(ip: string): bigint {
  return ip.split(".").reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function v4String(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => Number((value >> s) & 0xffn)).join(".");
}
