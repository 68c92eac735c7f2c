/**
 * The decision flow of one connection, sans-IO: what the connection reveals
 * (a tunnel; a request head, plain or inside an intercepted tunnel; its body
 * once read) goes in, the next step or the final verdict comes out. The
 * proxy drives it with sockets; `agentgate test`, `eval` and `replay` drive
 * it with requests written in files or read from the audit. Nothing else
 * decides, so the tools and the running proxy cannot disagree.
 *
 * ```
 * CONNECT ──decideTunnel──▶ deny | tunnel | intercept ──▶ each request inside:
 *       └──▶ needsDest: resolve ──decideTunnel again
 * request head ──decideHead──▶ (path readings: deny) | verdict
 *                          ├──▶ read the body (up to `cap`) ──decideBody──▶ …
 *                          └──▶ resolve the name ──decideDest──▶ …
 * ```
 *
 * A request head's first step is its path (`ambiguity.ts`): a raw path that
 * servers read differently is denied when the policy would decide the
 * readings differently, or forwarded in canonical form
 * (`limits.ambiguous_paths`).
 *
 * The address is a step like the body: asked for when a rule matches by
 * address or reads `dest`, and — for the proxy, which resolves — before a
 * request is forwarded, so the address guard judges the address it will
 * connect to.
 *
 * A verdict is final: it carries the DLP outcome (findings to record, the
 * redacted body and header values, the response scan to run), and a body
 * that must be redacted but cannot be is denied here — never forwarded.
 *
 * @module
 */
import type { Decision, Destination, DlpAction, RequestInfo } from "./types.ts";
import { type CompiledPolicy, decide, type TraceEntry } from "./engine.ts";
import type { PolicyState } from "../state/mod.ts";
import type { OnStateError, StateAnswer, StateAsk } from "../state/shared.ts";
import { type BodyLimits, type BodyRead, readBodyInto } from "./request.ts";
import { type RecordedFinding, redactBody, type Scanner } from "../dlp/mod.ts";
import { type AmbiguousPaths, pathStep } from "./ambiguity.ts";

/** What the pipeline needs of a loaded configuration (`AgentgateConfig` has it). */
export interface PipelineConfig {
  policy: CompiledPolicy;
  /** `ambiguousPaths` defaults to `deny`. */
  limits: BodyLimits & { ambiguousPaths?: AmbiguousPaths };
}

/** Time, counters and an optional trace: what every step of one decision shares. */
export interface StepContext {
  /** The decision time (ms since the epoch). */
  now: number;
  state: PolicyState;
  /** When given, the rules considered by the deciding step are explained here. */
  trace?: TraceEntry[];
  /**
   * The caller resolves names before connecting (the proxy): a request to be
   * forwarded asks for its address first (see `DecideInput.resolve`).
   */
  resolve?: boolean;
  /** Addresses of agentgate's own host (the guard denies them like loopback). */
  local?: ReadonlySet<string>;
  /**
   * Limits live in a shared backend (`state.on_state_error`): a rule whose
   * limits keep counters asks for them (the `state` step) before its verdict.
   */
  shared?: OnStateError;
  /** The backend's answer (set by {@link decideState}). */
  stateAnswer?: StateAnswer;
}

/** The response scan a forwarded request carries (a `dlp` policy with `direction: response|both`). */
export interface ResponseScan {
  scanner: Scanner;
  action: DlpAction;
  /** The policy's exceptions, for findings made in the response. */
  allowed(detector: string, where: "header" | "body" | "url", host: string): boolean;
}

/** The final verdict on an HTTP request. */
export interface RequestVerdict {
  decision: Decision;
  /** Findings of the request to record on its row (masked), blocked or not. */
  findings: RecordedFinding[];
  /** A replacement body (redacted), sent with its own length. */
  body?: Uint8Array;
  /** Header values to replace (lower-case name -> value; null removes the header). */
  headerEdits?: Map<string, string | null>;
  /** The response must be scanned as it streams. */
  responseScan: ResponseScan | null;
  /**
   * The path to forward instead of the one sent (`limits.ambiguous_paths:
   * normalize` and a raw path servers read differently): the canonical path
   * the policy decided on, without the query.
   */
  forwardPath?: string;
  /**
   * What a `dlp` policy of the deciding rule could not inspect in full (a
   * body past `limits.max_scan_bytes`, a decompression limit, custom
   * regexes stopped by their time budget), for the row's `inspection`.
   */
  inspection?: string[];
}

