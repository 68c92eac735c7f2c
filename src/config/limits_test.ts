import assert from "node:assert/strict";
import { loadConfig, POLICY_LIMITS, type PolicyLimits } from "./load.ts";
import { ConfigError, formatProblem } from "./errors.ts";

async function errorsOf(file: string, cwd: string, limits?: PolicyLimits): Promise<string[]> {
  try {
    await loadConfig(file, cwd, {}, limits);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map(formatProblem);
    throw e;
  }
  assert.fail("expected a config error");
}

const small: PolicyLimits = { fileBytes: 2000, totalBytes: 3000, files: 3, rules: 4 };
const rule = (i: number) => `  - { name: r${i}, match: h${i}.example.com, action: allow }\n`;

Deno.test("policy limits: a main file over the byte limit is refused before it is parsed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // 9 MiB of comment and three rules: refused at the default limit (8 MiB),
    // without the ~35x memory a parse would take.
    const big = "version: 1\nrules:\n" + rule(1) + rule(2) + rule(3) +
      ("# padding padding padding padding padding padding padding padding padding\n").repeat(
        Math.ceil((9 * 1024 * 1024) / 74),
      );
    await Deno.writeTextFile(`${dir}/big.yaml`, big);
    const before = Deno.memoryUsage().rss;
    const errors = await errorsOf("big.yaml", dir);
    assert.deepEqual(errors, [
      `big.yaml: the policy file is too large: ${
        new TextEncoder().encode(big).length
      } bytes, over the limit of ${POLICY_LIMITS.fileBytes} (8 MiB); split its rules across files with include:`,
    ]);
    assert.ok(Deno.memoryUsage().rss - before < 64 * 1024 * 1024, "read without parsing");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy limits: includes over the file, total and count limits, and FIFOs, name the include line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/big.yaml`, "rules: []\n" + "#".repeat(2090) + "\n");
    await Deno.writeTextFile(`${dir}/mid.yaml`, "rules: []\n" + "#".repeat(1490) + "\n");
    await Deno.writeTextFile(`${dir}/a.yaml`, "rules:\n" + rule(1));
    await Deno.writeTextFile(`${dir}/b.yaml`, "rules:\n" + rule(2));
    await Deno.writeTextFile(`${dir}/c.yaml`, "rules:\n" + rule(3));
    await new Deno.Command("mkfifo", { args: [`${dir}/fifo.yaml`] }).output();
    const main = (includes: string[]) =>
      Deno.writeTextFile(`${dir}/main.yaml`, `version: 1\ninclude: [${includes.join(", ")}]\n`);

    await main(["big.yaml"]);
    assert.deepEqual(await errorsOf("main.yaml", dir, small), [
      'main.yaml:2:11: cannot include "big.yaml": the policy file is too large: 2101 bytes, over the limit of 2000 (0 MiB); split its rules across files with include:',
    ]);
    await main(["mid.yaml", "mid.yaml"]);
    // the same file twice is read twice: its bytes count twice
    assert.deepEqual(await errorsOf("main.yaml", dir, small), [
      'main.yaml:2:21: cannot include "mid.yaml": the policy is too large: its files pass 3000 bytes (0 MiB) together',
    ]);
    await main(["a.yaml", "b.yaml", "c.yaml"]);
    assert.deepEqual(await errorsOf("main.yaml", dir, small), [
      'main.yaml:2:27: cannot include "c.yaml": too many policy files: at most 3 (the main file and its includes)',
    ]);
    await main(["fifo.yaml"]);
    assert.deepEqual(await errorsOf("main.yaml", dir, small), [
      'main.yaml:2:11: cannot include "fifo.yaml": not a regular file',
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy limits: too many rules across files is an error at the file that passes the limit", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/more.yaml`, "rules:\n" + rule(3) + rule(4) + rule(5));
    await Deno.writeTextFile(
      `${dir}/main.yaml`,
      "version: 1\ninclude: [more.yaml]\nrules:\n" + rule(1) + rule(2),
    );
    assert.deepEqual(await errorsOf("main.yaml", dir, small), [
      "more.yaml:2:3: too many rules: a policy may have at most 4 (this file brings the total to 5)",
    ]);
    await Deno.writeTextFile(`${dir}/more.yaml`, "rules:\n" + rule(3) + rule(4));
    const { config } = await loadConfig("main.yaml", dir, {}, small);
    assert.equal(config.policy.rules.length, 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
