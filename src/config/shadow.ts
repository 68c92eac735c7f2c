/**
 * The shadowing lint's index: which earlier rule without methods or
 * condition matches every request a new rule can match. Comparing each rule
 * with every earlier one made `check` quadratic (20,000 rules: 20 s); this
 * index answers from the few earlier patterns that can cover each of the new
 * rule's patterns, found by host (exact name, glob, `*.suffix`, any host),
 * then scheme and port, then path (any path, the same glob, a `/prefix/**`).
 * The answer is the same rule the pairwise comparison found: the first one,
 * in policy order, for which {@link covers} holds for every pattern.
 *
 * @module
 */
import type { Matcher } from "../policy/match.ts";
import { matchHost } from "../policy/match.ts";
import type { CompiledRule } from "../policy/engine.ts";
import { HostGlobIndex } from "../policy/hostindex.ts";
import { cidrContains } from "../policy/address.ts";

const SUFFIX = /^\*+(\.[^*?]+)$/;
const GLOB_CHARS = /[*?[\]{}]/;

/**
 * Whether pattern `a` matches every request pattern `b` can (identical, or
 * strictly broader: any host/port/scheme/path, a glob over an exact name, a
 * shorter `*.suffix`, a `/prefix/**` over a longer path glob, an address
 * range over a narrower one).
 *
 * @example
 * covers(compileMatch("*.example.com"), compileMatch("api.example.com/v1/**")) // true
 */
export function covers(a: Matcher, b: Matcher): boolean {
  if (a.scheme !== null && a.scheme !== b.scheme) return false;
  if (a.cidr !== null) {
    // A range covers a narrower range; a name may resolve anywhere.
    return b.cidr !== null && b.cidr.bytes.length === a.cidr.bytes.length &&
      b.cidr.bits >= a.cidr.bits && cidrContains(a.cidr, b.cidr.bytes);
  }
  if (a.port !== null && a.port !== b.port) return false;
  let host = a.host === null;
  if (!host && b.hostGlob !== null) {
    if (a.hostGlob === b.hostGlob) host = true;
    else if (typeof b.host === "string") host = matchHost(a, b.host, b.port ?? a.port ?? 443);
    else {
      const sa = SUFFIX.exec(a.hostGlob ?? "")?.[1];
      const sb = SUFFIX.exec(b.hostGlob)?.[1];
      host = sa !== undefined && sb !== undefined && sb.endsWith(sa);
    }
  }
  if (!host) return false;
  if (a.path === null) return true;
  if (b.pathGlob === null) return false;
  // A case-insensitive glob matches spellings a case-sensitive one does not.
  if (b.nocase && !a.nocase) return false;
  if (a.pathGlob === b.pathGlob) return true;
  const prefix = pathPrefix(a);
  return prefix !== null && b.pathGlob.startsWith(prefix);
}

/** The literal prefix of a `/prefix/**` path glob, or null. */
function pathPrefix(m: Matcher): string | null {
  if (m.pathGlob === null || !m.pathGlob.endsWith("/**")) return null;
  const prefix = m.pathGlob.slice(0, -2);
  return GLOB_CHARS.test(prefix) ? null : prefix;
}

/** Earlier rules by the path part of their patterns, each list in policy order. */
class PathBuckets {
  any: CompiledRule[] = [];
  exact = new Map<string, CompiledRule[]>();
  prefix = new Map<string, CompiledRule[]>();
  prefixLens: number[] = [];

  add(m: Matcher, rule: CompiledRule): void {
    if (m.path === null) return push(this.any, rule);
    const p = pathPrefix(m);
    if (p !== null) {
      if (!this.prefixLens.includes(p.length)) this.prefixLens.push(p.length);
      pushTo(this.prefix, p, rule);
    }
    pushTo(this.exact, m.pathGlob!, rule);
  }

  /** Lists holding every rule whose pattern can cover a path glob (null: any path). */
  lists(pathGlob: string | null, out: CompiledRule[][]): void {
    if (this.any.length) out.push(this.any);
    if (pathGlob === null) return;
    const same = this.exact.get(pathGlob);
    if (same) out.push(same);
    for (const len of this.prefixLens) {
      if (len > pathGlob.length) continue;
      const list = this.prefix.get(pathGlob.slice(0, len));
      if (list) out.push(list);
    }
  }
}

