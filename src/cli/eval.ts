/**
 * `agentgate eval`: the decision for one request, and the trace of every rule
 * considered on the way to it.
 *
 * @module
 */
import { resolve } from "node:path";
import { type CommandSpec, helpText, parseArgs, UsageError } from "./args.ts";
import { configOption, formatOption } from "./options.ts";
import type { Io } from "./io.ts";
import { loadForCommand } from "./config_arg.ts";
import { PolicyState } from "../state/mod.ts";
import {
  buildRequest,
  decideRequest,
  describeRequest,
  RequestError,
} from "../policytest/request.ts";
import { parseTime } from "../policytest/testfile.ts";
import { traceLine } from "../policytest/report.ts";

/** The interface of `eval`. */
export const evalSpec: CommandSpec = {
  name: "eval",
  summary: "Decide one request under a policy and explain it rule by rule.",
  usage: "agentgate eval [--config FILE] --url URL [--method M] [--header K:V]...\n" +
    "                      [--body @FILE|TEXT] [--session S] [--dest-ip IP]... [--now TIME]\n" +
    "                      [--format text|json]",
  options: [
    configOption(),
    { name: "url", short: "u", type: "string", value: "URL", help: "The request's absolute URL." },
    { name: "method", short: "X", type: "string", value: "M", help: "HTTP method (default GET)." },
    { name: "header", short: "H", type: "list", value: "K:V", help: "A request header." },
    {
      name: "body",
      short: "d",
      type: "string",
      value: "@FILE|TEXT",
      help: "Request body: @file reads a file; JSON is parsed for conditions.",
    },
    { name: "session", short: "s", type: "string", value: "S", help: "Session id." },
    { name: "client", type: "string", value: "IP", help: "Client address (default 127.0.0.1)." },
    {
      name: "dest-ip",
      type: "list",
      value: "IP",
      help:
        "What the host resolves to (repeat for several): for dest.ip, address ranges and the address guard.",
    },
    {
      name: "now",
      type: "string",
      value: "TIME",
      help: "Decision time, ISO 8601 with a zone (default: now).",
    },
    formatOption(["text", "json"], "text (default) or json."),
  ],
  epilog: [
    "An https:// URL is decided as an intercepted request when its host is in tls.intercept, else",
    "as a CONNECT tunnel (host and port only); --method CONNECT decides the tunnel itself. Rate and",
    "spending state start empty. eval does not resolve names: the address guard judges an address",
    "literal, a host pinned in upstream.resolve, or --dest-ip; a rule that needs the address of",
    "another name says so.",
    "",
    "Exit status: 0 decided (whatever the decision), 1 policy error, 2 usage error.",
  ].join("\n"),
};

/** Run `eval`. */
export async function evalCommand(args: string[], io: Io): Promise<number> {
  const parsed = parseArgs(evalSpec, args);
  if (parsed.opts.help) {
    io.stdout(helpText(evalSpec));
    return 0;
  }
  const url = parsed.opts.url as string | undefined;
  if (url === undefined) throw new UsageError('missing option "--url"');
  const headers: Record<string, string> = {};
  for (const h of (parsed.opts.header as string[] | undefined) ?? []) {
    const i = h.indexOf(":");
    if (i <= 0) throw new UsageError(`invalid --header "${h}": expected NAME:VALUE`);
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  let now = Date.now();
  if (parsed.opts.now !== undefined) {
    const t = parseTime(parsed.opts.now as string);
    if (typeof t === "string") throw new UsageError(t);
    now = t;
  }
  let body: Uint8Array | undefined;
  const bodyOpt = parsed.opts.body as string | undefined;
  if (bodyOpt !== undefined) {
    if (bodyOpt.startsWith("@")) {
      try {
        body = await Deno.readFile(resolve(io.cwd, bodyOpt.slice(1)));
      } catch (e) {
        io.stderr(`agentgate eval: cannot read "${bodyOpt.slice(1)}": ${(e as Error).message}\n`);
        return 1;
      }
    } else body = new TextEncoder().encode(bodyOpt);
    if (!("content-type" in headers)) {
      const t = new TextDecoder().decode(body).trimStart();
      if (t.startsWith("{") || t.startsWith("[")) headers["content-type"] = "application/json";
    }
  }
  const got = await loadForCommand(parsed.opts.config as string | undefined, io, { quiet: true });
  if (got === null) return 1;
  const config = got.loaded.config;
  let req;
  try {
    req = buildRequest(config, {
      url,
      method: parsed.opts.method as string | undefined,
      headers,
      body,
      session: (parsed.opts.session as string | undefined) ?? null,
      client: parsed.opts.client as string | undefined,
      ...(parsed.opts["dest-ip"] !== undefined
        ? { dest_ip: parsed.opts["dest-ip"] as string[] }
        : {}),
    }, "eval");
  } catch (e) {
    if (e instanceof RequestError) throw new UsageError(e.message);
    throw e;
  }
  const decided = decideRequest(config, req, { now, state: new PolicyState(), trace: true });
  const d = decided.decision;
  const trace = decided.trace ?? [];
  if (parsed.opts.format === "json") {
    const i = req.info;
    io.stdout(
      JSON.stringify(
        {
          request: {
            kind: req.kind,
            method: i.method,
            scheme: i.scheme,
            host: i.host,
            port: i.port,
            path: i.path,
            query: i.query,
            session: i.session,
            dest_ip: i.dest?.ip ?? null,
          },
          step: decided.step,
          decision: {
            action: d.verdict,
            rule: d.rule,
            rule_source: d.ruleSource,
            status: d.status,
            reason: d.reason,
            policy: d.policy,
            retry_after: d.retryAfter,
            ...(d.needsDest ? { needs: "dest" } : {}),
          },
          trace,
        },
        null,
        2,
      ) + "\n",
    );
    return 0;
  }
  const lines = [
    `config:   ${config.file}`,
    `request:  ${describeRequest(req)}`,
    ...(req.info.dest && req.info.dest.ip !== req.info.host
      ? [`address:  ${req.info.dest.ip}${req.info.dest.pinned ? " (upstream.resolve)" : ""}`]
      : []),
    `decision: ${d.verdict}${
      req.kind === "intercepted" && decided.step === "tunnel"
        ? " (at the CONNECT, before the request)"
        : ""
    }`,
    `rule:     ${d.rule === null ? "(none: the default decided)" : `${d.rule} (${d.ruleSource})`}`,
    ...(d.policy ? [`policy:   ${d.policy}`] : []),
    `reason:   ${d.reason}`,
    ...(d.needsDest
      ? [`hint:     give the address it resolves to with --dest-ip (eval does not resolve names)`]
      : []),
    `status:   ${d.status}${d.retryAfter !== null ? ` (retry after ${d.retryAfter}s)` : ""}`,
    "",
    "trace:",
    ...trace.map((t, n) => `  ${traceLine(t, n)}`),
  ];
  if (trace.length === 0) lines.push("  (no rule considered)");
  if (d.rule === null && !trace.some((t) => t.outcome === "decided")) {
    lines.push(`  -> no rule decided: ${d.reason}`);
  }
  io.stdout(lines.join("\n") + "\n");
  return 0;
}
