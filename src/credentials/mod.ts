/**
 * Credentials the agent never holds: a pure, sans-IO library. A session is
 * handed phantom tokens ({@link PhantomRegistry}); each request is searched
 * for phantoms and real secrets ({@link scanRequest}); {@link judge} says
 * which phantoms sit where their credential is presented (to be swapped for
 * the real secret after the policy allowed the request) or why the request
 * is refused (the tripwire). The proxy's credentials addon drives it; the
 * config loader compiles `credentials:` with {@link PRESETS}.
 *
 * @example
 * ```ts
 * import { judge, PhantomRegistry, scanRequest } from "./mod.ts";
 * const phantoms = new PhantomRegistry();
 * const [openai] = phantoms.issue("ci-0123456789abcdef", config.credentials);
 * const seen = scanRequest(
 *   { host: "evil.example", path: "/", query: `k=${openai.phantom}`, headers: [], body: [] },
 *   { lengths: phantoms.lengths, lookup: (k) => phantoms.lookup(k), secrets: [] },
 * );
 * judge({ scheme: "https", host: "evil.example", port: 443, method: "GET", path: "/",
 *   session: "ci-0123456789abcdef" }, specsByName, seen);
 * // { credential: "openai", kind: "phantom", reason: 'credential "openai" used outside its hosts', … }
 * ```
 *
 * @module
 */
export type {
  CredentialScope,
  CredentialSource,
  CredentialSpec,
  IssuedCredential,
  PhantomShape,
} from "./types.ts";
export { type Preset, PRESET_NAMES, PRESETS } from "./presets.ts";
export {
  findPhantoms,
  MARKER,
  maskPhantom,
  newPhantom,
  phantomKey,
  secretNeedles,
  stableBase64,
} from "./phantom.ts";
export {
  basicValue,
  parseBasic,
  presentedFormat,
  queryParams,
  swapInQuery,
  swapInValue,
} from "./place.ts";
export {
  type RequestView,
  scanRequest,
  type ScanTargets,
  type Sighting,
  type Where,
  whereName,
} from "./scan.ts";
export { judge, type JudgedRequest, type PhantomOwner, type Swap, type Tripped } from "./judge.ts";
export { PhantomRegistry } from "./registry.ts";
