/**
 * `agentgate scan [FILE|-]`: run the DLP detectors over a file or stdin and
 * print the findings (masked) — for trying a custom detector, or in CI on
 * prompts and fixtures before they are sent anywhere.
 *
 * @module
 */
import { concatChunks } from "../policy/request.ts";
import { type CommandSpec, helpText, parseArgs, UsageError } from "./args.ts";
import { formatOption } from "./options.ts";
import type { Io } from "./io.ts";
import { compileScanner, decodeForScan, DETECTOR_NAMES, DETECTORS } from "../dlp/mod.ts";
import { resolve } from "node:path";

/** The interface of `scan`. */
export const scanSpec: CommandSpec = {
  name: "scan",
  summary: "Scan a file or stdin for secrets and threats with the DLP detectors.",
  usage:
    "agentgate scan [FILE|-] [--detectors a,b,…] [--custom NAME=REGEX]… [--format text|json] [--list]",
  positionals: true,
  options: [
    {
      name: "detectors",
      short: "d",
      type: "string",
      value: "LIST",
      help: "Comma-separated detector names (default: all).",
    },
    {
      name: "custom",
      type: "list",
      value: "NAME=REGEX",
      help: "A custom detector, RE2 syntax.",
    },
    {
      name: "content-type",
      type: "string",
      value: "TYPE",
      help: "How to read the input (default: JSON when it parses, else text).",
    },
    formatOption(["text", "json"], "text (default) or json."),
    { name: "list", type: "boolean", help: "List the detectors and exit." },
  ],
  epilog: [
    "stdout: the findings (text: FILE:LINE:COL: DETECTOR SAMPLE; or json), masked (first 4 +",
    "last 4); stderr: the count.",
    "",
    "Exit status: 0 nothing found, 1 findings or the input cannot be read, 2 usage error.",
    "",
    "Examples:",
    "  agentgate scan prompt.txt",
    "  git diff | agentgate scan - --detectors aws_access_key,private_key",
    '  echo "TCK-123456" | agentgate scan - --custom "ticket_id=TCK-[0-9]{6}"',
  ].join("\n"),
};

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const c of stream) chunks.push(c);
  return chunks.length ? concatChunks(chunks) : new Uint8Array(0);
}

/** Run `scan`. */
export async function scan(args: string[], io: Io): Promise<number> {
  const parsed = parseArgs(scanSpec, args);
  if (parsed.opts.help) {
    io.stdout(helpText(scanSpec));
    return 0;
  }
  if (parsed.opts.list) {
    for (const d of DETECTORS) io.stdout(`${d.name.padEnd(16)} ${d.description}\n`);
    return 0;
  }
  if (parsed.positionals.length > 1) throw new UsageError("scan takes one FILE (or - for stdin)");
  const detectors = typeof parsed.opts.detectors === "string"
    ? parsed.opts.detectors.split(",").map((s) => s.trim()).filter(Boolean)
    : [...DETECTOR_NAMES];
  const custom = ((parsed.opts.custom as string[] | undefined) ?? []).map((c) => {
    const eq = c.indexOf("=");
    if (eq <= 0) throw new UsageError(`--custom needs NAME=REGEX, not "${c}"`);
    return { name: c.slice(0, eq), regex: c.slice(eq + 1) };
  });
  let scanner;
  try {
    scanner = compileScanner({ detectors, custom });
  } catch (e) {
    io.stderr(`agentgate scan: ${(e as Error).message}\n`);
    return 2;
  }
  const file = parsed.positionals[0] ?? "-";
  let bytes: Uint8Array;
  try {
    bytes = file === "-"
      ? await readAll(io.stdin ?? new ReadableStream({ start: (c) => c.close() }))
      : await Deno.readFile(resolve(io.cwd, file));
  } catch (e) {
    // A file that cannot be read is a runtime error (1), like every other command's; 2 is
    // for a command line that is wrong.
    const why = e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message;
    io.stderr(`agentgate scan: cannot read "${file}": ${why}\n`);
    return 1;
  }
  let type = parsed.opts["content-type"] as string | undefined;
  if (type === undefined) {
    try {
      JSON.parse(new TextDecoder().decode(bytes));
      type = "application/json";
    } catch {
      type = "text/plain";
    }
  }
  const decoded = decodeForScan(bytes, type, null, 64 * 1024 * 1024);
  const text = decoded?.text ?? "";
  const findings = scanner.scan(text);
  const lineCol = (offset: number) => {
    const before = text.slice(0, offset);
    const line = before.split("\n").length;
    return { line, col: offset - before.lastIndexOf("\n") };
  };
  if (parsed.opts.format === "json") {
    io.stdout(
      JSON.stringify(
        findings.map((f) => ({ detector: f.detector, sample: f.masked, ...lineCol(f.start) })),
        null,
        2,
      ) + "\n",
    );
  } else {
    for (const f of findings) {
      const { line, col } = lineCol(f.start);
      io.stdout(`${file}:${line}:${col}: ${f.detector} ${f.masked}\n`);
    }
    // The findings are the output; the count is a summary, on stderr.
    io.stderr(
      findings.length
        ? `${findings.length} finding(s)\n`
        : `no findings (${detectors.length + custom.length} detector(s))\n`,
    );
  }
  return findings.length ? 1 : 0;
}
