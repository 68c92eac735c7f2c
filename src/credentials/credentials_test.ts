import assert from "node:assert/strict";
import {
  basicValue,
  type CredentialSpec,
  findPhantoms,
  judge,
  maskPhantom,
  newPhantom,
  parseBasic,
  type PhantomOwner,
  PhantomRegistry,
  presentedFormat,
  PRESETS,
  type RequestView,
  scanRequest,
  secretNeedles,
  stableBase64,
  swapInQuery,
  swapInValue,
} from "./mod.ts";

const enc = new TextEncoder();
const b64 = (s: string) => btoa(String.fromCharCode(...enc.encode(s)));
const hex = (s: string) => [...enc.encode(s)].map((b) => b.toString(16).padStart(2, "0")).join("");

function spec(name: string, over: Partial<CredentialSpec> = {}): CredentialSpec {
  const p = PRESETS[name] ?? PRESETS.openai;
  return {
    name,
    preset: name in PRESETS ? name : null,
    source: { kind: "env", name: "X" },
    scope: {
      hosts: p.hosts,
      allowsHost: (scheme, host) => scheme === "https" && p.hosts.includes(host),
      paths: null,
      allowsPath: () => true,
      methods: null,
    },
    headers: p.headers ?? [],
    basic: p.basic ?? null,
    query: p.query ?? null,
    phantom: p.phantom,
    variables: p.variables,
    npmrc: p.npmrc ?? null,
    git: p.git ?? [],
    where: "agentgate.yaml:3",
    ...over,
  };
}

Deno.test("phantoms: shapes of the presets, unique, masked", () => {
  const gh = newPhantom(PRESETS.github.phantom);
  assert.match(gh, /^ghp_agentgate[0-9A-Za-z]{27}$/);
  assert.equal(gh.length, 40, "the length of a real ghp_ token");
  assert.match(newPhantom(PRESETS.npm.phantom), /^npm_agentgate[0-9A-Za-z]{27}$/);
  assert.equal(newPhantom(PRESETS.gemini.phantom).length, 39, "AIza + 35, like a real key");
  assert.match(newPhantom(PRESETS.openai.phantom), /^sk-proj-agentgate-[0-9A-Za-z]{48}$/);
  assert.match(newPhantom(PRESETS.anthropic.phantom), /^sk-ant-agentgate-[0-9A-Za-z]{48}$/);
  const many = new Set(Array.from({ length: 500 }, () => newPhantom(PRESETS.github.phantom)));
  assert.equal(many.size, 500);
  assert.equal(maskPhantom("sk-proj-agentgate-abcdefgh"), "sk-p…efgh");
});

Deno.test("phantoms: found raw, after '-', in base64 at every alignment, url-safe, hex", () => {
  const reg = new PhantomRegistry();
  const [openai] = reg.issue("s1", [spec("openai")]);
  const p = openai.phantom;
  const find = (text: string) => findPhantoms(text, reg.lengths, (k) => reg.lookup(k));
  assert.deepEqual(find(`Bearer ${p}`).map((o) => o.credential), ["openai"]);
  for (const pad of ["", "x", "xy"]) {
    const text = b64(`${pad}token=${p}&more`);
    assert.equal(find(`data: ${text}`).length, 1, `base64 with "${pad}" before`);
    const urlSafe = text.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    assert.equal(find(urlSafe).length, 1, `url-safe base64 with "${pad}" before`);
  }
  assert.equal(find(hex(`k=${p}`)).length, 1, "lower-case hex");
  assert.equal(find(hex(`k=${p}`).toUpperCase()).length, 1, "upper-case hex");
  assert.equal(find(`x-${b64(p)}`).length, 1, "glued to other text");
  // Near misses: the marker alone, another random part, a cut phantom.
  assert.equal(find("agentgate is a proxy; agentgate-xyz").length, 0);
  assert.equal(find(newPhantom(PRESETS.openai.phantom)).length, 0, "not issued");
  assert.equal(find(p.slice(0, -1)).length, 0, "one character short");
  reg.forget("s1");
  assert.equal(find(p).length, 0, "forgotten with its session");
  assert.deepEqual(reg.lengths, []);
});

