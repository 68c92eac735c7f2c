/**
 * Per-host leaf cache for the intercepting TLS server: an LRU of issued
 * leaves, each with its `node:tls` SecureContext built once.
 *
 * @example
 * ```ts
 * import https from "node:https";
 * import { loadOrCreateCA } from "./ca.ts";
 * import { LeafStore } from "./store.ts";
 * const store = new LeafStore(await loadOrCreateCA());
 * const server = https.createServer({ SNICallback: store.sniCallback }, handler);
 * ```
 *
 * @module
 */

import tls from "node:tls";
import type { CertificateAuthority } from "./ca.ts";
import { type Leaf, LeafIssuer, type LeafKeyType, normalizeLeafName } from "./leaf.ts";

/** A cached leaf with the TLS context that serves it. */
export interface LeafEntry extends Leaf {
  /** Built once per host; hand it to an `SNICallback`. */
  secureContext: tls.SecureContext;
}

/** Options of {@link LeafStore}. */
export interface LeafStoreOptions {
  /** Hosts kept; the least recently used is dropped beyond it. Default 1,000. */
  capacity?: number;
  /** Leaf key type; default that of `leaf.ts`. */
  keyType?: LeafKeyType;
  /** A leaf this close to its notAfter is issued again. Default 7 days. */
  renewBeforeMs?: number;
  /** Clock, for tests. */
  now?: () => Date;
}

/** Default {@link LeafStoreOptions.capacity}. */
export const DEFAULT_LEAF_CAPACITY = 1000;

/**
 * LRU cache of leaves by host. Concurrent requests for one uncached host share
 * a single issuance; a cached host costs a Map lookup.
 *
 * @example
 * ```ts
 * const store = new LeafStore(ca, { capacity: 5000 });
 * const { secureContext } = await store.get("api.openai.com");
 * metrics.gauge("agentgate_leaf_cache_size", store.size);
 * ```
 */
export class LeafStore {
  /** Most hosts kept. */
  readonly capacity: number;
  readonly #issuer: LeafIssuer;
  readonly #renewBeforeMs: number;
  readonly #now: () => Date;
  // A Map iterates in insertion order: re-inserting on use keeps the least
  // recently used entry first, which makes the LRU O(1) without a linked list.
  readonly #entries = new Map<string, LeafEntry>();
  readonly #inFlight = new Map<string, Promise<LeafEntry>>();
  #issued = 0;

  /** Throws a RangeError for a capacity that is not a positive integer. */
  constructor(ca: CertificateAuthority, options: LeafStoreOptions = {}) {
    const capacity = options.capacity ?? DEFAULT_LEAF_CAPACITY;
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`Leaf cache capacity "${capacity}" is not a positive integer`);
    }
    this.capacity = capacity;
    this.#now = options.now ?? (() => new Date());
    this.#issuer = new LeafIssuer(ca, { keyType: options.keyType, now: this.#now });
    this.#renewBeforeMs = options.renewBeforeMs ?? 7 * 86_400_000;
  }

  /** Number of cached hosts (for a metrics gauge). */
  get size(): number {
    return this.#entries.size;
  }

  /** Leaves issued so far, cache misses included, for a metrics counter. */
  get issued(): number {
    return this.#issued;
  }

  /** Key type of the leaves this store issues. */
  get keyType(): LeafKeyType {
    return this.#issuer.keyType;
  }

  /** Generates the shared leaf key now instead of on the first handshake. */
  async warmUp(): Promise<void> {
    await this.#issuer.warmUp();
  }

  /**
   * The cached leaf for a host, or undefined (no issuance). Synchronous, for
   * the hot path. Marks the host as recently used.
   */
  peek(host: string): LeafEntry | undefined {
    return this.#fresh(cacheKey(host));
  }

  /**
   * The leaf for a host, issued on a miss. Rejects with a `LeafError` for a
   * name no certificate can carry.
   */
  get(host: string): Promise<LeafEntry> {
    let key: string;
    try {
      key = cacheKey(host);
    } catch (err) {
      return Promise.reject(err);
    }
    const hit = this.#fresh(key);
    if (hit) return Promise.resolve(hit);
    let pending = this.#inFlight.get(key);
    if (!pending) {
      pending = this.#issue(key);
      this.#inFlight.set(key, pending);
      // Removed whatever the outcome, so a failed issue is retried next time.
      pending.then(
        () => this.#inFlight.delete(key),
        () => this.#inFlight.delete(key),
      );
    }
    return pending;
  }

  /**
   * `SNICallback` for `tls.Server` / `https.createServer`. Cached hosts are
   * answered synchronously. A client that sends no SNI gets no context, so
   * the server falls back to its default (the proxy passes the CONNECT
   * target itself in that case).
   */
  readonly sniCallback = (
    servername: string,
    cb: (err: Error | null, ctx?: tls.SecureContext) => void,
  ): void => {
    if (!servername) {
      cb(null, undefined);
      return;
    }
    let hit: LeafEntry | undefined;
    try {
      hit = this.peek(servername);
    } catch (err) {
      cb(err as Error);
      return;
    }
    if (hit) {
      cb(null, hit.secureContext);
      return;
    }
    this.get(servername).then((e) => cb(null, e.secureContext), (err) => cb(err as Error));
  };

  /** Drops every cached leaf (in-flight issues still complete). */
  clear(): void {
    this.#entries.clear();
  }

  #fresh(key: string): LeafEntry | undefined {
    const hit = this.#entries.get(key);
    if (!hit) return undefined;
    this.#entries.delete(key);
    if (hit.notAfter.getTime() - this.#now().getTime() < this.#renewBeforeMs) return undefined;
    this.#entries.set(key, hit);
    return hit;
  }

  async #issue(key: string): Promise<LeafEntry> {
    const leaf = await this.#issuer.issue(key);
    this.#issued++;
    const entry: LeafEntry = {
      ...leaf,
      secureContext: tls.createSecureContext({ cert: leaf.certPem, key: leaf.keyPem }),
    };
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    while (this.#entries.size > this.capacity) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    return entry;
  }
}

// A tiny memo avoids re-normalizing the same SNI string on every handshake.
const keyMemo = new Map<string, string>();

function cacheKey(host: string): string {
  let key = keyMemo.get(host);
  if (key === undefined) {
    key = normalizeLeafName(host).name;
    if (keyMemo.size >= 10_000) keyMemo.clear();
    keyMemo.set(host, key);
  }
  return key;
}
