/**
 * Reporters for `agentgate test`: each takes the runner's events as they come
 * and prints text (a diff of expected vs actual decision for failures), JSON,
 * or JUnit XML (CI test views).
 *
 * @module
 */
import { formatProblem } from "../config/errors.ts";
import type { TraceEntry } from "../policy/engine.ts";
import { type CaseResult, EXPECT_KEYS, type FileErrorResult, type TestEvent } from "./runner.ts";

/** Totals of a run. */
export interface Summary {
  passed: number;
  failed: number;
  skipped: number;
  /** Test files (or their policies) that could not be used; each counts as one failure. */
  fileErrors: number;
  durationMs: number;
}

/** Prints a run. */
export interface Reporter {
  event(e: TestEvent): void;
  end(summary: Summary): void;
}

/** Adds events up. */
export function summarize(events: TestEvent[], durationMs: number): Summary {
  const s: Summary = { passed: 0, failed: 0, skipped: 0, fileErrors: 0, durationMs };
  for (const e of events) {
    if (e.type === "file-error") s.fileErrors++;
    else if (e.status === "pass") s.passed++;
    else if (e.status === "fail") s.failed++;
    else s.skipped++;
  }
  return s;
}

/** `3 passed, 1 failed` (`, 2 skipped` when there are todo cases). */
export function summaryLine(s: Summary): string {
  return `${s.passed} passed, ${s.failed + s.fileErrors} failed${
    s.skipped ? `, ${s.skipped} skipped` : ""
  }`;
}

const show = (v: unknown): string => v === undefined ? "(none)" : JSON.stringify(v);

/** The expected-vs-actual lines of a case: `- key: expected`, `+ key: actual`, `  key: same`. */
export function diffLines(r: CaseResult): string[] {
  if (!r.actual) return [];
  const bad = new Map(r.mismatches.map((m) => [m.key, m]));
  const lines: string[] = [];
  for (const key of EXPECT_KEYS) {
    if (!(key in r.expected)) continue;
    const m = bad.get(key);
    const want = r.expected[key];
    if (!m) lines.push(`  ${key}: ${show(want)}`);
    else if (key === "reason_contains") {
      lines.push(`- ${key}: ${show(want)}`, `+ reason: ${show(m.actual)}`);
    } else lines.push(`- ${key}: ${show(want)}`, `+ ${key}: ${show(m.actual)}`);
  }
  return lines;
}

/** A trace entry in one line. */
export function traceLine(t: TraceEntry, i: number): string {
  return `${i + 1}. ${t.rule} (${t.source}): ${t.outcome}: ${t.detail}`;
}

/** The decision in one line: `deny by rule "x" (file:line) [rate_limit]: reason`. */
export function decisionLine(a: NonNullable<CaseResult["actual"]>): string {
  const by = a.rule === null ? "by the default" : `by rule "${a.rule}" (${a.rule_source})`;
  return `${a.action} ${by}${a.policy ? ` [${a.policy}]` : ""}, status ${a.status}: ${a.reason}`;
}

/**
 * Text: a line per case grouped by file, a diff and the trace for each
 * failure, problems of unusable files as `file:line:col: message`, and the
 * summary line.
 */
export function textReporter(write: (s: string) => void): Reporter {
  let lastFile = "";
  let printed = false;
  return {
    event(e) {
      printed = true;
      if (e.type === "file-error") {
        for (const p of e.problems) write(`${formatProblem(p)}\n`);
        return;
      }
      if (e.file !== lastFile) {
        write(`${e.file}\n`);
        lastFile = e.file;
      }
      if (e.status === "pass") return write(`  ok    ${e.name}\n`);
      if (e.status === "skip") {
        return write(`  todo  ${e.name}${e.todo ? ` (${e.todo})` : ""}\n`);
      }
      const pad = "        ";
      const lines = [`  FAIL  ${e.name}`, `${pad}at ${e.file}:${e.line}`];
      if (e.error) lines.push(`${pad}error: ${e.error}`);
      if (e.request) lines.push(`${pad}request: ${e.request}`);
      if (e.actual) {
        lines.push(`${pad}expected (-) vs actual (+):`);
        for (const l of diffLines(e)) lines.push(`${pad}${l}`);
        lines.push(`${pad}decision: ${decisionLine(e.actual)}`);
      }
      if (e.trace?.length) {
        lines.push(`${pad}trace:`);
        e.trace.forEach((t, i) => lines.push(`${pad}  ${traceLine(t, i)}`));
      }
      write(lines.join("\n") + "\n");
    },
    end(s) {
      if (s.passed + s.failed + s.skipped + s.fileErrors === 0) write("no tests found\n");
      else if (printed) write("\n");
      write(`${summaryLine(s)}\n`);
    },
  };
}

