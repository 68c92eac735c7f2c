import assert from "node:assert/strict";
import { type FileWatch, watchFiles } from "./watch.ts";

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolve once `watch` has completed `n` more checks (fail after 3 s). */
async function polls(watch: FileWatch, n: number) {
  const target = watch.polls + n;
  const end = Date.now() + 3000;
  while (watch.polls < target && Date.now() < end) await tick(5);
  assert.ok(watch.polls >= target, `the watch made ${n} check(s)`);
}

/** Collect change notifications; `next(n)` waits for the n-th (fail after 3 s). */
function recorder() {
  const calls: string[][] = [];
  return {
    calls,
    onChange: (paths: string[]) => calls.push(paths.map((p) => p.replace(/^.*\//, ""))),
    async next(n: number) {
      const end = Date.now() + 3000;
      while (calls.length < n && Date.now() < end) await tick(10);
      assert.equal(calls.length, n, `expected ${n} change notification(s), got ${calls.length}`);
      return calls[n - 1];
    },
  };
}

Deno.test("watchFiles: in-place writes, rename saves, delete and recreate; quiet otherwise", async () => {
  const dir = await Deno.makeTempDir();
  const a = `${dir}/a.yaml`;
  const b = `${dir}/b.yaml`;
  await Deno.writeTextFile(a, "one");
  await Deno.writeTextFile(b, "two");
  const rec = recorder();
  // Wide enough that two back-to-back writes land in one window on a loaded machine.
  const settleMs = 250;
  const watch = watchFiles([a, b], rec.onChange, { intervalMs: 20, settleMs });
  try {
    // Enough checks after the baseline that a (wrong) notification would have settled.
    await polls(watch, 5);
    assert.equal(rec.calls.length, 0, "no change, no call");

    await Deno.writeTextFile(a, "one, longer");
    assert.deepEqual(await rec.next(1), ["a.yaml"]);

    // An editor's save: write a temp file, rename it over the original.
    await Deno.writeTextFile(`${dir}/b.tmp`, "TWO");
    await Deno.rename(`${dir}/b.tmp`, b);
    assert.deepEqual(await rec.next(2), ["b.yaml"]);

    // Both files change within the settle time: one call names both.
    await Deno.writeTextFile(a, "1");
    await Deno.writeTextFile(b, "2");
    const both = await rec.next(3);
    assert.deepEqual(both.sort(), ["a.yaml", "b.yaml"]);

    await Deno.remove(a);
    assert.deepEqual(await rec.next(4), ["a.yaml"]);
    await Deno.writeTextFile(a, "back");
    assert.deepEqual(await rec.next(5), ["a.yaml"]);

    // Unrelated files in the same directory are not watched.
    await Deno.writeTextFile(`${dir}/audit.db`, "x");
    await polls(watch, 2);
    await tick(settleMs * 2);
    assert.equal(rec.calls.length, 5);
  } finally {
    watch.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watchFiles: close() stops notifications, even one already settling", async () => {
  const dir = await Deno.makeTempDir();
  const a = `${dir}/a.yaml`;
  await Deno.writeTextFile(a, "one");
  const rec = recorder();
  const settleMs = 200;
  const watch = watchFiles([a], rec.onChange, { intervalMs: 10, settleMs });
  try {
    await polls(watch, 1); // the baseline
    await Deno.writeTextFile(a, "changed");
    await polls(watch, 2); // a check that started after the write has seen it: settling
    watch.close();
    const seen = watch.polls;
    await tick(settleMs + 100);
    assert.equal(rec.calls.length, 0);
    assert.equal(watch.polls, seen, "no checks after close()");
  } finally {
    watch.close();
    await Deno.remove(dir, { recursive: true });
  }
});
