/**
 * The addon interface: everything that observes or changes a request or a
 * response beside the decision itself (proxy authentication, DLP, LLM usage
 * and pricing, metrics, logs) is an addon with these hooks, after mitmproxy's
 * addon events. The proxy calls the hooks of every addon in the order they
 * are listed (`addons/mod.ts`); an addon implements only the hooks it needs.
 *
 * ```
 * admit ─▶ screen ─▶ (decision) ─▶ decided ─▶ request ─▶ response head, chunks, end ─▶ done
 *   407     403       pipeline     deny too   allowed     through the observers it registered
 * ```
 *
 * @module
 */
import type { IncomingHttpHeaders } from "node:http";
import type { RequestInfo } from "../../policy/types.ts";
import type { RequestVerdict } from "../../policy/pipeline.ts";
import type { BodyRead } from "../../policy/request.ts";
import type { AuditEventV1 } from "../../audit/event.ts";
import type { Exchange } from "../exchange.ts";
import type { Answer } from "../reject.ts";
import type { ResponseObserver, ResponseTransform } from "../forward.ts";

/** An allowed HTTP request on its way upstream: what addons may read and change. */
export interface OutgoingRequest {
  /** The final verdict that let it through. */
  readonly verdict: RequestVerdict;
  /** Request headers as the client sent them. */
  readonly headers: IncomingHttpHeaders;
  /** The whole body when it was read (possibly rewritten already), else undefined. */
  readonly body: Uint8Array | undefined;
  /** Replace the body read whole (sent with its own Content-Length). */
  setBody(bytes: Uint8Array): void;
  /** Replace a header value upstream (null removes the header). */
  setHeader(name: string, value: string | null): void;
  /** Replace the query string upstream (without `?`; the path stays as sent). */
  setQuery(query: string): void;
  /**
   * See each chunk of the body that streams past the part read before the
   * decision (a body larger than the scan cap); a reason returned stops the
   * upload there and aborts the exchange with it (set `ex.decision` first to
   * record why).
   */
  watchRest(watch: (chunk: Uint8Array) => string | null): void;
  /** See the response as it streams, unchanged (usage taps, DLP `warn`). */
  observe(observer: ResponseObserver): void;
  /**
   * Rewrite the response in flight (DLP `redact` / `block`, a credential's
   * secret echoed back); several transforms run in the order they were set,
   * each on the output of the one before.
   */
  transform(transform: ResponseTransform): void;
}

/**
 * An addon. Hooks must not throw for a request (a thrown hook is a bug; the
 * proxy contains it, but the request may fail).
 *
 * @example
 * const hello: Addon = { name: "hello", done: (event) => console.log(event.decision) };
 */
export interface Addon {
  /** Shown in logs and errors. */
  readonly name: string;
  /**
   * A request, tunnel or upgrade arrives, before it is decided: set who it is
   * (`info.session`, `info.label`) or refuse it with an answer (the first
   * refusal wins; the request is then recorded as denied with that reason).
   */
  admit?(headers: IncomingHttpHeaders, info: RequestInfo): Answer | null;
  /**
   * Look at an admitted request before the policy decides it — its head
   * (every header line as sent: `[name, value, …]`; `body` null), then
   * again with what was read of its body (and nothing else) when
   * {@link Addon.readsBody} asked for it — and refuse it with a verdict of
   * its own (the first refusal wins; the policy is not asked, so no rule's
   * limits are charged). CONNECT tunnels and WebSocket upgrades are
   * screened on their head. This is how the credentials tripwire sees
   * traffic no rule reads (why it is not part of the pipeline: what it
   * looks for — live phantoms, loaded secrets — exists only in the proxy).
   */
  screen?(
    ex: Exchange,
    rawHeaders: readonly string[],
    body: BodyRead | null,
  ): RequestVerdict | null;
  /** Whether {@link Addon.screen} needs the body of this request (read up to the policy's scan cap). */
  readsBody?(ex: Exchange): boolean;
  /** The final verdict on an HTTP request is known, allow or deny. */
  decided?(ex: Exchange, verdict: RequestVerdict): void;
  /** An allowed HTTP request is about to be forwarded. */
  request?(ex: Exchange, out: OutgoingRequest): void;
  /** The exchange ended and its audit row is final (every request and tunnel, once). */
  done?(event: AuditEventV1, ex: Exchange): void;
}
