/**
 * Reading response heads as the addons see them (raw header lists).
 *
 * @module
 */

/**
 * The first value of a header in a raw header list (`[name, value, …]`), or null.
 *
 * @example
 * rawHeader(["Content-Type", "text/plain"], "content-type") // "text/plain"
 */
export function rawHeader(raw: string[], name: string): string | null {
  for (let i = 0; i < raw.length; i += 2) {
    // Only a name of the same length is lower-cased (a new string when it has capitals).
    const n = raw[i];
    if (n.length === name.length && n.toLowerCase() === name) return raw[i + 1];
  }
  return null;
}
