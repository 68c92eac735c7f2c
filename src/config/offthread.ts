/**
 * Loading a policy without stalling the proxy that serves while it loads
 * (a reload). Parsing YAML with positions, validating and linting cost about
 * 100 µs per rule: a 50,000-rule policy took seconds of event-loop time, and
 * every request waited for it. So a worker thread (`load_worker.ts`) does all
 * of that, and reports the errors and lints. What it cannot hand over is the
 * compiled policy — matchers and conditions are functions, which do not cross
 * threads — so it sends each file's validated data and its rules' positions,
 * in batches of 500 rules (one message is deserialized in one go), and the
 * main thread compiles them in slices of a few milliseconds, giving the event
 * loop back between slices.
 *
 * `deno compile` includes the worker because `scripts/compile.ts` passes it
 * with `--include` (a worker's module is not in the main module graph).
 *
 * @module
 */
import {
  compileSteps,
  type Loaded,
  type LoadOptions,
  POLICY_LIMITS,
  type PolicyLimits,
} from "./load.ts";
import { ConfigError, type Problem } from "./errors.ts";
import { type Part, PositionsSource } from "./source.ts";

/** What the main thread asks the worker. */
export interface WorkerRequest {
  path: string;
  cwd: string;
  limits: PolicyLimits;
  /** The command line's overrides (`serve --listen`, `--no-dashboard`). */
  load: LoadOptions;
}

/** What the worker answers, in order: parts and their rule batches, then done (or an error). */
export type WorkerReply =
  | {
    type: "part";
    index: number;
    file: string;
    abs: string;
    legacy: boolean;
    // deno-lint-ignore no-explicit-any
    raw: Record<string, any>;
    /** `[line, col]` of each rule, flattened. */
    positions: Int32Array;
    rules: number;
  }
  | { type: "rules"; index: number; from: number; rules: unknown[] }
  | { type: "done"; parts: number; problems: Loaded["problems"] }
  | { type: "error"; problems: Problem[] }
  | { type: "crash"; message: string };

/** Options of {@link loadConfigOffThread}. */
export interface OffThreadOptions {
  /** Longest main-thread slice of compiling, in ms (default 5). */
  sliceMs?: number;
  /** Give up (the policy is not loaded) after this long (default 120 s). */
  timeoutMs?: number;
  limits?: PolicyLimits;
  /** The command line's overrides, as for `loadConfig`. */
  load?: LoadOptions;
}

function failed(path: string, message: string): ConfigError {
  return new ConfigError([{ severity: "error", file: path, line: 0, col: 0, message }]);
}

/** The parts the worker sends, once it is done. */
function receive(worker: Worker, path: string, timeoutMs: number): Promise<{
  parts: Part[];
  problems: Loaded["problems"];
}> {
  return new Promise((resolve, reject) => {
    const parts: Part[] = [];
    const timer = setTimeout(
      () => reject(failed(path, `loading the policy took longer than ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    const end = (f: () => void) => {
      clearTimeout(timer);
      f();
    };
    worker.onerror = (e) => {
      e.preventDefault();
      end(() => reject(failed(path, `the policy could not be loaded: ${e.message}`)));
    };
    worker.onmessage = (e: MessageEvent<WorkerReply>) => {
      const m = e.data;
      switch (m.type) {
        case "part": {
          const pos = m.positions;
          const positions: [number, number][] = new Array(m.rules);
          for (let k = 0; k < m.rules; k++) positions[k] = [pos[2 * k], pos[2 * k + 1]];
          parts[m.index] = {
            src: new PositionsSource(m.file, positions),
            raw: { ...m.raw, rules: new Array(m.rules) },
            legacy: m.legacy,
            abs: m.abs,
            // The worker threw on any schema error: nothing is invalid here.
            invalid: [],
          };
          return;
        }
        case "rules": {
          const list = parts[m.index].raw.rules as unknown[];
          for (let k = 0; k < m.rules.length; k++) list[m.from + k] = m.rules[k];
          return;
        }
        case "done":
          return end(() => resolve({ parts, problems: m.problems }));
        case "error":
          return end(() => reject(new ConfigError(m.problems)));
        case "crash":
          return end(() => reject(failed(path, `the policy could not be loaded: ${m.message}`)));
      }
    };
  });
}

/**
 * Load a policy file like `loadConfig`, with the event loop free to serve
 * while it loads: no slice of main-thread work is longer than `sliceMs`
 * (plus one rule). Every failure, the worker's included, is a ConfigError.
 *
 * @example
 * const { config, problems } = await loadConfigOffThread("agentgate.yaml", Deno.cwd());
 */
export async function loadConfigOffThread(
  path: string,
  cwd: string,
  opts: OffThreadOptions = {},
): Promise<Loaded> {
  const sliceMs = opts.sliceMs ?? 5;
  let worker: Worker;
  try {
    worker = new Worker(new URL("./load_worker.ts", import.meta.url).href, { type: "module" });
  } catch (e) {
    throw failed(path, `the policy could not be loaded: ${(e as Error).message}`);
  }
  try {
    const answer = receive(worker, path, opts.timeoutMs ?? 120_000);
    worker.postMessage(
      { path, cwd, limits: opts.limits ?? POLICY_LIMITS, load: opts.load ?? {} } as WorkerRequest,
    );
    const { parts, problems } = await answer;
    worker.terminate();
    // Lints were the worker's; compiling again from the same data only builds.
    const steps = compileSteps(parts, path, cwd, [], [], { lint: false, load: opts.load });
    for (;;) {
      const t = performance.now();
      let r = steps.next();
      while (!r.done && performance.now() - t < sliceMs) r = steps.next();
      if (r.done) return { config: r.value.config, problems };
      await new Promise((res) => setTimeout(res, 0));
    }
  } finally {
    worker.terminate();
  }
}
