/**
 * The credentials addon (the broker): the agent holds phantom tokens, never
 * the real secrets.
 *
 * - **screen** (before the policy decides): every request, tunnel and
 *   upgrade is searched for live phantoms and loaded real secrets — host,
 *   URL, every header line as sent, the body as read (raw and decoded). A
 *   phantom anywhere but its credential's place, in another session, or on a
 *   host, path or method the credential does not cover, and a real secret
 *   anywhere, refuse the request (403, policy `credentials`, a finding of
 *   its own kind: `phantom_token` / `credential_secret`); a real secret seen
 *   is masked in what the audit keeps of the request.
 * - **request** (after the policy allowed it): each phantom in its place is
 *   replaced by the real secret of the configuration the request arrived
 *   under (a reload swaps in new values; requests in flight keep theirs), and
 *   the secret is masked in the response should the upstream echo it back.
 *
 * Bytes inside a tunnel that is not intercepted are never seen: only the
 * CONNECT's host and headers are.
 *
 * @module
 */
import {
  basicValue,
  type CredentialSpec,
  type IssuedCredential,
  judge,
  maskPhantom,
  type PhantomOwner,
  PhantomRegistry,
  scanRequest,
  type ScanTargets,
  secretNeedles,
  type Sighting,
  type Swap,
  swapInQuery,
  swapInValue,
  type Tripped,
} from "../../credentials/mod.ts";
import type { Secret } from "../../util/secret.ts";
import { decodeForScan } from "../../dlp/mod.ts";
import { type BodyRead, concatChunks } from "../../policy/request.ts";
import type { RequestVerdict } from "../../policy/pipeline.ts";
import type { RequestInfo } from "../../policy/types.ts";
import type { Exchange } from "../exchange.ts";
import type { ResponseTransform } from "../forward.ts";
import type { Addon, OutgoingRequest } from "./types.ts";
import type { Metrics } from "./metrics.ts";
import { rawHeader } from "./headers.ts";
import { isTextual } from "./dlp.ts";

/** What a configuration's credentials are, with their loaded secrets. */
interface Loaded {
  specs: Map<string, CredentialSpec>;
  secrets: Map<string, Secret>;
  /** What each real secret leaves in a text. */
  needles: { owner: string; needles: string[] }[];
}

/** What the broker keys per configuration (`AgentgateConfig` has it). */
interface HasCredentials {
  credentials: CredentialSpec[];
}

/** The mask a real secret seen in a request or echoed in a response is replaced with. */
const masked = (credential: string) => `[REDACTED:credential:${credential}]`;

/**
 * The credentials addon. `serve` loads each configuration's secrets
 * (`proxy/secrets.ts`) and {@link CredentialBroker.install}s them before the
 * configuration serves; sessions get their phantoms from
 * {@link CredentialBroker.issue} and lose them with
 * {@link CredentialBroker.forget}.
 *
 * @example
 * const broker = new CredentialBroker({ metrics });
 * broker.install(config, (await loadSecrets(config.credentials, env)).secrets);
 * const issued = broker.issue("ci-0123456789abcdef", config); // [{ name: "openai", phantom: "sk-proj-agentgate-…", … }]
 */
export class CredentialBroker implements Addon {
  readonly name = "credentials";
  readonly phantoms = new PhantomRegistry();
  readonly #loaded = new WeakMap<HasCredentials, Loaded>();
  readonly #plans = new WeakMap<Exchange, Swap[]>();

  constructor(private readonly deps: { metrics: Metrics }) {}