/** Earlier patterns with one host part, by scheme and port. */
class HostBucket {
  bySchemePort = new Map<string, PathBuckets>();

  add(m: Matcher, rule: CompiledRule): void {
    const key = `${m.scheme ?? "*"}|${m.port ?? "*"}`;
    let p = this.bySchemePort.get(key);
    if (!p) this.bySchemePort.set(key, p = new PathBuckets());
    p.add(m, rule);
  }

  lists(b: Matcher, out: CompiledRule[][]): void {
    const schemes = b.scheme === null ? ["*"] : ["*", b.scheme];
    const ports = b.port === null ? ["*"] : ["*", String(b.port)];
    for (const s of schemes) {
      for (const p of ports) this.bySchemePort.get(`${s}|${p}`)?.lists(b.pathGlob, out);
    }
  }
}

function push(list: CompiledRule[], rule: CompiledRule): void {
  if (list[list.length - 1] !== rule) list.push(rule);
}

function pushTo(map: Map<string, CompiledRule[]>, key: string, rule: CompiledRule): void {
  const list = map.get(key);
  if (list) push(list, rule);
  else map.set(key, [rule]);
}

/**
 * Earlier unconditional rules, indexed to answer "which one shadows this
 * rule?" without comparing it with all of them.
 *
 * @example
 * const idx = new ShadowIndex();
 * for (const rule of rules) {
 *   const shadow = idx.find(rule); // the first earlier rule matching all its requests
 *   if (rule.methods === null && rule.when === null) idx.add(rule);
 * }
 */
export class ShadowIndex {
  #anyHost = new HostBucket();
  /** By the host as written (exact name or glob). */
  #byHost = new Map<string, HostBucket>();
  /** Host globs, for exact names they match. */
  #globs = new HostGlobIndex<HostBucket>();
  /** `*.suffix` globs by their suffix (`.example.com`). */
  #suffixes = new Map<string, HostBucket[]>();

  /** Add a rule (without methods or condition) after the rules already added. */
  add(rule: CompiledRule): void {
    for (const m of rule.match) {
      if (m.hostGlob === null) {
        this.#anyHost.add(m, rule);
        continue;
      }
      let bucket = this.#byHost.get(m.hostGlob);
      if (!bucket) {
        bucket = new HostBucket();
        this.#byHost.set(m.hostGlob, bucket);
        if (m.host instanceof RegExp) this.#globs.add(m.hostGlob, m.host, bucket);
        const sfx = SUFFIX.exec(m.hostGlob)?.[1];
        if (sfx) {
          const list = this.#suffixes.get(sfx);
          if (list) list.push(bucket);
          else this.#suffixes.set(sfx, [bucket]);
        }
      }
      bucket.add(m, rule);
    }
  }

  /** The first rule added that covers every pattern of `rule`, if any. */
  find(rule: CompiledRule): CompiledRule | undefined {
    if (rule.match.length === 0) return undefined;
    const b = rule.match[0];
    const buckets = new Set<HostBucket>([this.#anyHost]);
    if (b.hostGlob !== null) {
      const same = this.#byHost.get(b.hostGlob);
      if (same) buckets.add(same);
      if (typeof b.host === "string") this.#globs.lookup(b.host, (x) => buckets.add(x));
      const sb = SUFFIX.exec(b.hostGlob)?.[1];
      if (sb) {
        for (let i = 0; i !== -1; i = sb.indexOf(".", i + 1)) {
          for (const x of this.#suffixes.get(sb.slice(i)) ?? []) buckets.add(x);
        }
      }
    }
    const lists: CompiledRule[][] = [];
    for (const x of buckets) x.lists(b, lists);
    let best: CompiledRule | undefined;
    for (const list of lists) {
      for (const e of list) {
        if (best !== undefined && e.index >= best.index) break;
        if (rule.match.every((m) => e.match.some((em) => covers(em, m)))) {
          best = e;
          break;
        }
      }
    }
    return best;
  }
}
