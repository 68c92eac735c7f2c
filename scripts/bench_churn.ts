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
import { onPath } from "../tests/support/prerequisites.ts";

const n = Deno.args[0] ?? "30000";
const c = Deno.args[1] ?? "50";
const file = fileURLToPath(new URL("./floor/churn.mjs", import.meta.url));
const v8 = V8_FLAGS.slice("--v8-flags=".length).split(",");

/** Every run on CPU 1, when taskset is there. */
const PIN = onPath("taskset") ? ["taskset", "-c", "1"] : [];

/** Column widths of the table: conns/s, CPU, scavenges, promoted, full GCs. */
const WIDTHS = [8, 8, 10, 12, 6];

/** A table line: the name column, then `rest`. */
const named = (name: string, rest: string) => `${name.padEnd(18)} ${rest}`;

/** One table line: a name, then cells right-aligned to {@link WIDTHS}. */
function tableLine(name: string, cells: readonly string[]): string {
  return named(name, cells.map((c, i) => c.padStart(WIDTHS[i])).join(" "));
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

/** `argv` run (pinned), as one table line named `name`. */
async function run(name: string, argv: string[]): Promise<string> {
  const [cmd, ...args] = [...PIN, ...argv];
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const churn = /CHURN .*/.exec(text)?.[0];
  if (!out.success || !churn) return named(name, `failed: ${text.trim().slice(-300)}`);
  const field = (k: string) => new RegExp(`${k}=(\\S+)`).exec(churn)?.[1] ?? "-";
  const gcs = text.split("\n").map(gcOf).filter((g) => g !== null);
  const scavenges = gcs.filter((g) => g.kind === "s");
  // The first quarter is start-up (module loading, JIT) rather than connections.
  const steady = scavenges.slice(Math.floor(scavenges.length / 4));
  const promoted = steady.length
    ? steady.reduce((a, g) => a + g.promoted, 0) / steady.length / 1024
    : 0;
  const fullGcs = gcs.filter((g) => g.kind === "mc").length;
  return tableLine(name, [
    field("per_s"),
    field("cpu_us_per_conn"),
    String(scavenges.length),
    promoted.toFixed(1),
    String(fullGcs),
  ]);
}

const trace = [...v8, "--trace-gc-nvp"].join(",");
/** churn.mjs under Deno with agentgate's V8 flags, on `api`. */
const underDeno = (api: string) => [
  Deno.execPath(),
  "run",
  "-A",
  `--v8-flags=${trace}`,
  file,
  api,
  n,
  c,
];
const rows: string[] = [
  await run("deno node:net", underDeno("net")),
  await run("deno Deno.connect", underDeno("deno")),
];
if (onPath("node")) {
  // --expose-gc and the heap flags are V8's own, so Node takes them as they are.
  rows.push(await run("node node:net", ["node", ...v8, "--trace-gc-nvp", file, "net", n, c]));
} else rows.push(named("node node:net", "skipped: node is not installed"));

console.log(`${n} connections, ${c} at a time, V8 flags ${v8.join(" ")}\n`);
console.log(tableLine("", ["conns/s", "cpu µs", "scavenges", "promoted KB", "full"]));
console.log(tableLine("", ["", "per conn", "", "per scavenge", "GCs"]));
for (const r of rows) console.log(r);
