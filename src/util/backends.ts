/**
 * The fleet view's backends: every external service a running agentgate
 * depends on (shared state in Redis, audit sinks such as PostgreSQL or an
 * OTLP collector) reports its status here; `/_/health`, `/_/api/health`, the
 * dashboard and `/_/metrics` read the list. A backend is a small object with
 * a `status()` method, read at request or scrape time (nothing is pushed).
 *
 * @example
 * ```ts
 * const backends = new Backends();
 * backends.add({ status: () => ({ name: "state", kind: "redis", url: "redis://cache:6379/0", up: true,
 *   latency_ms: 0.4, errors: 0, last_error: null, queued: 0, dropped: 0, mode: null }) });
 * backends.list(); // [{ name: "state", kind: "redis", … }]
 * ```
 *
 * @module
 */

/** One backend as the fleet view shows it. */
export interface BackendStatus {
  /** What it is for: `state`, `audit`, `stream`, … */
  name: string;
  /** `redis`, `postgres`, `otlp`, `jsonl`, … */
  kind: string;
  /** Where it is, never with a password ({@link redactUrl}). */
  url: string;
  /** Whether the last attempt to reach it succeeded. */
  up: boolean;
  /** Latency of recent round trips (a moving average, ms), or null before the first. */
  latency_ms: number | null;
  /** Failed round trips since start. */
  errors: number;
  /** The last failure (masked), or null. */
  last_error: string | null;
  /** Items waiting to be written to it (queued, spooled). */
  queued: number;
  /** Items given up past the queue's bound since start. */
  dropped: number;
  /**
   * What agentgate does instead while it is down (`local`: deciding with the
   * process's own counters; `spool`: writing to a local file), or null.
   */
  mode: string | null;
}

/** Something that reports a {@link BackendStatus}. */
export interface BackendReporter {
  status(): BackendStatus;
}

/** The backends of one running proxy. */
export class Backends {
  #list: BackendReporter[] = [];

  /** Adds a backend (in the order they should be shown). */
  add(b: BackendReporter): void {
    this.#list.push(b);
  }

  /** Every backend's status now. */
  list(): BackendStatus[] {
    return this.#list.map((b) => b.status());
  }
}

/**
 * A URL without its password (and user name), for every place it is shown.
 *
 * @example
 * ```ts
 * redactUrl("rediss://default:s3cret@cache:6380/1"); // "rediss://cache:6380/1"
 * ```
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.toString().replace(/\/$/, "");
  } catch {
    return url.replace(/\/\/[^@/]*@/, "//");
  }
}

/** A moving average of latencies (ms): recent round trips count most. */
export class Latency {
  #ms: number | null = null;

  /** Adds one round trip. */
  observe(ms: number): void {
    this.#ms = this.#ms === null ? ms : this.#ms * 0.9 + ms * 0.1;
  }

  /** The average, rounded to µs, or null before the first. */
  get ms(): number | null {
    return this.#ms === null ? null : Math.round(this.#ms * 1000) / 1000;
  }
}
