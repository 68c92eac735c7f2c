/**
 * An index of host globs (`api-*.example.com`, `*.internal.*`, `169.254.*`)
 * that finds the globs matching a concrete host without testing every glob.
 *
 * A glob only matches hosts that start with its literal head (the text
 * before its first wildcard) and end with its literal tail (the text after
 * its last one). Globs are grouped by tail, then by head; a lookup slices the
 * host once per distinct tail length and, inside a tail's group, once per
 * distinct head length, and tests only the globs of the groups it hits. The
 * test itself is the glob's own RegExp, so the answer is exactly the set of
 * matching globs, never an approximation. A glob with neither head nor tail
 * (`*.internal.*`) is indexed by a whole label it requires (`internal`: the
 * host must contain `.internal.`), found by splitting the host at its dots;
 * only globs without one (`*foo*`) are tested for every host.
 *
 * @module
 */

interface Entry<T> {
  re: RegExp;
  value: T;
}

interface TailGroup<T> {
  byHead: Map<string, Entry<T>[]>;
  /** Distinct head lengths, ascending. */
  headLens: number[];
}

/** The literal head and tail of a host glob (`*` and `?` are the wildcards). */
export function globEnds(glob: string): { head: string; tail: string } {
  const first = glob.search(/[*?]/);
  if (first === -1) return { head: glob, tail: "" };
  let last = glob.length - 1;
  while (glob[last] !== "*" && glob[last] !== "?") last--;
  return { head: glob.slice(0, first), tail: glob.slice(last + 1) };
}

function insertSorted(list: number[], n: number): void {
  let i = list.length;
  while (i > 0 && list[i - 1] > n) i--;
  if (list[i - 1] !== n) list.splice(i, 0, n);
}

/** A whole label (`.x.` inside a literal run) a glob without head or tail requires, or null. */
export function requiredLabel(glob: string): string | null {
  let best: string | null = null;
  for (const run of glob.split(/[*?]+/)) {
    const m = run.match(/\.[^.]+(?=\.)/g);
    for (const l of m ?? []) if (best === null || l.length - 1 > best.length) best = l.slice(1);
  }
  return best;
}

/**
 * Host globs indexed by their literal ends.
 *
 * @example
 * const idx = new HostGlobIndex<string>();
 * idx.add("api-*.example.com", /^api-.*\.example\.com$/, "rule a");
 * const hits: string[] = [];
 * idx.lookup("api-7.example.com", (v) => hits.push(v)); // hits: ["rule a"]
 */
export class HostGlobIndex<T> {
  #byTail = new Map<string, TailGroup<T>>();
  /** Distinct tail lengths, ascending. */
  #tailLens: number[] = [];
  /** Globs without head or tail, by a label they require. */
  #byLabel = new Map<string, Entry<T>[]>();
  #size = 0;

  /** Globs added so far. */
  get size(): number {
    return this.#size;
  }

  /** Add a glob (normalized, with at least one wildcard) and the RegExp it compiles to. */
  add(glob: string, re: RegExp, value: T): void {
    const { head, tail } = globEnds(glob);
    this.#size++;
    const label = head === "" && tail === "" ? requiredLabel(glob) : null;
    if (label !== null) {
      const list = this.#byLabel.get(label);
      if (list) list.push({ re, value });
      else this.#byLabel.set(label, [{ re, value }]);
      return;
    }
    let group = this.#byTail.get(tail);
    if (!group) {
      group = { byHead: new Map(), headLens: [] };
      this.#byTail.set(tail, group);
      insertSorted(this.#tailLens, tail.length);
    }
    let list = group.byHead.get(head);
    if (!list) {
      list = [];
      group.byHead.set(head, list);
      insertSorted(group.headLens, head.length);
    }
    list.push({ re, value });
  }

  /**
   * Call `visit` with the value of every glob that matches `host` (in no
   * particular order; a value added for several globs may be visited more
   * than once).
   */
  lookup(host: string, visit: (value: T) => void): void {
    const n = host.length;
    if (this.#byLabel.size > 0) {
      let from = 0;
      const seen = new Set<string>();
      while (from <= n) {
        let dot = host.indexOf(".", from);
        if (dot === -1) dot = n;
        const label = host.slice(from, dot);
        from = dot + 1;
        if (seen.has(label)) continue;
        seen.add(label);
        for (const e of this.#byLabel.get(label) ?? []) if (e.re.test(host)) visit(e.value);
      }
    }
    for (const tl of this.#tailLens) {
      if (tl > n) break;
      const group = this.#byTail.get(tl === 0 ? "" : host.slice(n - tl));
      if (!group) continue;
      for (const hl of group.headLens) {
        if (hl + tl > n) break;
        const list = group.byHead.get(hl === 0 ? "" : host.slice(0, hl));
        if (!list) continue;
        for (const e of list) if (e.re.test(host)) visit(e.value);
      }
    }
  }
}
