/**
 * Session ids and labels. A session id is minted by agentgate — by
 * `agentgate run` or `POST /_/api/sessions` — as `<label>-<16 hex>` (or the
 * hex alone) together with a secret; a static `proxy.auth` token's session id
 * is its configured label. Clients never choose one.
 *
 * @module
 */

/** What a label may contain: it travels unencoded in a proxy URL's user name. */
export const LABEL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._~-]{0,63}$/;

/** The shape of a minted session id. */
const MINTED = /(^|-)[0-9a-f]{16}$/;

/**
 * Whether `id` has the shape of a minted session id (`ci-0123456789abcdef`).
 * Static labels may not, so the two kinds of session never collide.
 *
 * @example
 * looksMinted("nightly-3f9a1c2b7d4e5f60") // true
 * looksMinted("ci") // false
 */
export function looksMinted(id: string): boolean {
  return MINTED.test(id);
}

/** Lower-case hex of `bytes` random bytes. */
export function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/**
 * A fresh session id: `<label>-<16 hex>`, or the hex alone.
 *
 * @example
 * newSessionId("nightly") // "nightly-3f9a1c2b7d4e5f60"
 */
export function newSessionId(label?: string | null): string {
  const hex = randomHex(8);
  return label ? `${label}-${hex}` : hex;
}

/**
 * Constant-time comparison of a secret with what a client presented: the
 * time depends on the longer length only, never on where they differ.
 * (Hashing both first costs ~10 µs per call in Deno's node:crypto; this is
 * under 0.1 µs for a 32-character secret.)
 *
 * @example
 * sameSecret("s3cret", "s3cret") // true
 */
export function sameSecret(secret: string, presented: string): boolean {
  let diff = secret.length ^ presented.length;
  const n = Math.max(secret.length, presented.length);
  for (let i = 0; i < n; i++) diff |= (secret.charCodeAt(i) | 0) ^ (presented.charCodeAt(i) | 0);
  return diff === 0;
}
