/**
 * Judging what a request shows of credentials: every phantom must be in the
 * one place its credential is presented, in its own session, on a host, path
 * and method the credential covers — then it is swapped for the real secret
 * once the policy allowed the request. Anything else is the tripwire: the
 * request is refused with a stable reason. A real secret sent by the client
 * is refused wherever it is.
 *
 * @module
 */
import { type Sighting, type Where, whereName } from "./scan.ts";
import { presentedFormat } from "./place.ts";
import type { CredentialSpec } from "./types.ts";

/** A live phantom: whose it is. */
export interface PhantomOwner {
  session: string;
  credential: string;
  phantom: string;
}

/** One swap to make before forwarding. */
export type Swap =
  | { kind: "header"; credential: string; name: string; value: string; phantom: string }
  | { kind: "basic"; credential: string; user: string; phantom: string }
  | { kind: "query"; credential: string; name: string; phantom: string };

/** Why a request is refused. */
export interface Tripped {
  credential: string;
  /** `phantom`: a phantom out of place; `secret`: the real value came from the client. */
  kind: "phantom" | "secret";
  reason: string;
  /** Where it was seen (`body`, `url`, `header:x-api-key`, …). */
  where: string;
  /** The phantom (for a masked sample), or null for a real secret. */
  phantom: string | null;
}

/** The request as the judge needs it. */
export interface JudgedRequest {
  scheme: "http" | "https";
  host: string;
  port: number;
  method: string;
  /** null for a CONNECT (nothing is presented there). */
  path: string | null;
  session: string | null;
}

/**
 * The swaps a request asks for, or why it is refused.
 *
 * @example
 * const j = judge(req, specs, scanRequest(view, targets));
 * if ("reason" in j) deny(j.reason); else plan(j.swaps);
 */
export function judge(
  req: JudgedRequest,
  specs: ReadonlyMap<string, CredentialSpec>,
  seen: { phantoms: Sighting<PhantomOwner>[]; secrets: Sighting<string>[] },
): { swaps: Swap[] } | Tripped {
  const s = seen.secrets[0];
  if (s) {
    const where = whereName(s.where);
    return {
      credential: s.owner,
      kind: "secret",
      reason: `real secret of credential "${s.owner}" in the request: ${where}`,
      where,
      phantom: null,
    };
  }
  const swaps: Swap[] = [];
  for (const { owner, where } of seen.phantoms) {
    const name = owner.credential;
    const trip = (reason: string): Tripped => ({
      credential: name,
      kind: "phantom",
      reason,
      where: whereName(where),
      phantom: owner.phantom,
    });
    if (owner.session !== req.session) return trip(`credential "${name}" used by another session`);
    const spec = specs.get(name);
    if (!spec || !spec.scope.allowsHost(req.scheme, req.host, req.port)) {
      return trip(`credential "${name}" used outside its hosts`);
    }
    if (req.path === null) {
      return trip(`credential "${name}" used outside its place: ${whereName(where)}`);
    }
    if (!spec.scope.allowsPath(req.path)) {
      return trip(`credential "${name}" used outside its paths`);
    }
    if (spec.scope.methods !== null && !spec.scope.methods.has(req.method)) {
      return trip(`credential "${name}" used outside its methods`);
    }
    const swap = placeOf(spec, where, owner.phantom);
    if (swap === null) {
      return trip(`credential "${name}" used outside its place: ${whereName(where)}`);
    }
    swaps.push(swap);
  }
  return { swaps };
}

/** The swap when `where` is a place `spec` is presented in, else null. */
function placeOf(spec: CredentialSpec, where: Where, phantom: string): Swap | null {
  const credential = spec.name;
  switch (where.kind) {
    case "header": {
      const h = spec.headers.find((h) => h.name === where.name);
      if (!h || presentedFormat(where.value, h.formats, phantom) === null) return null;
      return { kind: "header", credential, name: where.name, value: where.value, phantom };
    }
    case "basic":
      if (spec.basic === null || where.pass !== phantom) return null;
      return { kind: "basic", credential, user: where.user, phantom };
    case "query":
      if (spec.query === null || where.name !== spec.query || where.value !== phantom) return null;
      return { kind: "query", credential, name: where.name, phantom };
    default:
      return null;
  }
}
