import assert from "node:assert/strict";
import { formatUsd } from "./usd.ts";

Deno.test("formatUsd: cents, up to 4 decimals, sub-cent amounts never print as $0.", () => {
  const cases: [number, string][] = [
    [0, "$0.00"],
    [5, "$5.00"],
    [5.01, "$5.01"],
    [1.5, "$1.50"],
    [0.004, "$0.004"],
    [0.005, "$0.005"],
    [0.0042, "$0.0042"],
    [0.012, "$0.012"],
    [0.01234, "$0.0123"],
    [0.013638, "$0.0136"],
    [5.004, "$5.004"],
    [12.3456, "$12.3456"],
    [0.00004, "$0.000040"],
    [0.00005, "$0.000050"],
    [0.00042, "$0.00042"],
    [0.001, "$0.001"],
    [0.00001, "$0.000010"],
    [0.0000012, "$0.0000012"],
    [1e-9, "$0.0000000010"],
    [-0.25, "-$0.25"],
  ];
  for (const [x, s] of cases) assert.equal(formatUsd(x), s, String(x));
  for (let e = -12; e <= 3; e++) {
    for (const m of [1, 2.5, 9.99]) {
      const x = m * 10 ** e;
      const s = formatUsd(x);
      assert.match(s, /^\$\d+\.\d{2,}$/, `${x} -> ${s}`);
      assert.notEqual(Number(s.slice(1)), 0, `${x} -> ${s}`);
    }
  }
});

Deno.test("formatUsd: its source runs alone (the dashboard page embeds it)", () => {
  const f = new Function(`return (${formatUsd.toString()})`)() as (x: number) => string;
  for (const x of [0, 0.004, 0.00001, 12.3456, 5]) assert.equal(f(x), formatUsd(x));
});
