import assert from "node:assert/strict";
import { compileMatch, matchHost, normalizeHost, normalizePath, PatternError } from "./match.ts";

function matches(pattern: string, url: string, legacy = false): boolean {
  const m = compileMatch(pattern, legacy);
  const u = new URL(url);
  const port = Number(u.port || (u.protocol === "https:" ? 443 : 80));
  const scheme = u.protocol.slice(0, -1);
  if (!matchHost(m, normalizeHost(u.hostname), port, scheme)) return false;
  return m.path === null || m.path(normalizePath(u.pathname));
}

Deno.test("match: host and path globs", () => {
  const table: [string, string, boolean][] = [
    // `*` in the host spans dots; the apex is not a subdomain.
    ["*.example.com", "http://api.example.com/", true],
    ["*.example.com", "http://a.b.example.com/x", true],
    ["*.example.com", "http://example.com/", false],
    ["*.example.com", "http://badexample.com/", false],
    ["example.com", "http://EXAMPLE.com./", true],
    ["example.com", "http://example.com:8080/", true],
    ["example.com:8080", "http://example.com:8080/", true],
    ["example.com:8080", "http://example.com/", false],
    ["example.com:*", "http://example.com:9/", true],
    // path: `*` one segment, `**` any depth, none = any path
    ["example.com/v1/*", "http://example.com/v1/chat", true],
    ["example.com/v1/*", "http://example.com/v1/chat/completions", false],
    ["example.com/v1/**", "http://example.com/v1/chat/completions", true],
    ["example.com/v1/**", "http://example.com/v1", true],
    ["example.com/v1/**", "http://example.com/v2/x", false],
    ["example.com/**", "http://example.com/.env", true],
    ["example.com/admin/**", "http://example.com/%61dmin/x", true],
    ["example.com/admin/**", "http://example.com/v1/../admin/x", true],
    ["example.com/*.json", "http://example.com/a.json", true],
    // scheme restricts when written
    ["https://example.com", "https://example.com/", true],
    ["https://example.com", "http://example.com/", false],
    // catch-alls
    ["*", "http://anything.test/x/y", true],
    ["**", "http://anything.test/", true],
    ["169.254.*", "http://169.254.169.254/", true],
    ["[fe8?:*]", "http://[fe80::1]/", true],
    ["[fe8?:*]", "http://[fd00::1]/", false],
    ["[::1]:8080", "http://[::1]:8080/", true],
  ];
  for (const [pattern, url, want] of table) {
    assert.equal(matches(pattern, url), want, `${pattern} vs ${url}`);
  }
});

Deno.test("match: @agentreserve/proxy form (trailing /* = any path below, scheme stripped)", () => {
  assert.equal(
    matches("api.openai.com/*", "http://api.openai.com/v1/chat/completions", true),
    true,
  );
  assert.equal(compileMatch("api.openai.com/*", true).path, null);
  assert.equal(matches("*.amazonaws.com/iam/*", "http://iam.amazonaws.com/iam/x/y", true), true);
  assert.equal(matches("*.amazonaws.com/iam/*", "http://s3.amazonaws.com/bucket", true), false);
  assert.equal(matches("https://api.openai.com/*", "http://api.openai.com/x", true), true);
});

Deno.test("match: invalid patterns name the problem and its offset", () => {
  const bad: [string, string, number][] = [
    ["ftp://example.com", 'unsupported scheme "ftp" (use http or https)', 0],
    ["exa mple.com", 'invalid character " " in host "exa mple.com"', 3],
    ["example.com:99999", "port 99999 is out of range 1-65535", 12],
    ["", "pattern is empty", 0],
  ];
  for (const [pattern, message, offset] of bad) {
    assert.throws(() => compileMatch(pattern), (e: unknown) => {
      assert.ok(e instanceof PatternError);
      assert.equal(e.message, message);
      assert.equal(e.offset, offset);
      return true;
    });
  }
});

Deno.test("normalizeHost: case, trailing dot, brackets, numeric and mapped IPv4", () => {
  const table: [string, string][] = [
    ["Metadata.Google.Internal.", "metadata.google.internal"],
    ["2852039166", "169.254.169.254"],
    ["0xa9.0xfe.0xa9.0xfe", "169.254.169.254"],
    ["0251.0376.0251.0376", "169.254.169.254"],
    ["169.254.43518", "169.254.169.254"],
    ["[::ffff:169.254.169.254]", "169.254.169.254"],
    ["::ffff:a9fe:a9fe", "169.254.169.254"],
    ["[FE80::1]", "fe80::1"],
    ["[fd00:ec2:0:0::254]", "fd00:ec2::254"],
    ["[::169.254.169.254]", "169.254.169.254"],
    ["[::ffff:0:a9fe:a9fe]", "169.254.169.254"],
    ["[64:ff9b::a9fe:a9fe]", "169.254.169.254"],
    ["[64:ff9b::169.254.169.254]", "169.254.169.254"],
    ["[::1]", "::1"],
    ["[::]", "::"],
    ["[64:ff9b:1::a9fe:a9fe]", "169.254.169.254"],
    // Several readings of the local-use NAT64 prefix: left to the address guard.
    ["[64:ff9b:1:a9fe:a9:fe00::]", "64:ff9b:1:a9fe:a9:fe00::"],
    ["deadbeef.com", "deadbeef.com"],
    ["1e100.net", "1e100.net"],
    ["123.example", "123.example"],
  ];
  for (const [raw, want] of table) assert.equal(normalizeHost(raw), want, raw);
});

Deno.test("normalizePath: unreserved escapes decoded, dot segments removed, others kept", () => {
  const table: [string, string][] = [
    ["/v1/chat", "/v1/chat"],
    ["/%7euser/%2fx", "/~user/%2Fx"],
    ["/a/./b/../c", "/a/c"],
    ["/a/%2e%2e/b", "/b"],
    ["/../../etc", "/etc"],
    ["/a/b/..", "/a/"],
    ["", "/"],
  ];
  for (const [raw, want] of table) assert.equal(normalizePath(raw), want, raw);
});