/** JSON: one document at the end, `{ ok, passed, failed, skipped, file_errors, results, errors }`. */
export function jsonReporter(write: (s: string) => void): Reporter {
  const results: CaseResult[] = [];
  const errors: FileErrorResult[] = [];
  return {
    event(e) {
      if (e.type === "file-error") errors.push(e);
      else results.push(e);
    },
    end(s) {
      write(
        JSON.stringify(
          {
            ok: s.failed + s.fileErrors === 0,
            passed: s.passed,
            failed: s.failed,
            skipped: s.skipped,
            file_errors: s.fileErrors,
            duration_ms: Math.round(s.durationMs * 1000) / 1000,
            results: results.map(({ type: _t, durationMs, ...r }) => ({
              ...r,
              duration_ms: Math.round(durationMs * 1000) / 1000,
            })),
            errors: errors.map((e) => ({ file: e.file, problems: e.problems })),
          },
          null,
          2,
        ) + "\n",
      );
    },
  };
}

const XML_ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&apos;",
};

/** Escape text for XML content and attribute values. */
export function xmlEscape(s: string): string {
  let out = "";
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    // Characters XML 1.0 cannot carry at all become U+FFFD.
    const illegal = (code < 0x20 && code !== 0x09 && code !== 0x0a && code !== 0x0d) ||
      code === 0xfffe || code === 0xffff;
    out += illegal ? "\ufffd" : XML_ENTITIES[ch] ?? ch;
  }
  return out;
}

const secs = (ms: number) => (ms / 1000).toFixed(3);

/**
 * JUnit XML (the dialect GitHub, GitLab and Jenkins read): a `<testsuite>`
 * per file, a `<testcase>` per case with `<failure>` (the diff) or
 * `<skipped>`; an unusable file is one `<testcase>` with an `<error>`.
 */
export function junitReporter(write: (s: string) => void): Reporter {
  const files = new Map<string, TestEvent[]>();
  return {
    event(e) {
      const list = files.get(e.file) ?? [];
      list.push(e);
      files.set(e.file, list);
    },
    end(s) {
      const a = xmlEscape;
      const out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        `<testsuites name="agentgate policy tests" tests="${
          s.passed + s.failed + s.skipped + s.fileErrors
        }" failures="${s.failed}" errors="${s.fileErrors}" skipped="${s.skipped}" time="${
          secs(s.durationMs)
        }">`,
      ];
      for (const [file, events] of files) {
        const sum = summarize(events, 0);
        const time = events.reduce((t, e) => t + (e.type === "case" ? e.durationMs : 0), 0);
        out.push(
          `  <testsuite name="${
            a(file)
          }" tests="${events.length}" failures="${sum.failed}" errors="${sum.fileErrors}" skipped="${sum.skipped}" time="${
            secs(time)
          }">`,
        );
        for (const e of events) {
          if (e.type === "file-error") {
            const text = e.problems.map(formatProblem).join("\n");
            out.push(
              `    <testcase classname="${a(file)}" name="(load)" file="${a(file)}">`,
              `      <error message="${a(e.problems[0]?.message ?? "cannot load")}" type="load">${
                a(text)
              }</error>`,
              "    </testcase>",
            );
            continue;
          }
          const open = `    <testcase classname="${a(file)}" name="${a(e.name)}" file="${
            a(file)
          }" line="${e.line}" time="${secs(e.durationMs)}"`;
          if (e.status === "pass") out.push(`${open}/>`);
          else if (e.status === "skip") {
            out.push(
              `${open}>`,
              `      <skipped message="${a(e.todo ? `todo: ${e.todo}` : "todo")}"/>`,
              "    </testcase>",
            );
          } else {
            const message = e.error ??
              e.mismatches.map((m) =>
                `${m.key}: expected ${show(m.expected)}, got ${show(m.actual)}`
              )
                .join("; ");
            const body = [
              ...(e.request ? [`request: ${e.request}`] : []),
              ...diffLines(e),
              ...(e.actual ? [`decision: ${decisionLine(e.actual)}`] : []),
              ...(e.trace ?? []).map(traceLine),
            ].join("\n");
            out.push(
              `${open}>`,
              `      <failure message="${a(message)}" type="mismatch">${a(body)}</failure>`,
              "    </testcase>",
            );
          }
        }
        out.push("  </testsuite>");
      }
      out.push("</testsuites>");
      write(out.join("\n") + "\n");
    },
  };
}
