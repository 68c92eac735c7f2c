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
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === name) return raw[i + 1];
  return null;
}
