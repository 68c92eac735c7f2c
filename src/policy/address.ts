/**
 * Addresses: parsing IPv4/IPv6, CIDR ranges, and the built-in address guard —
 * the classes of addresses an agent must not reach unless the policy names
 * them (cloud metadata, loopback, link-local, private and unique-local
 * ranges, CGNAT, unspecified, multicast, broadcast and reserved addresses,
 * and the host agentgate runs on). Sans-IO: the proxy resolves names
 * (`proxy/resolve.ts`), this module only judges addresses.
 *
 * IPv6 spellings that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
 * IPv4-compatible `::a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, NAT64
 * `64:ff9b::/96` and the local-use `64:ff9b:1::/48`) are judged by the IPv4
 * address they embed, so `64:ff9b::a9fe:a9fe` is the metadata address. 6to4
 * (`2002::/16`) and Teredo (`2001::/32`) tunnel to an IPv4 address agentgate
 * cannot judge reliably: they are denied as a class (Smokescreen does too).
 *
 * @example
 * ```ts
 * classifyAddress("64:ff9b::a9fe:a9fe")?.label; // "link-local / cloud metadata"
 * classifyAddress("93.184.216.34"); // null: an ordinary public address
 * ```
 *
 * @module
 */
import type { Destination } from "./types.ts";

/** An address range: the network's bytes (4 or 16) and its prefix length. */
export interface Cidr {
  bytes: Uint8Array;
  bits: number;
}

/** Parses an IPv4 or IPv6 address into 4 or 16 bytes; null when it is neither. */
export function parseIp(text: string): Uint8Array | null {
  let s = text;
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  if (s.includes(":")) return parseIPv6(s);
  return parseIPv4(s);
}

function parseIPv4(s: string): Uint8Array | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

function parseIPv6(s: string): Uint8Array | null {
  const out = new Uint8Array(16);
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const groups = (h: string): number[] | null => {
    if (h === "") return [];
    const result: number[] = [];
    const items = h.split(":");
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = parseIPv4(item);
        if (v4 === null) return null;
        result.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(item)) return null;
        result.push(parseInt(item, 16));
      }
    }
    return result;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (head === null || tail === null) return null;
  if (halves.length === 1 ? head.length !== 8 : head.length + tail.length > 7) return null;
  const all = [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail];
  for (let i = 0; i < 8; i++) {
    out[2 * i] = all[i] >> 8;
    out[2 * i + 1] = all[i] & 0xff;
  }
  return out;
}

/**
 * The canonical text of an address: dotted IPv4, or RFC 5952 IPv6 (lower
 * case, the longest run of zero groups as `::`).
 *
 * @example
 * ```ts
 * formatIp(parseIp("FD00:EC2:0:0:0:0:0:254")!); // "fd00:ec2::254"
 * ```
 */
export function formatIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i] << 8) | b[i + 1]);
  let bestAt = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [bestAt, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(":");
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}

/** `::ffff:a.b.c.d` (IPv4-mapped) → the IPv4 bytes; anything else as it is. */
function unmapped(b: Uint8Array): Uint8Array {
  if (b.length !== 16) return b;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return b;
  return b[10] === 0xff && b[11] === 0xff ? b.subarray(12) : b;
}

/**
 * The canonical text of an address, with an IPv4-mapped IPv6 address as the
 * IPv4 address it is (connecting to one reaches the other); null when `text`
 * is not an address.
 *
 * @example
 * ```ts
 * canonicalIp("::ffff:169.254.169.254"); // "169.254.169.254"
 * canonicalIp("example.com"); // null
 * ```
 */
export function canonicalIp(text: string): string | null {
  // Asked for every request's host (literal or not): remembered, within bounds.
  let c = canonical.get(text);
  if (c === undefined) {
    if (canonical.size >= MAX_CANONICAL) canonical.clear();
    const b = parseIp(text);
    c = b === null ? null : formatIp(unmapped(b));
    canonical.set(text, c);
  }
  return c;
}

const MAX_CANONICAL = 4096;
const canonical = new Map<string, string | null>();

