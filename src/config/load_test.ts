import assert from "node:assert/strict";
import { loadConfig, parseConfig } from "./load.ts";
import { ConfigError, formatProblem } from "./errors.ts";

function errorsOf(text: string, file = "policies/ci.yaml"): string[] {
  try {
    parseConfig(text, file, "/repo");
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map(formatProblem);
    throw e;
  }
  assert.fail("expected a config error");
}

Deno.test("load: unknown keys, wrong types and bad values name file:line:col", () => {
  const text = `version: 1
default: alow
rules:
  - name: npm
    match: registry.npmjs.org
    action: allow
    methdos: [GET]
  - match: 42
    action: allow
proxy:
  listen: localhost
`;
  assert.deepEqual(errorsOf(text), [
    'policies/ci.yaml:2:10: "default" must be one of "deny", "allow", "log", not "alow" (did you mean "allow"?)',
    'policies/ci.yaml:7:5: unknown key "methdos" in rule "npm" (did you mean "methods"?)',
    'policies/ci.yaml:8:12: "rules.1.match" must be a string or a list, not number 42',
    'policies/ci.yaml:11:11: listen address "localhost" must be HOST:PORT (e.g. "127.0.0.1:4100")',
  ]);
});

Deno.test("load: a bad glob points at the character inside the pattern", () => {
  const text = 'version: 1\nrules:\n  - match: "api.example.com:99999/v1"\n    action: allow\n';
  assert.deepEqual(errorsOf(text, "a.yaml"), [
    'a.yaml:3:29: invalid match pattern "api.example.com:99999/v1" in rule "api.example.com:99999/v1": port 99999 is out of range 1-65535',
  ]);
});

Deno.test("load: YAML syntax errors and duplicate keys", () => {
  assert.deepEqual(errorsOf("version: 1\nrules: [\n", "s.yaml").length, 1);
  assert.match(errorsOf("version: 1\nrules: [\n", "s.yaml")[0], /^s\.yaml:\d+:\d+: invalid YAML: /);
  assert.deepEqual(errorsOf("version: 1\nmode: audit\nmode: enforce\n", "d.yaml"), [
    "d.yaml:3:1: invalid YAML: Map keys must be unique",
  ]);
  assert.deepEqual(errorsOf("", "e.yaml"), [
    "e.yaml:0:0: the policy file is empty".replace(":0:0", ""),
  ]);
  assert.deepEqual(errorsOf("- a\n- b\n", "l.yaml"), [
    "l.yaml:1:1: a policy file must be a YAML mapping",
  ]);
});

Deno.test("load: v1-only keys without version are refused, not read as the legacy format", () => {
  assert.deepEqual(errorsOf("default: deny\nrules: []\n", "x.yaml"), [
    'x.yaml:1:1: missing key "version": this file uses "default", which only agentgate policies have; ' +
    'add "version: 1" at the top (a file without version is read as @agentreserve/proxy configuration)',
  ]);
});

Deno.test("load: warnings and tunnel lint problems do not stop loading", () => {
  const text = `version: 1
rules:
  - match: "*"
    action: log
  - name: never
    match: example.com
    action: deny
  - name: paths
    match: api.example.com/v1/**
    methods: [PSOT]
    action: allow
`;
  const { config, problems } = parseConfig(text, "w.yaml", "/");
  assert.equal(config.policy.rules.length, 3);
  // Changed deliberately (issue 16): the tunnel problem was a "lint" error that
  // `check` failed on while `serve` printed it as a warning; one loader now
  // decides for every command, and it is a warning for both (check --strict
  // fails on it), saying how HTTPS requests are handled.
  assert.deepEqual(problems.map(formatProblem), [
    'w.yaml:5:5: warning: rule "never" can never match: rule "*" (w.yaml:3) matches every request first',
    'w.yaml:8:5: warning: rule "paths" can never match: rule "*" (w.yaml:3) matches every request first',
    'w.yaml:10:14: warning: rule "paths" uses the path glob "/v1/**" and the method (PSOT), which a CONNECT tunnel does not reveal: agentgate denies HTTPS requests to "api.example.com" with a reason naming this rule and matches plain-HTTP requests in full; to decide HTTPS requests too, add "api.example.com" to tls.intercept (or write the pattern with "http://" if the rule is meant for plain HTTP only)',
    'w.yaml:10:15: warning: unknown HTTP method "PSOT" (did you mean "POST"?)',
  ]);
  const legacy = `rules:
  - match: "api.example.com/v1/*"
    action: deny
`;
  const loaded = parseConfig(legacy, "l.yaml", "/");
  assert.equal(loaded.config.format, "agentreserve");
  assert.deepEqual(loaded.problems.map(formatProblem), [
    'l.yaml:2:12: warning: rule "api.example.com/v1/*" uses the path glob "/v1/**", which a CONNECT tunnel does not reveal: agentgate denies HTTPS requests to "api.example.com" with a reason naming this rule and matches plain-HTTP requests in full; to decide HTTPS requests too, add "version: 1" to make this an agentgate policy and add "api.example.com" to tls.intercept',
  ]);
});

