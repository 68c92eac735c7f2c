/**
 * Phantom tokens and finding them in text. A phantom is
 * `prefix + "agentgate" + sep + random` (`sk-proj-agentgate-Xq3…`): the
 * fixed marker lets one pass over a text find every phantom of every
 * session, and the random part (130+ bits) names exactly one. The marker is
 * also looked for in base64 (any alignment, both alphabets) and hex, where
 * the text around it is decoded and searched again, so a phantom under one
 * layer of encoding is found too (not under two, nor encrypted: the
 * tripwire is a signal; what keeps the real secret safe is that it is only
 * ever swapped in where its credential may go).
 *
 * Real secrets have no marker: {@link secretNeedles} lists the strings a
 * secret leaves in a text — itself, percent-encoded, in hex, and the part
 * of its base64 that does not depend on what surrounds it.
 *
 * @module
 */
import type { PhantomShape } from "./types.ts";

/** The fixed part of every phantom. */
export const MARKER = "agentgate";

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/**
 * A new phantom of the given shape (crypto-random, unbiased).
 *
 * @example
 * newPhantom({ prefix: "ghp_", sep: "", random: 27 }) // "ghp_agentgate3fQ…" (40 characters)
 */
export function newPhantom(shape: PhantomShape): string {
  return shape.prefix + MARKER + shape.sep + randomBase62(shape.random);
}

/** `n` random base62 characters (rejection sampling: no modulo bias). */
export function randomBase62(n: number): string {
  let out = "";
  const buf = new Uint8Array(Math.max(16, n * 2));
  while (out.length < n) {
    crypto.getRandomValues(buf);
    for (const b of buf) {
      if (b < 248) out += BASE62[b % 62];
      if (out.length === n) break;
    }
  }
  return out;
}

/** The random part of a phantom (its key in a registry). */
export function phantomKey(phantom: string, shape: PhantomShape): string {
  return phantom.slice(shape.prefix.length + MARKER.length + shape.sep.length);
}

/**
 * A phantom as logs and findings show it: first 4 and last 4 characters.
 *
 * @example
 * maskPhantom("sk-proj-agentgate-abcdefgh") // "sk-p…efgh"
 */
export function maskPhantom(phantom: string): string {
  return phantom.length >= 16 ? `${phantom.slice(0, 4)}…${phantom.slice(-4)}` : "****";
}

