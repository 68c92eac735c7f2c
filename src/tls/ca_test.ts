import assert from "node:assert/strict";
import { join } from "node:path";
import { CA_CERT_FILE, CA_KEY_FILE, CaError, loadOrCreateCA } from "./ca.ts";

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "agentgate-ca-test-" });
}

async function run(cmd: string, args: string[], env?: Record<string, string>) {
  const out = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function snapshot(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for await (const e of Deno.readDir(dir)) {
    files[e.name] = await Deno.readTextFile(join(dir, e.name));
  }
  return files;
}

async function assertCaError(p: Promise<unknown>, pattern: RegExp): Promise<CaError> {
  const err = await p.then(() => null, (e) => e);
  assert.ok(err instanceof CaError, `expected a CaError, got ${err}`);
  assert.match(err.message, pattern);
  assert.match(err.message, /^[A-Z]/, "sentence case");
  return err;
}

Deno.test("CA is created with private modes, as a 10-year CA, and reused on the next load", async () => {
  const root = await tempDir();
  try {
    const dir = join(root, "nested", "ca");
    const ca = await loadOrCreateCA(dir);
    assert.equal(ca.created, true);
    assert.equal(ca.dir, dir);
    assert.equal(ca.certPath, join(dir, CA_CERT_FILE));
    assert.equal(ca.keyPath, join(dir, CA_KEY_FILE));
    assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(ca.keyPath)).mode! & 0o777, 0o600);
    assert.equal(await Deno.readTextFile(ca.certPath), ca.certPem);
    assert.equal(await Deno.readTextFile(ca.keyPath), ca.keyPem);
    assert.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.deepEqual(ca.warnings, []);
    assert.deepEqual(Object.keys(await snapshot(dir)).sort(), [CA_CERT_FILE, CA_KEY_FILE].sort());

    const text = (await run("openssl", ["x509", "-in", ca.certPath, "-noout", "-text"])).stdout;
    assert.match(text, /Public-Key: \(2048 bit\)/);
    assert.match(text, /Basic Constraints: critical\n\s+CA:TRUE, pathlen:0/);
    assert.match(text, /Key Usage: critical\n\s+Certificate Sign, CRL Sign/);
    const ski = /Subject Key Identifier: *\n\s+([0-9A-F:]+)/.exec(text)?.[1];
    assert.ok(ski, "has a Subject Key Identifier");
    assert.equal(ski.replaceAll(":", "").toLowerCase(), hex(ca.keyId));
    assert.match(text, new RegExp(`Authority Key Identifier: *\\n\\s+(keyid:)?${ski}`));
    const years = (ca.notAfter.getTime() - Date.now()) / (365.25 * 86_400_000);
    assert.ok(years > 9.99 && years <= 10.01, `validity ${years} years`);
    // Self-signed and acceptable under OpenSSL's strict checks (Python 3.13).
    const verify = await run("openssl", [
      "verify",
      "-x509_strict",
      "-CAfile",
      ca.certPath,
      ca.certPath,
    ]);
    assert.equal(verify.code, 0, verify.stderr);
    const fp = await run("openssl", [
      "x509",
      "-in",
      ca.certPath,
      "-noout",
      "-fingerprint",
      "-sha256",
    ]);
    assert.equal(fp.stdout.trim().split("=")[1], ca.fingerprint256);

    const before = await snapshot(dir);
    const again = await loadOrCreateCA(dir);
    assert.equal(again.created, false);
    assert.equal(again.certPem, ca.certPem);
    assert.equal(again.keyPem, ca.keyPem);
    assert.deepEqual(again.keyId, ca.keyId);
    assert.deepEqual(again.subjectDer, ca.subjectDer);
    assert.equal(again.subject, ca.subject);
    assert.deepEqual(await snapshot(dir), before);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("CA creation by concurrent starts yields one CA", async () => {
  const dir = await tempDir();
  try {
    const cas = await Promise.all([1, 2, 3, 4].map(() => loadOrCreateCA(join(dir, "ca"))));
    assert.equal(cas.filter((c) => c.created).length, 1);
    for (const c of cas) assert.equal(c.certPem, cas[0].certPem);
    assert.deepEqual(
      Object.keys(await snapshot(join(dir, "ca"))).sort(),
      [CA_CERT_FILE, CA_KEY_FILE].sort(),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CA directory defaults to $AGENTGATE_HOME, then ~/.agentgate, with ~ expanded", async () => {
  // Environment variables are process-wide: a child process keeps this test
  // from racing test files that run in parallel.
  const home = await tempDir();
  try {
    const script = `
      import { defaultCaDir, expandHome, loadOrCreateCA } from ${
      JSON.stringify(new URL("./ca.ts", import.meta.url).href)
    };
      const ca = await loadOrCreateCA();
      const fromEnv = defaultCaDir();
      Deno.env.delete("AGENTGATE_HOME");
      console.log(JSON.stringify({ dir: ca.dir, fromEnv, fallback: defaultCaDir(),
        tilde: expandHome("~"), other: expandHome("~other/x") }));`;
    const out = await run(Deno.execPath(), [
      "eval",
      "--config",
      new URL("../../deno.json", import.meta.url).pathname,
      script,
    ], {
      HOME: home,
      AGENTGATE_HOME: "~/custom-ca",
      // The cache lives under $HOME by default: keep the child on ours.
      DENO_DIR: JSON.parse((await run(Deno.execPath(), ["info", "--json"])).stdout).denoDir,
    });
    assert.equal(out.code, 0, out.stderr);
    const r = JSON.parse(out.stdout);
    assert.equal(r.dir, join(home, "custom-ca"));
    assert.equal(r.fromEnv, join(home, "custom-ca"));
    assert.equal(r.fallback, join(home, ".agentgate"));
    assert.equal(r.tilde, home);
    assert.equal(r.other, "~other/x");
    assert.equal((await Deno.stat(join(home, "custom-ca", CA_KEY_FILE))).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("CA load rejects broken files with a CaError and leaves them untouched", async (t) => {
  const root = await tempDir();
  try {
    const a = await loadOrCreateCA(join(root, "a"));
    const b = await loadOrCreateCA(join(root, "b"));
    let n = 0;
    const broken = async (
      files: { cert?: string; key?: string },
      pattern: RegExp,
      options?: Parameters<typeof loadOrCreateCA>[1],
    ) => {
      const dir = join(root, `case-${n++}`);
      await Deno.mkdir(dir, { mode: 0o700 });
      if (files.cert !== undefined) await Deno.writeTextFile(join(dir, CA_CERT_FILE), files.cert);
      if (files.key !== undefined) {
        await Deno.writeTextFile(join(dir, CA_KEY_FILE), files.key, { mode: 0o600 });
      }
      const before = await snapshot(dir);
      const err = await assertCaError(loadOrCreateCA(dir, options), pattern);
      assert.deepEqual(await snapshot(dir), before, "files untouched");
      return err;
    };

    await t.step("corrupt key", async () => {
      const lines = a.keyPem.trim().split("\n");
      const truncated = [...lines.slice(0, 8), lines.at(-1)].join("\n") + "\n";
      const err = await broken({ cert: a.certPem, key: truncated }, /^CA key ".*" is corrupt: /);
      assert.ok(err.message.includes(`"${join(root, "case-0", CA_KEY_FILE)}"`));
      // Bytes changed inside the modulus: still a well-formed key, but not this CA's.
      lines[5] = lines[5].replace(/[A-Za-z]/g, "A");
      await broken(
        { cert: a.certPem, key: lines.join("\n") + "\n" },
        /^CA key ".*" (is corrupt|does not match certificate ".*")/,
      );
    });
    await t.step("key that is not PEM", async () => {
      await broken({ cert: a.certPem, key: "hello\n" }, /^CA key ".*" is corrupt: no PEM/);
    });
    await t.step("mismatched pair", async () => {
      await broken(
        { cert: a.certPem, key: b.keyPem },
        /^CA key ".*ca-key\.pem" does not match certificate ".*ca\.pem": /,
      );
    });
    await t.step("corrupt certificate", async () => {
      await broken(
        { cert: a.certPem.replace(/\n[A-Za-z0-9+/]{20}/, "\n!!!!!!!!!!!!!!!!!!!!"), key: a.keyPem },
        /^CA certificate ".*ca\.pem" is corrupt: /,
      );
      await broken({ cert: "", key: a.keyPem }, /^CA certificate ".*" is corrupt: no PEM/);
    });
    await t.step("missing half", async () => {
      await broken({ key: a.keyPem }, /^Found ".*ca-key\.pem" but not ".*ca\.pem": /);
      await broken({ cert: a.certPem }, /^Found ".*ca\.pem" but not ".*ca-key\.pem": /);
    });
    await t.step("expired CA", async () => {
      const later = new Date(a.notAfter.getTime() + 1000);
      await broken({ cert: a.certPem, key: a.keyPem }, /^CA certificate ".*" expired on "/, {
        now: () => later,
      });
    });
    await t.step("certificate that is not a CA", async () => {
      const dir = await tempDir();
      try {
        const made = await run("openssl", [
          "req",
          "-x509",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-keyout",
          join(dir, "k.pem"),
          "-out",
          join(dir, "c.pem"),
          "-subj",
          "/CN=not a ca",
          "-days",
          "2",
          "-addext",
          "basicConstraints=critical,CA:FALSE",
        ]);
        assert.equal(made.code, 0, made.stderr);
        await broken(
          {
            cert: await Deno.readTextFile(join(dir, "c.pem")),
            key: await Deno.readTextFile(join(dir, "k.pem")),
          },
          /^CA certificate ".*" is not a CA certificate: /,
        );
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
    await t.step("CA with an EC key", async () => {
      const dir = await tempDir();
      try {
        const made = await run("openssl", [
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:P-256",
          "-nodes",
          "-keyout",
          join(dir, "k.pem"),
          "-out",
          join(dir, "c.pem"),
          "-subj",
          "/CN=ec ca",
          "-days",
          "2",
        ]);
        assert.equal(made.code, 0, made.stderr);
        await broken(
          {
            cert: await Deno.readTextFile(join(dir, "c.pem")),
            key: await Deno.readTextFile(join(dir, "k.pem")),
          },
          /^CA certificate ".*" is not supported: its key is not RSA/,
        );
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
    await t.step("encrypted key", async () => {
      const enc = await run("openssl", [
        "pkcs8",
        "-topk8",
        "-in",
        a.keyPath,
        "-passout",
        "pass:secret",
        "-v2",
        "aes-256-cbc",
      ]);
      assert.equal(enc.code, 0, enc.stderr);
      await broken({ cert: a.certPem, key: enc.stdout }, /^CA key ".*" is encrypted: /);
    });
    await t.step("CA directory that is a file", async () => {
      const file = join(root, "plain-file");
      await Deno.writeTextFile(file, "x");
      await assertCaError(loadOrCreateCA(file), /^CA directory ".*plain-file" is not a directory/);
      assert.equal(await Deno.readTextFile(file), "x");
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("CA load warns about a key readable by others and accepts a PKCS#1 key", async () => {
  const dir = await tempDir();
  try {
    const ca = await loadOrCreateCA(dir);
    const pkcs1 = await run("openssl", ["rsa", "-in", ca.keyPath, "-traditional"]);
    assert.equal(pkcs1.code, 0, pkcs1.stderr);
    assert.match(pkcs1.stdout, /BEGIN RSA PRIVATE KEY/);
    await Deno.writeTextFile(ca.keyPath, pkcs1.stdout);
    await Deno.chmod(ca.keyPath, 0o644);
    const again = await loadOrCreateCA(dir);
    assert.equal(again.created, false);
    assert.equal(again.certPem, ca.certPem);
    assert.equal(again.warnings.length, 1);
    assert.match(again.warnings[0], /^CA key ".*" is readable by other users \(mode "0644"\)/);
    assert.equal((await Deno.stat(ca.keyPath)).mode! & 0o777, 0o644, "mode left to the user");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