Deno.test("load: defaults, and paths relative to the policy file", () => {
  // Changed deliberately (issue 16): without audit.path the database is in the
  // agentgate home, not beside the policy (nor in the working directory).
  const before = Deno.env.get("AGENTGATE_HOME");
  Deno.env.set("AGENTGATE_HOME", "/home/me/.ag");
  let config;
  try {
    config = parseConfig("version: 1\n", "conf/agentgate.yaml", "/repo").config;
  } finally {
    if (before === undefined) Deno.env.delete("AGENTGATE_HOME");
    else Deno.env.set("AGENTGATE_HOME", before);
  }
  assert.equal(
    parseConfig("version: 1\naudit: { path: ./agentgate.db }\n", "conf/agentgate.yaml", "/repo")
      .config.audit.path,
    "/repo/conf/agentgate.db",
  );
  assert.equal(config.listen.host, "127.0.0.1");
  assert.equal(config.listen.port, 4100);
  assert.equal(config.dashboard, true);
  assert.equal(config.policy.defaultAction, "deny");
  assert.equal(config.policy.mode, "enforce");
  assert.equal(config.audit.path, "/home/me/.ag/agentgate.db");
  assert.equal(config.audit.retentionMs, 30 * 86_400_000);
  assert.equal(config.upstream.connectTimeoutMs, 10_000);
  assert.equal(config.upstream.responseTimeoutMs, 300_000);
});

Deno.test("load: the @agentreserve/proxy README example loads unchanged", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const text = `proxy:
  port: 4100
  host: "127.0.0.1"
  dashboard: true

rules:
  # Allow OpenAI with rate limiting
  - match: "api.openai.com/*"
    action: allow
    policies:
      - type: rate_limit
        max_requests_per_minute: 60

  # Allow Anthropic with rate limiting
  - match: "api.anthropic.com/*"
    action: allow
    policies:
      - type: rate_limit
        max_requests_per_minute: 30

  # Block internal APIs
  - match: "*.internal.company.com/*"
    action: deny
    reason: "Internal APIs are not accessible to agents"

  # Block sensitive AWS endpoints
  - match: "*.amazonaws.com/iam/*"
    action: deny
    reason: "IAM modifications blocked for agents"

  # Allow and log everything else
  - match: "*"
    action: log

audit:
  store: sqlite
  path: ./agentreserve-audit.db
`;
    await Deno.writeTextFile(`${dir}/agentreserve.yaml`, text);
    const { config, problems } = await loadConfig("agentreserve.yaml", dir);
    assert.equal(config.format, "agentreserve");
    // It passes `check` too: the one rule a tunnel cannot decide is a warning saying how
    // its HTTPS requests are handled.
    assert.deepEqual(problems.map((p) => `${p.severity} ${p.line}:${p.col}`), ["warning 27:12"]);
    assert.match(
      problems[0].message,
      /agentgate denies HTTPS requests to "\*\.amazonaws\.com"/,
    );
    assert.deepEqual(config.listen, { host: "127.0.0.1", port: 4100 });
    assert.equal(config.audit.path, `${dir}/agentreserve-audit.db`);
    assert.deepEqual(config.policy.rules.map((r) => [r.name, r.action]), [
      ["api.openai.com/*", "allow"],
      ["api.anthropic.com/*", "allow"],
      ["*.internal.company.com/*", "deny"],
      ["*.amazonaws.com/iam/*", "deny"],
      ["*", "log"],
    ]);
    assert.deepEqual(config.policy.rules.map((r) => r.checkers.map((c) => c.name)), [
      ["rate_limit"],
      ["rate_limit"],
      [],
      [],
      [],
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load: a missing file is a config error naming it", async () => {
  await assert.rejects(loadConfig("nope.yaml", "/tmp"), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.message, "nope.yaml: file not found");
    return true;
  });
});

Deno.test("load: CEL and policy errors point into the YAML", () => {
  const text = `version: 1
rules:
  - name: cel
    match: api.example.test
    when: requst.host == "x"
    action: allow
  - name: quoted
    match: api.example.test
    when: "request.method == 'GET' && request.hots == 'x'"
    action: allow
  - name: block
    match: api.example.test
    when: |
      request.method == "GET" &&
        sesion.id == "x"
    action: allow
  - name: limits
    match: api.example.test
    action: allow
    policies:
      - rate_limit: { requests: 10, per: 1 minute }
      - time_window: { days: mon-fir }
      - spending_limit: { usd: 5, per: 1d, currency: EUR }
      - ratelimit: { requests: 1 }
`;
  const errs = errorsOf(text, "c.yaml");
  assert.equal(errs.length, 7, errs.join("\n"));
  assert.match(errs[0], /^c\.yaml:5:11: invalid condition in rule "cel": .*requst/);
  assert.match(errs[1], /^c\.yaml:9:47: invalid condition in rule "quoted": .*hots/);
  assert.match(errs[2], /^c\.yaml:15:9: invalid condition in rule "block": .*sesion/);
  assert.equal(
    errs[3],
    'c.yaml:21:42: invalid duration "1 minute": expected a number and a unit (ms, s, m, h, d, w), e.g. "90s", "1h30m", "7d"',
  );
  assert.match(errs[4], /^c\.yaml:22:30: unknown day in "mon-fir"/);
  assert.match(errs[5], /^c\.yaml:23:54: unsupported currency "EUR": only USD is supported/);
  assert.equal(
    errs[6],
    'c.yaml:24:9: unknown policy "ratelimit" (did you mean "rate_limit"?)',
  );
});

Deno.test("load: conditions reading request fields on a tunnelled host are reported", () => {
  const text = `version: 1
rules:
  - name: body-check
    match: api.example.test
    when: body.model == "x"
    action: allow
  - name: host-only
    match: other.test
    when: request.host.endsWith(".test") && session.id == "ci"
    action: allow
`;
  const { problems } = parseConfig(text, "t.yaml", "/");
  assert.deepEqual(problems.map(formatProblem), [
    't.yaml:5:11: warning: rule "body-check" uses body in its condition, which a CONNECT tunnel does not reveal: agentgate denies HTTPS requests to "api.example.test" with a reason naming this rule and matches plain-HTTP requests in full; to decide HTTPS requests too, add "api.example.test" to tls.intercept (or write the pattern with "http://" if the rule is meant for plain HTTP only)',
  ]);
});

