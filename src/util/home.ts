/**
 * agentgate's own directory: `$AGENTGATE_HOME`, else `~/.agentgate`. The CA
 * and, unless a policy names another place, the audit database live there,
 * so neither lands in whatever directory agentgate happens to start from.
 *
 * @module
 */
import { homedir } from "node:os";
import { join, resolve } from "node:path";

/**
 * Expands a leading `~` or `~/` to the home directory (`~user` is left as is).
 *
 * @example
 * ```ts
 * expandHome("~/.agentgate"); // "/home/me/.agentgate"
 * ```
 */
export function expandHome(path: string): string {
  if (path !== "~" && !path.startsWith("~/") && !path.startsWith("~\\")) return path;
  const home = Deno.env.get("HOME") || Deno.env.get("USERPROFILE") || homedir();
  return join(home, path.slice(1));
}

/**
 * The agentgate home directory, absolute: `$AGENTGATE_HOME` when set,
 * otherwise `~/.agentgate`.
 *
 * @example
 * ```ts
 * agentgateHome(); // "/home/me/.agentgate"
 * ```
 */
export function agentgateHome(): string {
  const fromEnv = Deno.env.get("AGENTGATE_HOME");
  return resolve(expandHome(fromEnv ? fromEnv : "~/.agentgate"));
}
