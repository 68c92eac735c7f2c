/**
 * Where limits keep their counters and budgets. Today in-process
 * ({@link PolicyState} with a {@link MemorySpendLedger}); the interface is
 * what a shared backend implements.
 *
 * @module
 */
export { PolicyState, type Usage, type UsageHook } from "./policy_state.ts";
export { MemorySpendLedger, spendKeys, type SpendLedger, type SpendRow } from "./ledger.ts";
