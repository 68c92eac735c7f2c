/**
 * A set of live objects for registries with one insert and one delete per
 * request or connection (the requests in flight, the open sockets).
 *
 * A `Set` or `Map` is the obvious choice and the wrong one on a hot path in
 * V8: under that churn its hash table is rebuilt every few dozen operations,
 * and each replaced table keeps a link to its successor (for iterators that
 * were running). Once one of those tables has been promoted to the old
 * generation, the chain of later tables, and every exchange their entries
 * held, survives each scavenge until the next full GC: on the s1 benchmark
 * most of each request's objects were promoted and a mark-compact ran every
 * ~250 ms. Here an item lives in an array slot (a free list recycles slots),
 * so a removed item is unreachable as soon as its slot is cleared.
 *
 * @example
 * const open = new Slots<net.Socket>();
 * const slot = open.add(socket);
 * socket.once("close", () => open.delete(slot, socket));
 * for (const s of open.values()) s.destroy();
 *
 * @module
 */

/** Live items in array slots; {@link Slots.add} returns the slot to delete it by. */
export class Slots<T extends object> {
  #items: (T | null)[] = [];
  #free: number[] = [];
  #size = 0;

  /** Items held now. */
  get size(): number {
    return this.#size;
  }

  /** Hold `item`; returns its slot. */
  add(item: T): number {
    const slot = this.#free.length > 0 ? this.#free.pop()! : this.#items.length;
    this.#items[slot] = item;
    this.#size++;
    return slot;
  }

  /** Let go of `item` in `slot`; false (and nothing changes) when the slot holds something else. */
  delete(slot: number, item: T): boolean {
    if (slot < 0 || this.#items[slot] !== item) return false;
    this.#items[slot] = null;
    this.#free.push(slot);
    this.#size--;
    return true;
  }

  /** The items held now, as a new array (safe to change the set while walking it). */
  values(): T[] {
    const out: T[] = [];
    for (const item of this.#items) if (item !== null) out.push(item);
    return out;
  }
}
