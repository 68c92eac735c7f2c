/**
 * Fixtures for report tests: an audit with two sessions, denials, an
 * upstream error, LLM usage with a known and an unknown price.
 *
 * @module
 */
import type { AuditEventV1 } from "../../src/audit/event.ts";
import { AuditStore } from "../../src/audit/store.ts";

/** 2025-06-01 12:00:00Z. */
export const T0 = Date.UTC(2025, 5, 1, 12, 0, 0);
export const S1 = "ci-0a1b2c3d4e5f6a7b";
export const S2 = "b-ffffffffffffffff";

let seq = 0;

/** An audit row with defaults for what a test does not care about. */
export function event(e: Partial<AuditEventV1>): AuditEventV1 {
  seq++;
  return {
    id: `id-${String(seq).padStart(4, "0")}`,
    ts: T0,
    session: S1,
    label: "ci",
    client: "127.0.0.1",
    method: "GET",
    scheme: "https",
    host: "api.example.test",
    port: 443,
    path: "/",
    query: null,
    status: 200,
    decision: "allow",
    rule: null,
    rule_source: null,
    reason: "allowed",
    policy: null,
    bytes_in: 0,
    bytes_out: 0,
    duration_ms: 1,
    error: null,
    headers: null,
    ...e,
  };
}

/** The fixture rows. */
export function fixtureEvents(): AuditEventV1[] {
  const openai = {
    host: "api.openai.com",
    path: "/v1/chat/completions",
    method: "POST",
    rule: "openai",
    rule_source: "agentgate.yaml:8",
    provider: "openai",
    model: "gpt-4o",
  };
  return [
    event({ ts: T0 - 7_200_000, host: "old.example", rule: null, decision: "log" }),
    event({ ...openai, ts: T0, input_tokens: 1000, output_tokens: 200, cost_usd: 0.0045 }),
    event({ ...openai, ts: T0 + 1000, input_tokens: 500, output_tokens: 100, cost_usd: 0.0055 }),
    ...[2000, 3000].map((dt) =>
      event({
        ts: T0 + dt,
        path: "/admin/users",
        status: 403,
        decision: "deny",
        rule: "admin",
        rule_source: "agentgate.yaml:3",
        reason: "no admin",
      })
    ),
    event({
      ts: T0 + 4000,
      scheme: "http",
      host: "down.test",
      port: 80,
      path: "/x",
      status: 502,
      decision: "error",
      reason: 'DNS lookup failed for "down.test:80"',
      error: "upstream dns",
    }),
    event({
      ts: T0 + 4500,
      method: "POST",
      path: "/v1/files",
      decision: "would_deny",
      rule: "uploads",
      rule_source: "agentgate.yaml:12",
      reason: "uploads are reviewed",
      policy: "dlp",
    }),
    event({
      ts: T0 + 5000,
      session: S2,
      label: "b",
      method: "CONNECT",
      host: "github.com",
      path: null,
      decision: "log",
      reason: "no rule matched (default: log)",
    }),
    event({
      ts: T0 + 6000,
      session: S2,
      label: "b",
      method: "CONNECT",
      host: "github.com",
      path: null,
      status: 407,
      decision: "deny",
      reason: "proxy authentication required",
    }),
    event({
      ts: T0 + 7000,
      session: S2,
      label: "b",
      method: "POST",
      host: "api.anthropic.com",
      path: "/v1/messages",
      rule: "anthropic",
      provider: "anthropic",
      model: "claude-x",
      input_tokens: 10,
      output_tokens: 5,
      cost_usd: null,
      price_unknown: true,
    }),
    event({ ts: T0 + 8000, session: null, label: null, host: "api.openai.com", rule: "openai" }),
  ];
}

/** An in-memory audit holding the fixture rows (close it after use). */
export function fixtureAudit(): AuditStore {
  const store = AuditStore.open(":memory:", { log: () => {} });
  for (const e of fixtureEvents()) store.add(e);
  store.flush();
  return store;
}