Deno.test("load: include appends rules from sorted files and names each rule's file:line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/policies`);
    await Deno.writeTextFile(
      `${dir}/agentgate.yaml`,
      "version: 1\ninclude: [policies/*.yaml]\nrules:\n  - { name: main-rule, match: a.test, action: allow }\n",
    );
    await Deno.writeTextFile(
      `${dir}/policies/b.yaml`,
      "version: 1\ntls: { intercept: [b.test] }\nrules:\n  - { name: b-rule, match: b.test/x/**, action: deny }\n",
    );
    await Deno.writeTextFile(
      `${dir}/policies/a.yaml`,
      "rules:\n\n  - { name: a-rule, match: c.test, action: log }\n",
    );
    await Deno.writeTextFile(`${dir}/policies/a_test.yaml`, "tests: []\n");
    const { config, problems } = await loadConfig("agentgate.yaml", dir);
    assert.deepEqual(config.policy.rules.map((r) => [r.name, r.source]), [
      ["main-rule", "agentgate.yaml:4"],
      ["a-rule", "policies/a.yaml:3"],
      ["b-rule", "policies/b.yaml:4"],
    ]);
    assert.deepEqual(problems, []); // b.test is intercepted by the included file
    assert.equal(config.tls.intercept.length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load: include cycles, missing files and main-only keys are errors at the line", async () => {
  const dir = await Deno.makeTempDir();
  const errs = async (main: string) => {
    await Deno.writeTextFile(`${dir}/main.yaml`, main);
    try {
      await loadConfig("main.yaml", dir);
    } catch (e) {
      if (e instanceof ConfigError) return e.problems.map(formatProblem);
      throw e;
    }
    assert.fail("expected an error");
  };
  try {
    await Deno.writeTextFile(`${dir}/x.yaml`, "version: 1\ninclude: [y.yaml]\n");
    await Deno.writeTextFile(`${dir}/y.yaml`, "version: 1\ninclude:\n  - x.yaml\n");
    assert.deepEqual(await errs("version: 1\ninclude: [x.yaml]\n"), [
      "y.yaml:3:5: include cycle: x.yaml -> y.yaml -> x.yaml",
    ]);
    assert.deepEqual(await errs("version: 1\ninclude:\n  - nope.yaml\n  - 'none/*.yaml'\n"), [
      'main.yaml:3:5: cannot include "nope.yaml": file not found',
      'main.yaml:4:5: include pattern "none/*.yaml" matches no file',
    ]);
    await Deno.writeTextFile(`${dir}/z.yaml`, "version: 1\naudit: { path: x.db }\n");
    assert.deepEqual(await errs("version: 1\ninclude: [z.yaml]\n"), [
      'z.yaml:2:1: key "audit" can only be set in the main policy file, not in an included one',
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load: includes stay under the policy's directory, YAML files only, symlinks resolved", async () => {
  const top = await Deno.makeTempDir();
  const dir = `${top}/repo`;
  const errs = async (main: string) => {
    await Deno.writeTextFile(`${dir}/main.yaml`, main);
    try {
      await loadConfig("main.yaml", dir);
    } catch (e) {
      if (e instanceof ConfigError) return e.problems.map(formatProblem);
      throw e;
    }
    assert.fail("expected an error");
  };
  try {
    await Deno.mkdir(`${dir}/policies`, { recursive: true });
    const RULE = "rules: [{ name: ok, match: ok.test, action: allow }]\n";
    const SECRET = "aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
    await Deno.writeTextFile(`${top}/outside.yaml`, RULE);
    await Deno.writeTextFile(`${top}/credentials.yaml`, SECRET);
    await Deno.writeTextFile(`${dir}/policies/a.yaml`, RULE);
    await Deno.writeTextFile(`${dir}/policies/notes.txt`, "version: 1\n");
    await Deno.writeTextFile(`${dir}/.env`, "TOKEN=s3cret-value\n");
    await Deno.symlink(`${top}/credentials.yaml`, `${dir}/policies/link.yaml`);
    await Deno.symlink(`${dir}/.env`, `${dir}/env.yaml`);
    const real = Deno.realPathSync(top);
    assert.deepEqual(
      await errs(
        "version: 1\ninclude:\n  - ../outside.yaml\n  - policies/link.yaml\n  - .env\n" +
          "  - env.yaml\n  - /etc/passwd\n  - policies/notes.txt\n",
      ),
      [
        `main.yaml:3:5: cannot include "../outside.yaml": it resolves to "${real}/outside.yaml", ` +
        `outside "${real}/repo" (includes must stay under the main policy file's directory)`,
        `main.yaml:4:5: cannot include "policies/link.yaml": it resolves to "${real}/credentials.yaml", ` +
        `outside "${real}/repo" (includes must stay under the main policy file's directory)`,
        'main.yaml:5:5: cannot include ".env": only .yaml and .yml files can be included',
        'main.yaml:6:5: cannot include "env.yaml": only .yaml and .yml files can be included',
        'main.yaml:7:5: cannot include "/etc/passwd": it resolves to "/etc/passwd", ' +
        `outside "${real}/repo" (includes must stay under the main policy file's directory)`,
        'main.yaml:8:5: cannot include "policies/notes.txt": only .yaml and .yml files can be included',
      ],
    );
    // A glob rooted outside the tree is refused before anything is walked.
    assert.deepEqual(await errs("version: 1\ninclude: ['/**/*.yaml', '../*.yaml']\n"), [
      `main.yaml:2:11: cannot include "/**/*.yaml": it searches "/", outside "${real}/repo" ` +
      "(includes must stay under the main policy file's directory)",
      `main.yaml:2:25: cannot include "../*.yaml": it searches "${real}", outside "${real}/repo" ` +
      "(includes must stay under the main policy file's directory)",
    ]);
    // A glob takes the YAML files it matches (never the link, nor notes.txt).
    const { config } = await loadConfig(
      (await Deno.writeTextFile(`${dir}/main.yaml`, "version: 1\ninclude: ['policies/*']\n"),
        "main.yaml"),
      dir,
    );
    assert.deepEqual(config.policy.rules.map((r) => r.name), ["ok"]);
    // A FIFO would block the load: only regular files.
    if (Deno.build.os === "linux") {
      await new Deno.Command("mkfifo", { args: [`${dir}/policies/fifo.yaml`] }).output();
      assert.deepEqual(await errs("version: 1\ninclude: [policies/fifo.yaml]\n"), [
        'main.yaml:2:11: cannot include "policies/fifo.yaml": not a regular file',
      ]);
    }
  } finally {
    await Deno.remove(top, { recursive: true });
  }
});

Deno.test("load: errors about a file that is not a policy name keys and positions, never values", async () => {
  const dir = await Deno.makeTempDir();
  const SECRETS = ["hunter2", "AKIAIOSFODNN7EXAMPLE", "s3cr3t-tag", "zzESCAPEzz", "dbpass-9"];
  const errs = async (name: string, text: string) => {
    await Deno.writeTextFile(`${dir}/${name}`, text);
    await Deno.writeTextFile(`${dir}/main.yaml`, `version: 1\ninclude: [${name}]\n`);
    try {
      await loadConfig("main.yaml", dir);
    } catch (e) {
      if (e instanceof ConfigError) return e.problems.map(formatProblem);
      throw e;
    }
    assert.fail("expected an error");
  };
  try {
    const cases: [string, string, string[]][] = [
      // A Kubernetes secret: keys only.
      [
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nrules: hunter2\ndata: { password: AKIAIOSFODNN7EXAMPLE }\n",
        [
          'secret.yaml:1:1: unknown key "apiVersion" (did you mean "version"?)',
          'secret.yaml:2:1: unknown key "kind"',
          'secret.yaml:3:8: "rules" is not valid (details not shown: this file has top-level keys ' +
          "no policy has, so it may not be a policy)",
          'secret.yaml:4:1: unknown key "data"',
        ],
      ],
      // YAML errors whose parser messages would quote the file.
      // (the parser says "Not a YAML token: s3cr3t-tag")
      // Only the first YAML error is shown, with a count of those after it (issue 16).
      ["block.yaml", "rules: |x s3cr3t-tag\n  a\n", [
        "block.yaml:1:9: invalid YAML: unexpected token (1 more YAML error(s) after it, most " +
        "likely caused by this one: fix it and check again)",
      ]],
      [
        "esc.yaml",
        'rules: "\\zzESCAPEzz"\n',
        ["esc.yaml:1:9: invalid YAML: invalid escape sequence in a double-quoted string"],
      ],
      // A policy-shaped file with a bad value is a policy with a typo: the value is shown.
      [
        "typo.yaml",
        "rules: [{ match: a.test, action: alow }]\n",
        [
          'typo.yaml:1:34: "action" of rule "a.test" must be one of "allow", "deny", "log", not "alow" ' +
          '(did you mean "allow"?)',
        ],
      ],
    ];
    for (const [name, text, expected] of cases) {
      const got = await errs(name, text);
      assert.deepEqual(got, expected, name);
      for (const s of SECRETS) {
        if (name !== "typo.yaml") assert.ok(!got.join("\n").includes(s), `${name}: ${s}`);
      }
    }
    // Parser warnings of the main file (an unknown tag) do not quote it either.
    const { problems } = parseConfig("version: 1\ndefault: !s3cr3t-tag log\n", "w.yaml", dir);
    assert.deepEqual(problems.map(formatProblem), ["w.yaml:2:10: warning: YAML: unresolved tag"]);
    // The main file too: `--config` pointed at a compose file.
    await Deno.writeTextFile(
      `${dir}/compose.yaml`,
      "services:\n  db:\n    environment: { PASSWORD: dbpass-9 }\nversion: dbpass-9\n",
    );
    let main: string[] = [];
    try {
      await loadConfig("compose.yaml", dir);
    } catch (e) {
      main = (e as ConfigError).problems.map(formatProblem);
    }
    assert.ok(main.length > 0);
    assert.ok(!main.join("\n").includes("dbpass-9"), main.join("\n"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load: empty tokens, clashing labels and repeated tokens are config errors", () => {
  Deno.env.set("AGENTGATE_LOAD_TEST_EMPTY", "");
  Deno.env.set("AGENTGATE_LOAD_TEST_TOKEN", "from-env");
  try {
    const cases: [string, string][] = [
      [
        'proxy: { auth: [""] }',
        "p.yaml:2:17: a proxy.auth token must not be empty: use a long random value",
      ],
      [
        'proxy: { auth: ["  "] }',
        "p.yaml:2:17: a proxy.auth token must not be empty: use a long random value",
      ],
      [
        'proxy: { auth: [{ token: "", label: x }] }',
        "p.yaml:2:26: a proxy.auth token must not be empty: use a long random value",
      ],
      [
        "proxy: { auth: [{ env: AGENTGATE_LOAD_TEST_EMPTY }] }",
        'p.yaml:2:24: environment variable "AGENTGATE_LOAD_TEST_EMPTY" (proxy.auth) is empty',
      ],
      [
        'dashboard: { token: "" }',
        "p.yaml:2:21: dashboard.token must not be empty: use a long random value",
      ],
      [
        "dashboard: { token_env: AGENTGATE_LOAD_TEST_EMPTY }",
        'p.yaml:2:25: environment variable "AGENTGATE_LOAD_TEST_EMPTY" (dashboard.token_env) is empty',
      ],
      [
        "proxy: { auth: [{ token: a, label: ci }, { token: b, label: ci }] }",
        'p.yaml:2:8: proxy.auth: label "ci" is used twice',
      ],
      [
        "proxy: { auth: [a, a] }",
        "p.yaml:2:8: proxy.auth: entry 2 repeats a token (each token has one label)",
      ],
      [
        'proxy: { auth: [{ token: a, label: "ci-0123456789abcdef" }] }',
        'p.yaml:2:36: label "ci-0123456789abcdef" looks like a minted session id (ends in 16 hex ' +
        "digits): choose another",
      ],
      [
        "proxy: { auth: [{ label: x }] }",
        'p.yaml:2:17: set one of "token", "token_env" (or "env")',
      ],
    ];
    for (const [text, error] of cases) {
      assert.deepEqual(errorsOf(`version: 1\n${text}\n`, "p.yaml"), [error], text);
    }
    const { config } = parseConfig(
      "version: 1\nproxy: { auth: [{ token_env: AGENTGATE_LOAD_TEST_TOKEN, label: ci }, s3cret] }\n" +
        "dashboard: { token_env: AGENTGATE_LOAD_TEST_TOKEN }\n",
      "p.yaml",
      "/repo",
    );
    assert.deepEqual(config.proxyAuth, [
      { token: "from-env", label: "ci" },
      { token: "s3cret", label: "auth-2" },
    ]);
    assert.deepEqual(config.secretEnv, ["AGENTGATE_LOAD_TEST_TOKEN", "AGENTGATE_LOAD_TEST_TOKEN"]);
  } finally {
    Deno.env.delete("AGENTGATE_LOAD_TEST_EMPTY");
    Deno.env.delete("AGENTGATE_LOAD_TEST_TOKEN");
  }
});

Deno.test("load: lints for shadowed rules, default allow, and unbudgeted LLM hosts", () => {
  const text = `version: 1
default: allow
tls: { intercept: [api.openai.com, "*.example.test"] }
rules:
  - { name: all-example, match: "*.example.test", action: log }
  - { name: api-example, match: api.example.test/v1/**, action: deny }
  - { name: v1, match: api.openai.com/v1/**, action: allow }
  - { name: v1-chat, match: api.openai.com/v1/chat/**, action: deny }
  - name: budget
    match: api.anthropic.com
    action: allow
    policies: [{ spending_limit: { usd: 5, per: 1d } }]
  - { name: get-only, match: api.openai.com/v2/**, methods: [GET], action: log }
  - { name: after-get, match: api.openai.com/v2/x, action: deny }
  - { name: openai-free, match: api.openai.com, action: allow }
`;
  const { problems } = parseConfig(text, "l.yaml", "/");
  assert.deepEqual(problems.map(formatProblem), [
    'l.yaml:2:10: warning: default: allow in enforce mode lets every request no rule names through; prefer "deny" (or "log" while you learn the traffic)',
    'l.yaml:6:5: warning: rule "api-example" can never match: rule "all-example" (l.yaml:5) matches all its requests first',
    'l.yaml:7:5: warning: rule "v1" allows the LLM host "api.openai.com" with no policies while a spending limit exists elsewhere: its calls are not budgeted',
    'l.yaml:8:5: warning: rule "v1-chat" can never match: rule "v1" (l.yaml:7) matches all its requests first',
    'l.yaml:9:5: warning: rule "budget" has a spending_limit, but "api.anthropic.com" is not in tls.intercept: its HTTPS calls pass through a tunnel whose usage is never read, so they pass unpriced (add "api.anthropic.com" to tls.intercept)',
    'l.yaml:15:5: warning: rule "openai-free" allows the LLM host "api.openai.com" with no policies while a spending limit exists elsewhere: its calls are not budgeted',
  ]);
});

Deno.test("load: llm.providers and upstream.resolve keys, and llm.prices, are checked", () => {
  const text = `version: 1
llm:
  providers: { "llm.internal:8080": openai, "llm.internal:0": openai, "a:b:c": openai }
  prices:
    my-model:
      input: 1
      output: 2
      web_serch: 10
      tiers: [{ input: 2 }]
      service_tiers: { priority: -1 }
upstream:
  resolve: { "*.internal": "127.0.0.1:1", "llm.internal:8080": "127.0.0.1:2" }
rules: []
`;
  assert.deepEqual(errorsOf(text, "p.yaml"), [
    'p.yaml:3:45: llm.providers key "llm.internal:0" must be a host glob or HOST:PORT with a port 1-65535 (IPv6 in brackets, e.g. "[::1]:8080")',
    'p.yaml:3:71: llm.providers key "a:b:c" must be a host glob or HOST:PORT with a port 1-65535 (IPv6 in brackets, e.g. "[::1]:8080")',
    'p.yaml:8:7: unknown key "web_serch" in "llm.prices.my-model" (did you mean "web_search"?)',
    'p.yaml:9:15: missing key "above" in "llm.prices.my-model.tiers.0"',
    'p.yaml:10:34: "llm.prices.my-model.service_tiers.priority" must be at least 0, not -1',
    'p.yaml:12:14: upstream.resolve key "*.internal" must name one host, not a glob',
  ]);
  // The README's own example loads, and its keys with a port match.
  const { config } = parseConfig(
    `version: 1
llm:
  providers: { "*.openai.azure.com": openai, openrouter.ai: openai, "llm.internal:8080": openai }
  prices:
    my-finetune: { input: 3.0, output: 12.0, cache_read: 0.3 }
    claude-sonnet-4-20250514:
      input: 3
      output: 15
      tiers: [{ above: 200000, input: 6, output: 22.5 }]
    gpt-4o-audio-preview: { input: 2.5, output: 10, input_audio: 40, output_audio: 80 }
    gpt-5: { input: 1.25, output: 10, cache_read: 0.125, service_tiers: { priority: 2 } }
rules: []
`,
    "r.yaml",
    "/",
  );
  assert.equal(config.llm.detect("llm.internal", 8080), "openai");
  assert.equal(config.llm.detect("llm.internal", 80), null);
});

Deno.test("load: check warns where a spending or token limit could see unpriced traffic", () => {
  const text = `version: 1
tls: { intercept: [api.openai.com] }
llm:
  providers: { "llm.internal:8080": openai }
  unknown_price: allow
rules:
  - name: openai
    match: api.openai.com
    action: allow
    policies: [{ spending_limit: { usd: 5, per: 1d } }]
  - name: anthropic
    match: [api.anthropic.com, example.com]
    action: allow
    policies: [{ rate_limit: { tokens: 1000, per: 1m } }]
  - name: gateway
    match: http://llm.internal:8080
    action: allow
    policies: [{ spending_limit: { usd: 5, per: 1d } }]
  - name: everything
    match: "*.example.org"
    action: log
    policies: [{ spending_limit: { usd: 5, per: 1d } }]
  - name: requests-only
    match: example.net
    action: allow
    policies: [{ rate_limit: { requests: 10, per: 1m } }]
`;
  const { problems } = parseConfig(text, "u.yaml", "/");
  assert.deepEqual(problems.map(formatProblem), [
    'u.yaml:5:18: warning: llm.unknown_price: allow forwards calls to models without a price (or whose price lacks what the call uses) under the spending limit of rule "openai": they are counted at $0 or below their cost (add the model to llm.prices instead)',
    'u.yaml:11:5: warning: rule "anthropic" has a rate_limit (tokens), but "api.anthropic.com" is not in tls.intercept: its HTTPS calls pass through a tunnel whose usage is never read, so they pass unpriced (add "api.anthropic.com" to tls.intercept)',
    'u.yaml:11:5: warning: rule "anthropic" has a rate_limit (tokens), but "example.com" is not an LLM provider: agentgate reads no usage there, so those requests pass unpriced (map a provider\'s host in llm.providers, or narrow the match)',
    'u.yaml:19:5: warning: rule "everything" has a spending_limit, but "*.example.org" covers hosts that are not LLM providers: agentgate reads no usage there, so those requests pass unpriced (map a provider\'s host in llm.providers, or narrow the match)',
  ]);
});

Deno.test("load: match_case and limits.ambiguous_paths are validated and compiled", () => {
  const { config, problems } = parseConfig(
    `version: 1
limits: { ambiguous_paths: normalize }
rules:
  - name: admin
    match: http://app.test/admin/**
    match_case: false
    action: deny
  - name: hosts
    match: app.test
    match_case: false
    action: allow
`,
    "m.yaml",
    "/",
  );
  assert.equal(config.limits.ambiguousPaths, "normalize");
  const [admin, hosts] = config.policy.rules;
  assert.equal(admin.match[0].path!("/ADMIN/X"), true);
  assert.equal(admin.match[0].nocase, true);
  assert.equal(hosts.match[0].nocase, undefined);
  assert.deepEqual(problems.map((p) => formatProblem(p)), [
    'm.yaml:10:17: warning: match_case: false has no effect in rule "hosts": its patterns have no path glob (hosts always compare case-insensitively)',
  ]);
  assert.throws(
    () => parseConfig("version: 1\nlimits: { ambiguous_paths: allow }\n", "b.yaml", "/"),
    (e: Error) =>
      e.message.includes(
        'b.yaml:2:28: "limits.ambiguous_paths" must be one of "deny", "normalize", not "allow"',
      ),
  );
});

Deno.test("load: credentials compile over their presets; literals and bad sources are refused without quoting", () => {
  const { config, problems } = parseConfig(
    `version: 1
tls: { intercept: [api.openai.com, "*.github.com", github.com, api.internal.test] }
credentials:
  - { name: openai, preset: openai, env: OPENAI_API_KEY }
  - name: gh
    preset: github
    command: [gh, auth, token]
  - name: internal
    file: ./secrets/internal
    hosts: [api.internal.test, "http://127.0.0.2:8080"]
    paths: ["/v2/**"]
    methods: [get, post]
    header: X-Token
    format: "Token {secret}"
    phantom: { prefix: itk_, length: 64, variables: [INTERNAL_TOKEN] }
`,
    "conf/agentgate.yaml",
    "/repo",
  );
  assert.deepEqual(problems, []);
  const [openai, gh, internal] = config.credentials;
  assert.deepEqual(openai.source, { kind: "env", name: "OPENAI_API_KEY" });
  assert.deepEqual(openai.headers, [{ name: "authorization", formats: ["Bearer {secret}"] }]);
  assert.deepEqual(openai.variables, ["OPENAI_API_KEY"]);
  assert.ok(openai.scope.allowsHost("https", "api.openai.com", 443));
  assert.ok(!openai.scope.allowsHost("http", "api.openai.com", 80), "https only by default");
  assert.ok(!openai.scope.allowsHost("https", "api.openai.com.evil.test", 443));
  assert.deepEqual(gh.source, {
    kind: "command",
    argv: ["gh", "auth", "token"],
    cwd: "/repo/conf",
  });
  assert.deepEqual(gh.basic, { username: null });
  assert.deepEqual(gh.git, ["github.com"]);
  assert.deepEqual(internal.source, { kind: "file", path: "/repo/conf/secrets/internal" });
  assert.deepEqual(internal.headers, [{ name: "x-token", formats: ["Token {secret}"] }]);
  assert.equal(internal.basic, null, "a place set in the policy replaces the preset's");
  assert.ok(internal.scope.allowsHost("http", "127.0.0.2", 8080));
  assert.ok(!internal.scope.allowsHost("http", "127.0.0.2", 8081));
  assert.ok(internal.scope.allowsPath("/v2/items/1") && !internal.scope.allowsPath("/v1/items"));
  assert.deepEqual([...internal.scope.methods!], ["GET", "POST"]);
  assert.equal(internal.phantom.prefix.length + 9 + 1 + internal.phantom.random, 64);
  assert.deepEqual(internal.phantom.sep, "-");
  assert.deepEqual(
    config.secretEnv,
    ["OPENAI_API_KEY"],
    "run keeps the env source from its command",
  );
  assert.equal(internal.where, "conf/agentgate.yaml:8");

  const secretish = "sk-proj-Abcdefghijklmnopqrstuvwxyz0123456789";
  const errors = errorsOf(`version: 1
tls: { intercept: ["*"] }
credentials:
  - { name: a, preset: openai, env: ${secretish} }
  - { name: b, preset: openai, value: ${secretish} }
  - { name: c, preset: openai, file: ${secretish} }
  - { name: d, preset: openai, env: A, file: b }
  - { name: e, env: A }
  - { name: f, env: A, hosts: [x.test] }
  - { name: i, preset: opanai, env: A }
  - { name: j, env: A, hosts: [x.test], header: x, format: "Token" }
`);
  for (const e of errors) assert.ok(!e.includes(secretish), `never quoted: ${e}`);
  // Every error in one pass (the loader reports them all): a, b, c and d also share one
  // preset's variable.
  assert.deepEqual(errors, [
    `policies/ci.yaml:4:37: env takes the name of an environment variable (letters, digits, "_"), not a value: a credential's secret never goes in the policy file`,
    'policies/ci.yaml:5:24: credential "b": variable "OPENAI_API_KEY" already holds credential "a"',
    'policies/ci.yaml:5:32: key "value" in "credentials.1" is not allowed: a credential\'s secret never goes in the policy file (it is committed, reviewed, and shown by `/_/api/config`): read it with env: NAME, file: PATH or command: [ARGV…]',
    'policies/ci.yaml:6:24: credential "c": variable "OPENAI_API_KEY" already holds credential "b"',
    "policies/ci.yaml:6:38: file looks like a secret itself (not shown here): a credential's secret never goes in the policy file, file only names where it comes from",
    'policies/ci.yaml:7:5: credential "d" has 2 sources (env, file): keep one',
    'policies/ci.yaml:7:24: credential "d": variable "OPENAI_API_KEY" already holds credential "c"',
    'policies/ci.yaml:8:5: credential "e" needs hosts (or a preset: openai, anthropic, gemini, github, npm, pypi)',
    'policies/ci.yaml:9:5: credential "f" needs a place: header, basic or query (or a preset)',
    'policies/ci.yaml:10:24: "credentials.6.preset" must be one of "openai", "anthropic", "gemini", "github", "npm", "pypi", not "opanai" (did you mean "openai"?)',
    'policies/ci.yaml:11:60: a format must hold "{secret}" once, as in "Bearer {secret}"',
  ]);
  const later = errorsOf(`version: 1
tls: { intercept: ["*"] }
credentials:
  - { name: g, preset: openai, env: A, hosts: ["*"] }
  - { name: h, preset: anthropic, env: A, hosts: [x.test/v1] }
  - { name: g, preset: gemini, env: A }
  - { name: k, preset: npm, env: A, phantom: { prefix: abcdefghijklmnopqrstuvwx, length: 40 } }
  - { name: l, preset: pypi, env: A, phantom: { variables: [OPENAI_API_KEY] } }
`);
  assert.deepEqual(later, [
    'policies/ci.yaml:4:48: credential "g": "*" would let it go to every host; name the hosts',
    'policies/ci.yaml:5:51: credential "h": hosts take host[:port], not paths: "x.test/v1" (use paths:)',
    'policies/ci.yaml:6:13: credential name "g" is used twice',
    'policies/ci.yaml:7:46: credential "k": a phantom of 40 characters leaves 7 random ones after "abcdefghijklmnopqrstuvwxagentgate"; make it at least 55',
    'policies/ci.yaml:8:47: credential "l": variable "OPENAI_API_KEY" already holds credential "g"',
  ]);
});

Deno.test("load: check says so when a credential names a host outside tls.intercept", () => {
  const { problems } = parseConfig(
    `version: 1
tls: { intercept: [api.openai.com] }
credentials:
  - { name: openai, preset: openai, env: A }
  - { name: gh, preset: github, env: B, hosts: [api.github.com, "http://localhost:8080"] }
`,
    "a.yaml",
    "/repo",
  );
  assert.deepEqual(problems.map(formatProblem), [
    'a.yaml:5:49: credential "gh" names "api.github.com", which is not in tls.intercept: its HTTPS requests pass through a tunnel agentgate cannot read, so the phantom is never swapped there; add "api.github.com" to tls.intercept',
  ]);
  assert.equal(problems[0].severity, "error");
});

Deno.test("load: address ranges, upstream.dns and upstream.resolve are checked at load", () => {
  const text = `version: 1
upstream:
  dns: dns.example.com:53
  resolve:
    "api.test:99999": 127.0.0.1:1
    api2.test: localhost:8443
`;
  assert.deepEqual(errorsOf(text, "a.yaml"), [
    'a.yaml:3:8: upstream.dns "dns.example.com:53" must name an IP address, not a host name (e.g. "127.0.0.1:5353")',
    'a.yaml:5:5: upstream.resolve key "api.test:99999" must be a host or HOST:PORT with a port 1-65535 (IPv6 in brackets, e.g. "[::1]:8080")',
    'a.yaml:6:16: resolve target "localhost:8443" must name an IP address, not a host name (e.g. "127.0.0.1:8443")',
  ]);
  const ranges = `version: 1
rules:
  - match: 10.0.0.1/8
    action: allow
  - match: "[fd00::]/129"
    action: allow
`;
  assert.deepEqual(errorsOf(ranges, "r.yaml"), [
    'r.yaml:3:12: invalid match pattern "10.0.0.1/8" in rule "10.0.0.1/8": "10.0.0.1/8" has bits set after the prefix: did you mean "10.0.0.0/8"?',
    'r.yaml:5:12: invalid match pattern "[fd00::]/129" in rule "[fd00::]/129": the prefix length of "[fd00::]/129" must be 0-128',
  ]);
  const { config, problems } = parseConfig(
    `version: 1
upstream:
  dns: "[::1]"
  resolve: { "API.test:8443": "127.0.0.2:9000", "api.test": "[::1]:9001" }
rules:
  - { name: wide, match: 169.254.0.0/16, action: allow }
  - { name: pointless, match: x.test, action: deny, allow_private: true }
  - { name: corp, match: [db.corp.test, 10.0.0.0/8], action: log }
`,
    "b.yaml",
    "/",
  );
  assert.deepEqual(config.upstream.dns, { host: "::1", port: 53 });
  assert.deepEqual([...config.resolve], [
    ["api.test 8443", { host: "127.0.0.2", port: 9000 }],
    ["api.test", { host: "::1", port: 9001 }],
  ]);
  assert.deepEqual(problems.map(formatProblem), [
    'b.yaml:6:26: warning: rule "wide" allows 169.254.0.0/16, which includes the cloud metadata address 169.254.169.254: an agent could read instance credentials; name a narrower range',
    'b.yaml:7:68: warning: allow_private on deny rule "pointless" has no effect (a deny rule connects nowhere)',
  ]);
  const corp = config.policy.rules.find((r) => r.name === "corp")!;
  assert.deepEqual(corp.allowance?.ranges.map((c) => c.bits), [8]);
  assert.equal(config.policy.rules.find((r) => r.name === "pointless")!.allowance, null);
});

Deno.test("load: audit.postgres refuses a password in the URL; streams and the spool compile", () => {
  assert.deepEqual(
    errorsOf(
      'version: 1\naudit:\n  postgres: "postgres://gate:hunter2@db:5432/audit"\n  otlp: "ftp://x"\n',
    ),
    [
      'policies/ci.yaml:3:13: audit.postgres: the URL carries a password: policy files are read by many (git, CI logs, the dashboard); remove it and put it in the environment variable "PGPASSWORD" (audit.password_env names another)',
      'policies/ci.yaml:4:9: audit.otlp: "ftp://x" is not an OTLP/HTTP endpoint (expected http://collector:4318, no credentials in it)',
    ],
  );
  assert.deepEqual(
    errorsOf('version: 1\naudit: { postgres: "postgres://db:5432/" }\n'),
    [
      "policies/ci.yaml:2:20: audit.postgres: the URL names no database (expected postgres://USER@HOST:PORT/DATABASE)",
    ],
  );
  const { config } = parseConfig(
    'version: 1\naudit:\n  postgres: "postgres://gate@db/audit?sslmode=verify-full"\n  password_env: AUDIT_PW\n  spool: ./spool.db\n  jsonl: "-"\n  otlp: http://collector:4318/\n',
    "conf/agentgate.yaml",
    "/repo",
  );
  assert.deepEqual(
    { ...config.audit, path: null, retentionMs: null },
    {
      path: null,
      retentionMs: null,
      postgres: {
        url: "postgres://gate@db/audit?sslmode=verify-full",
        host: "db",
        port: 5432,
        user: "gate",
        database: "audit",
        sslmode: "verify-full",
        passwordEnv: "AUDIT_PW",
      },
      spoolPath: "/repo/conf/spool.db",
      spoolMaxBytes: 2 ** 30,
      jsonl: "-",
      otlp: "http://collector:4318/v1/logs",
    },
  );
});