/**
 * Parses `10.0.0.0/8`, `fd00::/8`, `[fd00::]/8` or a single address (all
 * bits). Host bits beyond the prefix must be zero, so a typo is not a silent
 * widening.
 *
 * @example
 * ```ts
 * parseCidr("10.0.0.0/8"); // { bytes: Uint8Array [10, 0, 0, 0], bits: 8 }
 * parseCidr("10.0.0.1/8"); // "10.0.0.1/8 has bits set after the prefix: did you mean 10.0.0.0/8?"
 * ```
 */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf("/");
  const addrText = slash >= 0 ? text.slice(0, slash) : text;
  const raw = parseIp(addrText);
  if (raw === null) return `"${text}" is not an address range such as "10.0.0.0/8" or "fd00::/8"`;
  const bytes = unmapped(raw);
  const max = bytes.length * 8;
  let bits = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    const n = /^\d{1,3}$/.test(p) ? Number(p) : NaN;
    if (!(n <= raw.length * 8)) {
      return `the prefix length of "${text}" must be 0-${raw.length * 8}`;
    }
    bits = raw.length === bytes.length ? n : Math.max(0, n - 96);
  }
  const masked = maskTo(bytes, bits);
  if (masked.some((x, i) => x !== bytes[i])) {
    return `"${text}" has bits set after the prefix: did you mean "${formatIp(masked)}/${bits}"?`;
  }
  return { bytes, bits };
}

function maskTo(b: Uint8Array, bits: number): Uint8Array {
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - 8 * i));
    out[i] = b[i] & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

/** Whether an address (4 or 16 bytes) lies in a range of the same family. */
export function cidrContains(c: Cidr, addr: Uint8Array): boolean {
  if (addr.length !== c.bytes.length) return false;
  let bits = c.bits;
  let i = 0;
  for (; bits >= 8; bits -= 8, i++) if (addr[i] !== c.bytes[i]) return false;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (addr[i] & mask) === (c.bytes[i] & mask);
}

/** `10.0.0.0/8` / `fd00::/8` as written canonically. */
export function formatCidr(c: Cidr): string {
  return `${formatIp(c.bytes)}/${c.bits}`;
}

function range(text: string): Cidr {
  const c = parseCidr(text);
  if (typeof c === "string") throw new Error(c);
  return c;
}

/**
 * The IPv4 addresses an IPv6 address stands for: the IPv4-mapped,
 * -compatible and -translated forms and the NAT64 prefixes (RFC 6052 /
 * 8215), at every prefix length the local-use prefix may have. Empty for an
 * IPv4 address or an ordinary IPv6 one.
 *
 * @example
 * ```ts
 * embeddedIpv4(parseIp("64:ff9b::a9fe:a9fe")!).map(formatIp); // ["169.254.169.254"]
 * ```
 */
export function embeddedIpv4(b: Uint8Array): Uint8Array[] {
  if (b.length !== 16) return [];
  const zeros = (from: number, to: number) => {
    for (let i = from; i < to; i++) if (b[i] !== 0) return false;
    return true;
  };
  const last = b.subarray(12);
  // ::a.b.c.d (compatible; :: and ::1 are classified as themselves), ::ffff:a.b.c.d (mapped),
  // ::ffff:0:a.b.c.d (translated).
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) return [last];
  if (zeros(0, 8) && b[8] === 0xff && b[9] === 0xff && b[10] === 0 && b[11] === 0) return [last];
  if (zeros(0, 12)) return [last];
  // 64:ff9b::/96, the well-known NAT64 prefix.
  if (b[0] === 0 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zeros(4, 12)) {
    return [last];
  }
  // 64:ff9b:1::/48 (local use): the prefix may be /48, /56, /64 or /96 (RFC 6052 §2.2);
  // every layout whose padding (the u octet, the suffix) is zero is a reading of it.
  if (b[0] === 0 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && b[4] === 0 && b[5] === 1) {
    const out: Uint8Array[] = [];
    if (zeros(6, 12)) out.push(last); // /96
    if (b[8] === 0 && zeros(13, 16)) out.push(Uint8Array.of(b[9], b[10], b[11], b[12])); // /64
    if (b[8] === 0 && zeros(12, 16)) out.push(Uint8Array.of(b[7], b[9], b[10], b[11])); // /56
    if (b[8] === 0 && zeros(11, 16)) out.push(Uint8Array.of(b[6], b[7], b[9], b[10])); // /48
    return out.length ? out : [last];
  }
  return [];
}

