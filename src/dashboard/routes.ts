/**
 * Requests to the proxy itself (origin-form, or absolute-form to its own
 * address): `/_/health`, `/_/metrics`, and — unless the dashboard is off —
 * `/_/dashboard` and `/_/api/*`. A request for another host never gets here.
 *
 * @module
 */
import type http from "node:http";
import type { AgentgateConfig } from "../config/load.ts";
import type { Metrics } from "./metrics.ts";

/** What the internal routes can see of the running proxy. */
export interface InternalDeps {
  version: string;
  startedAt: number;
  /** The audit database file (open your own read-only connection). */
  auditPath: string;
  audit: {
    readonly queueDepth: number;
    readonly lastError: string | null;
    readonly writeErrors: number;
  };
  /** The policy in force (changes on reload). */
  config(): AgentgateConfig;
  metrics: Metrics;
  /** Serve /_/dashboard and /_/api (false: `--no-dashboard` / `proxy.dashboard: false`). */
  dashboard: boolean;
  /** Bearer token the page and API demand, or null (then loopback clients only). */
  token: string | null;
}

/** JSON answer with the headers every API response carries. */
export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + "\n";
  res.writeHead(status, {
    "content-type": "application/json",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "content-length": String(new TextEncoder().encode(text).length),
  });
  res.end(text);
}

/**
 * Create the handler for internal routes.
 *
 * @example
 * const internal = createInternalRoutes(deps);
 * internal(req, res, "/_/health");
 */
export function createInternalRoutes(
  deps: InternalDeps,
): (req: http.IncomingMessage, res: http.ServerResponse, path: string) => void {
  return (_req, res, path) => {
    if (path === "/_/health") {
      const failing = deps.audit.lastError !== null;
      return sendJson(res, failing ? 503 : 200, {
        status: failing ? "audit_failing" : "ok",
        version: deps.version,
        uptime_s: Math.round((Date.now() - deps.startedAt) / 1000),
        audit_queue: deps.audit.queueDepth,
        ...(failing ? { audit_error: deps.audit.lastError } : {}),
      });
    }
    if (path === "/_/metrics") {
      const text = deps.metrics.render();
      res.writeHead(200, {
        "content-type": "text/plain; version=0.0.4; charset=utf-8",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      });
      return res.end(text);
    }
    if (path.startsWith("/_/")) {
      return sendJson(res, 404, {
        error: "not_found",
        reason: `no such agentgate endpoint "${path}"`,
      });
    }
    return sendJson(res, 400, {
      error: "not_a_proxy_request",
      reason:
        "agentgate is a forward proxy: send absolute-form requests (set HTTP_PROXY / HTTPS_PROXY to this address)",
    });
  };
}
