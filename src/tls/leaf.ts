/**
 * Leaf certificates for intercepted hosts, signed by the agentgate CA.
 *
 * One leaf key pair per key type serves every host for the life of the
 * process, so a new host costs one CA signature, never a key generation.
 * The TBSCertificate is assembled with node-forge's ASN.1 encoder and signed
 * with WebCrypto (~1.2 ms per leaf under Deno 2.9.6, nearly all of it the
 * RSA signature). Not forge's X.509 layer: it handles RSA keys only and its
 * JavaScript signature took ~16 ms. Not `@peculiar/x509`: it needs a
 * `reflect-metadata` polyfill (tsyringe) and its ASN.1 layer doubled the cost
 * (~2.4 ms per leaf).
 *
 * @example
 * ```ts
 * import { loadOrCreateCA } from "./ca.ts";
 * import { issueLeaf } from "./leaf.ts";
 * const ca = await loadOrCreateCA();
 * const leaf = await issueLeaf(ca, "api.openai.com");
 * // leaf.certPem, leaf.keyPem -> tls.createSecureContext({ cert, key })
 * ```
 *
 * @module
 */

import forge from "node-forge";
import { isIP } from "node:net";
import { domainToASCII } from "node:url";
import { BACKDATE_MS, type CertificateAuthority, randomSerialHex } from "./ca.ts";

/** Key type of leaf certificates. */
export type LeafKeyType = "ecdsa-p256" | "rsa-2048";

/**
 * Default leaf key type. ECDSA P-256: under Deno 2.9.6 a new `node:https`
 * connection cost the server ~0.67 ms CPU with it against ~1.3 ms with
 * RSA-2048 (the per-handshake signature), and curl (TLS 1.2 and 1.3), Deno
 * `fetch`, Node 20 and Python in strict mode all accept it (`leaf_test.ts`).
 */
export const DEFAULT_LEAF_KEY_TYPE: LeafKeyType = "ecdsa-p256";

/** Longest validity of a leaf, counted from its backdated notBefore. */
export const MAX_LEAF_VALIDITY_DAYS = 99;

const DAY_MS = 86_400_000;

/** A host name that cannot be put in a certificate. */
export class LeafError extends Error {
  /** Always `"LeafError"`, so a log line names the kind of failure. */
  override name = "LeafError";
  /**
   * Creates the error.
   *
   * @param message Sentence case, values in quotes, detail after a colon.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** An issued leaf certificate and the shared key that goes with it. */
export interface Leaf {
  /** Normalized host: lower-case DNS name without trailing dot, or an IP without brackets. */
  host: string;
  /** The leaf certificate, PEM. */
  certPem: string;
  /** Leaf then CA certificate, PEM; for servers or tools that want the whole chain. */
  chainPem: string;
  /** The leaf private key, PEM (PKCS#8), shared by all leaves of this key type in this process. */
  keyPem: string;
  /** Key type of {@link Leaf.keyPem}. */
  keyType: LeafKeyType;
  /** Serial number, lower-case hex. */
  serialHex: string;
  /** Start of validity: issue time minus two days, whole seconds. */
  notBefore: Date;
  /** End of validity: at most 99 days after notBefore, never after the CA's. */
  notAfter: Date;
}

/** Options of {@link LeafIssuer} and {@link issueLeaf}. */
export interface LeafOptions {
  /** Default {@link DEFAULT_LEAF_KEY_TYPE}. */
  keyType?: LeafKeyType;
  /** Validity from the backdated notBefore, 1 to {@link MAX_LEAF_VALIDITY_DAYS} (the default). */
  validityDays?: number;
  /** Clock, for tests. */
  now?: () => Date;
}

/** A host name normalized for a certificate: the SAN type and the cache key. */
export interface LeafName {
  /** Lower-case A-label DNS name, or canonical IP text (IPv6 compressed, no brackets). */
  name: string;
  /** Raw address bytes (4 or 16) for an IP, null for a DNS name. */
  ip: Uint8Array | null;
}

/**
 * Normalizes a host (SNI name, CONNECT target host, URL host) for a leaf.
 * Throws a {@link LeafError} for a name no certificate can carry.
 *
 * @example
 * ```ts
 * normalizeLeafName("API.OpenAI.com."); // { name: "api.openai.com", ip: null }
 * normalizeLeafName("[::1]");           // { name: "::1", ip: Uint8Array(16) }
 * ```
 */
export function normalizeLeafName(host: string): LeafName {
  let h = host.trim();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  const zone = h.indexOf("%");
  if (zone > 0 && h.includes(":")) h = h.slice(0, zone); // fe80::1%eth0: the zone is local
  const family = isIP(h);
  if (family === 4) {
    const ip = new Uint8Array(h.split(".").map(Number));
    return { name: [...ip].join("."), ip };
  }
  if (family === 6) {
    const ip = ipv6Bytes(h);
    return { name: formatIpv6(ip), ip };
  }
  if (h.endsWith(".")) h = h.slice(0, -1);
  h = h.toLowerCase();
  // deno-lint-ignore no-control-regex
  if (/[^\x00-\x7f]/.test(h)) {
    const ascii = domainToASCII(h);
    if (!ascii) throw new LeafError(`Host name "${host}" is not a valid international domain name`);
    h = ascii;
  }
  if (h.length === 0) throw new LeafError(`Host name "${host}" is empty`);
  if (h.length > 253) {
    throw new LeafError(`Host name "${host}" is not valid: longer than 253 characters`);
  }
  const labels = h.split(".");
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i];
    if (i === 0 && label === "*" && labels.length > 2) continue;
    // Underscores are not in RFC 952 but appear in real host names that
    // clients accept, so they are let through.
    if (!/^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/.test(label)) {
      throw new LeafError(`Host name "${host}" is not valid: bad label "${label}"`);
    }
  }
  return { name: h, ip: null };
}

