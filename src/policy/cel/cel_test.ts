import assert from "node:assert/strict";
import {
  CelError,
  CelEvalError,
  type CelInput,
  cidrMatch,
  compileCondition,
  compileKeyExpression,
  globMatch,
  regexCompileCount,
} from "./mod.ts";

const NOW = new Date("2025-03-31T06:30:00Z"); // Mon 08:30 in Berlin (CEST)

function req(over: Partial<CelInput> = {}): CelInput {
  return {
    id: "d1",
    session: "ci",
    label: "nightly",
    client: "10.1.2.3",
    method: "POST",
    scheme: "https",
    host: "api.openai.com",
    port: 443,
    path: "/v1/chat/completions",
    query: "stream=true&tag=a&tag=b&q=a%20b",
    headers: { "x-team": "ml", "content-type": "application/json" },
    body: {
      model: "gpt-4o-mini",
      max_tokens: 512,
      messages: [{ role: "system", content: "be brief" }, { role: "user", content: "hi" }],
    },
    now: NOW,
    ...over,
  };
}

function loadError(expr: string): CelError {
  try {
    compileCondition(expr);
  } catch (e) {
    assert.ok(e instanceof CelError, `expected CelError, got ${e}`);
    return e;
  }
  assert.fail(`expected a load error for ${expr}`);
}

function evalError(expr: string, input: CelInput): CelEvalError {
  const c = compileCondition(expr);
  try {
    c.evaluate(input);
  } catch (e) {
    assert.ok(e instanceof CelEvalError, `expected CelEvalError, got ${e}`);
    return e;
  }
  assert.fail(`expected an evaluation error for ${expr}`);
}

Deno.test("conditions over headers and JSON bodies", () => {
  const table: Array<[string, CelInput, boolean]> = [
    ['request.headers["x-team"] == "ml" && body.model.startsWith("gpt-4o")', req(), true],
    [
      'request.headers["x-team"] == "ml" && body.model.startsWith("gpt-4o")',
      req({ body: { model: "o3" } }),
      false,
    ],
    ['"x-team" in request.headers && !has(request.headers.cookie)', req(), true],
    ["body.max_tokens <= 1024 && body.max_tokens > 100", req(), true],
    ['body.messages.exists(m, m.role == "system")', req(), true],
    ["body.messages.all(m, m.content.size() < 20)", req(), true],
    ['body.model.matches("^gpt-4o(-mini)?$")', req(), true],
    ['body.model.lowerAscii().contains("4o") && body.model.endsWith("mini")', req(), true],
    ['body.model.split("-")[0] == "gpt"', req(), true],
    ["has(body.stream) && body.stream", req(), false],
    ['request.method == "POST" && request.scheme == "https" && request.port == 443', req(), true],
    ['request.query["tag"] == "a" && request.query.q == "a b"', req(), true],
    ['session.id == "ci" && session.label == "nightly"', req(), true],
    ["session.id == null && session.label == null", req({ session: null, label: null }), true],
    ['client == "10.1.2.3"', req(), true],
    ['now.getHours("Europe/Berlin") == 8 && now.getDayOfWeek("Europe/Berlin") == 1', req(), true],
    ['now > timestamp("2025-01-01T00:00:00Z")', req(), true],
    // bufbuild's own accessor gives 3 here when the machine runs in Europe/Berlin
    // (02:30 is in the machine's DST gap); ours does not depend on the machine's zone.
    ['timestamp("2025-03-30T02:30:00Z").getHours() == 2', req(), true],
    ['timestamp("2025-03-30T01:30:00Z").getHours("Europe/Berlin") == 3', req(), true],
    ['now.getHours("+05:30") == 12 && now.getMinutes("-01:00") == 30', req(), true],
    ["body == null", req({ body: null }), true],
    ["size(body) == 3", req({ body: [1, 2, 3] }), true],
  ];
  for (const [expr, input, want] of table) {
    assert.equal(compileCondition(expr).evaluate(input), want, expr);
  }
});

Deno.test("reads and needsBody are known at load", () => {
  const c = compileCondition(
    'request.headers["x-team"] == "ml" && body.model.startsWith("gpt-4o")',
  );
  assert.deepEqual([...c.reads].sort(), ["body", "request.headers"]);
  assert.equal(c.needsBody, true);

  const d = compileCondition('glob(request.path, "/v1/**") && cidr(client, "10.0.0.0/8")');
  assert.deepEqual([...d.reads].sort(), ["client", "request.path"]);
  assert.equal(d.needsBody, false);

  assert.deepEqual([...compileCondition('request["method"] == "GET"').reads], ["request.method"]);
  // Reading the whole record reads every field.
  assert.equal(compileCondition("size(request) > 0").reads.size, 7);
  // A comprehension variable named like a variable shadows it.
  assert.deepEqual([...compileCondition("[1].exists(body, body == 1)").reads], []);
  assert.deepEqual(
    [...compileCondition('session.id == "x" || now > timestamp("2025-01-01T00:00:00Z")').reads]
      .sort(),
    ["now", "session"],
  );
});

