/**
 * Canonical formatting of policy files with the `yaml` library's document
 * API, which keeps comments, blank lines, quoting and flow style:
 *
 * - 2-space indentation; block sequences indented under their key;
 * - no folding of long strings, no wrapping of flow collections;
 * - `{ a: 1 }` (padded) flow mappings and `[a, b]` (unpadded) flow sequences,
 *   as `deno fmt` and Prettier write them;
 * - one space before a trailing comment.
 *
 * A file is only rewritten when the result means the same (the data is
 * compared) and formatting it again changes nothing.
 *
 * @module
 */
import {
  isCollection,
  isDocument,
  isScalar,
  Pair,
  parseDocument,
  Scalar,
  visit,
  YAMLMap,
  YAMLSeq,
} from "yaml";
import type { Problem } from "../config/errors.ts";
import { YamlFile } from "./yamlfile.ts";

/** `toString` options of the canonical form. */
export const FORMAT_OPTIONS = {
  indent: 2,
  indentSeq: true,
  lineWidth: 0,
  minContentWidth: 0,
  flowCollectionPadding: true,
} as const;

// deno-lint-ignore no-explicit-any
type Ctx = any;

/**
 * Give every flow sequence `[a, b]` and every flow mapping `{ a: 1 }`, and
 * refold a folded block scalar (`>`) at the width it was written with, since
 * the canonical form folds nothing else.
 */
function prepareDocument(doc: ReturnType<typeof parseDocument>, text: string): void {
  visit(doc, {
    Pair(_, pair) {
      const v = pair.value;
      if (!isScalar(v) || v.type !== Scalar.BLOCK_FOLDED || !v.range) return;
      const lines = text.slice(v.range[0], v.range[1]).split("\n").slice(1);
      const width = Math.max(40, ...lines.map((l) => l.trimEnd().length));
      pair.toString = function (ctx?: Ctx, onComment?: () => void, onChompKeep?: () => void) {
        return Pair.prototype.toString.call(
          this,
          ctx && { ...ctx, options: { ...ctx.options, lineWidth: width } },
          onComment,
          onChompKeep,
        );
      };
    },
    Seq(_, node) {
      if (!node.flow) return;
      node.toString = function (ctx?: Ctx, onComment?: () => void, onChompKeep?: () => void) {
        return YAMLSeq.prototype.toString.call(
          this,
          ctx && { ...ctx, flowCollectionPadding: "" },
          onComment,
          onChompKeep,
        );
      };
    },
    Map(_, node) {
      if (!node.flow) return;
      node.toString = function (ctx?: Ctx, onComment?: () => void, onChompKeep?: () => void) {
        return YAMLMap.prototype.toString.call(
          this,
          ctx && { ...ctx, flowCollectionPadding: " " },
          onComment,
          onChompKeep,
        );
      };
    },
  });
}

function formatOnce(text: string): string {
  const doc = parseDocument(text);
  // A comment-only file has no document to print (the library would add "null").
  if (doc.contents === null) return text.replace(/[ \t]+$/gm, "").replace(/\n*$/, "\n");
  prepareDocument(doc, text);
  // The library always puts a blank line before a comment at the end of the
  // file; keep the comment where it was when no blank line separated it.
  const contents = doc.contents;
  if (doc.comment && isCollection(contents) && !contents.comment && contents.range) {
    let from = contents.range[1];
    while (from > 0 && /\s/.test(text[from - 1])) from--;
    const gap = text.slice(from, text.indexOf("#", contents.range[1]));
    if (!/\n[ \t]*\n/.test(gap)) {
      contents.comment = doc.comment;
      doc.comment = "";
    }
  }
  return doc.toString(FORMAT_OPTIONS);
}

/** Data equality of two parsed documents (what a policy means). */
function sameData(a: string, b: string): boolean {
  const da = parseDocument(a);
  const db = parseDocument(b);
  if (db.errors.length || !isDocument(db)) return false;
  return JSON.stringify(da.toJS()) === JSON.stringify(db.toJS());
}

/**
 * The canonical form of a YAML text, or the problems that prevent it
 * (syntax errors, or a result that would not mean the same).
 *
 * @example
 * formatYaml("rules:\n- {match: a, action: allow}  # first\n", "a.yaml")
 * // { text: "rules:\n  - { match: a, action: allow } # first\n" }
 */
export function formatYaml(text: string, file: string): { text: string } | { problems: Problem[] } {
  const y = new YamlFile(file, text);
  const syntax = y.syntaxErrors();
  if (syntax.length) return { problems: syntax };
  if (text.trim() === "") return { text };
  let out = formatOnce(text);
  // The canonical form is a fixed point: settle the rare second-pass change now.
  for (let i = 0; i < 3; i++) {
    const again = formatOnce(out);
    if (again === out) break;
    out = again;
  }
  if (!sameData(text, out) || formatOnce(out) !== out) {
    return {
      problems: [{
        severity: "error",
        file,
        line: 0,
        col: 0,
        message: "cannot format this file without changing what it means; it was left as it is",
      }],
    };
  }
  return { text: out };
}
