/**
 * The addons a proxy runs, in order. A new capability that observes or
 * changes traffic is a new file in this folder and one line here.
 *
 * @module
 */
import type { PolicyState, SpendJournal } from "../../state/mod.ts";
import type { ProxyAuth } from "../auth.ts";
import type { Addon } from "./types.ts";
import { dlpAddon } from "./dlp.ts";
import { llmUsageAddon } from "./llm.ts";
import { type Metrics, metricsAddon } from "./metrics.ts";
import { denialLog } from "./log.ts";
import type { CredentialBroker } from "./credentials.ts";

export type { Addon, OutgoingRequest } from "./types.ts";
export { type MetricGauges, Metrics } from "./metrics.ts";
export { CredentialBroker } from "./credentials.ts";

/** What the standard addons need from whoever runs the proxy. */
export interface AddonDeps {
  auth: ProxyAuth;
  state: PolicyState;
  /** Where budgets' reservations and settlements are recorded (the spend journal). */
  journal?: SpendJournal;
  metrics: Metrics;
  log: (line: string) => void;
  /** The credentials broker (phantoms, tripwire, swap); none: no credentials are brokered. */
  credentials?: CredentialBroker;
}

/**
 * The standard addons. Order matters where hooks compose: admission first;
 * the usage tap sees the response before DLP may rewrite it; the credentials
 * broker swaps secrets in last, after every other edit of the request, and
 * masks an echoed secret after DLP's rewrite; metrics and logs read the
 * final row.
 *
 * @example
 * const proxy = new ProxyServer({ ..., addons: standardAddons({ auth, state, metrics, log }) });
 */
export function standardAddons(deps: AddonDeps): Addon[] {
  return [
    deps.auth,
    llmUsageAddon({ state: deps.state, journal: deps.journal }),
    dlpAddon({ log: deps.log }),
    ...(deps.credentials ? [deps.credentials] : []),
    metricsAddon(deps.metrics),
    denialLog({ log: deps.log }),
  ];
}
