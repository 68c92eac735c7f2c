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

/**
 * Messages of the YAML parser that never quote the document: fixed texts, and
 * templates that only fill in the parser's own vocabulary (token types, "flow
 * map" / "flow sequence"). Anything else — `Unresolved tag: !x`, `Invalid
 * escape sequence \q`, `Not a YAML token: …` — may carry text from the file.
 */
const SAFE_YAML_MESSAGES: readonly RegExp[] = [
  /^(A block sequence may not be used as an implicit map key|A node can have at most one (anchor|tag)|Alias cannot be an empty string|Alias ending in : is ambiguous|All sequence items must start at the same column|An alias node must not specify any properties|Anchor cannot be an empty string|Anchor ending in : is ambiguous|Block collection cannot start on same line with directives-end marker|Block scalar header not found|Comments must be separated from other tokens by white space characters|Implicit keys need to be on a single line|Implicit keys of flow sequence pairs need to be on a single line|Implicit map keys need to be followed by map values|Map comment with trailing content|Map keys must be unique|Missing closing ("|')quote|Missing directives-end indicator line|Missing directives-end\/doc-start indicator line|Nested mappings are not allowed in compact mappings|Sequence item without - indicator|Tabs are not allowed as indentation|Tags and anchors must be separated from the next token by white space|Source contains multiple documents; please use YAML\.parseAllDocuments\(\))$/,
  /^(Flow sequence|Flow map|Flow collection) in block collection must be sufficiently indented and end with a [\]}]$/i,
  /^Unexpected (,|empty item) in flow (map|sequence)$/,
  /^Missing (,|, or :) between flow (map|sequence) items$/,
  /^Missing space after : in flow (map|sequence)$/,
  /^Unexpected [a-z-]+ (at node end|token|token in YAML (stream|document))$/,
  /^Expected a flow scalar value, but found: [a-z-]+$/,
  /^Block scalar lines must not be less indented than their [a-z ]+$/,
];

/** What a YAML error says, per code, when its own text might quote the file. */
const YAML_CODES: Record<string, string> = {
  BAD_DQ_ESCAPE: "invalid escape sequence in a double-quoted string",
  BAD_SCALAR_START: "a plain value cannot start with this character",
  BAD_PROP_ORDER: "anchors and tags must come after the indicator",
  BAD_DIRECTIVE: "invalid directive",
  BAD_COLLECTION_TYPE: "a tag does not fit its collection",
  TAG_RESOLVE_FAILED: "unresolved tag",
  UNEXPECTED_TOKEN: "unexpected token",
  MISSING_CHAR: "missing character",
  BAD_INDENT: "bad indentation",
  DUPLICATE_KEY: "Map keys must be unique",
  RESOURCE_EXHAUSTION: "the document is too large or deeply nested",
};

/**
 * `invalid YAML: …` for an error of the YAML parser, never quoting the file:
 * the parser's own message when it is one of the fixed ones, else a
 * description of its code. Error text reaches places the file's readers may
 * not (the log, `/_/health`), and the file may not be a policy at all.
 *
 * @example
 * yamlMessage({ code: "DUPLICATE_KEY", message: "Map keys must be unique" })
 * // "invalid YAML: Map keys must be unique"
 * yamlMessage({ code: "TAG_RESOLVE_FAILED", message: "Unresolved tag: !s3cret" })
 * // "invalid YAML: unresolved tag"
 */
export function yamlMessage(e: { code: string; message: string }): string {
  const own = e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
  if (SAFE_YAML_MESSAGES.some((r) => r.test(own))) return `invalid YAML: ${own}`;
  return `invalid YAML: ${
    YAML_CODES[e.code] ?? e.code.toLowerCase().replace(/[^a-z0-9]+/g, " ").trim()
  }`;
}