interface LeafKey {
  type: LeafKeyType;
  keyPem: string;
  /** SubjectPublicKeyInfo as a forge node (BIT STRING left undecoded). */
  spki: forge.asn1.Asn1;
  keyId: string;
}

// One key pair per type for the whole process; the promise is cached so
// concurrent first issues share one generation.
const leafKeys = new Map<LeafKeyType, Promise<LeafKey>>();

function leafKey(type: LeafKeyType): Promise<LeafKey> {
  let key = leafKeys.get(type);
  if (!key) {
    key = generateLeafKey(type);
    leafKeys.set(type, key);
    key.catch(() => leafKeys.delete(type));
  }
  return key;
}

async function generateLeafKey(type: LeafKeyType): Promise<LeafKey> {
  const params = type === "ecdsa-p256" ? { name: "ECDSA", namedCurve: "P-256" } : {
    name: "RSASSA-PKCS1-v1_5",
    hash: "SHA-256",
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
  };
  const pair = await crypto.subtle.generateKey(params, true, ["sign", "verify"]) as CryptoKeyPair;
  const [pkcs8, spkiDer] = await Promise.all([
    crypto.subtle.exportKey("pkcs8", pair.privateKey),
    crypto.subtle.exportKey("spki", pair.publicKey),
  ]);
  // forge accepts an options object here; @types/node-forge only knows the boolean form.
  const spki = forge.asn1.fromDer(
    bytesToBinary(new Uint8Array(spkiDer)),
    { decodeBitStrings: false } as unknown as boolean,
  );
  // RFC 5280 key id, method 1: SHA-1 of the subjectPublicKey bits (after the
  // BIT STRING's unused-bits byte).
  const bits = ((spki.value as forge.asn1.Asn1[])[1].value as string).slice(1);
  const keyId = bytesToBinary(
    new Uint8Array(await crypto.subtle.digest("SHA-1", binaryToBytes(bits))),
  );
  return { type, keyPem: pem("PRIVATE KEY", bytesToBinary(new Uint8Array(pkcs8))), spki, keyId };
}

/**
 * Issues leaves signed by one CA. Cheap to keep around; holds no per-host state
 * (caching is `LeafStore`'s job).
 *
 * @example
 * ```ts
 * const issuer = new LeafIssuer(ca, { keyType: "rsa-2048" });
 * const { certPem, keyPem } = await issuer.issue("127.0.0.1");
 * ```
 */
