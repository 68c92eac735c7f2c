/**
 * Which policy a command uses: `--config F`, else `./agentgate.yaml` when it
 * exists, else the embedded default.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { loadConfig, loadDefaultConfig, type Loaded } from "../config/load.ts";
import { ConfigError, formatProblem } from "../config/errors.ts";
import type { Io } from "./io.ts";

/** Load the config a command should use; prints problems. Returns null on error. */
export async function loadForCommand(
  configOpt: string | undefined,
  io: Io,
  opts: { lintAsWarnings: boolean; quiet?: boolean },
): Promise<{ loaded: Loaded; source: "flag" | "cwd" | "embedded" } | null> {
  let source: "flag" | "cwd" | "embedded" = "embedded";
  let path = configOpt;
  if (path !== undefined) source = "flag";
  else if (existsSync(resolve(io.cwd, "agentgate.yaml"))) {
    path = "agentgate.yaml";
    source = "cwd";
  }
  try {
    const loaded = path === undefined ? loadDefaultConfig(io.cwd) : await loadConfig(path, io.cwd);
    for (const p of opts.quiet ? [] : loaded.problems) {
      const shown = opts.lintAsWarnings && p.lint ? { ...p, severity: "warning" as const } : p;
      io.stderr(formatProblem(shown) + "\n");
    }
    return { loaded, source };
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const p of e.problems) io.stderr(formatProblem(p) + "\n");
    return null;
  }
}
