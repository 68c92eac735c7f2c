/**
 * The bounded, retrying queue behind the decision streams (`jsonl.ts`,
 * `otlp.ts`): rows wait here off the request path, go out in batches on a
 * timer, are put back (oldest first) when the target refuses them, and are
 * counted and logged — never dropped silently — past the bound or at
 * shutdown. Each stream gives it only how to send one batch.
 *
 * @module
 */
import type { SinkStatus } from "./sink.ts";

/** What one stream tells its queue. */
export interface StreamQueueOptions<T> {
  /** The config key, for log lines: `audit.jsonl`. */
  name: string;
  /** {@link SinkStatus.kind}: `jsonl`, `otlp`. */
  kind: string;
  /** Where it sends, without credentials. */
  target: string;
  /** What one item is called in log lines: `line`, `record`. */
  unit: string;
  /** Send a batch; reject when the target did not take it (the batch is kept). */
  send(batch: T[]): Promise<void>;
  /** Items per batch (default: all that wait). */
  batch?: number;
  /** Send interval (ms). */
  flushMs: number;
  /** Items held while the target refuses them (default 100,000). */
  maxQueue?: number;
  log?: (message: string) => void;
}

/**
 * A stream's queue and its numbers.
 *
 * @example
 * ```ts
 * const q = new StreamQueue({ name: "audit.jsonl", kind: "jsonl", target: "-", unit: "line",
 *   flushMs: 200, send: async (lines) => void await write(lines) });
 * q.push(line);
 * await q.close();
 * ```
 */
export class StreamQueue<T> {
  #queue: T[] = [];
  #busy: Promise<void> | null = null;
  #timer: ReturnType<typeof setInterval>;
  #closed = false;
  #lastLog = 0;
  #written = 0;
  #dropped = 0;
  #errors = 0;
  #lastError: string | null = null;
  #latency: number | null = null;

  constructor(private readonly opts: StreamQueueOptions<T>) {
    this.#timer = setInterval(() => this.#kick(), opts.flushMs);
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  /** Whether {@link close} was called: what comes after is {@link refuse}d. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Count an item that arrived after {@link close} as dropped. */
  refuse(): void {
    this.#dropped++;
  }

  /** Queue an item; past the bound the oldest are dropped, counted and logged. */
  push(item: T): void {
    if (this.#closed) return this.refuse();
    this.#queue.push(item);
    const max = this.opts.maxQueue ?? 100_000;
    if (this.#queue.length > max) {
      const over = this.#queue.length - max;
      this.#queue.splice(0, over);
      this.#dropped += over;
      this.#log(
        `queue full while ${this.opts.target} refuses them; dropped ${over} ${this.opts.unit}(s), ${this.#dropped} in total`,
      );
    }
  }

  #kick() {
    if (this.#busy !== null || this.#queue.length === 0) return;
    this.#busy = this.#send().finally(() => (this.#busy = null));
  }

  async #send(): Promise<void> {
    const batch = this.#queue.splice(0, this.opts.batch ?? this.#queue.length);
    const t0 = performance.now();
    try {
      await this.opts.send(batch);
      this.#written += batch.length;
      this.#latency = Math.round((performance.now() - t0) * 100) / 100;
      this.#lastError = null;
    } catch (e) {
      // Kept and sent again on the next tick, oldest first.
      this.#queue = batch.concat(this.#queue);
      this.#errors++;
      this.#lastError = e instanceof Error ? e.message : String(e);
      this.#log(
        `sending to ${this.opts.target} failed (${this.opts.unit}s kept): ${this.#lastError}`,
      );
    }
  }

  status(): SinkStatus {
    return {
      kind: this.opts.kind,
      target: this.opts.target,
      up: this.#lastError === null,
      latency_ms: this.#latency,
      errors: this.#errors,
      last_error: this.#lastError,
      queued: this.#queue.length,
      written: this.#written,
      dropped: this.#dropped,
      spooled: 0,
    };
  }

  /**
   * Send what waits (batch after batch, giving up after three failed
   * attempts), then stop the timer; what is left is counted as dropped.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    const failedBefore = this.#errors;
    while (this.#busy || this.#queue.length) {
      if (this.#busy) await this.#busy;
      if (this.#queue.length === 0 || this.#errors - failedBefore >= 3) break;
      this.#busy = this.#send().finally(() => (this.#busy = null));
    }
    if (this.#queue.length) {
      this.#dropped += this.#queue.length;
      this.#log(`${this.#queue.length} ${this.opts.unit}(s) could not be sent at shutdown`);
      this.#queue = [];
    }
  }

  #log(message: string) {
    const now = Date.now();
    if (now - this.#lastLog < 1000) return;
    this.#lastLog = now;
    (this.opts.log ?? ((m) => console.error(m)))(`agentgate: ${this.opts.name}: ${message}`);
  }
}
