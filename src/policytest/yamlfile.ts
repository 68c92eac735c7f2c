/**
 * A YAML file whose every problem can be named `file:line:col`, validated
 * with the same schema language as policy files (`src/config/schema.ts`).
 *
 * @module
 */
import { isMap, isPair, isScalar, LineCounter, type Node, parseDocument } from "yaml";
import type { Problem } from "../config/errors.ts";
import { yamlSyntaxProblems } from "../config/source.ts";
import { type ObjectSchema, type Path, type SchemaIssue, validate } from "../config/schema.ts";

/** One parsed YAML document with positions. */
export class YamlFile {
  readonly lines = new LineCounter();
  readonly doc;

  constructor(readonly file: string, readonly text: string) {
    this.doc = parseDocument(text, {
      lineCounter: this.lines,
      uniqueKeys: true,
      prettyErrors: false,
    });
  }

  /** 1-based line and column of a node (0:0 when unknown). */
  pos(node: Node | null | undefined): { line: number; col: number } {
    if (!node?.range) return { line: 0, col: 0 };
    const p = this.lines.linePos(node.range[0]);
    return { line: p.line, col: p.col };
  }

  /** The node at a path (the pair's key when `atKey`). */
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

  problem(node: Node | null | undefined, message: string, severity: Problem["severity"] = "error") {
    return { severity, file: this.file, ...this.pos(node), message };
  }

  /** YAML syntax errors, as problems (the first one: the rest usually follow from it). */
  syntaxErrors(): Problem[] {
    return yamlSyntaxProblems(this.doc, this.lines, this.file);
  }

  /**
   * Validate the whole document against a schema; returns the plain value and
   * the problems (the value is only trustworthy without problems).
   */
  validate(schema: ObjectSchema, what: string): { value: unknown; problems: Problem[] } {
    const syntax = this.syntaxErrors();
    if (syntax.length) return { value: undefined, problems: syntax };
    const root = this.doc.contents as Node | null;
    if (root === null || (isScalar(root) && root.value === null)) {
      return { value: undefined, problems: [this.problem(root, `the ${what} is empty`)] };
    }
    if (!isMap(root)) {
      return {
        value: undefined,
        problems: [this.problem(root, `a ${what} must be a YAML mapping`)],
      };
    }
    const issues: SchemaIssue[] = [];
    const value = validate(root, schema, [], issues);
    return {
      value,
      problems: issues.map((i) => {
        const node = i.atKey ? this.nodeAt(i.path, true) ?? i.node : i.node;
        return this.problem(node, i.message);
      }),
    };
  }
}
