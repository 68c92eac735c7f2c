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
  resolveUpstream,
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
    authEnv: [],
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
    // Each token comes with its session label (issue 20): auth-N unless given.
    const p = proxySection({
      auth: [
        "plain",
        { env: "AGENTGATE_SECTIONS_TEST_TOKEN" },
        { token: "lit", label: "ci" },
        { token_env: "AGENTGATE_SECTIONS_TEST_TOKEN", label: "twice" },
      ],
    }, false);
    assert.deepEqual(p.auth, [
      { token: "plain", label: "auth-1" },
      { token: "from-env", label: "auth-2" },
      { token: "lit", label: "ci" },
      { token: "from-env", label: "twice" },
    ]);
    assert.deepEqual(p.authEnv, ["AGENTGATE_SECTIONS_TEST_TOKEN", "AGENTGATE_SECTIONS_TEST_TOKEN"]);
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
  // Changed deliberately (issue 16): without a path the audit is in the agentgate home
  // (for the @agentreserve/proxy format too), never beside the file or in the cwd.
  const before = Deno.env.get("AGENTGATE_HOME");
  Deno.env.set("AGENTGATE_HOME", "/home/me/.ag");
  try {
    assert.deepEqual(auditSection(undefined, false, "conf/a.yaml", "/repo"), {
      path: "/home/me/.ag/agentgate.db",
      retentionMs: 30 * 86_400_000,
      postgres: null,
      spoolPath: "/home/me/.ag/audit-spool.db",
      spoolMaxBytes: 2 ** 30,
      jsonl: null,
      otlp: null,
    });
    assert.equal(auditSection({}, true, "a.yaml", "/repo").path, "/home/me/.ag/agentgate.db");
  } finally {
    if (before === undefined) Deno.env.delete("AGENTGATE_HOME");
    else Deno.env.set("AGENTGATE_HOME", before);
  }
  assert.deepEqual(
    { ...auditSection({ path: "db/x.db", retention: "1h" }, false, "a.yaml", "/r"), spoolPath: "" },
    {
      path: "/r/db/x.db",
      retentionMs: 3_600_000,
      postgres: null,
      spoolPath: "",
      spoolMaxBytes: 2 ** 30,
      jsonl: null,
      otlp: null,
    },
  );
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
    ambiguousPaths: "deny",
    ...resources,
  });
  assert.deepEqual(limitsSection({ max_scan_bytes: 10, ambiguous_paths: "normalize" }), {
    maxBodyBytes: 1 << 20,
    maxScanBytes: 10,
    ambiguousPaths: "normalize",
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
      ambiguousPaths: "deny",
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
  assert.deepEqual(up.upstream, { connectTimeoutMs: 3000, responseTimeoutMs: 300_000, dns: null });
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

Deno.test("sections: llm.reserve_output_tokens is what a call without a cap reserves", () => {
  const detect = llmProviderDetector([]);
  const req = {
    method: "POST",
    path: "/v1/chat/completions",
    body: { model: "gpt-4o-mini" },
    bodySize: 30,
  };
  const when = new Date("2025-06-02T10:00:00Z");
  assert.equal(
    llmSection([], undefined, detect).estimate!("openai", req, when)!.outputTokens,
    4096,
  );
  assert.equal(
    llmSection([], undefined, detect, 250).estimate!("openai", req, when)!.outputTokens,
    250,
  );
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
    return { src, raw: src.doc.toJS(), legacy: false, abs: "", invalid: [] };
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

Deno.test("sections: upstream.resolve keys with a port match host:port first, then the host", () => {
  const { resolve } = upstreamSection({
    resolve: {
      "llm.internal": "127.0.0.1:9000",
      "LLM.internal:8080": "127.0.0.1:9080",
      "[::1]:8443": "127.0.0.1:9443",
    },
  });
  assert.deepEqual(resolveUpstream(resolve, "llm.internal", 8080), {
    host: "127.0.0.1",
    port: 9080,
  });
  assert.deepEqual(resolveUpstream(resolve, "llm.internal", 80), { host: "127.0.0.1", port: 9000 });
  assert.deepEqual(resolveUpstream(resolve, "::1", 8443), { host: "127.0.0.1", port: 9443 });
  assert.equal(resolveUpstream(resolve, "::1", 443), undefined);
  assert.equal(resolveUpstream(resolve, "example.com", 80), undefined);
});
