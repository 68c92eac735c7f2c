/**
 * ASCII character-class table and small helpers shared by the detectors.
 *
 * Detectors do their token scanning with these loops instead of regex
 * quantifiers: a loop over a class table has exactly one exit point, so it is
 * linear by construction and costs one table lookup per character.
 *
 * @module
 */

/** `0-9` */
export const DIGIT = 1;
/** `A-Z` */
export const UPPER = 2;
/** `a-z` */
export const LOWER = 4;
/** `_` */
export const UNDERSCORE = 8;
/** `-` */
export const DASH = 16;
/** `+` and `/` (standard base64) */
export const B64SYM = 32;
/** `=` (base64 padding) */
export const EQUALS = 64;
/** space, tab, CR, LF */
export const SPACE = 128;

/** `A-Za-z0-9` */
export const ALNUM = DIGIT | UPPER | LOWER;
/** `A-Za-z0-9_` */
export const WORD = ALNUM | UNDERSCORE;
/** `A-Za-z0-9_-`: base64url, and the alphabet of most API tokens. */
export const TOKEN = WORD | DASH;
/** `A-Za-z0-9+/` */
export const BASE64 = ALNUM | B64SYM;

const TABLE = new Uint8Array(128);
for (let c = 48; c <= 57; c++) TABLE[c] = DIGIT;
for (let c = 65; c <= 90; c++) TABLE[c] = UPPER;
for (let c = 97; c <= 122; c++) TABLE[c] = LOWER;
TABLE[95] = UNDERSCORE;
TABLE[45] = DASH;
TABLE[43] = B64SYM;
TABLE[47] = B64SYM;
TABLE[61] = EQUALS;
TABLE[32] = SPACE;
TABLE[9] = SPACE;
TABLE[10] = SPACE;
TABLE[13] = SPACE;

/** Class bits of a UTF-16 code unit; 0 for non-ASCII. */
export function clsOf(code: number): number {
  return code < 128 ? TABLE[code] : 0;
}

/** Class bits of the UTF-16 code unit at `i`; 0 for non-ASCII and out of range. */
export function cls(text: string, i: number): number {
  const c = text.charCodeAt(i); // NaN when out of range -> TABLE[NaN] is undefined
  return c < 128 ? TABLE[c] : 0;
}

/** True when the code unit at `i` is in `mask` (false at the text edges). */
export function isAt(text: string, i: number, mask: number): boolean {
  return i >= 0 && (cls(text, i) & mask) !== 0;
}

/** First index at or after `i` whose code unit is not in `mask`. */
export function runEnd(text: string, i: number, mask: number, limit = text.length): number {
  const n = Math.min(limit, text.length);
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c >= 128 || (TABLE[c] & mask) === 0) break;
    i++;
  }
  return i;
}

/** Index just after the last code unit before `i` that is not in `mask`, looking back at most `max`. */
export function runStart(text: string, i: number, mask: number, max: number): number {
  const stop = Math.max(0, i - max);
  while (i > stop) {
    const c = text.charCodeAt(i - 1);
    if (c >= 128 || (TABLE[c] & mask) === 0) break;
    i--;
  }
  return i;
}

/** OR of the class bits of `text[start..end)`: tells which kinds of characters a token holds. */
export function classesIn(text: string, start: number, end: number): number {
  let bits = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < 128) bits |= TABLE[c];
  }
  return bits;
}
