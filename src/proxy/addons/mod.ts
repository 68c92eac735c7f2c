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

export type { Addon, OutgoingRequest } from "./types.ts";
export { type MetricGauges, Metrics } from "./metrics.ts";

/** What the standard addons need from whoever runs the proxy. */
export interface AddonDeps {
  auth: ProxyAuth;
  state: PolicyState;
  /** Where budgets' reservations and settlements are recorded (the spend journal). */
  journal?: SpendJournal;
  metrics: Metrics;
  log: (line: string) => void;
}

/**
 * The standard addons. Order matters where hooks compose: admission first;
 * the usage tap sees the response before DLP may rewrite it; metrics and
 * logs read the final row.
 *
 * @example
 * const proxy = new ProxyServer({ ..., addons: standardAddons({ auth, state, metrics, log }) });
 */
export function standardAddons(deps: AddonDeps): Addon[] {
  return [
    deps.auth,
    llmUsageAddon({ state: deps.state, journal: deps.journal }),
    dlpAddon({ log: deps.log }),
    metricsAddon(deps.metrics),
    denialLog({ log: deps.log }),
  ];
}
