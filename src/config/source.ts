/**
 * A policy file as parsed YAML that can point at itself: every problem found
 * while compiling a section names the file, line and column of its node.
 *
 * @module
 */
import { isMap, isPair, isScalar, LineCounter, type Node, parseDocument, Scalar } from "yaml";
import { type Problem, yamlMessage } from "./errors.ts";
import type { Path } from "./schema.ts";

/** Where something is in a policy file: a YAML node, or a path standing for one. */
export type SourceNode = Node | { readonly path: Path } | null;

/**
 * What compiling a section needs of its file: its name, the node at a path,
 * and positions for problems. {@link SourceFile} has the parsed YAML;
 * {@link PositionsSource} only the positions of the rules.
 */
export interface SourceView {
  readonly file: string;
  /** The node at a path (a pair's key when `atKey`). */
  nodeAt(path: Path, atKey?: boolean): SourceNode;
  /** Position of a node, plus a character offset into a scalar. */
  pos(node: SourceNode | undefined, offset?: number): { line: number; col: number };
  problem(
    severity: Problem["severity"],
    node: SourceNode | undefined,
    message: string,
    offset?: number,
  ): Problem;
}

/**
 * A policy file whose YAML was parsed and checked elsewhere (the reload
 * worker, see `offthread.ts`): it knows the position of each rule, which
 * compiled rules carry (`file:line`), and nothing else. Problems found while
 * compiling from it have no position; the worker already reported the real
 * ones.
 *
 * @example
 * ```ts
 * const src = new PositionsSource("a.yaml", [[3, 5]]);
 * src.pos(src.nodeAt(["rules", 0])); // { line: 3, col: 5 }
 * ```
 */
export class PositionsSource implements SourceView {
  constructor(
    readonly file: string,
    /** `[line, col]` of each rule of the file's `rules:`, in order. */
    private readonly rules: ArrayLike<readonly [number, number]>,
  ) {}

  nodeAt(path: Path): SourceNode {
    return { path };
  }

  pos(node: SourceNode | undefined): { line: number; col: number } {
    const path = node && "path" in node && !("range" in node) ? node.path : null;
    if (path?.length === 2 && path[0] === "rules" && typeof path[1] === "number") {
      const p = this.rules[path[1]];
      if (p) return { line: p[0], col: p[1] };
    }
    return { line: 0, col: 0 };
  }

  problem(
    severity: Problem["severity"],
    node: SourceNode | undefined,
    message: string,
  ): Problem {
    return { severity, file: this.file, ...this.pos(node), message };
  }
}

/**
 * The YAML syntax errors of a document, as problems: only the first one. After
 * a syntax error the parser resynchronises as best it can, and one slip (a
 * line indented one space too far) makes it report dozens of errors that are
 * all that one; the message says how many were left out.
 *
 * @example
 * ```ts
 * const lines = new LineCounter();
 * const doc = parseDocument(" version: 1\nrules: []\n", { lineCounter: lines });
 * yamlSyntaxProblems(doc, lines, "a.yaml");
 * // [{ severity: "error", file: "a.yaml", line: 2, col: 1, message: "invalid YAML: … (2 more …)" }]
 * ```
 */
export function yamlSyntaxProblems(
  doc: { errors: { pos: [number, number]; code: string; message: string }[] },
  lines: LineCounter,
  file: string,
): Problem[] {
  if (doc.errors.length === 0) return [];
  const first = [...doc.errors].sort((a, b) => a.pos[0] - b.pos[0])[0];
  const p = lines.linePos(first.pos[0]);
  const more = doc.errors.length - 1;
  // Never the parser's own text when it could quote the file (yamlMessage).
  const message = `${yamlMessage(first)}${
    more > 0
      ? ` (${more} more YAML error(s) after it, most likely caused by this one: fix it and check again)`
      : ""
  }`;
  return [{ severity: "error", file, line: p.line, col: p.col, message }];
}

