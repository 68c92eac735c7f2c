import assert from "node:assert/strict";
import { SessionLimitError, SessionRegistry } from "./sessions.ts";
import { looksMinted, sameSecret } from "../util/session_id.ts";

Deno.test("sessions: minted ids with their secret; expiry, revocation, a cap", () => {
  const r = new SessionRegistry(3);
  const t = 1_000_000;
  const a = r.mint({ label: "ci", now: t });
  assert.match(a.session, /^ci-[0-9a-f]{16}$/);
  assert.match(a.secret, /^[0-9a-f]{32}$/);
  assert.ok(looksMinted(a.session));
  assert.deepEqual(r.verify(a.session, a.secret, t), { session: a.session, label: "ci" });
  assert.equal(r.verify(a.session, a.secret.replace(/.$/, "x"), t), null);
  assert.equal(r.verify(a.session, "", t), null);
  assert.equal(r.verify(`ci-${"0".repeat(16)}`, a.secret, t), null, "another name, same secret");
  const b = r.mint({ ttlMs: 1000, now: t });
  assert.match(b.session, /^[0-9a-f]{16}$/);
  assert.equal(b.expiresAt, t + 1000);
  assert.ok(r.verify(b.session, b.secret, t + 999));
  assert.equal(r.verify(b.session, b.secret, t + 1000), null, "expired");
  assert.ok(r.revoke(a.session));
  assert.equal(r.revoke(a.session), false);
  assert.equal(r.verify(a.session, a.secret, t), null, "revoked");
  r.mint({ now: t });
  r.mint({ now: t });
  const short = r.mint({ ttlMs: 10, now: t });
  assert.throws(() => r.mint({ now: t }), SessionLimitError);
  // Expired ones make room.
  assert.ok(r.mint({ now: t + 11 }));
  assert.equal(r.verify(short.session, short.secret, t + 11), null);
});

Deno.test("sameSecret: equal strings only, whatever their lengths", () => {
  assert.ok(sameSecret("s3cret", "s3cret"));
  for (const other of ["s3cre", "s3cret!", "S3cret", "", "s3cret\0"]) {
    assert.ok(!sameSecret("s3cret", other), JSON.stringify(other));
  }
  assert.ok(!sameSecret("", "x"));
  assert.ok(sameSecret("", ""));
});
