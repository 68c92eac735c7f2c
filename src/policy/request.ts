/**
 * Turning what a connection shows into the engine's {@link RequestInfo}, and
 * reading a request body into it: the one place that says how a raw
 * request-target becomes a policy path and how body bytes become `body` and
 * `bodyText`. The proxy and the policy tools (`test`, `eval`, `replay`) both
 * build their requests here, so they cannot see a request differently.
 *
 * @module
 */
import type { RequestInfo } from "./types.ts";
import { canonicalPath } from "./path.ts";
import { decodeForScan } from "../dlp/mod.ts";

/** What a request's head shows (a CONNECT has no path). */
export interface RequestHead {
  id: string;
  method: string;
  scheme: "http" | "https";
  host: string;
  port: number;
  /** Path and query exactly as sent (origin-form); null for a CONNECT tunnel. */
  rawPath: string | null;
  /** Header values by lower-case name; a list is joined with ", " (as Node does). */
  headers: Record<string, string | string[] | undefined>;
  client: string;
  session?: string | null;
  label?: string | null;
}

/** Headers the policy never sees: they belong to the hop to the proxy. */
const HOP_TO_PROXY = new Set(["proxy-authorization", "proxy-connection"]);

/**
 * The {@link RequestInfo} of a request head: the canonical path
 * (`path.ts`; with its spelling when servers could read the raw path
 * differently) split from the query, header names lower-case, proxy
 * credentials left out.
 *
 * @example
 * requestInfo({ id: "1", method: "GET", scheme: "http", host: "example.com", port: 80,
 *   rawPath: "/a/../b?x=1", headers: {}, client: "127.0.0.1" }).path // "/b"
 */
export function requestInfo(head: RequestHead): RequestInfo {
  let path: string | null = null;
  let spelling: RequestInfo["spelling"] = null;
  let query = "";
  const h: Record<string, string> = {};
  if (head.rawPath !== null) {
    const q = head.rawPath.indexOf("?");
    ({ path, spelling } = canonicalPath(q === -1 ? head.rawPath : head.rawPath.slice(0, q)));
    query = q === -1 ? "" : head.rawPath.slice(q + 1);
    for (const k in head.headers) {
      const name = k.toLowerCase();
      if (HOP_TO_PROXY.has(name)) continue;
      const v = head.headers[k];
      if (v !== undefined) h[name] = Array.isArray(v) ? v.join(", ") : v;
    }
  }
  return {
    id: head.id,
    session: head.session ?? null,
    label: head.label ?? null,
    client: head.client,
    method: head.method,
    scheme: head.scheme,
    host: head.host,
    port: head.port,
    path,
    ...(spelling ? { spelling } : {}),
    query,
    headers: h,
  };
}

/**
 * The parsed JSON body, or undefined when it is not JSON (or is encoded):
 * a condition reading `body` then errors rather than guessing.
 *
 * @example
 * parseJsonBody(new TextEncoder().encode('{"model":"gpt-4o"}'), null) // { model: "gpt-4o" }
 */
export function parseJsonBody(bytes: Uint8Array, contentEncoding: string | null): unknown {
  if (contentEncoding !== null && contentEncoding !== "identity") return undefined;
  if (bytes.length === 0) return undefined;
  const text = new TextDecoder().decode(bytes).trimStart();
  if (text[0] !== "{" && text[0] !== "[") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** What was read of a request body (see `proxy/body.ts` `bufferBody`). */
export interface BodyRead {
  /** A complete body is one chunk. */
  chunks: Uint8Array[];
  /** Bytes read. */
  size: number;
  /** True when the whole body fit under the cap it was read with. */
  complete: boolean;
}

/** The body limits that shape what the policy sees. */
export interface BodyLimits {
  maxBodyBytes: number;
  maxScanBytes: number;
  /** Decompressed bytes per compressed byte for the scan text (default 100). */
  maxDecompressionRatio?: number;
}

/** One array of the given chunks. */
export function concatChunks(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Put what the policy may read of a body into `info`: `body` (parsed JSON,
 * only for a complete body within `limits.maxBodyBytes`) and, when `scan` is
 * set (a `dlp` policy exists), `bodyText` (decoded for secret scanning).
 * Returns what the scan text leaves out, for the row (`inspection`): the
 * part of a body past `limits.max_scan_bytes`, or past a decompression limit
 * (also kept in `info.bodyNotes`).
 */
export function readBodyInto(
  info: RequestInfo,
  body: BodyRead,
  limits: BodyLimits,
  scan: boolean,
): string[] {
  const ce = info.headers["content-encoding"] ?? null;
  // A body cut at the cap is as long as it says it is.
  const length = Number(info.headers["content-length"]);
  info.bodySize = body.complete || !(length > body.size) ? body.size : length;
  info.body = body.complete && body.size <= limits.maxBodyBytes
    ? parseJsonBody(concatChunks(body.chunks), ce)
    : undefined;
  if (!scan || !body.chunks.length) return [];
  const d = decodeForScan(
    concatChunks(body.chunks),
    info.headers["content-type"] ?? null,
    ce,
    limits.maxScanBytes,
    limits.maxDecompressionRatio,
  );
  info.bodyText = d?.text;
  const notes = d?.limited
    ? [`dlp: request body decompression ${d.limited} (limits.max_decompression_ratio)`]
    : d?.truncated || (d && !body.complete)
    ? [
      `dlp: request body over limits.max_scan_bytes: only its first ${limits.maxScanBytes} bytes were scanned`,
    ]
    : [];
  if (notes.length) info.bodyNotes = notes;
  return notes;
}