  /** The secrets of a configuration (before it serves a request). */
  install(config: HasCredentials, secrets: Map<string, Secret>): void {
    this.#loaded.set(config, {
      specs: new Map(config.credentials.map((c) => [c.name, c])),
      secrets,
      needles: [...secrets].map(([owner, s]) => ({ owner, needles: secretNeedles(s.reveal()) })),
    });
  }

  /** A session's phantoms for the credentials of `config` (the same ones on every call). */
  issue(session: string, config: HasCredentials): IssuedCredential[] {
    return config.credentials.length ? this.phantoms.issue(session, config.credentials) : [];
  }

  /** A session ended: its phantoms are no longer anyone's. */
  forget(session: string): void {
    this.phantoms.forget(session);
  }

  #loadedFor(config: HasCredentials): Loaded {
    let l = this.#loaded.get(config);
    if (!l) {
      // A configuration whose secrets were never installed swaps nothing, but still trips.
      l = {
        specs: new Map(config.credentials.map((c) => [c.name, c])),
        secrets: new Map(),
        needles: [],
      };
      this.#loaded.set(config, l);
    }
    return l;
  }

  /** The loaded credentials when there is anything to look for, else null. */
  #active(ex: Exchange): Loaded | null {
    if (ex.config.credentials.length === 0) return null;
    const l = this.#loadedFor(ex.config);
    return this.phantoms.sessions > 0 || l.needles.length > 0 ? l : null;
  }

  readsBody(ex: Exchange): boolean {
    return this.#active(ex) !== null;
  }

  #targets(loaded: Loaded): ScanTargets<PhantomOwner, string> {
    return {
      lengths: this.phantoms.lengths,
      lookup: (k) => this.phantoms.lookup(k),
      lookupFolded: (k) => this.phantoms.lookupFolded(k),
      secrets: loaded.needles,
    };
  }

  #judge(
    ex: Exchange,
    loaded: Loaded,
    seen: { phantoms: Sighting<PhantomOwner>[]; secrets: Sighting<string>[] },
  ) {
    const info = ex.info;
    return judge(
      {
        scheme: info.scheme,
        host: info.host,
        port: info.port,
        method: info.method,
        path: info.path,
        session: info.session,
      },
      loaded.specs,
      seen,
    );
  }

  screen(
    ex: Exchange,
    rawHeaders: readonly string[],
    body: BodyRead | null,
  ): RequestVerdict | null {
    const loaded = this.#active(ex);
    if (!loaded) return null;
    const info = ex.info;
    // The head was screened already when the body comes: only the body is new.
    const view = body === null
      ? {
        host: info.host,
        path: info.path,
        query: info.query,
        headers: pairs(rawHeaders),
        body: [],
      }
      : {
        host: "",
        path: null,
        query: "",
        headers: [],
        body: bodyTexts(body, info, ex.config.limits.maxScanBytes),
      };
    const seen = scanRequest(view, this.#targets(loaded));
    if (seen.phantoms.length === 0 && seen.secrets.length === 0) return null;
    const j = this.#judge(ex, loaded, seen);
    if ("swaps" in j) {
      if (j.swaps.length) this.#plans.set(ex, j.swaps);
      return null;
    }
    if (j.kind === "secret") scrub(info, loaded);
    this.deps.metrics.credentialTripwire(j.credential, j.kind);
    return tripped(ex, j);
  }

  /**
   * The body past the part screened before the decision (a body larger than
   * the scan cap), searched as it streams: a phantom or a real secret stops
   * the upload there (in `mode: audit` it is recorded and the body goes on).
   */
  #restWatcher(ex: Exchange, loaded: Loaded): (chunk: Uint8Array) => string | null {
    const dec = new TextDecoder("latin1");
    let carry = "";
    let done = false;
    return (chunk) => {
      if (done) return null;
      const text = carry + dec.decode(chunk, { stream: true });
      carry = text.slice(-STREAM_OVERLAP);
      const seen = scanRequest(
        { host: "", path: null, query: "", headers: [], body: [text] },
        this.#targets(loaded),
      );
      if (seen.phantoms.length === 0 && seen.secrets.length === 0) return null;
      const j = this.#judge(ex, loaded, seen);
      if ("swaps" in j) return null;
      done = true;
      const v = tripped(ex, j);
      ex.decision = v.decision;
      ex.findings.push(...v.findings);
      this.deps.metrics.credentialTripwire(j.credential, j.kind);
      return v.decision.verdict === "deny" ? `upload cut: ${j.reason}` : null;
    };
  }

  request(ex: Exchange, out: OutgoingRequest): void {
    const active = this.#active(ex);
    if (active) out.watchRest(this.#restWatcher(ex, active));
    const plan = this.#plans.get(ex);
    if (!plan) return;
    const v = out.verdict.decision.verdict;
    // Only where a rule allows it (a would-be deny in audit mode is forwarded without it).
    if (v !== "allow" && v !== "log") return;
    const loaded = this.#loaded.get(ex.config);
    if (!loaded) return;
    let query: string | null = null;
    const used = new Map<string, Secret>();
    for (const s of plan) {
      const secret = loaded.secrets.get(s.credential);
      if (!secret) continue;
      switch (s.kind) {
        case "header":
          out.setHeader(s.name, swapInValue(s.value, s.phantom, secret.reveal()));
          break;
        case "basic": {
          const user = loaded.specs.get(s.credential)?.basic?.username ?? s.user;
          out.setHeader("authorization", basicValue(user, secret.reveal()));
          break;
        }
        case "query":
          query = swapInQuery(query ?? ex.info.query, s.name, s.phantom, secret.reveal());
          break;
      }
      if (!used.has(s.credential)) this.deps.metrics.credentialSwap(s.credential);
      used.set(s.credential, secret);
    }
    if (query !== null) out.setQuery(query);
    if (used.size === 0) return;
    ex.addMask(maskOf(used));
    out.transform(echoMask(used, ex));
    // Only an uncompressed response can be searched for an echoed secret.
    out.setHeader("accept-encoding", "identity");
  }
}

