/**
 * The spend journal: an append-only file beside the audit
 * (`<audit path>-spend.jsonl`) that makes budgets survive a crash. The audit
 * is written in batches (up to 200 ms late); the journal records a priced
 * call's reservation before the call is forwarded, with one synchronous
 * `write(2)` (a few µs, no fsync: the bytes are in the kernel's page cache
 * when it returns, so they survive `kill -9` of the process, not a power
 * loss of the machine). Settlements only lower what a reservation counts,
 * so they ride along with the next reservation's write (or a write 100 ms
 * later): one lost in a crash counts its call at its reservation, never
 * less. A settlement above its reservation is written at once.
 *
 * At start, {@link FileSpendJournal.open} reads it back; the proxy drops the
 * entries whose audit row was written and counts the rest — an unsettled
 * reservation at its reserved amount. Entries leave the journal once the
 * audit has their row (the audit writer reports the rows it committed), and
 * the file is rewritten with what is left when it grows.
 *
 * One JSON object per line: `{"r":id,"t":ts,"s":session,"h":host,"c":client,
 * "u":rule,"k":[keys],"n":reservedNano}` for a reservation, `{"x":id,"n":
 * chargedNano}` for a settlement. A torn last line (the crash hit the write)
 * is skipped.
 *
 * @module
 */
