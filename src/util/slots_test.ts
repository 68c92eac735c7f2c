import assert from "node:assert/strict";
import { Slots } from "./slots.ts";

Deno.test("slots: add, delete by slot and item, reuse of freed slots", () => {
  const s = new Slots<{ n: number }>();
  const a = { n: 1 }, b = { n: 2 }, c = { n: 3 };
  const sa = s.add(a), sb = s.add(b);
  assert.equal(s.size, 2);
  assert.deepEqual(s.values(), [a, b]);
  // A slot that holds another item is not emptied by a stale owner.
  assert.equal(s.delete(sa, b), false);
  assert.equal(s.delete(-1, a), false);
  assert.equal(s.size, 2);
  assert.equal(s.delete(sa, a), true);
  assert.equal(s.delete(sa, a), false, "deleting twice is a no-op");
  assert.equal(s.size, 1);
  const sc = s.add(c);
  assert.equal(sc, sa, "a freed slot is reused");
  assert.deepEqual(s.values(), [c, b]);
  assert.equal(s.delete(sb, b), true);
  assert.equal(s.delete(sc, c), true);
  assert.equal(s.size, 0);
  assert.deepEqual(s.values(), []);
});

Deno.test("slots: values() is a copy, safe to change the set while walking it", () => {
  const s = new Slots<{ n: number }>();
  const items = Array.from({ length: 5 }, (_, n) => ({ n }));
  const slots = items.map((i) => s.add(i));
  const seen: number[] = [];
  for (const i of s.values()) {
    seen.push(i.n);
    s.delete(slots[i.n], i);
  }
  assert.deepEqual(seen, [0, 1, 2, 3, 4]);
  assert.equal(s.size, 0);
});

Deno.test("slots: a deleted item is not kept alive by the set (child process with --expose-gc)", async () => {
  // The child holds an item, churns the set as the proxy does (one add and one
  // delete per request), lets go of it, collects, and says whether it is gone.
  const code = `
    import { Slots } from ${JSON.stringify(new URL("./slots.ts", import.meta.url).href)};
    const s = new Slots();
    const kept = { still: true };
    const keptSlot = s.add(kept);
    function holdAndRelease() {
      const item = { payload: new Array(1000).fill(0) };
      const slot = s.add(item);
      for (let i = 0; i < 10000; i++) { const other = {}; s.delete(s.add(other), other); }
      s.delete(slot, item);
      return new WeakRef(item);
    }
    const ref = holdAndRelease();
    await new Promise((r) => setTimeout(r, 0)); // WeakRef targets live until the job ends
    globalThis.gc();
    console.log(JSON.stringify({ gone: ref.deref() === undefined, kept: s.values().length === 1 && s.delete(keptSlot, kept) }));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--expose-gc", "--ext=js", code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), { gone: true, kept: true });
});
