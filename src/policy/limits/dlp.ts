/**
 * The `dlp` policy: which traffic is scanned for secrets and threats, and
 * what happens to a finding (warn, redact, block), reviewed like any other
 * rule. Request scanning happens in `check` (sans-IO: the proxy hands over the
 * decoded body text); redaction and response scanning are plans the proxy
 * carries out, since they change bytes in flight.
 *
 * @example
 * ```yaml
 * policies:
 *   - dlp:
 *       action: block
 *       direction: request
 *       detectors: [aws_access_key, github_token, private_key]
 *       custom: [{ name: ticket_id, regex: "TCK-[0-9]{6}" }]
 *       allow: [{ detector: openai_key, host: api.openai.com, where: header }]
 * ```
 *
 * @module
 */
import type { DlpAction, DlpPlan, RequestInfo } from "../types.ts";
import type { Checker, PolicyResult } from "./types.ts";
import type { PolicyState } from "../../state/mod.ts";
import { PolicyConfigError, rejectUnknownKeys } from "./types.ts";
import {
  compileScanner,
  DETECTOR_NAMES,
  type Finding,
  type RecordedFinding,
  type ScanCut,
  type Scanner,
  type ScanReport,
  unknownDetectorMessage,
} from "../../dlp/mod.ts";
import { compileMatch, type Matcher, matchHost } from "../match.ts";

/** A compiled `dlp` policy's settings. */
export interface DlpConfig {
  action: DlpAction;
  direction: "request" | "response" | "both";
  detectors: string[];
  custom: { name: string; regex: string }[];
  allow: {
    detector: string | null;
    host: Matcher | null;
    where: "header" | "body" | "url" | null;
  }[];
}

/** A DLP checker; `ok` results carry a {@link DlpPlan}. */
export interface DlpChecker extends Checker {
  readonly config: DlpConfig;
  readonly scanner: Scanner;
  readonly scansRequest: boolean;
}

/** Clean URL-and-header texts a dlp checker remembers, and the longest it keeps. */
const CLEAN_HEADS_MAX = 256;
const CLEAN_HEAD_MAX_CHARS = 8192;

/**
 * Headers carrying the credential a provider expects: a key in them, sent to
 * that provider, is not a leak (the same key in a body to another host is).
 */
const CREDENTIAL_HEADERS = new Set([
  "authorization",
  "x-api-key",
  "api-key",
  "x-goog-api-key",
  "proxy-authorization",
]);

/**
 * Whether the request-head scan skips header `name`: a provider's own
 * credential header sent to it. The one rule for both the scan and the
 * last-clean-head comparison ({@link sameHead}), so they cannot disagree on
 * what was scanned.
 */
const unscannedHeader = (name: string, provider: boolean) =>
  provider && CREDENTIAL_HEADERS.has(name);

/** Parse the YAML form into a {@link DlpConfig}; throws {@link PolicyConfigError}. */
export function parseDlpConfig(raw: Record<string, unknown>): DlpConfig {
  rejectUnknownKeys(raw, ["action", "direction", "detectors", "custom", "allow"], "dlp");
  const action = raw.action ?? "block";
  if (action !== "warn" && action !== "redact" && action !== "block") {
    throw new PolicyConfigError(`Invalid action "${action}": use warn, redact or block`, [
      "action",
    ]);
  }
  const direction = raw.direction ?? "request";
  if (direction !== "request" && direction !== "response" && direction !== "both") {
    throw new PolicyConfigError(
      `Invalid direction "${direction}": use request, response or both`,
      ["direction"],
    );
  }
  let detectors: string[] = [...DETECTOR_NAMES];
  if (raw.detectors !== undefined) {
    if (!Array.isArray(raw.detectors)) {
      throw new PolicyConfigError("Invalid detectors: expected a list of detector names", [
        "detectors",
      ]);
    }
    detectors = raw.detectors.map((d, i) => {
      if (typeof d !== "string" || !DETECTOR_NAMES.includes(d)) {
        throw new PolicyConfigError(unknownDetectorMessage(String(d)), ["detectors", i]);
      }
      return d;
    });
  }
  const custom: DlpConfig["custom"] = [];
  if (raw.custom !== undefined) {
    if (!Array.isArray(raw.custom)) {
      throw new PolicyConfigError("Invalid custom: expected a list of { name, regex }", ["custom"]);
    }
    raw.custom.forEach((c, i) => {
      const o = c as Record<string, unknown>;
      if (typeof o?.name !== "string" || typeof o?.regex !== "string") {
        throw new PolicyConfigError("A custom detector needs name and regex (strings)", [
          "custom",
          i,
        ]);
      }
      custom.push({ name: o.name, regex: o.regex });
    });
  }
  const allow: DlpConfig["allow"] = [];
  if (raw.allow !== undefined) {
    if (!Array.isArray(raw.allow)) {
      throw new PolicyConfigError("Invalid allow: expected a list of exceptions", ["allow"]);
    }
    raw.allow.forEach((a, i) => {
      const o = (a ?? {}) as Record<string, unknown>;
      try {
        rejectUnknownKeys(o, ["detector", "host", "where"], "dlp allow entry");
      } catch (e) {
        throw new PolicyConfigError((e as Error).message, ["allow", i]);
      }
      const where = o.where ?? null;
      if (where !== null && where !== "header" && where !== "body" && where !== "url") {
        throw new PolicyConfigError(`Invalid where "${where}": use header, body or url`, [
          "allow",
          i,
          "where",
        ]);
      }
      allow.push({
        detector: typeof o.detector === "string" ? o.detector : null,
        host: typeof o.host === "string" ? compileMatch(o.host) : null,
        where: where as DlpConfig["allow"][number]["where"],
      });
    });
  }
  return { action, direction, detectors, custom, allow };
}