/** An address class of the built-in guard. */
export interface AddressClass {
  /** Stable id: `metadata`, `loopback`, `private`, … */
  id: string;
  /** Human label for reasons: `link-local / cloud metadata`. */
  label: string;
}

/**
 * Cloud metadata services (instance credentials): AWS (IMDS, ECS task
 * credentials, EKS Pod Identity, IPv6 IMDS), GCP, Azure, OpenStack,
 * DigitalOcean and Oracle (169.254.169.254, Oracle's legacy 192.0.0.192),
 * Alibaba Cloud (100.100.100.200).
 */
export const METADATA_ADDRESSES: readonly string[] = [
  "169.254.169.254",
  "169.254.170.2",
  "169.254.170.23",
  "192.0.0.192",
  "100.100.100.200",
  "fd00:ec2::254",
  "fd00:ec2::23",
];
const METADATA = new Set(METADATA_ADDRESSES);

/** The built-in deny set, in the order a label is chosen; every entry is denied. */
const V4_CLASSES: [Cidr, AddressClass][] = [
  [range("255.255.255.255/32"), { id: "broadcast", label: "broadcast" }],
  [range("0.0.0.0/8"), { id: "unspecified", label: "unspecified / this network" }],
  [range("127.0.0.0/8"), { id: "loopback", label: "loopback" }],
  [range("169.254.0.0/16"), { id: "link-local", label: "link-local" }],
  [range("10.0.0.0/8"), { id: "private", label: "private" }],
  [range("172.16.0.0/12"), { id: "private", label: "private" }],
  [range("192.168.0.0/16"), { id: "private", label: "private" }],
  // Shared address space: carrier NAT, and in clouds and VPNs (Alibaba's metadata,
  // Tailscale) addresses that are internal all the same.
  [range("100.64.0.0/10"), { id: "cgnat", label: "CGNAT / shared address space" }],
  [range("192.0.0.0/24"), { id: "special", label: "IETF protocol assignments" }],
  [range("224.0.0.0/4"), { id: "multicast", label: "multicast" }],
  [range("240.0.0.0/4"), { id: "reserved", label: "reserved" }],
];
const V6_CLASSES: [Cidr, AddressClass][] = [
  [range("::/128"), { id: "unspecified", label: "unspecified" }],
  [range("::1/128"), { id: "loopback", label: "loopback" }],
  [range("fe80::/10"), { id: "link-local", label: "link-local" }],
  [range("fec0::/10"), { id: "private", label: "site-local" }],
  [range("fc00::/7"), { id: "unique-local", label: "unique-local" }],
  [range("ff00::/8"), { id: "multicast", label: "multicast" }],
  [range("2002::/16"), { id: "6to4", label: "6to4 tunnel to an IPv4 address" }],
  [range("2001::/32"), { id: "teredo", label: "Teredo tunnel to an IPv4 address" }],
  [range("100::/64"), { id: "reserved", label: "discard-only" }],
];

/** The address agentgate's host has (given by the proxy), for the `this host` class. */
export const THIS_HOST: AddressClass = { id: "this-host", label: "an address of agentgate's host" };

function classOf(b: Uint8Array): AddressClass | null {
  for (const [c, cls] of b.length === 4 ? V4_CLASSES : V6_CLASSES) {
    if (cidrContains(c, b)) return cls;
  }
  return null;
}

