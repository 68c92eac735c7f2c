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
