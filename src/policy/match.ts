/**
 * Compiling `match` patterns (`[scheme://]host[:port][/path]`) once at load,
 * and normalizing what the hot path compares against them.
 *
 * @module
 */
import picomatch from "picomatch";
import {
  addressInRange,
  type Cidr,
  embeddedIpv4,
  formatIp,
  parseCidr,
  parseIp,
} from "./address.ts";

/** A compiled `match` pattern. */
export interface Matcher {
  /** The pattern as written. */
  source: string;
  /** null = any scheme. */
  scheme: "http" | "https" | null;
  /** null = any host. Exact hosts compare as strings, globs as a RegExp. */
  host: string | RegExp | null;
  /** The normalized host glob as written (`*.example.com`), null = any host. */
  hostGlob: string | null;
  /** null = any port. */
  port: number | null;
  /** null = any path. */
  path: ((path: string) => boolean) | null;
  /** The path glob as written (for messages), or null. */
  pathGlob: string | null;
  /** True when the path glob ignores case (`match_case: false`). */
  nocase?: boolean;
  /**
   * An address range (`10.0.0.0/8`, `[fd00::]/8`): the pattern matches the
   * address the request connects to — its host when that is an address, else
   * what the name resolves to. `host` is null then; nothing else is set.
   */
  cidr: Cidr | null;
}

/** `10.0.0.0/8`, `fd00::/8` or `[fd00::]/8` (the part after an optional scheme). */
const CIDR_PATTERN =
  /^(?:(\d+\.\d+\.\d+\.\d+)|\[([0-9a-fA-F:.]+)\]|([0-9a-fA-F]*:[0-9a-fA-F:.]*))\/(\d+)$/;

/** Thrown for a pattern that cannot be compiled; `offset` is into the pattern. */
export class PatternError extends Error {
  constructor(message: string, readonly offset = 0) {
    super(message);
    this.name = "PatternError";
  }
}

/** What a host glob may hold (brackets only around an IPv6 address, removed before). */
const HOST_GLOB = /^[a-z0-9*?._\-:]+$/;

/**
 * Compile a match pattern.
 *
 * The host part is a glob where `*` spans any characters including dots
 * (`*.example.com` matches every subdomain, not the apex); the path part uses
 * picomatch semantics (`*` one segment, `**` any depth). `legacy` reads the
 * @agentreserve/proxy form, where a trailing `/*` means any path below.
 * `opts.nocase` makes the path glob case-insensitive (a rule's
 * `match_case: false`: `/ADMIN/x` meets `/admin/**`, as on IIS or a
 * case-insensitive file system).
 *
 * @example
 * const m = compileMatch("*.example.com/v1/**");
 * matchHost(m, "api.example.com", 443) // true
 */
