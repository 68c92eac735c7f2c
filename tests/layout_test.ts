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
