/**
 * Which policy a command uses: `--config F`, else `./agentgate.yaml` when it
 * exists, else the embedded default.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { loadConfig, loadDefaultConfig, type Loaded, type LoadOptions } from "../config/load.ts";
import { ConfigError, formatProblem } from "../config/errors.ts";
import type { Io } from "./io.ts";

/** The policy file a command reads: `--config`, else `./agentgate.yaml`, else none (embedded). */
export function configPathFor(
  configOpt: string | undefined,
  io: Pick<Io, "cwd">,
): { path: string | undefined; source: "flag" | "cwd" | "embedded" } {
  if (configOpt !== undefined) return { path: configOpt, source: "flag" };
  if (existsSync(resolve(io.cwd, "agentgate.yaml"))) {
    return { path: "agentgate.yaml", source: "cwd" };
  }
  return { path: undefined, source: "embedded" };
}

/**
 * Load the config a command should use and print its problems on stderr
 * (warnings unless `quiet`; errors always). Returns null on error. Whether a
 * problem is an error is the loader's decision alone, the same for every
 * command (see `parseConfig`).
 *
 * @example
 * const got = await loadForCommand(undefined, io, { quiet: true });
 * if (got === null) return 1;
 */
export async function loadForCommand(
  configOpt: string | undefined,
  io: Io,
  opts: { quiet?: boolean; load?: LoadOptions } = {},
): Promise<{ loaded: Loaded; source: "flag" | "cwd" | "embedded" } | null> {
  const { path, source } = configPathFor(configOpt, io);
  try {
    const loaded = path === undefined
      ? loadDefaultConfig(io.cwd, opts.load)
      : await loadConfig(path, io.cwd, opts.load);
    for (const p of opts.quiet ? [] : loaded.problems) io.stderr(formatProblem(p) + "\n");
    return { loaded, source };
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const p of e.problems) io.stderr(formatProblem(p) + "\n");
    return null;
  }
}