/** The next step for a request. */
export type RequestStep =
  | { next: "verdict"; verdict: RequestVerdict }
  /**
   * Read the body (at most `cap` bytes, then stop), and call {@link decideBody}.
   * `asked` is the engine's answer that asked for it (`needsBody`: the rule
   * and what it needs), or null when an LLM call's body is read ahead.
   */
  | { next: "body"; cap: number; asked: Decision | null }
  /**
   * Resolve the name and call {@link decideDest}. `asked` is the engine's
   * answer that asked for it (`needsDest`: the rule, or the guard, and why).
   */
  | { next: "dest"; asked: Decision }
  /**
   * Ask the shared backend (one atomic round trip) and call
   * {@link decideState} with its answer.
   */
  | { next: "state"; ask: StateAsk; asked: Decision };

/** The next step for a request head (the first {@link RequestStep}). */
export type HeadStep = RequestStep;

const scanning = new WeakMap<CompiledPolicy, boolean>();

/** Whether any rule of the policy carries a `dlp` policy (then bodies are decoded for scanning). */
export function policyScans(policy: CompiledPolicy): boolean {
  let v = scanning.get(policy);
  if (v === undefined) {
    v = policy.rules.some((r) => r.checkers.some((c) => c.name === "dlp"));
    scanning.set(policy, v);
  }
  return v;
}

/**
 * Decide a CONNECT tunnel, which shows host and port only. With `intercept`
 * the tunnel will be terminated and each request inside decided on its own:
 * only a host-level deny (or a deny default no rule can override) refuses it.
 *
 * A decision with `needsDest` asks for the address: set `info.dest` and
 * decide again.
 *
 * @example
 * const d = decideTunnel(config, info, { now: Date.now(), state, intercept: false });
 * if (d.needsDest) resolveAndDecideAgain();
 * else if (d.verdict === "deny") refuse(d);
 */
export function decideTunnel(
  config: PipelineConfig,
  info: RequestInfo,
  ctx: StepContext & { intercept: boolean },
): Decision {
  return decide(config.policy, {
    info,
    now: ctx.now,
    state: ctx.state,
    bodyRead: true,
    intercept: ctx.intercept,
    trace: ctx.trace,
    resolve: ctx.resolve,
    local: ctx.local,
    shared: ctx.shared,
    stateAnswer: ctx.stateAnswer,
  });
}

/**
 * Decide a request from its head. LLM calls (a POST to a provider host with
 * a body) always read their small JSON body first: the model prices the call
 * for spending limits and the usage tap reads it. Any other request reads
 * its body only when a rule that could decide it needs the body.
 *
 * @param opts.hasBody whether the request carries a body
 * @param opts.readAhead read an LLM call's body before deciding (default
 *   true); `replay`, which has no bodies, turns it off and decides from the
 *   head whenever the policy allows it (the decision is the same)
 * @param opts.readBody read the body before deciding, up to the scan cap
 *   (the proxy's addons screen it: the credentials tripwire)
 */
export function decideHead(
  config: PipelineConfig,
  info: RequestInfo,
  opts: StepContext & { hasBody: boolean; readAhead?: boolean; readBody?: boolean },
): RequestStep {
  const policy = config.policy;
  const path = pathStep(policy, info, config.limits.ambiguousPaths ?? "deny");
  if (path?.kind === "deny") {
    return {
      next: "verdict",
      verdict: { decision: path.decision, findings: [], responseScan: null },
    };
  }
  // The proxy's screening reads the body whatever the rules need (the decision is the same).
  if (opts.hasBody && opts.readBody) {
    return { next: "body", cap: bodyCap(config, true), asked: null };
  }
  if (opts.hasBody && opts.readAhead !== false && info.method === "POST") {
    const provider = info.path !== null ? policy.llm?.detect(info.host, info.port) ?? null : null;
    if (provider !== null) return { next: "body", cap: bodyCap(config, false), asked: null };
  }
  return step(config, info, opts, !opts.hasBody, null);
}

