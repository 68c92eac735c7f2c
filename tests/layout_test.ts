import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const SRC = fileURLToPath(new URL("../src/", import.meta.url));

function* sources(dir: string): Generator<string> {
  for (const e of Deno.readDirSync(dir)) {
    const path = `${dir}${e.name}`;
    if (e.isDirectory) yield* sources(`${path}/`);
    else if (e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) yield path;
  }
}

Deno.test("layout: product code under src/ imports nothing from tests/ or scripts/", () => {
  const offenders: string[] = [];
  for (const file of sources(SRC)) {
    const text = Deno.readTextFileSync(file);
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']/g)) {
      if (/(^|\/)(tests|scripts)\//.test(m[1])) {
        offenders.push(`${file.slice(SRC.length)}: ${m[1]}`);
      }
    }
  }
  assert.deepEqual(offenders, []);
});

/**
 * The npm packages `main.ts` loads at start: its import graph (`deno info
 * --json`) followed through static imports only. `dynamic` is every package
 * reachable through any import, dynamic ones included.
 */
async function startupPackages(): Promise<{ loaded: Set<string>; dynamic: Set<string> }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", fileURLToPath(new URL("../main.ts", import.meta.url))],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    roots: string[];
    redirects?: Record<string, string>;
    modules: {
      specifier: string;
      dependencies?: { code?: { specifier: string }; isDynamic?: boolean }[];
    }[];
  };
  const modules = new Map(info.modules.map((m) => [m.specifier, m]));
  // "npm:/node-forge@1.4.3/lib/x" -> "node-forge"
  const packageOf = (s: string) => s.replace(/^npm:\/?/, "").match(/^(@[^/]+\/)?[^/@]+/)![0];
  const walk = (followDynamic: boolean) => {
    const seen = new Set<string>();
    const packages = new Set<string>();
    const todo = [...info.roots];
    while (todo.length) {
      const next = todo.pop()!;
      const s = info.redirects?.[next] ?? next;
      if (seen.has(s)) continue;
      seen.add(s);
      if (s.startsWith("npm:")) {
        packages.add(packageOf(s));
        continue;
      }
      for (const d of modules.get(s)?.dependencies ?? []) {
        if (d.code && (followDynamic || !d.isDynamic)) todo.push(d.code.specifier);
      }
    }
    return packages;
  };
  return { loaded: walk(false), dynamic: walk(true) };
}

Deno.test("layout: the proxy loads an npm client or library only when the policy uses it", async () => {
  // Each costs memory for the life of the process (measured at rest with a
  // plain policy: node-forge 1.7 MB of live heap, the PostgreSQL, Redis and
  // OTLP clients 10-20 MiB of RSS each), so `serve` imports them when the
  // policy names PostgreSQL, Redis, OTLP or intercepted hosts; the SDKs and
  // the browser driver are for tests only.
  const onDemand = [
    "node-forge",
    "pg",
    "@redis/client",
    "@opentelemetry/sdk-logs",
    "@opentelemetry/exporter-logs-otlp-http",
  ];
  const testsOnly = ["@peculiar/x509", "playwright-core", "openai", "@anthropic-ai/sdk", "undici"];
  const { loaded, dynamic } = await startupPackages();
  assert.deepEqual([...onDemand, ...testsOnly].filter((p) => loaded.has(p)), []);
  // The walk sees packages at all, and the on-demand ones behind their dynamic imports.
  assert.ok(loaded.has("yaml") && loaded.has("picomatch"), [...loaded].join(", "));
  assert.deepEqual(onDemand.filter((p) => !dynamic.has(p)), []);
});