export class LeafIssuer {
  /** Key type of the leaves issued. */
  readonly keyType: LeafKeyType;
  readonly #ca: CertificateAuthority;
  readonly #validityMs: number;
  readonly #now: () => Date;
  readonly #issuer: forge.asn1.Asn1;
  readonly #aki: forge.asn1.Asn1;

  /** Throws {@link LeafError} for an unknown key type or a validity outside 1 to 99 days. */
  constructor(ca: CertificateAuthority, options: LeafOptions = {}) {
    const keyType = options.keyType ?? DEFAULT_LEAF_KEY_TYPE;
    if (keyType !== "ecdsa-p256" && keyType !== "rsa-2048") {
      throw new LeafError(
        `Leaf key type "${keyType}" is not supported: use "ecdsa-p256" or "rsa-2048"`,
      );
    }
    const days = options.validityDays ?? MAX_LEAF_VALIDITY_DAYS;
    if (!(days >= 1 && days <= MAX_LEAF_VALIDITY_DAYS)) {
      throw new LeafError(
        `Leaf validity "${days}" days is not supported: use 1 to ${MAX_LEAF_VALIDITY_DAYS}`,
      );
    }
    this.keyType = keyType;
    this.#ca = ca;
    this.#validityMs = days * DAY_MS;
    this.#now = options.now ?? (() => new Date());
    this.#issuer = forge.asn1.fromDer(bytesToBinary(ca.subjectDer));
    // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
    this.#aki = seq([ctx(0, false, bytesToBinary(ca.keyId))]);
  }

  /** Starts the shared key generation early, so the first handshake does not wait for it. */
  async warmUp(): Promise<void> {
    await leafKey(this.keyType);
  }

