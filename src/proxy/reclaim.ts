/**
 * Gives socket read buffers back while bulk data streams through.
 *
 * Deno hands every socket read to JavaScript as a fresh buffer whose memory
 * lives outside the V8 heap and is not reported to V8, so V8 sees only the
 * small wrapper objects: a stream of 100 MiB allocates so little heap that
 * no scavenge runs for many megabytes, and the dead buffers pile up.
 * Measured through a CONNECT tunnel (`../shared/bench` s5, 100 MiB downloads,
 * 2026-12-05): peak RSS 81 -> 202 MiB and 260-557 MB/s. A minor GC (a
 * scavenge of the 1 MiB young generation, tens of µs) after every 4 MiB
 * relayed frees them: peak RSS 81 -> 98 MiB and 520-549 MB/s — faster too,
 * since the allocator reuses warm pages instead of faulting in new ones.
 *
 * The scavenge needs V8's `--expose-gc`, which `deno task start`, the
 * compiled binary, `deno install` as the README gives it, the benchmarks and
 * the tests pass (scripts/v8_flags.ts); without it this is a no-op. (Setting
 * the flag at run time with `node:v8` and taking `gc` from a `node:vm`
 * context, the Node trick, works under Deno 2.9 but every call then runs a
 * full GC: 6.8 ms instead of 30 µs, and tunnels fell to 66-97 MB/s.)
 *
 * @module
 */

const gc = (globalThis as { gc?: (options?: { type?: "minor" | "major" }) => void }).gc;

/** Bytes relayed between two scavenges. */
export const RECLAIM_EVERY_BYTES = 4 * 1024 * 1024;

let relayed = 0;

/**
 * Counts bytes read from a socket; every {@link RECLAIM_EVERY_BYTES} runs a
 * minor GC. Cheap enough to call on every read.
 */
export function noteRead(chunk: { length: number }): void {
  if (gc === undefined) return;
  relayed += chunk.length;
  if (relayed >= RECLAIM_EVERY_BYTES) {
    relayed = 0;
    gc({ type: "minor" });
  }
}

/** Counts every read of these piped sockets (tunnels, WebSocket pass-through). */
export function noteReadsOf(...sockets: { on(event: "data", fn: typeof noteRead): unknown }[]) {
  if (gc === undefined) return;
  for (const s of sockets) s.on("data", noteRead);
}
