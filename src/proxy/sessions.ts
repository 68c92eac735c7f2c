/**
 * Minted sessions: ids agentgate hands out together with a secret, by
 * `agentgate run` (its in-process proxy) or `POST /_/api/sessions` (the admin
 * token). A client proves it holds a session by presenting both
 * (`Proxy-Authorization: Basic id:secret`); a client-chosen id is never a
 * session.
 *
 * @module
 */
import { newSessionId, randomHex, sameSecret } from "../util/session_id.ts";

/** A session as its holder receives it (the secret is shown once). */
export interface SessionGrant {
  session: string;
  secret: string;
  label: string | null;
  /** ms since the epoch, or null (lives as long as the proxy). */
  expiresAt: number | null;
}

/** Thrown when the registry is full. */
export class SessionLimitError extends Error {
  override name = "SessionLimitError";
}

interface Entry {
  secret: string;
  label: string | null;
  expiresAt: number | null;
}

/**
 * The live minted sessions of one proxy (in memory: a restart forgets them).
 *
 * @example
 * const sessions = new SessionRegistry();
 * const g = sessions.mint({ label: "ci" });
 * sessions.verify(g.session, g.secret); // { session: "ci-…", label: "ci" }
 */
export class SessionRegistry {
  readonly #entries = new Map<string, Entry>();
  /** Called once when a session ends (revoked, or found expired): its phantoms go with it. */
  onEnd: ((session: string) => void) | null = null;

  /** @param max live sessions at most (expired ones are dropped first) */
  constructor(private readonly max = 10_000) {}

  /** Live sessions (expired ones may still be counted until the next mint). */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * A new session and its secret.
   *
   * @throws {SessionLimitError} when `max` sessions are live.
   */
  mint(opts: { label?: string | null; ttlMs?: number | null; now?: number } = {}): SessionGrant {
    const now = opts.now ?? Date.now();
    if (this.#entries.size >= this.max) this.sweep(now);
    if (this.#entries.size >= this.max) {
      throw new SessionLimitError(
        `${this.max} sessions are live: revoke some (DELETE /_/api/sessions/:id) or wait for them to expire`,
      );
    }
    let session = newSessionId(opts.label);
    while (this.#entries.has(session)) session = newSessionId(opts.label);
    const secret = randomHex(16);
    const expiresAt = opts.ttlMs ? now + opts.ttlMs : null;
    this.#entries.set(session, { secret, label: opts.label ?? null, expiresAt });
    return { session, secret, label: opts.label ?? null, expiresAt };
  }

  /** The session when `secret` is its secret and it has not expired, else null. */
  verify(
    session: string,
    secret: string,
    now = Date.now(),
  ): { session: string; label: string | null } | null {
    const e = this.#entries.get(session);
    if (!e) return null;
    if (e.expiresAt !== null && e.expiresAt <= now) {
      this.#end(session);
      return null;
    }
    return sameSecret(e.secret, secret) ? { session, label: e.label } : null;
  }

  /** Forget a session; false when there was none. */
  revoke(session: string): boolean {
    if (!this.#entries.has(session)) return false;
    this.#end(session);
    return true;
  }

  /** Drop expired sessions. */
  sweep(now = Date.now()): void {
    for (const [id, e] of this.#entries) {
      if (e.expiresAt !== null && e.expiresAt <= now) this.#end(id);
    }
  }

  #end(session: string): void {
    this.#entries.delete(session);
    this.onEnd?.(session);
  }
}
