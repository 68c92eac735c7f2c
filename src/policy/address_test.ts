import assert from "node:assert/strict";
import {
  addressInRange,
  addressReason,
  allowedBy,
  canonicalIp,
  chooseAddress,
  classifyAddress,
  embeddedIpv4,
  formatIp,
  knownDestination,
  parseCidr,
  parseIp,
  pinKey,
} from "./address.ts";
import { normalizeHost } from "./match.ts";

const cidr = (t: string) => {
  const c = parseCidr(t);
  if (typeof c === "string") throw new Error(c);
  return c;
};

Deno.test("address: every spelling of the metadata address is the metadata address", () => {
  // Host spellings as a URL carries them (normalizeHost), then as DNS answers.
  const spellings = [
    "169.254.169.254",
    "2852039166", // decimal
    "0xa9fea9fe", // hex
    "0xa9.0xfe.0xa9.0xfe",
    "0251.0376.0251.0376", // octal
    "0251.254.43518", // mixed, short form
    "169.254.43518",
    "[::ffff:169.254.169.254]", // IPv4-mapped
    "[::ffff:a9fe:a9fe]",
    "[0:0:0:0:0:ffff:a9fe:a9fe]",
    "[::169.254.169.254]", // IPv4-compatible
    "[::a9fe:a9fe]",
    "[::ffff:0:169.254.169.254]", // IPv4-translated
    "[::ffff:0:a9fe:a9fe]",
    "[64:ff9b::169.254.169.254]", // NAT64 well-known prefix
    "[64:ff9b::a9fe:a9fe]",
    "[64:ff9b:1::a9fe:a9fe]", // NAT64 local-use prefix (/96 layout)
    "[64:ff9b:1:a9fe:a9:fe00::]", // NAT64 local-use /48 layout (u octet at bits 64-71)
    "[64:ff9b:1:a9:fe:a9fe::]", // … /56
  ];
  for (const s of spellings) {
    const host = normalizeHost(s);
    const f = classifyAddress(host);
    assert.ok(f, `${s} -> ${host} is not classified`);
    assert.equal(f.cls.id, "metadata", s);
    assert.equal(f.metadata, true, s);
    assert.match(f.cls.label, /link-local \/ cloud metadata$/, s);
  }
  assert.equal(classifyAddress("fd00:ec2::254")!.cls.label, "unique-local / cloud metadata");
  assert.equal(
    classifyAddress("100.100.100.200")!.cls.label,
    "CGNAT / shared address space / cloud metadata",
  );
  assert.equal(classifyAddress("169.254.170.2")!.cls.id, "metadata");
});

