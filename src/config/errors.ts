/**
 * Config problems carry the file, line and column of the YAML node they are
 * about, so every message reads `file:line:col: message` and an editor or a CI
 * annotation can jump to it.
 *
 * @module
 */

/** One finding about a policy file. */
export interface Problem {
  severity: "error" | "warning";
  file: string;
  /** 1-based line (0 when unknown). */
  line: number;
  /** 1-based column (0 when unknown). */
  col: number;
  message: string;
}

/** Thrown by the loader when a config has at least one error. */
export class ConfigError extends Error {
  constructor(readonly problems: Problem[]) {
    super(problems.filter((p) => p.severity === "error").map(formatProblem).join("\n"));
    this.name = "ConfigError";
  }
}

/**
 * `file:line:col: message` (warnings say so).
 *
 * @example
 * formatProblem({ severity: "error", file: "a.yaml", line: 3, col: 5, message: "x" })
 * // "a.yaml:3:5: x"
 */
export function formatProblem(p: Problem): string {
  const where = p.line > 0 ? `${p.file}:${p.line}:${p.col}` : p.file;
  return `${where}: ${p.severity === "warning" ? "warning: " : ""}${p.message}`;
}

/** Edit distance with adjacent transpositions (optimal string alignment), for did-you-mean. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The closest candidate within a small edit distance, or null.
 *
 * @example
 * suggest("alow", ["allow", "deny", "log"]) // "allow"
 */
export function suggest(word: string, candidates: Iterable<string>): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  const limit = Math.max(1, Math.min(3, Math.floor(word.length / 3)));
  return best !== null && bestD <= limit ? best : null;
}

/** ` (did you mean "x"?)` or "" */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const s = suggest(word, candidates);
  return s === null ? "" : ` (did you mean "${s}"?)`;
}
