import assert from "node:assert/strict";
import { npmConfiguredCa, npmConfiguredProxies, npmrcLayers, parseNpmrc } from "./npmrc.ts";
import { testPki } from "../../tests/helpers.ts";

Deno.test("npmrc: ini lines, lists, quotes, comments, sections and ${VAR}", () => {
  const env = (n: string) => (n === "HOME" ? "/h" : n === "EMPTY" ? "" : undefined);
  const m = parseNpmrc(
    [
      "; a comment",
      "# another",
      "CAfile = ${HOME}/corp.pem",
      'ca[]="-----BEGIN CERTIFICATE-----\\nAAA\\n-----END CERTIFICATE-----"',
      "ca[]=second",
      "proxy=${UNSET}",
      "noproxy=${UNSET?}x",
      "strict-ssl",
      "[section]",
      "cafile=/ignored.pem",
    ].join("\n"),
    env,
  );
  assert.equal(m.get("cafile"), "/h/corp.pem");
  assert.deepEqual(m.get("ca"), [
    "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----",
    "second",
  ]);
  assert.equal(m.get("proxy"), "${UNSET}", "an unset ${VAR} stays as written, as npm leaves it");
  assert.equal(m.get("noproxy"), "x");
  assert.equal(m.get("strict-ssl"), "true");
});

Deno.test("npmrc: the chain in npm's order; cafile beats ca in any file; a missing cafile is npm's default", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const corp = await testPki(["corp.test"]);
    const other = await testPki(["other.test"]);
    await Deno.writeTextFile(`${dir}/corp.pem`, corp.caPem);
    await Deno.mkdir(`${dir}/app/sub`, { recursive: true });
    await Deno.writeTextFile(`${dir}/app/package.json`, "{}");
    const user = `${dir}/user-npmrc`;
    const vars: Record<string, string> = { HOME: dir, npm_config_userconfig: user, PATH: "" };
    const env = (n: string) => vars[n];
    const ca = () => npmConfiguredCa(npmrcLayers(env, `${dir}/app/sub`), `${dir}/app/sub`, dir);

    assert.equal(ca(), null, "nothing configured: Node's roots");
    // Inline `ca` in the user's npmrc.
    await Deno.writeTextFile(user, `ca="${other.caPem.trim().replace(/\n/g, "\\n")}"\n`);
    assert.deepEqual(ca(), { pems: [other.caPem.trim() + "\n"], from: `ca in ${user}` });
    // A cafile in the project's .npmrc (found from a subdirectory), relative to the cwd.
    await Deno.writeTextFile(`${dir}/app/.npmrc`, "cafile=../../corp.pem\n");
    assert.deepEqual(ca()?.from, `cafile "${dir}/corp.pem" (cafile in ${dir}/app/.npmrc)`);
    assert.equal(ca()?.pems.length, 1);
    // The environment is the first layer; `~/` is the home directory.
    vars.NPM_CONFIG_CAFILE = "~/corp.pem";
    assert.equal(ca()?.from, `cafile "${dir}/corp.pem" (npm_config_cafile)`);
    // A cafile that does not exist: npm ignores it, so do we.
    vars.NPM_CONFIG_CAFILE = "~/missing.pem";
    assert.equal(ca(), null);
    delete vars.NPM_CONFIG_CAFILE;

    await Deno.writeTextFile(user, "https-proxy=http://corp:3128\nproxy=false\n");
    assert.deepEqual(npmConfiguredProxies(npmrcLayers(env, `${dir}/app`)), [
      ["https-proxy", "http://corp:3128", `https-proxy in ${user}`],
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
