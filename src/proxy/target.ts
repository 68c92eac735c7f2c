/**
 * Request-targets: absolute-form (`http://host:port/path?q`) and CONNECT's
 * authority-form (`host:port`), parsed without re-encoding the path. Shared
 * by the proxy and by policy tests, which build the same requests.
 *
 * @module
 */
import { normalizeHost } from "../policy/match.ts";

/** A request-target parsed from absolute-form or CONNECT authority-form. */
export interface Target {
  scheme: "http" | "https";
  host: string;
  port: number;
  /** Path and query as sent. */
  rawPath: string;
  /** host[:port] as the client wrote it (the Host header we send). */
  authority: string;
}

/** Parse `http://host[:port]/path?q` without re-encoding the path. */
export function parseAbsolute(url: string): Target | null {
  const m = /^(https?):\/\/([^/?#\s]+)([^#\s]*)/i.exec(url);
  if (!m) return null;
  const scheme = m[1].toLowerCase() as "http" | "https";
  const authority = m[2];
  if (authority.includes("@")) return null; // userinfo in a request-target is not allowed
  const hp = parseAuthority(authority, scheme === "https" ? 443 : 80);
  if (!hp) return null;
  let rawPath = m[3] || "/";
  if (rawPath.startsWith("?")) rawPath = "/" + rawPath;
  return { scheme, host: hp.host, port: hp.port, rawPath, authority };
}

/** `host:port` / `[v6]:port` -> parts; null when malformed. */
export function parseAuthority(
  authority: string,
  defaultPort: number | null,
): { host: string; port: number } | null {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\[\]\s]+)(?::(\d{1,5}))?$/.exec(authority);
  if (!m) return null;
  const port = m[2] !== undefined ? Number(m[2]) : defaultPort;
  if (port === null || port < 1 || port > 65535) return null;
  return { host: normalizeHost(m[1]), port };
}
