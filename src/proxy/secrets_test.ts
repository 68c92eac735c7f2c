import assert from "node:assert/strict";
import { inspect } from "node:util";
import { loadSecrets, SecretLoadError } from "./secrets.ts";
import { Secret } from "../util/secret.ts";
import type { CredentialSpec } from "../credentials/mod.ts";

const VALUE = "sk-loader-test-0123456789abcdef";

function spec(name: string, source: CredentialSpec["source"]): CredentialSpec {
  return {
    name,
    preset: null,
    source,
    scope: {
      hosts: ["x.test"],
      allowsHost: () => true,
      paths: null,
      allowsPath: () => true,
      methods: null,
    },
    headers: [{ name: "x-token", formats: ["{secret}"] }],
    basic: null,
    query: null,
    phantom: { prefix: "", sep: "-", random: 48 },
    variables: [],
    npmrc: null,
    git: [],
    where: "agentgate.yaml:7",
  };
}

Deno.test("Secret: no formatter shows the value", () => {
  const s = new Secret(VALUE);
  const shown = [
    String(s),
    `${s}`,
    JSON.stringify({ s }),
    Deno.inspect(s),
    Deno.inspect({ nested: { s } }),
    inspect(s),
    inspect({ s }),
    String([s]),
    "" + s,
  ];
  for (const text of shown) assert.ok(!text.includes(VALUE), text);
  assert.equal(s.reveal(), VALUE);
  assert.equal(s.length, VALUE.length);
});

Deno.test("loadSecrets: env, file and command, trimmed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/s`, VALUE + "\n", { mode: 0o600 });
    const { secrets, warnings } = await loadSecrets([
      spec("e", { kind: "env", name: "AGENTGATE_LOADER_TEST" }),
      spec("f", { kind: "file", path: `${dir}/s` }),
      spec("c", { kind: "command", argv: ["cat", "s"], cwd: dir }),
    ], (n) => n === "AGENTGATE_LOADER_TEST" ? ` ${VALUE} ` : undefined);
    assert.deepEqual([...secrets.keys()].sort(), ["c", "e", "f"]);
    for (const s of secrets.values()) assert.equal(s.reveal(), VALUE);
    assert.deepEqual(warnings, []);
    await Deno.chmod(`${dir}/s`, 0o644);
    const again = await loadSecrets(
      [spec("f", { kind: "file", path: `${dir}/s` })],
      () => undefined,
    );
    assert.deepEqual(again.warnings, [
      `credential "f": file "${dir}/s" can be read by other users (mode 0644): chmod 600 it`,
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadSecrets: every failure is named, never a byte of a value or a command's output", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/short`, "abc");
    await Deno.writeTextFile(`${dir}/spaced`, `${VALUE} ${VALUE}`);
    const err = await loadSecrets([
      spec("unset", { kind: "env", name: "AGENTGATE_LOADER_UNSET" }),
      spec("missing", { kind: "file", path: `${dir}/nope` }),
      spec("short", { kind: "file", path: `${dir}/short` }),
      spec("spaced", { kind: "file", path: `${dir}/spaced` }),
      // Prints the secret and fails: neither its stdout nor its stderr may show.
      spec("failing", {
        kind: "command",
        argv: ["sh", "-c", `echo ${VALUE}; echo ${VALUE} >&2; exit 3`],
        cwd: dir,
      }),
      spec("nocmd", { kind: "command", argv: ["agentgate-no-such-command"], cwd: dir }),
    ], () => undefined).then(() => null, (e) => e);
    assert.ok(err instanceof SecretLoadError);
    assert.deepEqual(err.problems, [
      'agentgate.yaml:7: credential "failing": command "sh" exited with status 3 (its output is not shown: it may hold the secret; run it yourself to see why)',
      `agentgate.yaml:7: credential "missing": file "${dir}/nope" not found`,
      'agentgate.yaml:7: credential "nocmd": command "agentgate-no-such-command" not found',
      `agentgate.yaml:7: credential "short": file "${dir}/short" holds 3 character(s); a credential has 8 at least (a shorter value would be found in traffic by chance)`,
      `agentgate.yaml:7: credential "spaced": file "${dir}/spaced" holds spaces, line breaks or non-ASCII characters a header cannot carry`,
      'agentgate.yaml:7: credential "unset": environment variable "AGENTGATE_LOADER_UNSET" is not set',
    ]);
    assert.ok(!err.message.includes(VALUE));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