/** What the guard found for one address. */
export interface AddressFinding {
  /** The address as connected to (canonical). */
  ip: string;
  /** The IPv4 address it embeds, when that is what was judged. */
  embeds: string | null;
  cls: AddressClass;
  /** A cloud metadata address: only a rule naming it can allow it (`allow_private` cannot). */
  metadata: boolean;
  /** The address (or what it embeds), for matching a rule's ranges. */
  bytes: Uint8Array[];
}

/**
 * The built-in class of an address, or null for an ordinary (public) one.
 * `local` are agentgate's own addresses (canonical text).
 *
 * @example
 * ```ts
 * classifyAddress("::ffff:10.0.0.1")?.label; // "private"
 * classifyAddress("64:ff9b::a9fe:a9fe")?.embeds; // "169.254.169.254"
 * ```
 */
export function classifyAddress(
  ip: string,
  local: ReadonlySet<string> = EMPTY,
): AddressFinding | null {
  // Addresses repeat (one upstream, many requests): the judgement without the
  // local set is cached; the local set is a lookup of the address and what it embeds.
  let c = judged.get(ip);
  if (c === undefined) {
    if (judged.size >= MAX_JUDGED) judged.clear();
    const raw = parseIp(ip);
    const b = raw && unmapped(raw);
    c = {
      finding: b && judge(b, EMPTY),
      texts: b ? [formatIp(b), ...embeddedIpv4(b).map(formatIp)] : [],
    };
    judged.set(ip, c);
  }
  if (local.size === 0 || !c.texts.some((t) => local.has(t))) return c.finding;
  // One of agentgate's own addresses: judged against this set (kept while the set is).
  let own = judgedLocal.get(local);
  if (own === undefined) judgedLocal.set(local, own = new Map());
  let f = own.get(ip);
  if (f === undefined) {
    if (own.size >= MAX_JUDGED) own.clear();
    own.set(ip, f = judge(unmapped(parseIp(ip)!), local));
  }
  return f;
}

const MAX_JUDGED = 4096;
const judged = new Map<string, { finding: AddressFinding | null; texts: string[] }>();
const judgedLocal = new WeakMap<ReadonlySet<string>, Map<string, AddressFinding | null>>();

function judge(b: Uint8Array, local: ReadonlySet<string>): AddressFinding | null {
  const text = formatIp(b);
  const own = local.has(text);
  const direct = classOf(b);
  if (direct !== null && direct.id !== "6to4" && direct.id !== "teredo" && b.length === 16) {
    // An IPv6 class of its own (loopback, ULA, …): judged as itself.
    return finding(text, null, direct, [b], METADATA.has(text), own);
  }
  if (direct !== null) {
    const v4 = direct.id === "6to4"
      ? b.subarray(2, 6)
      : direct.id === "teredo"
      ? b.subarray(4, 8)
      : null;
    return finding(text, v4 && formatIp(v4), direct, v4 ? [b, v4] : [b], METADATA.has(text), own);
  }
  // Several readings (the local-use NAT64 prefix): metadata first, then any denied one.
  const readings = embeddedIpv4(b).map((v4) => ({ v4, text: formatIp(v4) }));
  readings.sort((x, y) => Number(METADATA.has(y.text)) - Number(METADATA.has(x.text)));
  for (const { v4, text: v4Text } of readings) {
    const cls = classOf(v4);
    if (cls !== null || METADATA.has(v4Text) || local.has(v4Text)) {
      return finding(text, v4Text, cls ?? THIS_HOST, [b, v4], METADATA.has(v4Text), own);
    }
  }
  if (own) return finding(text, null, THIS_HOST, [b], false, true);
  return null;
}

const EMPTY: ReadonlySet<string> = new Set();

function finding(
  ip: string,
  embeds: string | null,
  cls: AddressClass,
  bytes: Uint8Array[],
  metadata: boolean,
  own: boolean,
): AddressFinding {
  // Loopback and unspecified addresses are this host anyway: no need to say it twice.
  const label = metadata
    ? `${cls.label} / cloud metadata`
    : own && cls !== THIS_HOST && cls.id !== "loopback" && cls.id !== "unspecified"
    ? `${cls.label}, ${THIS_HOST.label}`
    : cls.label;
  return { ip, embeds, cls: { id: metadata ? "metadata" : cls.id, label }, metadata, bytes };
}

