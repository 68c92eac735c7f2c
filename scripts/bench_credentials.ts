/**
 * The cost of the credentials tripwire per request: `deno task bench
 * credentials` (or `deno bench scripts/bench_credentials.ts`).
 *
 * With 1,000 live sessions holding four phantoms each and four real
 * secrets loaded: screening a request head with no credential in it (what
 * every request pays), one with its phantom in place (judged and planned for
 * the swap), and the body searches: a 1 MB chat body as the screen reads it
 * (raw and decoded), and the same streamed past the cap in 64 KiB chunks.
 *
 * @module
 */
import {
  type CredentialSpec,
  judge,
  PhantomRegistry,
  PRESETS,
  scanRequest,
  secretNeedles,
} from "../src/credentials/mod.ts";
import { decodeForScan } from "../src/dlp/mod.ts";
import { chatPayload } from "../tests/support/dlp_samples.ts";

function spec(name: string): CredentialSpec {
  const p = PRESETS[name];
  return {
    name,
    preset: name,
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
    where: "bench.yaml:1",
  };
}

const specs = ["openai", "anthropic", "github", "npm"].map(spec);
const byName = new Map(specs.map((s) => [s.name, s]));
const registry = new PhantomRegistry();
for (let i = 0; i < 1000; i++) registry.issue(`s${i}`, specs);
const mine = registry.issue("s500", specs);
const targets = {
  lengths: registry.lengths,
  lookup: (k: string) => registry.lookup(k),
  lookupFolded: (k: string) => registry.lookupFolded(k),
  secrets: specs.map((s) => ({
    owner: s.name,
    needles: secretNeedles(`real-${s.name}-0123456789abcdef`),
  })),
};
const headers: [string, string][] = [
  ["host", "api.openai.com"],
  ["user-agent", "OpenAI/JS 7.57.0"],
  ["accept", "application/json"],
  ["content-type", "application/json"],
  ["content-length", "312"],
  ["x-stainless-lang", "js"],
  ["x-stainless-package-version", "7.57.0"],
  ["x-stainless-os", "Linux"],
  ["x-stainless-arch", "x64"],
  ["x-stainless-runtime", "deno"],
];
const req = {
  scheme: "https" as const,
  host: "api.openai.com",
  port: 443,
  method: "POST",
  path: "/v1/chat/completions",
  session: "s500",
};
const view = (h: [string, string][]) => ({
  host: req.host,
  path: req.path,
  query: "api-version=2024-10-21",
  headers: h,
  body: [] as string[],
});
const clean = view(headers);
const withPhantom = view([...headers, ["authorization", `Bearer ${mine[0].phantom}`]]);
const body = new TextEncoder().encode(chatPayload(1_000_000));

Deno.bench("screen a request head with no credential in it", () => {
  const seen = scanRequest(clean, targets);
  if (seen.phantoms.length || seen.secrets.length) throw new Error("unexpected sighting");
});

Deno.bench("screen a request head with its phantom in place (judged, swap planned)", () => {
  const j = judge(req, byName, scanRequest(withPhantom, targets));
  if (!("swaps" in j) || j.swaps.length !== 1) throw new Error("expected one swap");
});

Deno.bench("screen a 1 MB chat body (raw and decoded)", () => {
  const raw = new TextDecoder().decode(body);
  const decoded = decodeForScan(body, "application/json", null, 1 << 21)?.text ?? "";
  scanRequest({ host: "", path: null, query: "", headers: [], body: [raw, decoded] }, targets);
});

Deno.bench("search 1 MB streamed past the cap (64 KiB chunks, 2 KiB overlap)", () => {
  const dec = new TextDecoder("latin1");
  let carry = "";
  for (let at = 0; at < body.length; at += 65536) {
    const text = carry + dec.decode(body.subarray(at, at + 65536), { stream: true });
    carry = text.slice(-2048);
    scanRequest({ host: "", path: null, query: "", headers: [], body: [text] }, targets);
  }
});

// Hostile bodies: made of markers, raw and base64-encoded (each window is decoded once).
const markers = "agentgate-".repeat(100_000);
const b64markers = btoa("agentgate".repeat(116_000)).slice(0, 1_000_000);

Deno.bench("screen 1 MB of raw markers (hostile)", () => {
  scanRequest({ host: "", path: null, query: "", headers: [], body: [markers] }, targets);
});

Deno.bench("screen 1 MB of base64-encoded markers (hostile)", () => {
  scanRequest({ host: "", path: null, query: "", headers: [], body: [b64markers] }, targets);
});
