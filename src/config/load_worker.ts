/**
 * The reload worker (see `offthread.ts`): reads, parses, validates, compiles
 * and lints a policy on its own thread — the part of a load that costs
 * seconds for a big policy — and sends the main thread what it needs to
 * compile the policy again without parsing: each file's validated data and
 * the position of each rule, in small messages.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import os from "node:os";
import { compileSteps, drain, parseParts, readMainPolicy } from "./load.ts";
import { ConfigError } from "./errors.ts";
import type { WorkerReply, WorkerRequest } from "./offthread.ts";

/**
 * Lower this thread's CPU priority (Linux: a thread has its own nice value),
 * so on a busy machine the thread that serves requests wins the CPU over the
 * load. Best effort: elsewhere, or without /proc, the load runs as it is.
 */
function yieldCpu(): void {
  try {
    const tid = Number(Deno.readLinkSync("/proc/thread-self").split("/").pop());
    if (Number.isInteger(tid) && tid > 0) os.setPriority(tid, 19);
  } catch {
    // Not Linux, or no /proc: the load only competes at normal priority.
  }
}
yieldCpu();

/** Rules per message: each message is deserialized on the main thread in one go. */
const BATCH = 500;

function send(m: WorkerReply): void {
  self.postMessage(m);
}

self.onmessage = (e: MessageEvent<WorkerRequest>) => {
  const { path, cwd, limits, load } = e.data;
  try {
    const { text, budget } = readMainPolicy(path, cwd, limits);
    const problems: Parameters<typeof parseParts>[3] = [];
    const errors: Parameters<typeof parseParts>[4] = [];
    const parts = parseParts(text, path, cwd, problems, errors, budget);
    // Compiled here for its errors and lints; the main thread compiles again
    // from the validated data (compiled rules hold functions, which cannot
    // cross threads).
    drain(compileSteps(parts, path, cwd, problems, errors, { load }));
    parts.forEach((part, i) => {
      const rules = (part.raw.rules ?? []) as unknown[];
      const positions = new Int32Array(rules.length * 2);
      rules.forEach((_, k) => {
        const p = part.src.pos(part.src.nodeAt(["rules", k]));
        positions[2 * k] = p.line;
        positions[2 * k + 1] = p.col;
      });
      send({
        type: "part",
        index: i,
        file: part.src.file,
        abs: part.abs,
        legacy: part.legacy,
        raw: { ...part.raw, rules: undefined },
        positions,
        rules: rules.length,
      });
      for (let k = 0; k < rules.length; k += BATCH) {
        send({ type: "rules", index: i, from: k, rules: rules.slice(k, k + BATCH) });
      }
    });
    send({ type: "done", parts: parts.length, problems });
  } catch (err) {
    if (err instanceof ConfigError) send({ type: "error", problems: err.problems });
    else send({ type: "crash", message: (err as Error)?.stack ?? String(err) });
  }
};