Deno.test("unknown names and fields are load errors with the exact offset", () => {
  const table: Array<[string, string, number]> = [
    [
      'requst.host == "x"',
      'Unknown name "requst" (did you mean "request"?): the variables are request, body, session, now, client and dest',
      0,
    ],
    [
      '1 == 1 && requst.host == "x"',
      'Unknown name "requst" (did you mean "request"?): the variables are request, body, session, now, client and dest',
      10,
    ],
    [
      'request.hots == "x"',
      'Unknown field "hots" of "request" (did you mean "host"?): the fields are method, scheme, host, port, path, query, headers',
      8,
    ],
    [
      'request . hots == "x"',
      'Unknown field "hots" of "request" (did you mean "host"?): the fields are method, scheme, host, port, path, query, headers',
      10,
    ],
    [
      'request["pth"] == "/"',
      'Unknown field "pth" of "request" (did you mean "path"?)',
      8,
    ],
    [
      'session.name == "x"',
      'Unknown field "name" of "session": the fields are id, label',
      8,
    ],
    ["foo(1)", 'Unknown function "foo"', 0],
    ['globb(request.path, "/x")', 'Unknown function "globb" (did you mean "glob"?)', 0],
    [
      'request.path.strtsWith("/")',
      'Unknown function "strtsWith" (did you mean "startsWith"?)',
      13,
    ],
    // Offsets count UTF-16 code units, like JavaScript strings.
    [
      '"é😀" == requst',
      'Unknown name "requst" (did you mean "request"?): the variables are request, body, session, now, client and dest',
      9,
    ],
  ];
  for (const [expr, message, offset] of table) {
    const e = loadError(expr);
    assert.equal(e.message, message, expr);
    assert.equal(e.offset, offset, expr);
  }
});

Deno.test("syntax and type errors are load errors", () => {
  const table: Array<[string, string, number]> = [
    ["request.host ==", "Syntax error: found = but expecting end of input", 13],
    ["a +", "Syntax error: found + but expecting end of input", 2],
    [
      'request.port == "443"',
      'Cannot compare "int" with "string" using "==": the result would always be false',
      13,
    ],
    [
      'request.port.startsWith("4")',
      'No matching overload for "startsWith" applied to int.(string)',
      13,
    ],
    [
      'startsWith(request.path, "/")',
      'No matching overload for "startsWith" applied to (string, string): "startsWith" is a method, call it as x.startsWith(…)',
      0,
    ],
    ['request.path + 1 == "x"', 'No matching overload for "+" applied to (string, int)', 13],
    ["request.host && true", 'Operator "&&" needs bool operands, got "string"', 0],
    ["request.host", 'A condition must evaluate to a bool, got "string"', 0],
    [
      'request.path.matches("(")',
      'Invalid regular expression "(": error parsing regexp: missing closing ): `(`',
      21,
    ],
    [
      'cidr(client, "10.0.0.0/33")',
      'Invalid CIDR "10.0.0.0/33": the prefix length must be 0-32',
      13,
    ],
    ['cidr(client, "ten/8")', 'Invalid CIDR "ten/8": expected e.g. "10.0.0.0/8" or "fd00::/8"', 13],
    [
      'now.getHours("Europe/Berln") > 8',
      'Unknown time zone "Europe/Berln": use an IANA name such as "Europe/Berlin", "UTC" or "+01:00"',
      13,
    ],
    ["", 'Empty expression: write a CEL expression such as request.method == "GET"', 0],
  ];
  for (const [expr, message, offset] of table) {
    const e = loadError(expr);
    assert.equal(e.message, message, expr);
    assert.equal(e.offset, offset, expr);
  }
});

Deno.test("runtime errors throw CelEvalError, never a guess", () => {
  const missing = evalError(
    'request.headers["x-team"] == "ml"',
    req({ headers: {} }),
  );
  assert.equal(missing.message, 'No such key "x-team"');
  assert.equal(missing.offset, 17);

  const noBody = evalError('body.model == "x"', req({ body: undefined }));
  assert.equal(
    noBody.message,
    "Request body is not available: it is not JSON, it is larger than limits.max_body_bytes, or the request has none",
  );
  assert.equal(noBody.offset, 0);

  const noField = evalError('body.model.startsWith("gpt")', req({ body: { other: 1 } }));
  assert.equal(noField.message, 'No such key "model"');
  assert.equal(noField.offset, 5);

  const wrongType = evalError("body.flag", req({ body: { flag: "yes" } }));
  assert.equal(wrongType.message, 'The condition returned a string ("yes"), not a bool');

  const doubles = evalError("body.max_tokens + 1 > 2", req());
  assert.equal(
    doubles.message,
    'No matching overload for "+" applied to (double, int): JSON numbers are doubles, so write 2.0 instead of 2, or convert with int(…)',
  );
  assert.equal(doubles.offset, 16);

  const badIp = evalError('cidr(client, "10.0.0.0/8")', req({ client: "not-an-ip" }));
  assert.equal(badIp.message, 'Invalid IP address "not-an-ip"');

  const tunnel = evalError(
    'request.path.startsWith("/v1")',
    req({ method: "CONNECT", path: null }),
  );
  assert.equal(
    tunnel.message,
    'The expression reads request.path, which is unknown for a CONNECT tunnel to "api.openai.com": intercept the host or drop the path from the condition',
  );

  const regex = evalError("request.path.matches(body.re)", req({ body: { re: "(" } }));
  assert.equal(
    regex.message,
    'Invalid regular expression "(": error parsing regexp: missing closing ): `(`',
  );
});