export function compileMatch(
  pattern: string,
  legacy = false,
  opts: {
    nocase?: boolean;
    /** Path matchers already compiled, by glob: a policy's rules share them (less memory). */
    paths?: Map<string, (path: string) => boolean>;
  } = {},
): Matcher {
  let rest = pattern.trim();
  if (rest === "") throw new PatternError("pattern is empty");
  let scheme: Matcher["scheme"] = null;
  const schemeMatch = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(rest);
  if (schemeMatch) {
    const s = schemeMatch[1].toLowerCase();
    if (s !== "http" && s !== "https") {
      throw new PatternError(`unsupported scheme "${s}" (use http or https)`);
    }
    // The legacy format strips the protocol without restricting it.
    scheme = legacy ? null : s;
    rest = rest.slice(schemeMatch[0].length);
  }
  const offset = pattern.length - pattern.trimStart().length + (schemeMatch?.[0].length ?? 0);
  if (rest === "*" || rest === "**") {
    return {
      source: pattern,
      scheme,
      host: null,
      hostGlob: null,
      port: null,
      path: null,
      pathGlob: null,
      cidr: null,
    };
  }
  const cidrMatch = CIDR_PATTERN.exec(rest);
  if (cidrMatch && parseIp(cidrMatch[1] ?? cidrMatch[2] ?? cidrMatch[3]) !== null) {
    const cidr = parseCidr(rest);
    if (typeof cidr === "string") throw new PatternError(cidr, offset);
    return {
      source: pattern,
      scheme,
      host: null,
      hostGlob: null,
      port: null,
      path: null,
      pathGlob: null,
      cidr,
    };
  }
  const slash = rest.indexOf("/");
  let hostPort = slash === -1 ? rest : rest.slice(0, slash);
  let pathGlob: string | null = slash === -1 ? null : rest.slice(slash);
  if (legacy && pathGlob !== null && pathGlob.endsWith("/*")) pathGlob = pathGlob + "*";
  if (pathGlob === "/**") pathGlob = null;

  let port: number | null = null;
  const portMatch = /^(.*?):(\d+|\*)$/.exec(hostPort);
  // A bare IPv6 address has several colons and no port; with a port it is bracketed.
  const colons = hostPort.split(":").length - 1;
  if (portMatch && (hostPort.startsWith("[") ? hostPort.includes("]:") : colons === 1)) {
    hostPort = portMatch[1];
    if (portMatch[2] !== "*") {
      port = Number(portMatch[2]);
      if (port < 1 || port > 65535) {
        throw new PatternError(
          `port ${port} is out of range 1-65535`,
          offset + hostPort.length + 1,
        );
      }
    }
  }
  let host = hostPort.toLowerCase();
  const bracketed = host.startsWith("[") && host.endsWith("]");
  if (bracketed) host = host.slice(1, -1);
  if (host.endsWith(".")) host = host.slice(0, -1);
  if (host === "") throw new PatternError("host part is empty", offset);
  const hostStart = offset + (bracketed ? 1 : 0);
  if (!HOST_GLOB.test(host)) {
    const bad = [...host].findIndex((c) => !/[a-z0-9*?._\-:]/.test(c));
    throw new PatternError(
      `invalid character "${host[bad]}" in host "${host}"`,
      hostStart + Math.max(bad, 0),
    );
  }
  // A host no request can have would make a rule that silently never matches.
  if (host.includes(":") && !bracketed && host.split(":").length < 3) {
    throw new PatternError(
      `invalid port "${host.slice(host.indexOf(":") + 1)}" in "${hostPort}": a port is digits or *`,
      hostStart + host.indexOf(":") + 1,
    );
  }
  if (!host.includes(":")) {
    const empty = host.split(".").findIndex((label) => label === "");
    if (empty !== -1) {
      throw new PatternError(
        `empty label in host "${host}" (a leading dot or "..")`,
        hostStart + host.split(".").slice(0, empty).join(".").length,
      );
    }
  }
  let hostM: Matcher["host"];
  if (host === "*" || host === "**") hostM = null;
  // An exact host compares like request hosts: an address in its canonical spelling.
  else if (!/[*?]/.test(host)) hostM = normalizeHost(host);
  else {
    const re = host.replace(/[.+^${}()|\\\[\]]/g, "\\$&").replace(/\*+/g, ".*").replace(
      /\?/g,
      ".",
    );
    hostM = new RegExp(`^${re}$`);
  }

  let pathM: Matcher["path"] = null;
  const pathKey = `${opts.nocase ? "i:" : ""}${pathGlob}`;
  if (pathGlob !== null && opts.paths?.has(pathKey)) pathM = opts.paths.get(pathKey)!;
  else if (pathGlob !== null) {
    try {
      // dot: a path like /.env must not escape a `/**` deny rule.
      pathM = picomatch(pathGlob, { dot: true, strictSlashes: false, nocase: opts.nocase });
      opts.paths?.set(pathKey, pathM);
    } catch (e) {
      throw new PatternError(
        `invalid path glob "${pathGlob}": ${(e as Error).message}`,
        offset + (slash === -1 ? 0 : slash),
      );
    }
  }
  return {
    source: pattern,
    scheme,
    host: hostM,
    hostGlob: hostM === null ? null : host,
    port,
    path: pathM,
    pathGlob,
    ...(opts.nocase && pathM !== null ? { nocase: true } : {}),
    cidr: null,
  };
}

