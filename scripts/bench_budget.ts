/**
 * The CPU a spending limit adds to one priced call, in process (`deno task
 * bench budget`, run by `deno bench`): the decision with and without a
 * budget (estimate, check, reservation), the settlement (release + charge),
 * and the spend journal's append. Steadier than a load test on a busy
 * machine; `deno task bench spend` measures the same through the proxy.
 *
 * @module
 */
import { parseConfig } from "../src/config/load.ts";
import { decide } from "../src/policy/engine.ts";
import { PolicyState } from "../src/state/mod.ts";
import { requestInfo } from "../src/policy/request.ts";
import { FileSpendJournal } from "../src/audit/spend_journal.ts";
import type { AuditEventV1 } from "../src/audit/event.ts";

const policy = (spend: boolean) =>
  parseConfig(
    `version: 1
default: deny
llm: { providers: { "127.0.0.1": openai } }
rules:
  - name: llm
    match: 127.0.0.1/v1/**
    action: allow
${spend ? "    policies: [{ spending_limit: { usd: 1000000, per: day, key: session } }]\n" : ""}`,
    "bench.yaml",
    "/",
  ).config.policy;

const BODY =
  '{"model":"gpt-4o-mini","max_tokens":200,"messages":[{"role":"user","content":"Say something short about budgets."}]}';
const parsed = JSON.parse(BODY);
let n = 0;
function info() {
  const i = requestInfo({
    id: `r${n++}`,
    method: "POST",
    scheme: "http",
    host: "127.0.0.1",
    port: 18290,
    rawPath: "/v1/chat/completions",
    headers: { "content-type": "application/json" },
    client: "127.0.0.1",
  });
  i.body = parsed;
  i.bodySize = BODY.length;
  return i;
}

const usage = { usd: 0.000131, tokens: 229, session: null, host: "127.0.0.1", client: "127.0.0.1" };
const dir = Deno.makeTempDirSync({ prefix: "agentgate-bench-budget-" });
const journal = FileSpendJournal.open(`${dir}/spend.jsonl`);

for (const spend of [false, true]) {
  const p = policy(spend);
  const state = new PolicyState();
  Deno.bench(`decide + settle, ${spend ? "spending_limit" : "no limit"}`, {
    group: "path",
    baseline: !spend,
  }, () => {
    const i = info();
    const now = Date.now();
    decide(p, { info: i, now, state, bodyRead: true });
    state.reportUsage(i.id, { ...usage, ts: now, rule: "llm" });
  });
}

Deno.bench("spend journal: reserve + settle (one write + a batched settlement)", {
  group: "journal",
}, () => {
  const id = `j${n++}`;
  journal.reserve({
    id,
    ts: Date.now(),
    session: null,
    host: "127.0.0.1",
    client: "127.0.0.1",
    rule: "llm",
    keys: [],
    reservedNano: 250_000,
  });
  journal.settle(id, 131_000);
  // The audit commits the row: the entry leaves the journal.
  journal.written([{ id } as AuditEventV1]);
});

globalThis.addEventListener("unload", () => {
  journal.close();
  Deno.removeSync(dir, { recursive: true });
});
