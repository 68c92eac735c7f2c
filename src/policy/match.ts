/**
 * Compiling `match` patterns (`[scheme://]host[:port][/path]`) once at load,
 * and normalizing what the hot path compares against them.
 *
 * @module
 */
import picomatch from "picomatch";

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
}

/** Thrown for a pattern that cannot be compiled; `offset` is into the pattern. */
export class PatternError extends Error {
  constructor(message: string, readonly offset = 0) {
    super(message);
    this.name = "PatternError";
  }
}

const HOST_GLOB = /^[a-z0-9*?._\-:\[\]]+$/;

/**
 * Compile a match pattern.
 *
 * The host part is a glob where `*` spans any characters including dots
 * (`*.example.com` matches every subdomain, not the apex); the path part uses
 * picomatch semantics (`*` one segment, `**` any depth). `legacy` reads the
 * @agentreserve/proxy form, where a trailing `/*` means any path below.
 *
 * @example
 * const m = compileMatch("*.example.com/v1/**");
 * matchHost(m, "api.example.com", 443) // true
 */
export function compileMatch(
  pattern: string,
  legacy = false,
  /** Path matchers already compiled, by glob: a policy's rules share them (less memory). */
  paths?: Map<string, (path: string) => boolean>,
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
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host.endsWith(".")) host = host.slice(0, -1);
  if (host === "") throw new PatternError("host part is empty", offset);
  if (!HOST_GLOB.test(host)) {
    const bad = [...host].findIndex((c) => !/[a-z0-9*?._\-:\[\]]/.test(c));
    throw new PatternError(
      `invalid character "${host[bad]}" in host "${host}"`,
      offset + Math.max(bad, 0),
    );
  }
  let hostM: Matcher["host"];
  if (host === "*" || host === "**") hostM = null;
  else if (!/[*?]/.test(host)) hostM = host;
  else {
    const re = host.replace(/[.+^${}()|\\\[\]]/g, "\\$&").replace(/\*+/g, ".*").replace(
      /\?/g,
      ".",
    );
    hostM = new RegExp(`^${re}$`);
  }

  let pathM: Matcher["path"] = null;
  if (pathGlob !== null && paths?.has(pathGlob)) pathM = paths.get(pathGlob)!;
  else if (pathGlob !== null) {
    try {
      // dot: a path like /.env must not escape a `/**` deny rule.
      pathM = picomatch(pathGlob, { dot: true, strictSlashes: false });
      paths?.set(pathGlob, pathM);
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
  };
}

/** Whether scheme, host and port match (the part a CONNECT tunnel reveals). */
export function matchHost(m: Matcher, host: string, port: number, scheme?: string): boolean {
  if (m.scheme !== null && scheme !== undefined && m.scheme !== scheme) return false;
  if (m.port !== null && m.port !== port) return false;
  if (m.host === null) return true;
  return typeof m.host === "string" ? m.host === host : m.host.test(host);
}

/**
 * Normalize a host for matching: lower-case, no trailing dot, IPv6 without
 * brackets, and numeric IPv4 forms (`2852039166`, `0xa9.254.169.254`) in
 * dotted-quad, so an agent cannot dodge `169.254.*` with another spelling.
 *
 * @example
 * normalizeHost("Metadata.Google.Internal.") // "metadata.google.internal"
 * normalizeHost("2852039166") // "169.254.169.254"
 */
export function normalizeHost(raw: string): string {
  let h = raw.toLowerCase();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  while (h.endsWith(".")) h = h.slice(0, -1);
  // IPv4-mapped IPv6 (::ffff:169.254.169.254 or ::ffff:a9fe:a9fe) is the IPv4 address.
  const mapped = /^(?:0{0,4}:){0,5}:?ffff:(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/
    .exec(h);
  if (mapped) {
    if (mapped[1]) return mapped[1];
    const hi = parseInt(mapped[2], 16), lo = parseInt(mapped[3], 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
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