/** Whether scheme, host and port match (the part a CONNECT tunnel reveals). */
export function matchHost(m: Matcher, host: string, port: number, scheme?: string): boolean {
  if (m.scheme !== null && scheme !== undefined && m.scheme !== scheme) return false;
  if (m.port !== null && m.port !== port) return false;
  // An address range, by the host alone: only an address literal in it (the engine
  // also matches a name by the address it resolves to).
  if (m.cidr !== null) return addressInRange(m.cidr, host);
  if (m.host === null) return true;
  return typeof m.host === "string" ? m.host === host : m.host.test(host);
}

/**
 * Normalize a host for matching: lower-case, no trailing dot, IPv6 without
 * brackets in canonical form (`fd00:ec2:0::254` is `fd00:ec2::254`), and the
 * spellings of an IPv4 address in dotted-quad — numeric forms (`2852039166`,
 * `0xa9.254.169.254`) and the IPv6 forms that embed one (IPv4-mapped,
 * -compatible, -translated, NAT64 `64:ff9b::/96`) — so an agent cannot
 * dodge `169.254.*` with another spelling.
 *
 * @example
 * normalizeHost("Metadata.Google.Internal.") // "metadata.google.internal"
 * normalizeHost("2852039166") // "169.254.169.254"
 * normalizeHost("[64:ff9b::a9fe:a9fe]") // "169.254.169.254"
 */
export function normalizeHost(raw: string): string {
  let h = raw.toLowerCase();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  while (h.endsWith(".")) h = h.slice(0, -1);
  if (h.includes(":")) {
    const b = parseIp(h);
    if (b === null || h.includes("%")) return h;
    // One embedded IPv4 address (the local-use NAT64 prefix has several readings:
    // the address guard judges those).
    const v4 = embeddedIpv4(b);
    const special = formatIp(b) === "::" || formatIp(b) === "::1";
    return v4.length === 1 && !special ? formatIp(v4[0]) : formatIp(b);
  }
  // Only hosts made of digits, dots and hex notation can be IPv4 in disguise.
  if (/^[0-9a-fx.]+$/.test(h) && /^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*$/.test(h)) {
    try {
      const parsed = new URL(`http://${h}/`).hostname;
      if (/^\d+\.\d+\.\d+\.\d+$/.test(parsed)) return parsed;
    } catch {
      // Not a valid IPv4 form: keep the name as it is.
    }
  }
  return h;
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * Normalize a request path for matching: decode percent-escapes of unreserved
 * characters, upper-case the others, and remove dot segments (RFC 3986 6.2.2),
 * so `/%61dmin` and `/v1/../admin` meet an `/admin/**` rule. The request is
 * forwarded unchanged.
 *
 * @example
 * normalizePath("/v1/%2e%2e/admin") // "/admin"
 */
export function normalizePath(raw: string): string {
  let p = raw;
  if (p.includes("%")) {
    p = p.replace(/%([0-9a-fA-F]{2})/g, (all, hex: string) => {
      const c = String.fromCharCode(parseInt(hex, 16));
      return UNRESERVED.test(c) ? c : all.toUpperCase();
    });
  }
  if (!p.startsWith("/")) p = "/" + p;
  if (!p.includes("/.")) return p;
  const out: string[] = [];
  const segs = p.split("/");
  for (let i = 1; i < segs.length; i++) {
    const s = segs[i];
    if (s === ".") {
      if (i === segs.length - 1) out.push("");
    } else if (s === "..") {
      out.pop();
      if (i === segs.length - 1) out.push("");
    } else out.push(s);
  }
  return "/" + out.join("/");
}