/**
 * One parsed YAML file, able to locate any path in it.
 *
 * @example
 * ```ts
 * const src = new SourceFile("a.yaml", "version: 1\ndefault: alow\n");
 * src.problem("error", src.nodeAt(["default"]), "bad"); // { file: "a.yaml", line: 2, col: 10, … }
 * ```
 */
export class SourceFile implements SourceView {
  readonly lines = new LineCounter();
  readonly doc;
  constructor(readonly file: string, readonly text: string) {
    this.doc = parseDocument(text, {
      lineCounter: this.lines,
      uniqueKeys: true,
      prettyErrors: false,
    });
  }

  /** Position of a node (its key when `atKey`), plus a character offset into a scalar. */
  pos(n: SourceNode | undefined, offset = 0): { line: number; col: number } {
    const node = n && "range" in n ? n : null;
    if (!node?.range) return { line: 0, col: 0 };
    let start = node.range[0];
    if (offset > 0 && isScalar(node)) start = scalarOffset(this.text, node, offset);
    const p = this.lines.linePos(start);
    return { line: p.line, col: p.col };
  }

  /** The node at a path (a pair's key when `atKey`). */
  nodeAt(path: Path, atKey = false): Node | null {
    if (!atKey) return (this.doc.getIn(path, true) as Node | undefined) ?? null;
    const parent = this.doc.getIn(path.slice(0, -1), true);
    if (isMap(parent)) {
      for (const pair of parent.items) {
        if (isPair(pair) && isScalar(pair.key) && pair.key.value === path[path.length - 1]) {
          return pair.key as Node;
        }
      }
    }
    return null;
  }

  problem(
    severity: Problem["severity"],
    node: SourceNode | undefined,
    message: string,
    offset = 0,
  ): Problem {
    return { severity, file: this.file, ...this.pos(node, offset), message };
  }
}

/**
 * Map an offset in a scalar's value to an offset in the source text, so an
 * error inside a `match` pattern or a CEL condition points at the character.
 *
 * @example
 * ```ts
 * // In `when: "body.x == 1"` the value starts one character after the quote.
 * scalarOffset(text, node, 5); // node.range[0] + 1 + 5
 * ```
 */
export function scalarOffset(text: string, node: Scalar, offset: number): number {
  const [start, end] = node.range!;
  const src = text.slice(start, end);
  switch (node.type) {
    case Scalar.QUOTE_DOUBLE:
    case Scalar.QUOTE_SINGLE:
      return start + 1 + offset;
    case Scalar.BLOCK_LITERAL:
    case Scalar.BLOCK_FOLDED: {
      // Value line k is source line k+1 (after the `|` header) minus its indentation.
      const value = String(node.value);
      const before = value.slice(0, offset);
      const lineNo = before.split("\n").length - 1;
      const col = offset - (before.lastIndexOf("\n") + 1);
      const srcLines = src.split("\n");
      const first = srcLines.slice(1).find((l) => l.trim() !== "") ?? "";
      const indent = first.length - first.trimStart().length;
      let pos = start + srcLines[0].length + 1;
      for (let i = 1; i <= lineNo && i < srcLines.length; i++) pos += srcLines[i].length + 1;
      return pos + indent + col;
    }
    default:
      return start + offset;
  }
}

/** One parsed and validated policy file. */
export interface Part {
  src: SourceView;
  // deno-lint-ignore no-explicit-any
  raw: Record<string, any>;
  legacy: boolean;
  /** Absolute path ("" for the embedded default). */
  abs: string;
  /**
   * Where the schema found errors: nothing at or below these paths is
   * compiled, so one slip is reported once instead of again by every check
   * that reads the broken value.
   */
  invalid: Path[];
}

/**
 * Whether the schema found nothing wrong at, above or below `path` of a part.
 *
 * @example
 * ```ts
 * validAt(part, ["rules", 2]); // false when rule 3 has a schema error
 * ```
 */
export function validAt(part: Part, path: Path): boolean {
  return !part.invalid.some((bad) => {
    const n = Math.min(bad.length, path.length);
    for (let i = 0; i < n; i++) if (bad[i] !== path[i]) return false;
    return true;
  });
}
