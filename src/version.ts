/**
 * The version, from deno.json (imported as a module so `deno compile` embeds it).
 *
 * @module
 */
import meta from "../deno.json" with { type: "json" };

/** agentgate's version. */
export const VERSION: string = meta.version;