Deno.test("secretNeedles: the secret, percent-encoded, hex and stable base64", () => {
  const secret = "sk-live/real+key=9";
  const needles = secretNeedles(secret);
  for (const pad of ["", "a", "ab"]) {
    const text = b64(`${pad}${secret}${pad}`);
    assert.ok(needles.some((n) => text.includes(n)), `base64 aligned after "${pad}"`);
  }
  assert.ok(needles.includes(encodeURIComponent(secret)));
  assert.ok(needles.includes(hex(secret)));
  // A stable run never depends on a neighbour: the same run whatever surrounds it.
  for (const run of stableBase64("agentgate")) assert.ok(run.length >= 6);
});

Deno.test("places: header formats, basic auth, query", () => {
  assert.equal(presentedFormat("bearer  sk-x ", ["Bearer {secret}"], "sk-x"), null, "two spaces");
  assert.equal(presentedFormat(" bearer sk-x ", ["Bearer {secret}"], "sk-x"), "Bearer {secret}");
  assert.equal(
    presentedFormat("token sk-x", ["Bearer {secret}", "token {secret}"], "sk-x"),
    "token {secret}",
  );
  assert.equal(presentedFormat("Bearer sk-xy", ["Bearer {secret}"], "sk-x"), null);
  assert.equal(swapInValue("Bearer sk-x", "sk-x", "REAL"), "Bearer REAL");
  assert.deepEqual(parseBasic(basicValue("x-access-token", "ghp_1")), {
    user: "x-access-token",
    pass: "ghp_1",
  });
  assert.equal(parseBasic("Bearer x"), null);
  assert.equal(
    swapInQuery("alt=sse&key=AIzaX&key=other", "key", "AIzaX", "r/e al"),
    "alt=sse&key=r%2Fe%20al&key=other",
  );
});

function view(over: Partial<RequestView>): RequestView {
  return {
    host: "api.openai.com",
    path: "/v1/chat/completions",
    query: "",
    headers: [],
    body: [],
    ...over,
  };
}

