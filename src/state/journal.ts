/**
 * The durable record of what budgets hold, as the proxy sees it: a call's
 * reservation is recorded before it is forwarded, its settlement when its
 * response ends. After a crash (`kill -9`) the budgets are rebuilt from the
 * audit plus what the journal holds that the audit does not: unsettled
 * reservations count at their reserved amount. The interface lives here; the
 * file implementation is `audit/spend_journal.ts`.
 *
 * @module
 */

/** A reservation as the journal records it: enough to rebuild the charge's ledger keys. */
export interface JournalEntry {
  /** The request's decision id (the audit row's id). */
  id: string;
  /** When the reservation was taken (ms since the epoch). */
  ts: number;
  session: string | null;
  host: string;
  client: string;
  /** The rule that allowed the request, or null for the default. */
  rule: string | null;
  /** Ledger keys beyond the built-in ones (CEL-keyed budgets). */
  keys: string[];
  /** Nano-USD reserved. */
  reservedNano: number;
  /** Nano-USD charged at settlement; null while unsettled. */
  chargedNano: number | null;
}

/**
 * Where the proxy records reservations and settlements. Both calls must be
 * durable against a process crash when they return (the file journal
 * appends with a synchronous `write`); they never throw — a journal that
 * cannot write reports it and the proxy keeps serving.
 */
export interface SpendJournal {
  /** Records a reservation (before the call is forwarded). */
  reserve(entry: Omit<JournalEntry, "chargedNano">): void;
  /** Records what a reservation settled at (0 = released without a charge). */
  settle(id: string, chargedNano: number): void;
}

/** A journal that keeps nothing (tests, an in-memory audit). */
export const NO_JOURNAL: SpendJournal = { reserve() {}, settle() {} };
