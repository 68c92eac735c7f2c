/**
 * The top frames of a V8 CPU profile (`deno task bench … --profile DIR`):
 * `deno task bench top FILE.cpuprofile [N]` prints the busy time (idle and
 * the program's own wait excluded), the N functions with the most self time,
 * and the inclusive time of agentgate's own functions (frames under src/).
 *
 * @module
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** `name file:line` of a frame. */
function label(cf: CallFrame): string {
  const file = cf.url.includes("/src/")
    ? cf.url.slice(cf.url.lastIndexOf("/src/") + 1)
    : cf.url.split("/").at(-1);
  return `${cf.functionName || "(anonymous)"} ${file}:${cf.lineNumber + 1}`;
}

/** Self and inclusive microseconds per frame label, and the busy total. */
export function summarize(
  p: Profile,
): { busy: number; self: Map<string, number>; inclusive: Map<string, number> } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const perNode = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    perNode.set(p.samples[i], (perNode.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of perNode) {
    const node = byId.get(id)!;
    const name = node.callFrame.functionName;
    if (name === "(idle)" || name === "(program)") continue;
    busy += us;
    const key = label(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + us);
    const seen = new Set<string>();
    for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) {
      const k = label(byId.get(x)!.callFrame);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
  }
  return { busy, self, inclusive };
}

if (import.meta.main) {
  const [file, n = "25"] = Deno.args;
  if (!file) {
    console.error("usage: deno task bench top FILE.cpuprofile [N]");
    Deno.exit(2);
  }
  const { busy, self, inclusive } = summarize(JSON.parse(await Deno.readTextFile(file)));
  const pct = (us: number) =>
    `${(us / busy * 100).toFixed(1).padStart(5)} % ${(us / 1000).toFixed(1).padStart(8)} ms`;
  console.log(`busy ${(busy / 1000).toFixed(1)} ms (idle and (program) excluded)`);
  console.log("\nself time:");
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(n))) {
    console.log(`${pct(v)}  ${k}`);
  }
  console.log("\ninclusive, agentgate's own frames:");
  for (
    const [k, v] of [...inclusive].filter(([k]) => k.includes(" src/")).sort((a, b) => b[1] - a[1])
      .slice(0, Number(n))
  ) {
    console.log(`${pct(v)}  ${k}`);
  }
}