/** What a `dlp` checker needs to know about the config around it. */
export interface DlpContext {
  rule: string;
  /** Whether a host is an LLM provider (its credential headers are expected). */
  isProviderHost(host: string): boolean;
  /**
   * Milliseconds the custom regexes may take per scan (`limits.max_regex_scan_time`);
   * default: no limit. The one clock the policy layer reads: a CPU budget, so
   * one request cannot hold the event loop.
   */
  regexBudgetMs?: number;
}

/** Row notes for the custom detectors a scan's time budget stopped. */
function cutNotes(report: ScanReport, where: string, ms: number | undefined): string[] {
  return report.cut.map((c) =>
    `dlp: custom detector "${c.detector}" stopped after ${ms} ms at character ${c.scanned} of ${c.of} of the ${where} (limits.max_regex_scan_time)`
  );
}

function describe(findings: RecordedFinding[]): string {
  const byDetector = new Map<string, Set<string>>();
  for (const f of findings) {
    let s = byDetector.get(f.detector);
    if (!s) byDetector.set(f.detector, s = new Set());
    s.add(f.location);
  }
  return [...byDetector].map(([d, where]) => `${d} (${[...where].join(", ")})`).join(", ");
}

/**
 * Create the `dlp` checker.
 *
 * @example
 * const c = createDlpChecker(parseDlpConfig({ action: "block" }), { rule: "r", isProviderHost });
 */
