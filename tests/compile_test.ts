import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { relative } from "node:path";
import { WORKER_MODULES } from "../scripts/compile.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

function* sources(dir: string): Generator<string> {
  for (const e of Deno.readDirSync(dir)) {
    const path = `${dir}${e.name}`;
    if (e.isDirectory) yield* sources(`${path}/`);
    else if (e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) yield path;
  }
}

Deno.test("compile: every worker module under src/ is passed to deno compile with --include", () => {
  // `deno compile` embeds main.ts's import graph; a worker's module is only
  // named in `new Worker(new URL(…))`, so the binary would fail to start it.
  const workers: string[] = [];
  for (const file of sources(`${ROOT}src/`)) {
    const text = Deno.readTextFileSync(file);
    for (const m of text.matchAll(/new Worker\(\s*new URL\(\s*["']([^"']+)["']/g)) {
      workers.push(relative(ROOT, fileURLToPath(new URL(m[1], `file://${file}`))));
    }
  }
  assert.ok(workers.length > 0, "the policy reload runs in a worker");
  assert.deepEqual(workers.filter((w) => !WORKER_MODULES.includes(w)), []);
  for (const w of WORKER_MODULES) assert.ok(Deno.statSync(`${ROOT}${w}`).isFile, w);
});