/** Characters of a streamed body kept to find what spans two chunks (phantoms, encoded ones too). */
const STREAM_OVERLAP = 2048;

/** `[name, value, …]` as pairs with lower-case names; the proxy's own credentials are left out. */
function pairs(raw: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (name === "proxy-authorization") continue;
    out.push([name, raw[i + 1]]);
  }
  return out;
}

/** The body as read, as text, and decoded (decompressed, JSON unescaped, forms decoded) when that differs. */
function bodyTexts(body: BodyRead, info: RequestInfo, maxScanBytes: number): string[] {
  if (body.chunks.length === 0) return [];
  const bytes = concatChunks(body.chunks);
  const raw = new TextDecoder().decode(bytes);
  const decoded = decodeForScan(
    bytes,
    info.headers["content-type"] ?? null,
    info.headers["content-encoding"] ?? null,
    Math.max(maxScanBytes, bytes.length),
  )?.text;
  return decoded === undefined || decoded === raw ? [raw] : [raw, decoded];
}

/** The refusal of a tripped request (a would-be deny in `mode: audit`). */
function tripped(ex: Exchange, t: Tripped): RequestVerdict {
  const audit = ex.config.policy.mode === "audit";
  return {
    decision: {
      verdict: audit ? "would_deny" : "deny",
      rule: null,
      ruleSource: null,
      reason: t.reason,
      policy: "credentials",
      status: 403,
      retryAfter: null,
      detail: { credential: t.credential, where: t.where },
    },
    findings: [{
      detector: t.kind === "secret" ? "credential_secret" : "phantom_token",
      direction: "request",
      location: t.where,
      sample: t.phantom === null ? masked(t.credential) : maskPhantom(t.phantom),
      action: "block",
    }],
    responseScan: null,
  };
}

/** Mask every loaded secret in what the audit keeps of a request (host, path, query, headers). */
function scrub(info: RequestInfo, loaded: Loaded): void {
  for (const [name, secret] of loaded.secrets) {
    const mask = (text: string) => {
      let out = text;
      for (const n of secretNeedles(secret.reveal())) out = out.split(n).join(masked(name));
      return out;
    };
    info.host = mask(info.host);
    if (info.path !== null) info.path = mask(info.path);
    info.query = mask(info.query);
    for (const k of Object.keys(info.headers)) info.headers[k] = mask(info.headers[k]);
  }
}

/**
 * A function that masks the given secrets in a text (an upstream's error
 * quoting one): each run that starts like a secret (its first 8 characters)
 * is masked as far as it matches, since a quote may be cut short.
 */
function maskOf(secrets: Map<string, Secret>): (text: string) => string {
  return (text) => {
    let out = text;
    for (const [name, s] of secrets) {
      const v = s.reveal();
      const head = v.slice(0, 8);
      for (let i = out.indexOf(head); i !== -1; i = out.indexOf(head, i + 1)) {
        let n = head.length;
        while (n < v.length && i + n < out.length && out[i + n] === v[n]) n++;
        out = out.slice(0, i) + masked(name) + out.slice(i + n);
      }
    }
    return out;
  };
}

/**
 * A response transform that masks the secrets a request was sent with,
 * should the upstream echo one back (text responses; others pass as they
 * are). It holds back at most the longest secret's length.
 */
function echoMask(secrets: Map<string, Secret>, ex: Exchange): ResponseTransform {
  const values = [...secrets].map(([name, s]) => ({ name, value: s.reveal() }));
  const hold = Math.max(...values.map((v) => v.value.length)) - 1;
  const dec = new TextDecoder();
  const enc = new TextEncoder();
  let carry = "";
  const found = new Set<string>();
  const replace = (text: string) => {
    let out = text;
    for (const { name, value } of values) {
      if (!out.includes(value)) continue;
      out = out.split(value).join(masked(name));
      if (!found.has(name)) {
        found.add(name);
        ex.findings.push({
          detector: "credential_secret",
          direction: "response",
          location: "body",
          sample: masked(name),
          action: "redact",
        });
      }
    }
    return out;
  };
  return {
    head(_status, raw) {
      const ce = rawHeader(raw, "content-encoding");
      if (ce && ce.toLowerCase() !== "identity") return false;
      return isTextual(rawHeader(raw, "content-type") ?? "");
    },
    chunk(c) {
      const text = replace(carry + dec.decode(c, { stream: true }));
      const keep = Math.min(hold, text.length);
      carry = text.slice(text.length - keep);
      return { out: enc.encode(text.slice(0, text.length - keep)) };
    },
    end() {
      const text = replace(carry + dec.decode());
      carry = "";
      return enc.encode(text);
    },
  };
}