/**
 * The most of a body the pipeline reads: for conditions, and for scans (a
 * rule's DLP policy, or the proxy's screening when `screened`).
 */
function bodyCap(config: PipelineConfig, screened = false): number {
  return policyScans(config.policy) || screened
    ? Math.max(config.limits.maxBodyBytes, config.limits.maxScanBytes)
    : config.limits.maxBodyBytes;
}

/** Decide with what is known now; the next step, or the verdict. */
function step(
  config: PipelineConfig,
  info: RequestInfo,
  ctx: StepContext,
  bodyRead: boolean,
  body: BodyRead | null,
): RequestStep {
  const d = decide(config.policy, {
    info,
    now: ctx.now,
    state: ctx.state,
    bodyRead,
    trace: ctx.trace,
    resolve: ctx.resolve,
    local: ctx.local,
    shared: ctx.shared,
    stateAnswer: ctx.stateAnswer,
  });
  if (d.needsBody) return { next: "body", cap: bodyCap(config), asked: d };
  if (d.needsDest) return { next: "dest", asked: d };
  if (d.needs === "state") {
    // Given an answer, the engine cannot ask again; if it ever did, refuse (fail closed).
    if (ctx.stateAnswer !== undefined) {
      return {
        next: "verdict",
        verdict: {
          decision: { ...d, stateAsk: undefined, needs: undefined, reason: "internal error" },
          findings: [],
          responseScan: null,
        },
      };
    }
    return { next: "state", ask: d.stateAsk!, asked: d };
  }
  return { next: "verdict", verdict: verdictOf(config, info, d, body) };
}

/** Reason for a WebSocket upgrade under a `dlp` policy. */
export const UPGRADE_UNSCANNED = "WebSocket frames cannot be scanned by a dlp policy: refused";

/**
 * Apply the WebSocket rule to a decided upgrade (it has no body). After the
 * 101 its frames flow both ways unread, so a rule whose `dlp` policy must see
 * the traffic cannot let one through: such an upgrade is denied (the head's
 * findings are still recorded) rather than relayed unscanned. The upgrade's
 * head goes through {@link decideHead} (and {@link decideDest}) like any
 * request first; this turns the verdict it reached.
 *
 * @example
 * const v = upgradeVerdict(config, step.verdict);
 * if (v.decision.verdict === "deny") refuse(v.decision);
 */
export function upgradeVerdict(config: PipelineConfig, v: RequestVerdict): RequestVerdict {
  const d = v.decision;
  if (d.verdict === "deny" || d.verdict === "would_deny" || d.dlp === undefined) return v;
  // Like a body that cannot be redacted (verdictOf), refused after the rule
  // matched: its limits were counted as for a forwarded request.
  const audit = config.policy.mode === "audit";
  return {
    ...v,
    decision: {
      ...d,
      verdict: audit ? "would_deny" : "deny",
      status: 403,
      policy: "dlp",
      reason: `${UPGRADE_UNSCANNED} (rule "${d.rule}")`,
      dlp: undefined,
    },
    responseScan: null,
  };
}

/**
 * Decide a request once its body was read (whole, or up to the cap of
 * {@link decideHead}): `info.body` and `info.bodyText` are filled from it,
 * then the request is decided with the body known (it may still need the
 * address).
 */
export function decideBody(
  config: PipelineConfig,
  info: RequestInfo,
  body: BodyRead,
  ctx: StepContext,
): RequestStep {
  readBodyInto(info, body, config.limits, policyScans(config.policy));
  return step(config, info, ctx, true, body);
}

/**
 * Decide a request once its name was resolved: `info.dest` is set, then the
 * request is decided with the address known (it may still need the body).
 *
 * @param opts.hasBody whether the request carries a body
 * @param opts.body what was read of it, or null when it was not read (yet)
 */
export function decideDest(
  config: PipelineConfig,
  info: RequestInfo,
  dest: Destination,
  opts: StepContext & { hasBody: boolean; body: BodyRead | null },
): RequestStep {
  info.dest = dest;
  return step(config, info, opts, !opts.hasBody || opts.body !== null, opts.body);
}

