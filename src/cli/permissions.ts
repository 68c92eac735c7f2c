/**
 * A missing Deno permission as one line a user can act on. agentgate is run
 * as `deno run main.ts` or `deno task start` as well as a compiled binary; a
 * `deno run` without, say, `--allow-run` must not end in a stack trace.
 *
 * @module
 */

/**
 * The one-line explanation of a `Deno.errors.NotCapable`, or null for any
 * other error.
 *
 * @example
 * ```ts
 * permissionProblem(new Deno.errors.NotCapable(
 *   'Requires run access to "curl", run again with the --allow-run flag',
 * ));
 * // 'missing permission --allow-run: requires run access to "curl"; …'
 * ```
 */
export function permissionProblem(e: unknown): string | null {
  if (!(e instanceof Deno.errors.NotCapable)) return null;
  const message = e.message.split("\n")[0];
  const flag = /--allow-[a-z-]+/.exec(message)?.[0] ?? "the permission it names";
  const what = message.replace(/,?\s*run again with the --allow-[a-z-]+ flag\.?$/, "");
  return `missing permission ${flag}: ${what.charAt(0).toLowerCase()}${what.slice(1)}; ` +
    `run agentgate with ${flag} (deno task start, the installed agentgate and the release ` +
    "binaries have every permission it needs)";
}