Deno.test("address: the built-in classes, and public addresses pass", () => {
  const table: [string, string | null][] = [
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["::1", "loopback"],
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["::", "unspecified"],
    ["10.1.2.3", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["192.168.1.1", "private"],
    ["fec0::1", "private"],
    ["169.254.1.1", "link-local"],
    ["fe80::1", "link-local"],
    ["febf::1", "link-local"],
    ["fc00::1", "unique-local"],
    ["fd12:3456::1", "unique-local"],
    ["100.64.0.1", "cgnat"],
    ["100.127.255.254", "cgnat"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.250", "multicast"],
    ["ff02::1", "multicast"],
    ["255.255.255.255", "broadcast"],
    ["240.0.0.1", "reserved"],
    ["192.0.0.8", "special"],
    ["2002:a9fe:a9fe::1", "6to4"],
    ["2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"],
    ["::ffff:10.0.0.1", "private"],
    ["::ffff:127.0.0.1", "loopback"],
    ["64:ff9b::a00:1", "private"],
    ["64:ff9b::7f00:1", "loopback"],
    // Ordinary addresses.
    ["93.184.216.34", null],
    ["172.32.0.1", null],
    ["100.128.0.1", null],
    ["198.18.0.1", null], // benchmarking range: fake-IP DNS of local proxies lives here
    ["2606:2800:220:1:248:1893:25c8:1946", null],
    ["64:ff9b::5db8:d822", null], // NAT64 of a public address: how IPv6-only hosts reach IPv4
    ["64:ff9b:1::5db8:d822", null], // the same under the local-use prefix
    ["::ffff:93.184.216.34", null],
  ];
  for (const [ip, want] of table) {
    assert.equal(classifyAddress(ip)?.cls.id ?? null, want, ip);
  }
  // 6to4 names the IPv4 address it tunnels to.
  assert.equal(classifyAddress("2002:a9fe:a9fe::1")!.embeds, "169.254.169.254");
  assert.equal(classifyAddress("not an address"), null);
});

Deno.test("address: agentgate's own addresses are their own class", () => {
  const local = new Set(["203.0.113.5", "0.0.0.0"]);
  const f = classifyAddress("203.0.113.5", local)!;
  assert.equal(f.cls.id, "this-host");
  assert.equal(f.cls.label, "an address of agentgate's host");
  assert.equal(classifyAddress("::ffff:203.0.113.5", local)!.cls.id, "this-host");
  assert.equal(classifyAddress("64:ff9b::cb00:7105", local)!.cls.id, "this-host");
  assert.equal(classifyAddress("203.0.113.6", local), null);
  assert.equal(classifyAddress("0.0.0.0", local)!.cls.label, "unspecified / this network");
  assert.equal(
    classifyAddress("10.0.0.5", new Set(["10.0.0.5"]))!.cls.label,
    "private, an address of agentgate's host",
  );
});

Deno.test("address: rules allow ranges they name; allow_private never opens metadata", () => {
  const meta = classifyAddress("169.254.169.254")!;
  const lo = classifyAddress("127.0.0.2")!;
  const nat64lo = classifyAddress("64:ff9b::7f00:2")!;
  assert.equal(allowedBy(lo, null), false);
  assert.equal(allowedBy(lo, { allowPrivate: true, ranges: [] }), true);
  assert.equal(allowedBy(meta, { allowPrivate: true, ranges: [] }), false);
  assert.equal(allowedBy(meta, { allowPrivate: false, ranges: [cidr("169.254.169.254")] }), true);
  assert.equal(allowedBy(lo, { allowPrivate: false, ranges: [cidr("127.0.0.2/32")] }), true);
  assert.equal(allowedBy(lo, { allowPrivate: false, ranges: [cidr("127.0.0.1/32")] }), false);
  // The range is matched against the IPv4 address a NAT64 spelling embeds.
  assert.equal(allowedBy(nat64lo, { allowPrivate: false, ranges: [cidr("127.0.0.0/8")] }), true);
});

Deno.test("address: ranges parse strictly and match embedded IPv4", () => {
  assert.deepEqual(parseCidr("[fd00::]/8"), { bytes: parseIp("fd00::"), bits: 8 });
  assert.equal(
    parseCidr("10.0.0.1/8"),
    '"10.0.0.1/8" has bits set after the prefix: did you mean "10.0.0.0/8"?',
  );
  assert.equal(parseCidr("10.0.0.0/33"), 'the prefix length of "10.0.0.0/33" must be 0-32');
  assert.equal(
    parseCidr("example.com/8"),
    '"example.com/8" is not an address range such as "10.0.0.0/8" or "fd00::/8"',
  );
  assert.deepEqual(parseCidr("::ffff:10.0.0.0/104"), { bytes: parseIp("10.0.0.0"), bits: 8 });
  assert.equal(addressInRange(cidr("10.0.0.0/8"), "10.9.9.9"), true);
  assert.equal(addressInRange(cidr("10.0.0.0/8"), "::ffff:10.9.9.9"), true);
  assert.equal(addressInRange(cidr("10.0.0.0/8"), "64:ff9b::a09:909"), true);
  assert.equal(addressInRange(cidr("10.0.0.0/8"), "11.0.0.1"), false);
  assert.equal(addressInRange(cidr("fd00::/8"), "fd00:ec2::254"), true);
  assert.equal(addressInRange(cidr("fd00::/8"), "example.com"), false);
});

Deno.test("address: canonical text and embedded addresses", () => {
  assert.equal(formatIp(parseIp("FD00:0EC2:0:0:0:0:0:0254")!), "fd00:ec2::254");
  assert.equal(formatIp(parseIp("1:0:0:2:0:0:0:3")!), "1:0:0:2::3");
  assert.equal(formatIp(parseIp("1:2:3:4:5:6:7:8")!), "1:2:3:4:5:6:7:8");
  assert.equal(canonicalIp("::ffff:127.0.0.1"), "127.0.0.1");
  assert.equal(canonicalIp("[::1]"), "::1");
  assert.equal(canonicalIp("localhost"), null);
  assert.deepEqual(embeddedIpv4(parseIp("2606:2800::1")!), []);
  assert.deepEqual(embeddedIpv4(parseIp("10.0.0.1")!), []);
});

Deno.test("address: the connected address is a public one when the answer mixes", () => {
  assert.equal(chooseAddress(["10.0.0.7", "93.184.216.34"]), "93.184.216.34");
  assert.equal(chooseAddress(["169.254.169.254", "127.0.0.1"]), "169.254.169.254");
  assert.equal(chooseAddress(["93.184.216.34", "93.184.216.35"]), "93.184.216.34");
});

Deno.test("address: pinned and literal destinations are known without DNS", () => {
  const pins = new Map([
    [pinKey("api.example.test", null), { host: "127.0.0.1", port: 8443 }],
    [pinKey("api.example.test", 8080), { host: "::ffff:127.0.0.3", port: 9000 }],
  ]);
  assert.deepEqual(knownDestination(pins, "api.example.test", 443), {
    ip: "127.0.0.1",
    port: 8443,
    addresses: ["127.0.0.1"],
    pinned: true,
  });
  assert.deepEqual(knownDestination(pins, "api.example.test", 8080), {
    ip: "127.0.0.3",
    port: 9000,
    addresses: ["127.0.0.3"],
    pinned: true,
  });
  assert.deepEqual(knownDestination(pins, "fd00:ec2::254", 80), {
    ip: "fd00:ec2::254",
    port: 80,
    addresses: ["fd00:ec2::254"],
    pinned: false,
  });
  assert.equal(knownDestination(pins, "example.com", 80), null);
});

Deno.test("address: reasons name the host, the address and its class", () => {
  assert.equal(
    addressReason("metadata.example", classifyAddress("169.254.169.254")!),
    '"metadata.example" resolves to 169.254.169.254 (link-local / cloud metadata): denied',
  );
  assert.equal(
    addressReason("x.example", classifyAddress("64:ff9b::a9fe:a9fe")!),
    '"x.example" resolves to 64:ff9b::a9fe:a9fe, which embeds 169.254.169.254 (link-local / cloud metadata): denied',
  );
  assert.equal(
    addressReason("10.1.2.3", classifyAddress("10.1.2.3")!),
    "address 10.1.2.3 (private): denied",
  );
  assert.equal(
    addressReason("64:ff9b::7f00:1", classifyAddress("64:ff9b::7f00:1")!),
    "address 64:ff9b::7f00:1, which embeds 127.0.0.1 (loopback): denied",
  );
});
