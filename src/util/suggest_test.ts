import assert from "node:assert/strict";
import { didYouMean, editDistance, suggest } from "./suggest.ts";

/** The textbook full-matrix optimal string alignment distance, to check the three-row one against. */
function reference(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

Deno.test("editDistance: insertions, deletions, substitutions and neighbour swaps", () => {
  assert.equal(editDistance("", ""), 0);
  assert.equal(editDistance("", "abc"), 3);
  assert.equal(editDistance("abc", ""), 3);
  assert.equal(editDistance("alow", "allow"), 1);
  assert.equal(editDistance("hots", "host"), 1);
  assert.equal(editDistance("kitten", "sitting"), 3);
  assert.equal(editDistance("ca", "abc"), 3); // optimal string alignment, not Damerau
});

Deno.test("editDistance agrees with the full-matrix algorithm", () => {
  let seed = 7;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  const word = () => Array.from({ length: rand(9) }, () => "abc"[rand(3)]).join("");
  for (let k = 0; k < 2000; k++) {
    const a = word(), b = word();
    assert.equal(editDistance(a, b), reference(a, b), `${a} / ${b}`);
  }
});

Deno.test("suggest: closest within the limit, ignoring case; ties go to the earlier", () => {
  assert.equal(suggest("alow", ["allow", "deny", "log"]), "allow");
  assert.equal(suggest("ALOW", ["allow", "deny", "log"]), "allow");
  assert.equal(suggest("PSOT", ["GET", "POST", "PUT"]), "POST");
  assert.equal(suggest("xyz", ["allow", "deny"]), null);
  assert.equal(suggest("pey", ["per", "key"]), "per");
  assert.equal(suggest("x", []), null);
  // The default limit is a third of the word, at least 1, at most 3.
  assert.equal(suggest("ab", ["abcd"]), null);
  assert.equal(suggest("abcdefghijkl", ["abcdefghwxyz"]), null);
  assert.equal(
    suggest("abcdefghijkl", ["abcdefghwxyz"], (w) => Math.floor(w.length / 3)),
    "abcdefghwxyz",
  );
  assert.equal(suggest("sesion", ["global", "session"], 2), "session");
});

Deno.test("didYouMean: a ready suffix or nothing", () => {
  assert.equal(didYouMean("methdos", ["match", "methods"]), ' (did you mean "methods"?)');
  assert.equal(didYouMean("zzz", ["match", "methods"]), "");
});
