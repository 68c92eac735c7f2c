import assert from "node:assert/strict";
import {
  auditSection,
  compileIntercept,
  dashboardSection,
  limitsSection,
  llmProviderDetector,
  llmSection,
  policySection,
  proxySection,
  type RawLlm,
  resolveFrom,
  runSection,
  tlsSection,
  upstreamSection,
} from "./sections.ts";
import { SourceFile } from "./source.ts";
import { formatProblem, type Problem } from "./errors.ts";

Deno.test("sections: proxy listens on 127.0.0.1:4100 unless told otherwise, in both formats", () => {
  assert.deepEqual(proxySection(undefined, false), {
    listen: { host: "127.0.0.1", port: 4100 },
    dashboard: true,
    auth: [],
  });
  assert.deepEqual(proxySection({ listen: "[::1]:0", dashboard: false }, false).listen, {
    host: "::1",
    port: 0,
  });
  assert.deepEqual(proxySection({ host: "0.0.0.0", port: 9000 }, true).listen, {
    host: "0.0.0.0",
    port: 9000,
  });
  Deno.env.set("AGENTGATE_SECTIONS_TEST_TOKEN", "from-env");
  try {
    assert.deepEqual(
      proxySection({ auth: ["plain", { env: "AGENTGATE_SECTIONS_TEST_TOKEN" }] }, false).auth,
      ["plain", "from-env"],
    );
    assert.deepEqual(dashboardSection({ token_env: "AGENTGATE_SECTIONS_TEST_TOKEN" }), {
      token: "from-env",
    });
  } finally {
    Deno.env.delete("AGENTGATE_SECTIONS_TEST_TOKEN");
  }
  assert.deepEqual(dashboardSection(undefined), { token: null });
  assert.deepEqual(dashboardSection({ token: "t" }), { token: "t" });
});

Deno.test("sections: paths are relative to the policy file, or to cwd when embedded", () => {
  assert.equal(resolveFrom("conf/a.yaml", "./x.db", "/repo"), "/repo/conf/x.db");
  assert.equal(resolveFrom("<embedded default>", "./x.db", "/repo"), "/repo/x.db");
  assert.equal(resolveFrom("conf/a.yaml", "/abs/x.db", "/repo"), "/abs/x.db");
  assert.deepEqual(auditSection(undefined, false, "conf/a.yaml", "/repo"), {
    path: "/repo/conf/agentgate.db",
    retentionMs: 30 * 86_400_000,
  });
  assert.equal(auditSection({}, true, "a.yaml", "/repo").path, "/repo/agentreserve-audit.db");
  assert.deepEqual(auditSection({ path: "db/x.db", retention: "1h" }, false, "a.yaml", "/r"), {
    path: "/r/db/x.db",
    retentionMs: 3_600_000,
  });
  const tls = tlsSection(
    { ca_dir: "./ca", upstream_ca: "roots.pem", leaf_key: "rsa-2048" },
    [],
    "conf/a.yaml",
    "/repo",
  );
  assert.deepEqual(tls, {
    intercept: [],
    caDir: "/repo/conf/ca",
    upstreamCa: ["/repo/conf/roots.pem"],
    leafKey: "rsa-2048",
  });
  assert.equal(tlsSection({ ca_dir: "~/ca" }, [], "a.yaml", "/repo").caDir, "~/ca");
  assert.deepEqual(tlsSection(undefined, [], "a.yaml", "/repo"), {
    intercept: [],
    caDir: null,
    upstreamCa: [],
    leafKey: "ecdsa-p256",
  });
});

Deno.test("sections: limits, run and upstream defaults", () => {
  const resources = {
    maxDecompressedBytes: 64 << 20,
    maxDecompressionRatio: 100,
    maxRegexScanMs: 50,
    tunnelIdleMs: 600_000,
    maxTunnelsPerClient: 256,
  };
  assert.deepEqual(limitsSection(undefined), {
    maxBodyBytes: 1 << 20,
    maxScanBytes: 1 << 20,
    ...resources,
  });
  assert.deepEqual(limitsSection({ max_scan_bytes: 10 }), {
    maxBodyBytes: 1 << 20,
    maxScanBytes: 10,
    ...resources,
  });
  assert.deepEqual(
    limitsSection({
      max_decompressed_bytes: 1000,
      max_decompression_ratio: 20,
      max_regex_scan_time: "200ms",
      tunnel_idle: "1h",
      max_tunnels_per_client: 4,
    }),
    {
      maxBodyBytes: 1 << 20,
      maxScanBytes: 1 << 20,
      maxDecompressedBytes: 1000,
      maxDecompressionRatio: 20,
      maxRegexScanMs: 200,
      tunnelIdleMs: 3_600_000,
      maxTunnelsPerClient: 4,
    },
  );
  assert.deepEqual(runSection(undefined), { noProxy: null });
  assert.deepEqual(runSection({ no_proxy: ["x"] }), { noProxy: ["x"] });
  const up = upstreamSection({
    connect_timeout: "3s",
    resolve: { "API.openai.com.": "127.0.0.1:8443" },
  });
  assert.deepEqual(up.upstream, { connectTimeoutMs: 3000, responseTimeoutMs: 300_000 });
  assert.deepEqual([...up.resolve], [["api.openai.com", { host: "127.0.0.1", port: 8443 }]]);
});

Deno.test("sections: llm merges files in load order, the earlier file winning", () => {
  const sections: (RawLlm | undefined)[] = [
    { providers: { "llm.internal": "openai" }, force_stream_usage: true },
    undefined,
    { providers: { "llm.internal": "anthropic", "other.ai": "gemini" } },
  ];
  const detect = llmProviderDetector(sections);
  assert.equal(detect("llm.internal"), "openai");
  assert.equal(detect("other.ai"), "gemini");
  assert.equal(detect("api.anthropic.com"), "anthropic");
  assert.equal(detect("example.com"), null);
  const llm = llmSection(sections, undefined, detect);
  assert.equal(llm.forceStreamUsage, true);
  assert.equal(llm.unknownPrice, "deny");
  assert.equal(llm.detect, detect);
  assert.equal(llmSection([], "allow", detect).forceStreamUsage, false);
});

Deno.test("sections: mode and default, with the legacy format's log", () => {
  const llm = llmSection([], undefined, llmProviderDetector([]));
  const v1 = policySection({}, false, [], llm);
  assert.equal(v1.mode, "enforce");
  assert.equal(v1.defaultAction, "deny");
  assert.equal(v1.defaultSource, "default");
  assert.ok(v1.index);
  const legacy = policySection({}, true, [], llm);
  assert.equal(legacy.defaultAction, "log");
  assert.equal(legacy.defaultSource, "@agentreserve/proxy default");
  assert.equal(
    policySection({ mode: "audit", default: "allow" }, false, [], llm).defaultAction,
    "allow",
  );
});

Deno.test("sections: tls.intercept takes host globs from every file, errors at the item", () => {
  const part = (file: string, text: string) => {
    const src = new SourceFile(file, text);
    return { src, raw: src.doc.toJS(), legacy: false, abs: "" };
  };
  const errors: Problem[] = [];
  const intercept = compileIntercept([
    part("a.yaml", "tls:\n  intercept: [api.openai.com, a.com/x]\n"),
    part("b.yaml", 'tls:\n  intercept: ["*.googleapis.com"]\n'),
  ], errors);
  assert.deepEqual(intercept.map((m) => m.hostGlob), ["api.openai.com", "*.googleapis.com"]);
  assert.deepEqual(errors.map(formatProblem), [
    'a.yaml:2:31: tls.intercept takes host globs, not paths: "a.com/x"',
  ]);
});