/**
 * Decide a request once the shared backend answered its `state` step (the
 * answer, or `{ error }` when it could not: `state.on_state_error` decides).
 *
 * @param opts.hasBody whether the request carries a body
 * @param opts.body what was read of it, or null when it was not read
 *
 * @example
 * const answer = await shared.ask(step.ask);
 * advance(decideState(config, info, answer, { ...ctx, hasBody, body }));
 */
export function decideState(
  config: PipelineConfig,
  info: RequestInfo,
  answer: StateAnswer,
  opts: StepContext & { hasBody: boolean; body: BodyRead | null },
): RequestStep {
  return step(
    config,
    info,
    { ...opts, stateAnswer: answer },
    !opts.hasBody || opts.body !== null,
    opts.body,
  );
}

/**
 * Decide a CONNECT tunnel once the shared backend answered (see
 * {@link decideTunnel}; a tunnel's rule may carry a rate limit).
 */
export function decideTunnelState(
  config: PipelineConfig,
  info: RequestInfo,
  answer: StateAnswer,
  ctx: StepContext & { intercept: boolean },
): Decision {
  const d = decideTunnel(config, info, { ...ctx, stateAnswer: answer });
  return d.needs === "state"
    ? { ...d, stateAsk: undefined, needs: undefined, verdict: "deny", reason: "internal error" }
    : d;
}

const CANNOT_REDACT =
  "request body cannot be redacted (larger than limits.max_scan_bytes or not text): blocked";

/**
 * What the deciding rule could not inspect in full, or null (most requests:
 * nothing is allocated for them). The body's limits count only when the
 * rule's dlp policy read the body.
 */
function inspectionNotes(info: RequestInfo, d: Decision): string[] | null {
  const scanned = d.dlp !== undefined || d.policy === "dlp";
  const body = scanned ? info.bodyNotes : undefined;
  const plan = d.verdict === "deny" ? undefined : d.dlp?.inspection;
  if (!body?.length && !d.inspection?.length && !plan?.length) return null;
  return [...(body ?? []), ...(d.inspection ?? []), ...(plan ?? [])];
}

/**
 * The engine's decision completed with what its `dlp` plan implies: the
 * request's header values and body redacted, or — when a finding sits in a
 * body that cannot be redacted (cut at the cap, or not text) — the request
 * denied: better refused than forwarded with the secret in it.
 */
function verdictOf(
  config: PipelineConfig,
  info: RequestInfo,
  decided: Decision,
  body: BodyRead | null,
): RequestVerdict {
  let d = decided;
  const findings: RecordedFinding[] = d.findings ? [...d.findings] : [];
  const plan = d.verdict === "deny" ? undefined : d.dlp;
  const out: RequestVerdict = { decision: d, findings, responseScan: null };
  if (config.limits.ambiguousPaths === "normalize" && info.spelling && info.path) {
    out.forwardPath = info.path;
  }
  const inspection = inspectionNotes(info, d);
  if (inspection) out.inspection = inspection;
  if (!plan) return out;
  findings.push(...plan.findings);
  const scanner = plan.redactRequest;
  if (scanner) {
    const edits = new Map<string, string | null>();
    for (const name of plan.redactHeaders) {
      const v = info.headers[name] ?? "";
      edits.set(name, scanner.redact(v, scanner.scan(v)));
    }
    if (plan.findings.some((f) => f.location === "body")) {
      const r = body?.complete
        ? redactBody(
          body.chunks[0],
          info.headers["content-type"] ?? null,
          info.headers["content-encoding"] ?? null,
          scanner,
          config.limits.maxScanBytes,
        )
        : null;
      if (r === null) {
        d = {
          ...d,
          verdict: config.policy.mode === "audit" ? "would_deny" : "deny",
          status: 403,
          policy: "dlp",
          reason: CANNOT_REDACT,
        };
        out.decision = d;
      } else if (r.changed) {
        out.body = r.body;
        edits.set("content-encoding", null);
      }
    }
    out.headerEdits = edits;
  }
  if (plan.response && d.verdict !== "deny") {
    out.responseScan = { ...plan.response, allowed: plan.allowed };
  }
  return out;
}
