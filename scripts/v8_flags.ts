/**
 * The V8 flags and permissions agentgate runs with, read from `deno task
 * start` in deno.json (the one place they are written); `deno task compile`,
 * the benchmarks and the end-to-end tests use the same ones.
 *
 * - `--max-semi-space-size=1`: a small young generation frees streamed body
 *   buffers sooner (Deno's socket reads hand V8 buffers it does not count as
 *   heap, so only a scavenge frees them), which keeps peak memory flat on
 *   bulk transfers.
 * - `--no-allocation-site-pretenuring`: V8 otherwise notices that objects of
 *   some allocation sites survive a scavenge (a request's objects do, when 50
 *   are in flight and the young generation is 1 MiB) and allocates that
 *   site's objects in the old generation directly; each such object that
 *   dies young keeps what it points to alive through every scavenge until the
 *   next full GC, and that in turn is promoted. On s1 most of every request's
 *   objects were promoted and a mark-compact ran every ~250 ms; without
 *   pretenuring: 4x fewer mark-compacts, CPU per request 81-86 -> 64-68 us
 *   (s1), 127 -> 104 us (s4), s3b unchanged (interleaved runs, 2026-12-06).
 * - `--heap-growing-percent=100`: a growing factor of 2 instead of V8's
 *   default (up to 4x the live heap) keeps the old generation near its ~21 MB
 *   live set under load: s1 peak RSS 164 -> 121 MiB at the same CPU per
 *   request (scripts/bench.ts, 2026-12-05).
 * - `--expose-gc`: lets src/proxy/reclaim.ts run a scavenge every 4 MiB
 *   relayed, which frees the socket read buffers V8 does not count: tunnel
 *   bulk peak RSS 202 -> 98 MiB, and faster (260-557 -> 520-549 MB/s).
 *
 * @module
 */
import meta from "../deno.json" with { type: "json" };

const flag = /(?:^|\s)(--v8-flags=\S+)/.exec(meta.tasks.start)?.[1];
if (!flag) throw new Error("deno.json: the start task has no --v8-flags=…");

/** `--v8-flags=…` exactly as `deno task start` passes it. */
export const V8_FLAGS: string = flag;

/**
 * The permissions agentgate runs with (`--allow-net`, `--allow-run`, …), as
 * `deno task start` grants them: the release binaries get the same ones, so
 * a command that works through the task works in the binary.
 */
export const PERMISSION_FLAGS: string[] = meta.tasks.start.split(/\s+/).filter((f) =>
  f.startsWith("--allow-")
);
