/**
 * The log addon: one line on stderr per denied (or would-be denied) request,
 * naming the rule, the reason and the decision id to look up in the audit.
 *
 * @module
 */
import type { Addon } from "./types.ts";

/**
 * The log addon.
 *
 * @example
 * const addons = [..., denialLog({ log: (l) => console.error(l) })];
 */
export function denialLog(deps: { log: (line: string) => void }): Addon {
  return {
    name: "log",
    done(event) {
      if (event.decision !== "deny" && event.decision !== "would_deny") return;
      deps.log(
        `agentgate: ${event.decision} ${event.method} ${event.scheme}://${event.host}:${event.port}${
          event.path ?? ""
        } rule=${event.rule ?? "-"} reason=${JSON.stringify(event.reason)} id=${event.id}`,
      );
    },
  };
}