import {
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import type { JournalEntry, SpendJournal } from "../state/journal.ts";
import type { AuditEventV1 } from "./event.ts";

/** Entries older than this are dropped when the file is rewritten (the longest budget window). */
const KEEP_MS = 32 * 86_400_000;
/** Rewrite the file when it is this large and mostly entries the audit already has. */
const COMPACT_BYTES = 4 * 1024 * 1024;

const ENCODER = new TextEncoder();

/** The journal's file for an audit database. */
export function journalPathFor(auditPath: string): string | null {
  return auditPath === ":memory:" ? null : `${auditPath}-spend.jsonl`;
}

/**
 * The file {@link SpendJournal}.
 *
 * @example
 * ```ts
 * const journal = FileSpendJournal.open("./agentgate.db-spend.jsonl");
 * const carried = journal.reconcile(auditIds); // entries the audit does not have
 * journal.reserve({ id, ts, session, host, client, rule, keys: [], reservedNano: 4_000_000 });
 * journal.settle(id, 1_200_000);
 * ```
 */
export class FileSpendJournal implements SpendJournal {
  #fd: number;
  #path: string;
  /** Entries not yet confirmed in the audit, by id. */
  #live = new Map<string, JournalEntry>();
  #bytes = 0;
  #log: (message: string) => void;
  #lastErrorLog = 0;
  #closed = false;
  /** Settlement lines not written yet. */
  #pending = "";
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** Writes that failed (each logged at most once a second). */
  writeErrors = 0;

  private constructor(path: string, log: (message: string) => void) {
    this.#path = path;
    this.#log = log;
    // Beside the audit, whose directory may not exist yet (the agentgate home on a first start).
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const { entries, torn } = readEntries(path);
    for (const e of entries) this.#live.set(e.id, e);
    this.#fd = openSync(path, "a", 0o600);
    this.#bytes = fstatSync(this.#fd).size;
    // A torn last line must not swallow the next one.
    if (torn) this.#append("");
  }

  /**
   * Open (or create) the journal at `path` and read what it holds. Call
   * {@link reconcile} before serving.
   * @throws when the file cannot be opened.
   */
  static open(path: string, opts: { log?: (message: string) => void } = {}): FileSpendJournal {
    return new FileSpendJournal(path, opts.log ?? ((m) => console.error(m)));
  }

  /** What the journal held at open that the audit may not: for the rebuild. */
  entries(): JournalEntry[] {
    return [...this.#live.values()];
  }

  /**
   * Forgets the entries whose charge the audit holds (`inAudit`), those
   * settled without a charge, and those older than the longest window before
   * `now`; rewrites the file with the rest and returns it (what budgets must
   * count besides the audit).
   */
  reconcile(inAudit: (id: string) => boolean, now = Date.now()): JournalEntry[] {
    for (const [id, e] of this.#live) {
      if (inAudit(id) || e.chargedNano === 0 || e.ts < now - KEEP_MS) this.#live.delete(id);
    }
    this.#rewrite();
    return this.entries();
  }

  reserve(entry: Omit<JournalEntry, "chargedNano">): void {
    const e = entry as JournalEntry;
    e.chargedNano = null;
    this.#live.set(e.id, e);
    this.#append(this.#take() + reservationLine(e));
  }

  settle(id: string, chargedNano: number): void {
    const e = this.#live.get(id);
    if (e === undefined) return;
    e.chargedNano = chargedNano;
    const line = JSON.stringify({ x: id, n: chargedNano });
    if (chargedNano > e.reservedNano) {
      // More than it held: the reservation alone would under-count it.
      this.#append(this.#take() + line);
      return;
    }
    this.#pending += line + "\n";
    if (this.#timer === null) {
      this.#timer = setTimeout(() => this.flush(), 100);
      Deno.unrefTimer(this.#timer as unknown as number);
    }
  }

  /** Writes the settlements not written yet. */
  flush(): void {
    const rest = this.#take();
    if (rest !== "") this.#append(rest.slice(0, -1));
  }

  /** The pending settlement lines (each ending in a newline), now owed to the caller's write. */
  #take(): string {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    const p = this.#pending;
    this.#pending = "";
    return p;
  }

  /**
   * The audit committed these rows: their entries are no longer needed. The
   * file is rewritten when it has grown large (the entries left are the calls
   * in flight and the rows of the next batch: few).
   */
  written(events: readonly AuditEventV1[]): void {
    if (this.#live.size === 0) return;
    for (const e of events) this.#live.delete(e.id);
    if (this.#bytes >= COMPACT_BYTES && this.#live.size * 512 < this.#bytes) this.#rewrite();
  }

  /** Entries kept (for tests and metrics). */
  get size(): number {
    return this.#live.size;
  }

  /** Bytes in the file (for tests). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Closes the file (what it holds stays for the next start). */
  close(): void {
    if (this.#closed) return;
    this.flush();
    this.#closed = true;
    try {
      closeSync(this.#fd);
    } catch {
      // already closed
    }
  }

  #append(line: string): void {
    if (this.#closed) return;
    const bytes = ENCODER.encode(line + "\n");
    try {
      let off = 0;
      while (off < bytes.length) off += writeSync(this.#fd, bytes, off, bytes.length - off);
      this.#bytes += bytes.length;
    } catch (e) {
      this.writeErrors++;
      const now = Date.now();
      if (now - this.#lastErrorLog >= 1000) {
        this.#lastErrorLog = now;
        this.#log(
          `agentgate: spend journal write failed (${this.writeErrors} in total; budgets rely on the audit until it recovers): ${
            (e as Error).message
          }`,
        );
      }
    }
  }

  /** Writes the live entries to a new file and swaps it in (rename is atomic). */
  #rewrite(): void {
    if (this.#closed) return;
    // The pending settlements are in the entries written below.
    this.#take();
    let text = "";
    for (const e of this.#live.values()) {
      text += reservationLine(e) + "\n";
      if (e.chargedNano !== null) text += JSON.stringify({ x: e.id, n: e.chargedNano }) + "\n";
    }
    const tmp = `${this.#path}.tmp`;
    try {
      const fd = openSync(tmp, "w", 0o600);
      try {
        const bytes = ENCODER.encode(text);
        let off = 0;
        while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.#path);
      closeSync(this.#fd);
      this.#fd = openSync(this.#path, "a", 0o600);
      this.#bytes = fstatSync(this.#fd).size;
    } catch (e) {
      this.#log(`agentgate: spend journal could not be compacted: ${(e as Error).message}`);
    }
  }
}

/** A reservation's line (strings through JSON.stringify, so any value stays one line). */
function reservationLine(e: JournalEntry): string {
  const str = JSON.stringify;
  return `{"r":${str(e.id)},"t":${e.ts},"s":${str(e.session)},"h":${str(e.host)},"c":${
    str(e.client)
  },"u":${str(e.rule)},"k":${e.keys.length ? str(e.keys) : "[]"},"n":${e.reservedNano}}`;
}

/** The entries of a journal file (none when it does not exist); damaged lines are skipped. */
function readEntries(path: string): { entries: JournalEntry[]; torn: boolean } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return { entries: [], torn: false };
    throw e;
  }
  const byId = new Map<string, JournalEntry>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(line);
    } catch {
      continue; // a torn write
    }
    if (typeof v.r === "string" && typeof v.t === "number" && typeof v.n === "number") {
      byId.set(v.r, {
        id: v.r,
        ts: v.t,
        session: typeof v.s === "string" ? v.s : null,
        host: String(v.h ?? ""),
        client: String(v.c ?? ""),
        rule: typeof v.u === "string" ? v.u : null,
        keys: Array.isArray(v.k) ? v.k.filter((k): k is string => typeof k === "string") : [],
        reservedNano: v.n,
        chargedNano: null,
      });
    } else if (typeof v.x === "string" && typeof v.n === "number") {
      const e = byId.get(v.x);
      if (e) e.chargedNano = v.n;
    }
  }
  return { entries: [...byId.values()], torn: text !== "" && !text.endsWith("\n") };
}