function isBase62(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

const enc = new TextEncoder();

/** Standard base64 of bytes (no padding handling needed by callers). */
function base64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/**
 * The base64 characters of `value` that do not depend on its neighbours,
 * for each of the three alignments it can have in a longer text, in the
 * standard and URL-safe alphabets (deduplicated). A base64 character covers
 * six bits: it is determined when all six come from `value`.
 *
 * @example
 * stableBase64("agentgate").includes("YWdlbnRnYXRl") // true (aligned at 0)
 */
export function stableBase64(value: string): string[] {
  const bytes = enc.encode(value);
  const out = new Set<string>();
  for (let o = 0; o < 3; o++) {
    const padded = new Uint8Array(o + bytes.length + 3);
    padded.set(bytes, o);
    const b64 = base64(padded);
    const first = Math.ceil((8 * o) / 6);
    const last = Math.floor((8 * (o + bytes.length)) / 6) - 1;
    if (last - first + 1 < 6) continue;
    const s = b64.slice(first, last + 1);
    out.add(s);
    out.add(s.replace(/\+/g, "-").replace(/\//g, "_"));
  }
  return [...out];
}

function hexOf(value: string): string {
  let s = "";
  for (const b of enc.encode(value)) s += b.toString(16).padStart(2, "0");
  return s;
}

/**
 * What a secret leaves in a text: itself, percent-encoded (when that
 * differs), lower- and upper-case hex, and its stable base64 runs.
 *
 * @example
 * secretNeedles("s3cr3t-value").includes("s3cr3t-value") // true
 */
export function secretNeedles(secret: string): string[] {
  const out = new Set<string>([secret]);
  const pct = encodeURIComponent(secret);
  if (pct !== secret) out.add(pct);
  const hex = hexOf(secret);
  out.add(hex);
  out.add(hex.toUpperCase());
  for (const s of stableBase64(secret)) out.add(s);
  return [...out];
}

const MARKER_BASE64 = stableBase64(MARKER);
const MARKER_HEXES = [hexOf(MARKER), hexOf(MARKER).toUpperCase()];

function isBase64Char(c: number): boolean {
  return isBase62(c) || c === 43 || c === 47 || c === 45 || c === 95 || c === 61;
}

function isHexChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

/** The run of characters around `at` that `ok` accepts, at most `max` on each side: [start, end). */
function runAround(
  text: string,
  at: number,
  len: number,
  ok: (c: number) => boolean,
  max: number,
): [number, number] {
  let s = at;
  while (s > 0 && at - s < max && ok(text.charCodeAt(s - 1))) s--;
  let e = at + len;
  while (e < text.length && e - at < max && ok(text.charCodeAt(e))) e++;
  return [s, e];
}

/**
 * The windows around each occurrence of `markers`, merged: each part of the
 * text is decoded once however many markers it holds (a body made of
 * encoded markers costs linear work, not a window per marker).
 */
function windows(
  text: string,
  markers: readonly string[],
  ok: (c: number) => boolean,
): [number, number][] {
  const found: [number, number][] = [];
  for (const m of markers) {
    let covered = -1;
    for (let i = text.indexOf(m); i !== -1; i = text.indexOf(m, i + m.length)) {
      if (i + m.length <= covered) continue;
      const w = runAround(text, i, m.length, ok, DECODE_WINDOW);
      found.push(w);
      covered = w[1];
    }
  }
  found.sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const w of found) {
    const last = merged[merged.length - 1];
    if (last && w[0] <= last[1]) last[1] = Math.max(last[1], w[1]);
    else merged.push([w[0], w[1]]);
  }
  return merged;
}

/** Decode base64 (either alphabet, padding optional) from each of 4 offsets, as latin1 text. */
function decodeBase64Run(run: string): string[] {
  const std = run.replace(/-/g, "+").replace(/_/g, "/").replace(/=+/g, "");
  const out: string[] = [];
  for (let o = 0; o < 4; o++) {
    let s = std.slice(o);
    s = s.slice(0, s.length - (s.length % 4));
    try {
      out.push(atob(s));
    } catch {
      // Not base64 from this offset.
    }
  }
  return out;
}

function decodeHexRun(run: string): string[] {
  const out: string[] = [];
  for (let o = 0; o < 2; o++) {
    let s = "";
    for (let i = o; i + 1 < run.length; i += 2) {
      s += String.fromCharCode(parseInt(run.slice(i, i + 2), 16));
    }
    out.push(s);
  }
  return out;
}

/** How far around an encoded marker the text is decoded (a phantom is far shorter). */
const DECODE_WINDOW = 512;

/**
 * The phantom keys (random parts) in `text`: after each marker (and an
 * optional `-`), the run of base62 characters, cut to each length in
 * `lengths`; `lookup` says which are live phantoms. Encoded markers (base64,
 * hex) are decoded around and searched again (`depth` 1: one layer).
 *
 * @example
 * const seen = findPhantoms("Bearer sk-proj-agentgate-AbC…", [48], (k) => registry.get(k));
 */
export function findPhantoms<T>(
  text: string,
  lengths: readonly number[],
  lookup: (key: string) => T | undefined,
  depth = 1,
): T[] {
  const out: T[] = [];
  if (lengths.length === 0) return out;
  const maxLen = Math.max(...lengths);
  for (let i = text.indexOf(MARKER); i !== -1; i = text.indexOf(MARKER, i + 1)) {
    let p = i + MARKER.length;
    if (text.charCodeAt(p) === 45) p++;
    let e = p;
    while (e < text.length && e - p < maxLen && isBase62(text.charCodeAt(e))) e++;
    for (const n of lengths) {
      if (e - p < n) continue;
      const hit = lookup(text.slice(p, p + n));
      if (hit !== undefined) {
        out.push(hit);
        break;
      }
    }
  }
  if (depth <= 0) return out;
  const decoded: string[] = [];
  for (const [s, e] of windows(text, MARKER_BASE64, isBase64Char)) {
    decoded.push(...decodeBase64Run(text.slice(s, e)));
  }
  for (const [s, e] of windows(text, MARKER_HEXES, isHexChar)) {
    decoded.push(...decodeHexRun(text.slice(s, e)));
  }
  for (const d of decoded) out.push(...findPhantoms(d, lengths, lookup, depth - 1));
  return out;
}