Deno.test("judge: the phantom in its place is swapped; anywhere else it trips with a stable reason", () => {
  const reg = new PhantomRegistry();
  const specs = [spec("openai"), spec("github"), spec("gemini")];
  const byName = new Map(specs.map((s) => [s.name, s]));
  const [openai, github, gemini] = reg.issue("s1", specs);
  const targets = {
    lengths: reg.lengths,
    lookup: (k: string) => reg.lookup(k),
    lookupFolded: (k: string) => reg.lookupFolded(k),
    secrets: [],
  };
  const req = (over: Partial<Parameters<typeof judge>[0]> = {}) => ({
    scheme: "https" as const,
    host: "api.openai.com",
    port: 443,
    method: "POST",
    path: "/v1/chat/completions",
    session: "s1",
    ...over,
  });
  const run = (v: RequestView, r = req()) => judge(r, byName, scanRequest(v, targets));

  assert.deepEqual(run(view({ headers: [["authorization", `Bearer ${openai.phantom}`]] })), {
    swaps: [{
      kind: "header",
      credential: "openai",
      name: "authorization",
      value: `Bearer ${openai.phantom}`,
      phantom: openai.phantom,
    }],
  });
  const reason = (v: RequestView, r = req()) => {
    const j = run(v, r);
    return "reason" in j ? `${j.reason} @ ${j.where}` : "swapped";
  };
  const evil = req({ host: "evil.example" });
  const auth = `Bearer ${openai.phantom}`;
  assert.equal(
    reason(view({ host: "evil.example", headers: [["authorization", auth]] }), evil),
    'credential "openai" used outside its hosts @ header:authorization',
  );
  assert.equal(
    reason(view({ host: "evil.example", query: `q=${encodeURIComponent(openai.phantom)}` }), evil),
    'credential "openai" used outside its hosts @ query:q',
  );
  assert.equal(
    reason(view({ body: [JSON.stringify({ note: openai.phantom })] })),
    'credential "openai" used outside its place: body @ body',
  );
  assert.equal(
    reason(view({ path: `/v1/${openai.phantom}` })),
    'credential "openai" used outside its place: url @ url',
  );
  assert.equal(
    reason(view({ headers: [["x-api-key", openai.phantom]] })),
    'credential "openai" used outside its place: header:x-api-key @ header:x-api-key',
  );
  assert.equal(
    reason(view({ headers: [["authorization", auth]] }), req({ session: "s2" })),
    'credential "openai" used by another session @ header:authorization',
  );
  assert.equal(
    reason(view({ headers: [["authorization", auth]] }), req({ session: null })),
    'credential "openai" used by another session @ header:authorization',
  );
  assert.equal(
    reason(view({ headers: [["authorization", auth]] }), req({ scheme: "http", port: 80 })),
    'credential "openai" used outside its hosts @ header:authorization',
    "plain HTTP to the right host: https only",
  );
  assert.equal(
    reason(view({ host: `${openai.phantom.slice(8).toLowerCase()}.evil.example` }), evil),
    'credential "openai" used outside its hosts @ host',
    "a host name has lost its case",
  );
  // In its place *and* elsewhere: tripped.
  assert.equal(
    reason(view({ headers: [["authorization", auth], ["x-debug", openai.phantom]] })),
    'credential "openai" used outside its place: header:x-debug @ header:x-debug',
  );
  // git over HTTPS: basic auth with the phantom as password.
  const ghReq = req({ host: "github.com", method: "GET", path: "/acme/private.git/info/refs" });
  assert.deepEqual(
    run(
      view({ host: "github.com", headers: [["authorization", basicValue("x", github.phantom)]] }),
      ghReq,
    ),
    { swaps: [{ kind: "basic", credential: "github", user: "x", phantom: github.phantom }] },
  );
  // Gemini's key in the query.
  const gReq = req({ host: "generativelanguage.googleapis.com" });
  assert.deepEqual(
    run(view({ host: gReq.host, query: `alt=sse&key=${gemini.phantom}` }), gReq),
    { swaps: [{ kind: "query", credential: "gemini", name: "key", phantom: gemini.phantom }] },
  );
  // Paths and methods of a credential.
  const narrow = new Map([[
    "openai",
    spec("openai", {
      scope: {
        ...spec("openai").scope,
        paths: ["/v1/chat/**"],
        allowsPath: (p) => p.startsWith("/v1/chat/"),
        methods: new Set(["POST"]),
      },
    }),
  ]]);
  const j1 = judge(
    req({ path: "/v1/files" }),
    narrow,
    scanRequest(view({ headers: [["authorization", auth]] }), targets),
  );
  assert.equal("reason" in j1 && j1.reason, 'credential "openai" used outside its paths');
  const j2 = judge(
    req({ method: "DELETE" }),
    narrow,
    scanRequest(view({ headers: [["authorization", auth]] }), targets),
  );
  assert.equal("reason" in j2 && j2.reason, 'credential "openai" used outside its methods');
});

Deno.test("judge: a real secret sent by the client is refused wherever it is", () => {
  const byName = new Map([["openai", spec("openai")]]);
  const secret = "sk-real-0123456789abcdef";
  const targets = {
    lengths: [],
    lookup: (_k: string): PhantomOwner | undefined => undefined,
    secrets: [{ owner: "openai", needles: secretNeedles(secret) }],
  };
  const r = {
    scheme: "https" as const,
    host: "api.openai.com",
    port: 443,
    method: "POST",
    path: "/v1/x",
    session: "s1",
  };
  for (
    const [v, where] of [
      [view({ headers: [["authorization", `Bearer ${secret}`]] }), "header:authorization"],
      [view({ body: [b64(`{"k":"${secret}"}`)] }), "body"],
      [view({ query: `k=${encodeURIComponent(secret)}` }), `query:k`],
    ] as const
  ) {
    const j = judge(r, byName, scanRequest(v, targets));
    assert.ok("reason" in j);
    assert.equal(j.reason, `real secret of credential "openai" in the request: ${where}`);
    assert.equal(j.kind, "secret");
  }
});
