/**
 * Where limits keep their counters and budgets. Today in-process
 * ({@link PolicyState} with a {@link MemorySpendLedger}); {@link SpendLedger}
 * (charges and reservations) and {@link SpendJournal} (their durable record)
 * are the interfaces a shared backend implements.
 *
 * @module
 */
export { PolicyState, type Usage, type UsageHook } from "./policy_state.ts";
export {
  MemorySpendLedger,
  NANO,
  type Reservation,
  spendKeys,
  type SpendLedger,
  type SpendRow,
} from "./ledger.ts";
export { type JournalEntry, NO_JOURNAL, type SpendJournal } from "./journal.ts";
export {
  type OnStateError,
  type SharedState,
  type StateAnswer,
  type StateAsk,
  type StateCount,
  type StateOp,
  type StateSettle,
  tokenLogKey,
} from "./shared.ts";
