/**
 * `deno task bench churn [N] [C]`: the runtime's cost of a short-lived TCP
 * connection, and what each leaves to V8's old generation.
 *
 * Runs scripts/floor/churn.mjs (N connections, C at a time, one line each
 * way) three times on one CPU: node:net under Deno with agentgate's V8 flags,
 * Deno.listen / Deno.connect under Deno with the same flags, and node:net
 * under Node (the control, when `node` is installed) with the flags that
 * apply there. Each run traces its GCs (`--trace-gc-nvp`); the table gives
 * connections per second, CPU per connection, and the bytes promoted per
 * scavenge — what a connection's objects cost beyond their own life (they are
 * all gone when it closes, so anything promoted is garbage for a full GC).
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { V8_FLAGS } from "./v8_flags.ts";

const n = Deno.args[0] ?? "30000";
const c = Deno.args[1] ?? "50";
const file = fileURLToPath(new URL("./floor/churn.mjs", import.meta.url));
const v8 = V8_FLAGS.slice("--v8-flags=".length).split(",");

/** Whether `cmd` runs here. */
async function has(cmd: string): Promise<boolean> {
  try {
    return (await new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}

/**
 * One traced GC line: its kind and the bytes it promoted. V8 12+ prints JSON
 * (`"gc":"s"`), Node 20's V8 11 `key=value` pairs (`gc=s`).
 */
function gcOf(line: string): { kind: string; promoted: number } | null {
  const kind = /(?:"gc":"|\bgc=)(\w+)/.exec(line)?.[1];
  if (!kind) return null;
  return { kind, promoted: Number(/(?:"promoted":|\bpromoted=)(\d+)/.exec(line)?.[1] ?? 0) };
}

interface Row {
  name: string;
  line: string;
}

async function run(name: string, argv: string[]): Promise<Row> {
  const pin = await has("taskset") ? ["taskset", "-c", "1"] : [];
  const [cmd, ...args] = [...pin, ...argv];
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const churn = /CHURN .*/.exec(text)?.[0];
  if (!out.success || !churn) return { name, line: `failed: ${text.trim().slice(-300)}` };
  const field = (k: string) => new RegExp(`${k}=(\\S+)`).exec(churn)?.[1] ?? "-";
  const gcs = text.split("\n").map(gcOf).filter((g) => g !== null);
  const scavenges = gcs.filter((g) => g.kind === "s");
  // The first quarter is start-up (module loading, JIT) rather than connections.
  const steady = scavenges.slice(Math.floor(scavenges.length / 4));
  const promoted = steady.length
    ? steady.reduce((a, g) => a + g.promoted, 0) / steady.length / 1024
    : 0;
  const fullGcs = gcs.filter((g) => g.kind === "mc").length;
  return {
    name,
    line: `${field("per_s").padStart(8)} ${field("cpu_us_per_conn").padStart(8)} ` +
      `${String(scavenges.length).padStart(10)} ${promoted.toFixed(1).padStart(12)} ` +
      `${String(fullGcs).padStart(6)}`,
  };
}

const trace = [...v8, "--trace-gc-nvp"].join(",");
const rows: Row[] = [
  await run("deno node:net", [
    Deno.execPath(),
    "run",
    "-A",
    `--v8-flags=${trace}`,
    file,
    "net",
    n,
    c,
  ]),
  await run("deno Deno.connect", [
    Deno.execPath(),
    "run",
    "-A",
    `--v8-flags=${trace}`,
    file,
    "deno",
    n,
    c,
  ]),
];
if (await has("node")) {
  // --expose-gc and the heap flags are V8's own, so Node takes them as they are.
  rows.push(await run("node node:net", ["node", ...v8, "--trace-gc-nvp", file, "net", n, c]));
} else rows.push({ name: "node node:net", line: "skipped: node is not installed" });

console.log(`${n} connections, ${c} at a time, V8 flags ${v8.join(" ")}\n`);
console.log(
  `${"".padEnd(18)} ${"conns/s".padStart(8)} ${"cpu µs".padStart(8)} ${"scavenges".padStart(10)} ${
    "promoted KB".padStart(12)
  } ${"full".padStart(6)}`,
);
console.log(
  `${"".padEnd(18)} ${"".padStart(8)} ${"per conn".padStart(8)} ${"".padStart(10)} ${
    "per scavenge".padStart(12)
  } ${"GCs".padStart(6)}`,
);
for (const r of rows) console.log(`${r.name.padEnd(18)} ${r.line}`);