export function createDlpChecker(config: DlpConfig, ctx: DlpContext): DlpChecker {
  let scanner: Scanner;
  try {
    scanner = compileScanner({
      detectors: config.detectors,
      custom: config.custom,
      budgetMs: ctx.regexBudgetMs,
    });
  } catch (e) {
    throw new PolicyConfigError((e as Error).message, ["custom"]);
  }
  // URL-and-header texts a scan found clean. Agents send the same head again
  // and again (one user agent, one content type, one path): a head seen clean
  // is not scanned again (~12 µs per request in the s4 DLP profile). Only
  // clean texts are kept, so no secret is held here; bounded.
  const cleanHeads = new Set<string>();
  // The last head found clean, as its parts (the decoded URL, then each
  // scanned header value): an agent sends the same head request after
  // request, and comparing the parts finds it again without building the
  // joined text the set above is keyed by (~1 KB of garbage per request).
  let lastClean: string[] | null = null;
  const scansRequest = config.direction !== "response";
  const scansResponse = config.direction !== "request";
  const allowed = (detector: string, where: "header" | "body" | "url", host: string) =>
    config.allow.some((a) =>
      (a.detector === null || a.detector === detector) &&
      (a.where === null || a.where === where) &&
      (a.host === null || matchHost(a.host, host, 0))
    );
  const toAudit = (
    f: Finding,
    location: string,
  ): RecordedFinding => ({
    detector: f.detector,
    direction: "request",
    location,
    sample: f.masked,
    action: config.action,
  });
  return {
    name: "dlp",
    stateKey: `dlp:${ctx.rule}`,
    config,
    scanner,
    scansRequest,
    check(info: RequestInfo, _now: number, _state: PolicyState): PolicyResult {
      const findings: RecordedFinding[] = [];
      // Only custom detectors report cuts: without them one shared, never
      // written report does (two objects and two arrays less per request).
      const headReport: ScanReport = scanner.hasCustom ? { cut: [] } : NO_CUTS;
      const bodyReport: ScanReport = scanner.hasCustom ? { cut: [] } : NO_CUTS;
      const redactHeaders: string[] = [];
      let urlFinding = false;
      if (scansRequest && info.path !== null) {
        const url = info.query ? `${info.path}?${info.query}` : info.path;
        const provider = ctx.isProviderHost(info.host);
        const decoded = safeDecode(url);
        // The last clean head again: nothing to scan. Otherwise the URL and all
        // header values in one scan (one pass of the prefilters, one scan's
        // allocations instead of one per part), separated by line breaks no
        // detector spans. Part 0 is the URL.
        if (lastClean === null || !sameHead(lastClean, decoded, info.headers, provider)) {
          const names: (string | null)[] = [null];
          const starts: number[] = [0];
          const parts: string[] = [decoded];
          let joined = decoded + "\n";
          for (const name in info.headers) {
            if (unscannedHeader(name, provider)) continue;
            const value = String(info.headers[name]);
            names.push(name);
            starts.push(joined.length);
            parts.push(value);
            joined += value + "\n";
          }
          const known = cleanHeads.has(joined);
          const headFindings = known ? [] : scanner.scan(joined, headReport);
          if (
            headFindings.length === 0 && headReport.cut.length === 0 &&
            joined.length <= CLEAN_HEAD_MAX_CHARS
          ) {
            lastClean = parts;
            if (!known) {
              // Cleared when full, like the masking memo (dlp/secrets.ts): evicting the
              // oldest on every add would churn the Set once per request when heads
              // vary (see util/slots.ts for what that does to V8's GC).
              if (cleanHeads.size >= CLEAN_HEADS_MAX) cleanHeads.clear();
              cleanHeads.add(joined);
            }
          }
          for (const f of headFindings) {
            let i = starts.length - 1;
            while (i > 0 && starts[i] > f.start) i--;
            const name = names[i];
            if (name === null) {
              if (allowed(f.detector, "url", info.host)) continue;
              findings.push(toAudit(f, "url"));
              urlFinding = true;
              continue;
            }
            if (allowed(f.detector, "header", info.host)) continue;
            findings.push(toAudit(f, `header:${name}`));
            if (!redactHeaders.includes(name)) redactHeaders.push(name);
          }
        }
        if (info.bodyText) {
          for (const f of scanner.scan(info.bodyText, bodyReport)) {
            if (allowed(f.detector, "body", info.host)) continue;
            findings.push(toAudit(f, "body"));
          }
        }
      }
      const inspection = headReport.cut.length === 0 && bodyReport.cut.length === 0 ? [] : [
        ...cutNotes(headReport, "URL and headers", ctx.regexBudgetMs),
        ...cutNotes(bodyReport, "request body", ctx.regexBudgetMs),
      ];
      // A secret in the URL cannot be redacted safely: redact blocks it.
      const block = findings.length > 0 &&
        (config.action === "block" || (config.action === "redact" && urlFinding));
      if (block) {
        return {
          ok: false,
          status: 403,
          reason: `request blocked by DLP: ${describe(findings)}`,
          retryAfter: null,
          detail: {
            policy: "dlp",
            findings: findings.map((f) => ({
              detector: f.detector,
              location: f.location,
              sample: f.sample,
            })),
          },
          findings: findings.map((f) => ({ ...f, action: "block" })),
          ...(inspection.length ? { inspection } : {}),
        } as PolicyResult;
      }
      const plan: DlpPlan = {
        findings,
        redactRequest: config.action === "redact" && findings.length > 0 ? scanner : null,
        redactHeaders: config.action === "redact" ? redactHeaders : [],
        response: scansResponse ? { scanner, action: config.action } : null,
        allowed,
        ...(inspection.length ? { inspection } : {}),
      };
      return { ok: true, commit: NO_COMMIT, dlp: plan } as PolicyResult;
    },
  };
}

/**
 * Whether a request's URL (decoded) and scanned header values are exactly
 * `parts`, in order: the joined text they make is then the same.
 */
function sameHead(
  parts: readonly string[],
  url: string,
  headers: RequestInfo["headers"],
  provider: boolean,
): boolean {
  if (parts[0] !== url) return false;
  let i = 1;
  for (const name in headers) {
    if (unscannedHeader(name, provider)) continue;
    if (i >= parts.length || parts[i] !== String(headers[name])) return false;
    i++;
  }
  return i === parts.length;
}

/** The scan report of a scanner without custom detectors: nothing is ever cut (frozen). */
const NO_CUTS: ScanReport = Object.freeze({ cut: Object.freeze([]) as unknown as ScanCut[] });

/** A DLP check holds nothing to commit (one function for every result, not one each). */
const NO_COMMIT = (): void => {};

function safeDecode(s: string): string {
  // Most URLs have nothing to decode: skip the copy (~2 µs per request in the s4 DLP profile).
  if (s.indexOf("%") === -1 && s.indexOf("+") === -1) return s;
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return s;
  }
}

export type { DlpAction, DlpPlan } from "../types.ts";