/** What lets a rule reach addresses of the built-in deny set. */
export interface AddressAllowance {
  /** `allow_private: true`: every class except cloud metadata. */
  allowPrivate: boolean;
  /** The literal addresses and ranges the rule's `match` names. */
  ranges: readonly Cidr[];
}

/**
 * Whether a finding is allowed by a rule's explicit allowance: an address in
 * a range it names (or whose embedded IPv4 address is), or `allow_private`
 * for anything but cloud metadata.
 */
export function allowedBy(f: AddressFinding, allowance: AddressAllowance | null): boolean {
  if (allowance === null) return false;
  if (allowance.allowPrivate && !f.metadata) return true;
  return allowance.ranges.some((c) => f.bytes.some((b) => cidrContains(c, b)));
}

/**
 * The address to connect to among a name's addresses: the first one the
 * built-in guard lets through (so a name with a public and a private address
 * reaches the public one), else the first. Every address is judged.
 *
 * @example
 * ```ts
 * chooseAddress(["10.0.0.7", "93.184.216.34"]); // "93.184.216.34"
 * ```
 */
export function chooseAddress(addresses: readonly string[], local?: ReadonlySet<string>): string {
  for (const a of addresses) if (classifyAddress(a, local) === null) return a;
  return addresses[0];
}

/**
 * The reason a denied address gives: the host, the address (and the IPv4
 * address it embeds) and the class.
 *
 * @example
 * ```ts
 * addressReason("metadata.example", classifyAddress("169.254.169.254")!);
 * // '"metadata.example" resolves to 169.254.169.254 (link-local / cloud metadata): denied'
 * ```
 */
export function addressReason(host: string, f: AddressFinding): string {
  const embeds = f.embeds ? `, which embeds ${f.embeds}` : "";
  const literal = canonicalIp(host) === f.ip;
  return literal
    ? `address ${f.ip}${embeds} (${f.cls.label}): denied`
    : `"${host}" resolves to ${f.ip}${embeds} (${f.cls.label}): denied`;
}

/**
 * Whether an address — or the IPv4 address it embeds (IPv4-mapped, NAT64, …)
 * — lies in a range; false for anything that is not an address.
 *
 * @example
 * ```ts
 * addressInRange(parseCidr("10.0.0.0/8") as Cidr, "64:ff9b::a00:1"); // true
 * addressInRange(parseCidr("10.0.0.0/8") as Cidr, "example.com"); // false
 * ```
 */
export function addressInRange(c: Cidr, ip: string): boolean {
  const raw = parseIp(ip);
  if (raw === null) return false;
  const b = unmapped(raw);
  if (cidrContains(c, b)) return true;
  return c.bytes.length === 4 && embeddedIpv4(b).some((v4) => cidrContains(c, v4));
}

/** The `upstream.resolve` key of a host (every port) or of one port of it. */
export function pinKey(host: string, port: number | null): string {
  return port === null ? host : `${host} ${port}`;
}

/**
 * The destination of a request when it is known without a DNS query: pinned
 * by `upstream.resolve` (the `host:port` key first, then `host`), or an
 * address literal. Null for a name to resolve.
 *
 * @example
 * ```ts
 * knownDestination(new Map(), "169.254.169.254", 80);
 * // { ip: "169.254.169.254", port: 80, addresses: ["169.254.169.254"], pinned: false }
 * ```
 */
export function knownDestination(
  pins: ReadonlyMap<string, { host: string; port: number }>,
  host: string,
  port: number,
): Destination | null {
  const pin = pins.get(pinKey(host, port)) ?? pins.get(pinKey(host, null));
  if (pin !== undefined) {
    const ip = canonicalIp(pin.host) ?? pin.host;
    return { ip, port: pin.port, addresses: [ip], pinned: true };
  }
  const ip = canonicalIp(host);
  return ip === null ? null : { ip, port, addresses: [ip], pinned: false };
}
