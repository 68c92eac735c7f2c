import assert from "node:assert/strict";
import { canonicalPath, encodePath, featuresOf, MAX_AMBIGUOUS_PATH, pathReadings } from "./path.ts";

Deno.test("canonicalPath: every spelling the issue names reads as /admin/x", () => {
  const table: [string, string][] = [
    ["//admin/x", "/admin/x"],
    ["/ok/..;/admin/x", "/admin/x"],
    ["/admin;x/x", "/admin/x"],
    ["/%2fadmin/x", "/admin/x"],
    ["/admin%2fx", "/admin/x"],
    ["/admin%2Fx", "/admin/x"],
    ["/admin\\x", "/admin/x"],
    ["/admin%5cx", "/admin/x"],
    ["/ok/%2e%2e/admin/x", "/admin/x"],
    ["/ok/.%2E/admin/x", "/admin/x"],
    ["/ok/%2e%2e%2fadmin/x", "/admin/x"],
    ["/ok/..%2fadmin/x", "/admin/x"],
    ["/admin%252fx", "/admin/x"], // decoded twice by some applications
    ["/admin%25252fx", "/admin/x"],
    ["/admin%c0%afx", "/admin/x"], // overlong UTF-8 "/"
    ["/%u0061dmin/x", "/admin/x"], // IIS %u
    ["/admin/./x", "/admin/x"],
    ["/admin//x", "/admin/x"],
    ["/x/../admin/x", "/admin/x"],
    ["/x/..\\admin/x", "/admin/x"],
    ["/ok;/../admin/x", "/admin/x"],
    ["/admin;jsessionid=ABC/x", "/admin/x"],
    ["/admin%3bx/x", "/admin/x"],
    ["/%61dmin/x", "/admin/x"],
    ["/admin./x", "/admin/x"], // Windows drops trailing dots and spaces
    ["/admin%20/x", "/admin/x"],
    ["/admin.%20./x", "/admin/x"],
    ["/admin.;x/x", "/admin/x"],
    ["admin/x", "/admin/x"],
  ];
  for (const [raw, want] of table) assert.equal(canonicalPath(raw).path, want, raw);
});

Deno.test("canonicalPath: ordinary paths keep their spelling and have no readings to check", () => {
  for (
    const p of [
      "/v1/chat/completions",
      "/",
      "/.well-known/x",
      "/a.b/c..d",
      "/~u/x=1:2@3",
      "/a.json",
    ]
  ) {
    assert.deepEqual(canonicalPath(p), { path: p, spelling: null }, p);
  }
  // Characters that need encoding have one reading too.
  assert.deepEqual(canonicalPath("/a%20b/%C3%A9"), { path: "/a%20b/%C3%A9", spelling: null });
  assert.deepEqual(canonicalPath("/é"), { path: "/%C3%A9", spelling: null });
  assert.deepEqual(canonicalPath("/%7euser"), { path: "/~user", spelling: null });
});

Deno.test("canonicalPath: malformed paths name what is wrong", () => {
  const table: [string, string][] = [
    ["/admin%00/x", "encoded control character %00"],
    ["/a%0d%0ab", "encoded control character %0D"],
    ["/a%ffb", "invalid UTF-8 %FF"],
    ["/a%e2%82b", "invalid UTF-8 %E2"],
    ["/a%2525252525252fb", "percent-encoded more than 4 times over"],
  ];
  for (const [raw, want] of table) assert.equal(canonicalPath(raw).spelling?.malformed, want, raw);
  assert.match(
    pathReadings("/" + "a/".repeat(MAX_AMBIGUOUS_PATH) + "%2f").malformed!,
    /^longer than 1024 characters$/,
  );
});

Deno.test("featuresOf and pathReadings: what servers disagree on, and how they read it", () => {
  assert.deepEqual(featuresOf("/a//b;x/%2e%2e"), ['"//"', '";" parameter', "dot segment", "%2E"]);
  assert.deepEqual(featuresOf("/a\\b%2F%5c#x"), ["backslash", "%2F", "%5C", '"#"']);
  assert.deepEqual(featuresOf("/a./b%20/c%2e"), ["trailing dot or space", "%2E"]);
  assert.deepEqual(featuresOf("/a/../b/..."), ["dot segment", "trailing dot or space"]);
  const table: [string, string[]][] = [
    ["//admin/x", ["/admin/x", "//admin/x"]],
    ["/admin%2fx", ["/admin/x", "/admin%2Fx"]],
    ["/admin\\x", ["/admin/x", "/admin%5Cx"]],
    ["/admin;x/y", ["/admin/y", "/admin;x/y"]],
    // nginx merges before resolving (/b); Node resolves without merging (/a/b);
    // a prefix router on the raw string resolves nothing.
    ["/a//../b", ["/b", "/a/b", "/a//%2E%2E/b", "/a/%2E%2E/b"]],
    ["/ok/..;/admin/x", ["/admin/x", "/ok/..;/admin/x", "/ok/%2E%2E/admin/x"]],
  ];
  for (const [raw, want] of table) {
    assert.deepEqual(pathReadings(raw), { views: want, malformed: null }, raw);
  }
});

Deno.test("encodePath: one spelling, existing escapes kept upper-case", () => {
  assert.equal(encodePath("/a b/é/%2f/100%/?#"), "/a%20b/%C3%A9/%2F/100%25/%3F%23");
  assert.equal(encodePath("/😀"), "/%F0%9F%98%80");
});

/** mulberry32: a small seeded PRNG, so a failure can be reproduced. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = [
  "/",
  "//",
  ".",
  "..",
  "%2e",
  "%2E%2e",
  "%2f",
  "%2F",
  "%5c",
  "\\",
  ";",
  ";x=1",
  "%3b",
  "%25",
  "%252f",
  "admin",
  "ADMIN",
  "ok",
  "x",
  "%61",
  "#",
  "?",
  "%3f",
  "%23",
  "%20",
  "é",
  "%c3%a9",
  "%c0%af",
  "%u002f",
  "%",
  "a%2",
  "~",
  "@",
  ":",
];

Deno.test("canonicalPath: the canonical path is a fixed point with one reading (3,000 paths)", () => {
  const next = rng(20);
  for (let i = 0; i < 3000; i++) {
    let raw = "/";
    const n = 1 + Math.floor(next() * 8);
    for (let k = 0; k < n; k++) raw += PIECES[Math.floor(next() * PIECES.length)];
    const c = canonicalPath(raw);
    if (c.spelling?.malformed) continue;
    const again = canonicalPath(c.path);
    assert.equal(again.path, c.path, `not a fixed point: ${raw} -> ${c.path} -> ${again.path}`);
    assert.equal(again.spelling?.malformed ?? null, null, raw);
    // What `normalize` forwards cannot be read two ways.
    assert.deepEqual(pathReadings(c.path).views, [c.path], `${raw} -> ${c.path}`);
    // The canonical reading is one of the readings of the raw path.
    if (c.spelling) assert.equal(pathReadings(raw).views[0], c.path, raw);
  }
});
