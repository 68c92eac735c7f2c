/**
 * The priced model budget tests use (`budget-model`, $1 per million tokens
 * in and out, so every amount is tokens × $0.000001), its documented
 * reservation written out independently, and an OpenAI answer with usage.
 */

/** Nano-dollars per token at $1 per million tokens. */
export const NANO_PER_TOKEN = 1000;

/** `llm.prices` for the model (a policy's `llm:` adds its `providers`). */
export const BUDGET_MODEL_PRICES = "prices: { budget-model: { input: 1, output: 1 } }";

/**
 * The documented estimate: one input token per body byte + 64, the output
 * cap, each rounded up to 16 steps per power of two for the price lookup.
 */
export function reservationNano(bodyBytes: number, maxTokens: number): number {
  const grid = (n: number) => {
    if (n <= 64) return 64;
    const step = 2 ** (Math.floor(Math.log2(n)) - 4);
    return Math.ceil(n / step) * step;
  };
  return (grid(bodyBytes + 64) + grid(maxTokens)) * NANO_PER_TOKEN;
}

/** An OpenAI chat completion of `budget-model` with these token counts. */
export function chatCompletion(prompt: number, completion: number): string {
  return JSON.stringify({
    id: "chatcmpl-budget",
    object: "chat.completion",
    model: "budget-model",
    choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
    usage: {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
    },
  });
}

/** Dollars as the spending limit's reasons print them (`$0.004`, at most 4 decimals). */
export function usdOf(nano: number): string {
  return `$${(nano / 1e9).toFixed(4).replace(/0+$/, "")}`;
}

/** The next midnight (UTC): when a `per: day` budget in UTC resets. */
export function nextUtcMidnight(): Date {
  const midnight = new Date();
  midnight.setUTCHours(24, 0, 0, 0);
  return midnight;
}

/**
 * The reason of a call refused by a `per: day` budget of rule "llm" while
 * `reservedNano` is held in flight, nothing is spent, and the call needs `needNano`.
 */
export function dayBudgetRefusal(
  reservedNano: number,
  needNano: number,
  budgetNano: number,
): string {
  const resets = nextUtcMidnight().toISOString().slice(0, 19) + "Z";
  return `spending limit reached: $0.00 spent + ${usdOf(reservedNano)} reserved in flight + ${
    usdOf(needNano)
  } for this call > ${usdOf(budgetNano)} per day (UTC) for rule "llm"; resets at ${resets}`;
}
