/**
 * The live phantoms of one proxy: per session, one phantom per credential,
 * created when the session is handed its credentials and forgotten when the
 * session ends. In memory only, like the sessions themselves.
 *
 * @module
 */
import type { PhantomOwner } from "./judge.ts";
import { newPhantom, phantomKey } from "./phantom.ts";
import type { CredentialSpec, IssuedCredential } from "./types.ts";

/**
 * Phantoms by session and by key.
 *
 * @example
 * const phantoms = new PhantomRegistry();
 * const issued = phantoms.issue("ci-0123456789abcdef", config.credentials);
 * phantoms.lookup(phantomKey(issued[0].phantom, config.credentials[0].phantom)); // its owner
 * phantoms.forget("ci-0123456789abcdef");
 */
export class PhantomRegistry {
  /** session -> credential name -> its phantom and key. */
  readonly #bySession = new Map<string, Map<string, { phantom: string; key: string }>>();
  readonly #byKey = new Map<string, PhantomOwner>();
  /** By lower-cased key: host names lose their case (a collision of 130+ random bits is moot). */
  readonly #byFolded = new Map<string, PhantomOwner>();
  readonly #lengths = new Map<number, number>();
  #lengthList: number[] = [];

  /** Sessions that hold phantoms. */
  get sessions(): number {
    return this.#bySession.size;
  }

  /** Key lengths in use, longest first (for the scanner). */
  get lengths(): readonly number[] {
    return this.#lengthList;
  }

  /**
   * The session's phantom for each credential (created when it has none yet,
   * the same one again otherwise).
   */
  issue(session: string, specs: readonly CredentialSpec[]): IssuedCredential[] {
    let mine = this.#bySession.get(session);
    if (!mine) this.#bySession.set(session, mine = new Map());
    return specs.map((spec) => {
      let held = mine!.get(spec.name);
      if (held === undefined) {
        let phantom: string;
        let key: string;
        do {
          phantom = newPhantom(spec.phantom);
          key = phantomKey(phantom, spec.phantom);
        } while (this.#byKey.has(key));
        held = { phantom, key };
        mine!.set(spec.name, held);
        const owner = { session, credential: spec.name, phantom };
        this.#byKey.set(key, owner);
        this.#byFolded.set(key.toLowerCase(), owner);
        this.#count(key.length, 1);
      }
      return {
        name: spec.name,
        phantom: held.phantom,
        variables: [...spec.variables],
        npmrc: spec.npmrc,
        git: { hosts: [...spec.git], username: spec.basic?.username ?? "x-access-token" },
      };
    });
  }

  /** The owner of a phantom key, if it is live. */
  lookup(key: string): PhantomOwner | undefined {
    return this.#byKey.get(key);
  }

  /** The owner of a lower-cased phantom key (from a host name), if it is live. */
  lookupFolded(key: string): PhantomOwner | undefined {
    return this.#byFolded.get(key.toLowerCase());
  }

  /** Forget a session's phantoms (revoked, expired). */
  forget(session: string): void {
    const mine = this.#bySession.get(session);
    if (!mine) return;
    this.#bySession.delete(session);
    for (const { key } of mine.values()) {
      this.#byKey.delete(key);
      this.#byFolded.delete(key.toLowerCase());
      this.#count(key.length, -1);
    }
  }

  #count(len: number, d: number) {
    const n = (this.#lengths.get(len) ?? 0) + d;
    if (n <= 0) this.#lengths.delete(len);
    else this.#lengths.set(len, n);
    this.#lengthList = [...this.#lengths.keys()].sort((a, b) => b - a);
  }
}
