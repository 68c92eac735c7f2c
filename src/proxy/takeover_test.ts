import assert from "node:assert/strict";
import { classifyFirstBytes } from "./takeover.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("first bytes inside a CONNECT: TLS, plain HTTP (also split or after empty lines), the rest", () => {
  assert.equal(classifyFirstBytes(new Uint8Array([0x16, 3, 1, 0, 0xc8])), "tls");
  assert.equal(classifyFirstBytes(bytes("GET /x HTTP/1.1\r\n")), "http");
  assert.equal(classifyFirstBytes(bytes("\r\n\r\nPOST /x HTTP/1.1\r\n")), "http");
  // A request line sent a byte at a time is still one: wait for more.
  for (const prefix of ["", "\r\n", "G", "GE", "GET", "GET "]) {
    assert.equal(classifyFirstBytes(bytes(prefix)), null, JSON.stringify(prefix));
  }
  assert.equal(classifyFirstBytes(bytes("SSH-2.0-OpenSSH_9.2\r\n")), "other");
  assert.equal(classifyFirstBytes(new Uint8Array([0, 1, 2, 3])), "other");
  assert.equal(classifyFirstBytes(bytes("A".repeat(64))), "other", "no endless wait");
  assert.equal(classifyFirstBytes(bytes("\r\n".repeat(32))), "other");
});