Deno.test("a body that is not needed is not an error (short-circuit)", () => {
  const c = compileCondition('request.method == "GET" || body.model == "x"');
  assert.equal(c.evaluate(req({ method: "GET", body: undefined })), true);
  assert.throws(() => c.evaluate(req({ body: undefined })), CelEvalError);
});

Deno.test("glob follows picomatch with dot files", () => {
  assert.equal(globMatch("/v1/chat/completions", "/v1/**"), true);
  assert.equal(globMatch("/v1/chat/completions", "/v1/*"), false);
  assert.equal(globMatch("/admin/.env", "/admin/**"), true);
  assert.equal(globMatch("api.openai.com", "*.openai.com"), true);
  assert.equal(globMatch("/v2/x", "/v1/**"), false);
  const c = compileCondition('glob(request.path, "/v1/chat/*")');
  assert.equal(c.evaluate(req()), true);
  assert.equal(c.evaluate(req({ path: "/v1/embeddings" })), false);
});

Deno.test("cidr matches IPv4, IPv6 and IPv4-mapped IPv6", () => {
  const table: Array<[string, string, boolean]> = [
    ["10.1.2.3", "10.0.0.0/8", true],
    ["11.1.2.3", "10.0.0.0/8", false],
    ["192.168.1.77", "192.168.1.64/26", true],
    ["192.168.1.130", "192.168.1.64/26", false],
    ["0.0.0.0", "0.0.0.0/0", true],
    ["127.0.0.1", "127.0.0.1", true],
    ["::1", "::1/128", true],
    ["fd12:3456::1", "fd00::/8", true],
    ["fe80::1%eth0", "fe80::/10", true],
    ["2001:db8::1", "fd00::/8", false],
    ["::ffff:10.1.2.3", "10.0.0.0/8", true],
    ["10.1.2.3", "::ffff:10.0.0.0/104", true],
    ["10.1.2.3", "fd00::/8", false],
    ["2001:db8:0:0:0:0:0:1", "2001:db8::/32", true],
    ["[2001:db8::1]", "2001:db8::/32", true],
  ];
  for (const [ip, range, want] of table) assert.equal(cidrMatch(ip, range), want, `${ip} ${range}`);
  assert.throws(() => cidrMatch("1.2.3", "10.0.0.0/8"), { message: 'Invalid IP address "1.2.3"' });
  assert.throws(() => cidrMatch("1:2:3:4:5:6:7:8:9", "::/0"), {
    message: 'Invalid IP address "1:2:3:4:5:6:7:8:9"',
  });
});

Deno.test("matches uses RE2: a ReDoS pattern on a long path stays fast", () => {
  const c = compileCondition('request.path.matches("^(a+)+$")');
  const path = "/" + "a".repeat(50_000) + "!";
  const started = performance.now();
  assert.equal(c.evaluate(req({ path })), false);
  const ms = performance.now() - started;
  // Only a guard: a backtracking engine takes seconds to minutes here.
  assert.ok(ms < 2_000, `took ${ms} ms`);
});

Deno.test("key expressions evaluate to strings", () => {
  const k = compileKeyExpression('request.headers["x-team"]');
  assert.equal(k.evaluate(req()), "ml");
  assert.deepEqual([...k.reads], ["request.headers"]);
  assert.equal(
    compileKeyExpression('body.model + "/" + string(request.port)').evaluate(req()),
    "gpt-4o-mini/443",
  );
  assert.throws(() => compileKeyExpression("request.port"), {
    name: "CelError",
    message: 'A key expression must evaluate to a string, got "int": wrap it in string(…)',
  });
  const dyn = compileKeyExpression("body.max_tokens");
  assert.throws(() => dyn.evaluate(req()), {
    name: "CelEvalError",
    message: "The key expression returned a double (512), not a string",
  });
});

Deno.test("the regex cache: a pattern is compiled once, not at every evaluation", () => {
  // How fast that makes a condition is measured by `deno task bench decide`.
  const expr = 'request.path.matches("^/v1/(chat/completions|responses|embeddings)$")';
  const input = req();
  const cached = compileCondition(expr);
  const uncached = compileCondition(expr, { cacheRegex: false });
  const before = regexCompileCount();
  for (let i = 0; i < 100; i++) assert.equal(cached.evaluate(input), true);
  assert.ok(regexCompileCount() - before <= 1, `${regexCompileCount() - before} compilations`);
  const mid = regexCompileCount();
  for (let i = 0; i < 100; i++) assert.equal(uncached.evaluate(input), true);
  assert.equal(regexCompileCount() - mid, 100);
});
