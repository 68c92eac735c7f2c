/**
 * A secret value that no formatter prints: `String()`, template strings,
 * `JSON.stringify`, `console.log` / `Deno.inspect` and Node's `util.inspect`
 * all show `[secret]`. Only {@link Secret.reveal} gives the value, so every
 * place that uses it is a call site to review.
 *
 * @module
 */

const SHOWN = "[secret]";

/**
 * A secret held in memory (a credential's real value).
 *
 * @example
 * const s = new Secret("sk-live-123");
 * `${s}` // "[secret]"
 * JSON.stringify({ s }) // '{"s":"[secret]"}'
 * s.reveal() // "sk-live-123"
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  /** The value itself: only where it is put on the wire or compared. */
  reveal(): string {
    return this.#value;
  }

  /** Its length (for scanners that size their windows). */
  get length(): number {
    return this.#value.length;
  }

  toString(): string {
    return SHOWN;
  }

  toJSON(): string {
    return SHOWN;
  }

  [Symbol.toPrimitive](): string {
    return SHOWN;
  }

  [Symbol.for("Deno.customInspect")](): string {
    return SHOWN;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return SHOWN;
  }
}
