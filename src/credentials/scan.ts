/**
 * Looking through one outgoing request for phantoms and real secrets: the
 * host name, the path, each query parameter, each header (a basic-auth
 * header decoded), the body (as given: raw and decoded). Each sighting
 * says where it was, so the caller can tell the one place a credential may
 * be presented from everywhere else.
 *
 * @module
 */
import { findPhantoms } from "./phantom.ts";
import { decodeQueryPart, parseBasic } from "./place.ts";

/** Where something was seen. */
export type Where =
  | { kind: "host" }
  | { kind: "url" }
  | { kind: "query"; name: string; value: string }
  | { kind: "header"; name: string; value: string }
  | { kind: "basic"; user: string; pass: string }
  | { kind: "body" };

/** What the scan looks through. */
export interface RequestView {
  host: string;
  /** The path (null for a CONNECT). */
  path: string | null;
  /** The raw query string without `?`. */
  query: string;
  /** Header names (lower-case) and values, except the proxy's own credentials. */
  headers: Iterable<[string, string]>;
  /** The body as texts to search (raw and decoded), or none. */
  body: readonly string[];
}

/** One thing seen at one place. */
export interface Sighting<T> {
  owner: T;
  where: Where;
}

/** What to look for: live phantoms (by key) and real secrets (by the strings they leave). */
export interface ScanTargets<P, S> {
  /** Lengths of phantom keys in use (empty: no phantoms to look for). */
  lengths: readonly number[];
  lookup(key: string): P | undefined;
  /** The same for a key whose case was lost (host names are compared lower-cased). */
  lookupFolded?(key: string): P | undefined;
  /** Each secret's owner and needles (see `secretNeedles`). */
  secrets: readonly { owner: S; needles: readonly string[] }[];
}

/** A short name of a place, for reasons and findings (`url`, `header:x-api-key`, `body`). */
export function whereName(w: Where): string {
  switch (w.kind) {
    case "host":
      return "host";
    case "url":
      return "url";
    case "query":
      return `query:${w.name}`;
    case "header":
      return `header:${w.name}`;
    case "basic":
      return "header:authorization";
    case "body":
      return "body";
  }
}

function decodedPath(path: string): string | null {
  if (!path.includes("%")) return null;
  try {
    return decodeURIComponent(path);
  } catch {
    return null;
  }
}

/**
 * Every sighting of a live phantom or a real secret in a request. A basic
 * `Authorization` header is searched decoded (`kind: "basic"`), not as
 * base64 text, so a phantom there is seen at its place once.
 *
 * @example
 * const seen = scanRequest(view, { lengths: [48], lookup: (k) => live.get(k), secrets: [] });
 */
export function scanRequest<P, S>(
  view: RequestView,
  targets: ScanTargets<P, S>,
): { phantoms: Sighting<P>[]; secrets: Sighting<S>[] } {
  const phantoms: Sighting<P>[] = [];
  const secrets: Sighting<S>[] = [];
  const look = (text: string, where: Where, depth = 1, lookup = targets.lookup) => {
    if (text === "") return;
    for (const owner of findPhantoms(text, targets.lengths, lookup, depth)) {
      phantoms.push({ owner, where });
    }
    for (const s of targets.secrets) {
      if (s.needles.some((n) => text.includes(n))) secrets.push({ owner: s.owner, where });
    }
  };
  // A host name has lost its case (and a CONNECT's Host header says the same again).
  look(view.host, { kind: "host" }, 1, targets.lookupFolded ?? targets.lookup);
  if (view.path !== null) {
    look(view.path, { kind: "url" });
    const d = decodedPath(view.path);
    if (d !== null) look(d, { kind: "url" });
  }
  if (view.query !== "") {
    for (const part of view.query.split("&")) {
      const eq = part.indexOf("=");
      const rawName = eq === -1 ? part : part.slice(0, eq);
      const rawValue = eq === -1 ? "" : part.slice(eq + 1);
      const name = decodeQueryPart(rawName) ?? rawName;
      const value = decodeQueryPart(rawValue) ?? rawValue;
      const where: Where = { kind: "query", name, value };
      look(part, where);
      if (name !== rawName || value !== rawValue) look(`${name}=${value}`, where);
    }
  }
  for (const [name, value] of view.headers) {
    const basic = name === "authorization" ? parseBasic(value) : null;
    if (basic !== null) {
      look(name, { kind: "header", name, value });
      // The base64 form is the place itself: only its raw text (depth 0) counts as the header.
      look(value, { kind: "header", name, value }, 0);
      look(`${basic.user}:${basic.pass}`, { kind: "basic", ...basic });
    } else look(`${name}: ${value}`, { kind: "header", name, value });
  }
  for (const text of view.body) look(text, { kind: "body" });
  return { phantoms: dedupe(phantoms), secrets: dedupe(secrets) };
}

function dedupe<T>(list: Sighting<T>[]): Sighting<T>[] {
  const seen = new Map<T, Set<string>>();
  return list.filter((s) => {
    const key = JSON.stringify(s.where);
    let set = seen.get(s.owner);
    if (!set) seen.set(s.owner, set = new Set());
    if (set.has(key)) return false;
    set.add(key);
    return true;
  });
}