  /**
   * Issues a leaf for a DNS name or an IP literal (IPv4, IPv6, bracketed or not).
   * Throws {@link LeafError} for a name that cannot be in a certificate.
   */
  async issue(host: string): Promise<Leaf> {
    const { name, ip } = normalizeLeafName(host);
    const key = await leafKey(this.keyType);
    const now = this.#now().getTime();
    const notBefore = new Date(Math.floor((now - BACKDATE_MS) / 1000) * 1000);
    // Never outlive the CA: a verifier would reject the chain from that day on.
    const notAfter = new Date(
      Math.min(notBefore.getTime() + this.#validityMs, this.#ca.notAfter.getTime()),
    );
    const serialHex = randomSerialHex();

    const san = ip
      ? ctx(7, false, bytesToBinary(ip)) // iPAddress [7] OCTET STRING
      : ctx(2, false, name); // dNSName [2] IA5String
    // CN is at most 64 characters (RFC 5280 ub-common-name). Without it the
    // subject is empty, and RFC 5280 then wants the SAN critical.
    const hasCn = name.length <= 64;
    const subject = hasCn
      ? seq([set([seq([oid("2.5.4.3"), prim(forge.asn1.Type.UTF8, name)])])])
      : seq([]);
    // keyEncipherment only means something for RSA key transport (TLS 1.2 RSA kx).
    const keyUsage = this.keyType === "rsa-2048" ? "\x05\xa0" : "\x07\x80";

    const tbs = seq([
      ctx(0, true, [prim(forge.asn1.Type.INTEGER, "\x02")]), // v3
      prim(forge.asn1.Type.INTEGER, forge.util.hexToBytes(serialHex)),
      SHA256_WITH_RSA,
      this.#issuer,
      seq([time(notBefore), time(notAfter)]),
      subject,
      key.spki,
      ctx(3, true, [seq([
        ext("2.5.29.19", true, seq([])), // basicConstraints: not a CA
        ext("2.5.29.15", true, prim(forge.asn1.Type.BITSTRING, keyUsage)),
        ext("2.5.29.37", false, seq([oid("1.3.6.1.5.5.7.3.1")])), // serverAuth
        ext("2.5.29.17", !hasCn, seq([san])),
        ext("2.5.29.14", false, prim(forge.asn1.Type.OCTETSTRING, key.keyId)),
        ext("2.5.29.35", false, this.#aki),
      ])]),
    ]);
    const tbsDer = forge.asn1.toDer(tbs).getBytes();
    const signature = await crypto.subtle.sign(
      "RSASSA-PKCS1-v1_5",
      this.#ca.signingKey,
      binaryToBytes(tbsDer),
    );
    const certDer = forge.asn1.toDer(seq([
      tbs,
      SHA256_WITH_RSA,
      prim(forge.asn1.Type.BITSTRING, "\x00" + bytesToBinary(new Uint8Array(signature))),
    ])).getBytes();
    const certPem = pem("CERTIFICATE", certDer);
    return {
      host: name,
      certPem,
      chainPem: certPem + this.#ca.certPem,
      keyPem: key.keyPem,
      keyType: this.keyType,
      serialHex,
      notBefore,
      notAfter,
    };
  }
}

/**
 * Issues one leaf with a throwaway {@link LeafIssuer}; the key pair is still
 * the process-wide one.
 *
 * @example
 * ```ts
 * const leaf = await issueLeaf(ca, "api.anthropic.com", { keyType: "rsa-2048" });
 * ```
 */
export async function issueLeaf(
  ca: CertificateAuthority,
  host: string,
  options?: LeafOptions,
): Promise<Leaf> {
  return await new LeafIssuer(ca, options).issue(host);
}

// --- DER building blocks (forge.asn1 nodes) ---

const U = forge.asn1.Class.UNIVERSAL;

function prim(type: number, value: string): forge.asn1.Asn1 {
  return forge.asn1.create(U, type, false, value);
}

function seq(value: forge.asn1.Asn1[]): forge.asn1.Asn1 {
  return forge.asn1.create(U, forge.asn1.Type.SEQUENCE, true, value);
}

function set(value: forge.asn1.Asn1[]): forge.asn1.Asn1 {
  return forge.asn1.create(U, forge.asn1.Type.SET, true, value);
}

function ctx(tag: number, constructed: boolean, value: string | forge.asn1.Asn1[]) {
  return forge.asn1.create(forge.asn1.Class.CONTEXT_SPECIFIC, tag, constructed, value);
}

function oid(dotted: string): forge.asn1.Asn1 {
  return prim(forge.asn1.Type.OID, forge.asn1.oidToDer(dotted).getBytes());
}

function ext(id: string, critical: boolean, value: forge.asn1.Asn1): forge.asn1.Asn1 {
  return seq([
    oid(id),
    ...(critical ? [prim(forge.asn1.Type.BOOLEAN, "\xff")] : []),
    prim(forge.asn1.Type.OCTETSTRING, forge.asn1.toDer(value).getBytes()),
  ]);
}

function time(date: Date): forge.asn1.Asn1 {
  // RFC 5280: UTCTime through 2049, GeneralizedTime from 2050.
  return date.getUTCFullYear() < 2050
    ? prim(forge.asn1.Type.UTCTIME, forge.asn1.dateToUtcTime(date))
    : prim(forge.asn1.Type.GENERALIZEDTIME, forge.asn1.dateToGeneralizedTime(date));
}

const SHA256_WITH_RSA = seq([oid("1.2.840.113549.1.1.11"), prim(forge.asn1.Type.NULL, "")]);

// --- bytes ---

function pem(label: string, der: string): string {
  const b64 = btoa(der);
  let body = "";
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + "\n";
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

function bytesToBinary(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return s;
}

function binaryToBytes(s: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function ipv6Bytes(text: string): Uint8Array {
  let h = text;
  const out = new Uint8Array(16);
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(h);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number);
    h = h.slice(0, v4.index) + ((a << 8) | b).toString(16) + ":" + ((c << 8) | d).toString(16);
  }
  const [head, tail] = h.includes("::") ? h.split("::") : [h, null];
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = tail === null
    ? left
    : [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  });
  return out;
}

/** RFC 5952 text: lower-case, longest run of two or more zero groups as `::`. */
function formatIpv6(ip: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((ip[i] << 8) | ip[i + 1]);
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(":");
  return hex.slice(0, best).join(":") + "::" + hex.slice(best + bestLen).join(":");
}
