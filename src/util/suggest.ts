/**
 * Did-you-mean hints: the one edit distance and the one "closest known name"
 * search behind every `(did you mean "x"?)` in config errors, CEL errors,
 * policy keys, DLP detector names, CLI options and dashboard parameters.
 *
 * Imports nothing from the app, so any layer may use it.
 *
 * @example
 * ```ts
 * import { didYouMean } from "./suggest.ts";
 * `unknown key "methdos"${didYouMean("methdos", ["match", "methods"])}`;
 * // 'unknown key "methdos" (did you mean "methods"?)'
 * ```
 *
 * @module
 */

/**
 * How far a candidate may be from the word and still be suggested: a number,
 * or a rule of the word and the candidate.
 */
export type MaxDistance = number | ((word: string, candidate: string) => number);

/**
 * Edit distance counting a swap of neighbours as one edit (optimal string
 * alignment), because "hots" for "host" is a single slip of the fingers.
 *
 * @example
 * ```ts
 * editDistance("hots", "host"); // 1
 * editDistance("alow", "allow"); // 1
 * ```
 */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  // Three rows instead of a matrix: a long word from a query string costs no garbage.
  let before = new Array<number>(b.length + 1).fill(0);
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  let row = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, before[j - 2] + 1);
      }
      row[j] = v;
    }
    [before, prev, row] = [prev, row, before];
  }
  return prev[b.length];
}

/**
 * The default {@link MaxDistance}: a third of the word, at least 1 and at
 * most 3, so a short word is not "corrected" into an unrelated one.
 *
 * @example
 * ```ts
 * defaultMaxDistance("alow"); // 1
 * defaultMaxDistance("authorization"); // 3
 * ```
 */
export function defaultMaxDistance(word: string): number {
  return Math.max(1, Math.min(3, Math.floor(word.length / 3)));
}

/**
 * The candidate closest to `word` (ignoring case) within `maxDistance`, or
 * null; on a tie the earlier candidate wins.
 *
 * @example
 * ```ts
 * suggest("alow", ["allow", "deny", "log"]); // "allow"
 * suggest("sesion", ["global", "session"], 2); // "session"
 * suggest("xyz", ["allow", "deny"]); // null
 * ```
 */
export function suggest(
  word: string,
  candidates: Iterable<string>,
  maxDistance: MaxDistance = defaultMaxDistance,
): string | null {
  const w = word.toLowerCase();
  let best: string | null = null;
  let bestD = Infinity;
  for (const c of candidates) {
    const limit = typeof maxDistance === "number" ? maxDistance : maxDistance(word, c);
    const lc = c.toLowerCase();
    // The distance is at least the difference in length: skip without computing it.
    if (Math.abs(lc.length - w.length) > limit) continue;
    const d = editDistance(w, lc);
    if (d <= limit && d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best;
}

/**
 * ` (did you mean "x"?)` for the closest candidate (see {@link suggest}), or
 * `""`, ready to append to a message.
 *
 * @example
 * ```ts
 * `unknown policy "ratelimit"${didYouMean("ratelimit", ["rate_limit", "time_window"])}`;
 * // 'unknown policy "ratelimit" (did you mean "rate_limit"?)'
 * ```
 */
export function didYouMean(
  word: string,
  candidates: Iterable<string>,
  maxDistance?: MaxDistance,
): string {
  const s = suggest(word, candidates, maxDistance);
  return s === null ? "" : ` (did you mean "${s}"?)`;
}
