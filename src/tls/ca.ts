/**
 * The local certificate authority that signs the leaf certificates of
 * intercepted hosts.
 *
 * Keys are generated natively (`node:crypto`, seconds faster than forge's
 * JavaScript key generation); node-forge assembles and signs the CA
 * certificate once. Leaves are signed with the native WebCrypto key this
 * module imports (see `leaf.ts`).
 *
 * @example
 * ```ts
 * import { loadOrCreateCA } from "./ca.ts";
 * const ca = await loadOrCreateCA(); // $AGENTGATE_HOME or ~/.agentgate
 * console.log(ca.certPath, ca.created);
 * ```
 *
 * @module
 */

import forge from "node-forge";
import { generateKeyPair } from "node:crypto";
import { join, resolve } from "node:path";
import { agentgateHome, expandHome } from "../util/home.ts";

/** File name of the CA certificate inside the CA directory. */
export const CA_CERT_FILE = "ca.pem";
/** File name of the CA private key inside the CA directory. */
export const CA_KEY_FILE = "ca-key.pem";

const DAY_MS = 86_400_000;
/** How far certificates are backdated, so clients with a slow clock accept them. */
export const BACKDATE_MS = 2 * DAY_MS;
const CA_VALIDITY_YEARS = 10;

/** A CA that cannot be loaded or created. Never leads to replacing the files. */
export class CaError extends Error {
  /** Always `"CaError"`, so a log line names the kind of failure. */
  override name = "CaError";
  /**
   * Creates the error.
   *
   * @param message Sentence case, values in quotes, detail after a colon.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * A loaded (or freshly created) certificate authority: its files, its PEMs and
 * what the leaf issuer needs to sign with it.
 */
export interface CertificateAuthority {
  /** Absolute directory holding `ca.pem` and `ca-key.pem`. */
  dir: string;
  /** Absolute path of `ca.pem`. */
  certPath: string;
  /** Absolute path of `ca-key.pem`. */
  keyPath: string;
  /** The CA certificate, PEM (exactly the bytes of `ca.pem`'s certificate block). */
  certPem: string;
  /** The CA private key, PEM. */
  keyPem: string;
  /** True when this call created the files, false when it loaded them. */
  created: boolean;
  /** Subject as text, e.g. `CN=agentgate CA 1a2b3c4d, O=agentgate`. */
  subject: string;
  /**
   * DER of the subject Name, copied byte for byte into each leaf's issuer
   * field: rustls (Deno `fetch`) matches issuer to subject by bytes, not by
   * meaning.
   */
  subjectDer: Uint8Array;
  /** Subject Key Identifier; each leaf's Authority Key Identifier. */
  keyId: Uint8Array;
  /** Serial number, lower-case hex. */
  serialHex: string;
  /** Start of validity (backdated two days at creation). */
  notBefore: Date;
  /** End of validity; no leaf outlives it. */
  notAfter: Date;
  /** SHA-256 fingerprint of the certificate, upper-case hex with colons (as `openssl x509 -fingerprint -sha256`). */
  fingerprint256: string;
  /** Non-extractable WebCrypto key that signs leaves (RSASSA-PKCS1-v1_5, SHA-256). */
  signingKey: CryptoKey;
  /** Things worth telling the user that do not stop the start (e.g. a key readable by others). */
  warnings: string[];
}

/** Options of {@link loadOrCreateCA}. */
export interface CaOptions {
  /** RSA modulus length for a new CA: 2048 (default), 3072 or 4096. */
  keyBits?: number;
  /** Clock, for tests. */
  now?: () => Date;
}

/**
 * The default CA directory: the agentgate home, `$AGENTGATE_HOME` when set,
 * otherwise `~/.agentgate`.
 *
 * @example
 * ```ts
 * defaultCaDir(); // "/home/me/.agentgate"
 * ```
 */
export function defaultCaDir(): string {
  return agentgateHome();
}

export { expandHome };

/**
 * Loads the CA from `dir`, or creates it there when neither file exists.
 *
 * A missing half, a corrupt file, a key that does not match the certificate,
 * a certificate that is not a CA, or an expired CA throws a {@link CaError}
 * naming the file; the files are never replaced, because clients already
 * trust the old certificate.
 *
 * @param dir CA directory; default {@link defaultCaDir}. `~` is expanded.
 *
 * @example
 * ```ts
 * const ca = await loadOrCreateCA("~/.agentgate");
 * if (ca.created) console.log(`Created a CA: trust "${ca.certPath}"`);
 * for (const w of ca.warnings) console.warn(w);
 * ```
 */
export async function loadOrCreateCA(
  dir?: string,
  options: CaOptions = {},
): Promise<CertificateAuthority> {
  const caDir = dir === undefined ? defaultCaDir() : resolve(expandHome(dir));
  const certPath = join(caDir, CA_CERT_FILE);
  const keyPath = join(caDir, CA_KEY_FILE);
  const now = options.now ?? (() => new Date());
  await assertDirOrAbsent(caDir);

  // A process creating the CA links the key before the certificate; a few
  // short retries let a concurrent start see the pair complete instead of
  // reporting a missing half.
  for (let attempt = 0;; attempt++) {
    const [certText, keyText] = await Promise.all([
      readIfExists(certPath, "CA certificate"),
      readIfExists(keyPath, "CA key"),
    ]);
    if (certText !== null && keyText !== null) {
      return await loadPair(caDir, certPath, keyPath, certText, keyText, now());
    }
    if (certText === null && keyText === null) {
      if (attempt >= 3) {
        throw new CaError(`CA files in "${caDir}" kept changing while being created: start again`);
      }
      const made = await createPair(caDir, certPath, keyPath, options, now());
      if (made) return made;
      continue; // another process won the race: load what it wrote
    }
    if (attempt < 6) {
      await new Promise((r) => setTimeout(r, 20));
      continue;
    }
    const [have, missing] = certText === null ? [keyPath, certPath] : [certPath, keyPath];
    throw new CaError(
      `Found "${have}" but not "${missing}": restore the missing file, or delete "${have}" ` +
        `to create a new CA (clients must then trust the new one)`,
    );
  }
}

async function assertDirOrAbsent(dir: string): Promise<void> {
  try {
    if ((await Deno.stat(dir)).isDirectory) return;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw new CaError(`Cannot use CA directory "${dir}": ${(err as Error).message}`, {
      cause: err,
    });
  }
  throw new CaError(`CA directory "${dir}" is not a directory`);
}

async function readIfExists(path: string, what: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    if (err instanceof Deno.errors.IsADirectory) {
      throw new CaError(`${what} "${path}" is a directory, not a file`, { cause: err });
    }
    throw new CaError(`Cannot read ${what} "${path}": ${(err as Error).message}`, { cause: err });
  }
}

async function loadPair(
  dir: string,
  certPath: string,
  keyPath: string,
  certText: string,
  keyText: string,
  now: Date,
): Promise<CertificateAuthority> {
  const certPem = firstPemBlock(certText, "CERTIFICATE");
  if (!certPem) {
    throw new CaError(`CA certificate "${certPath}" is corrupt: no PEM "CERTIFICATE" block`);
  }
  let cert: forge.pki.Certificate;
  try {
    cert = forge.pki.certificateFromPem(certPem);
  } catch (err) {
    const msg = (err as Error).message;
    if (/OID is not RSA/i.test(msg)) {
      throw new CaError(`CA certificate "${certPath}" is not supported: its key is not RSA`, {
        cause: err,
      });
    }
    throw new CaError(`CA certificate "${certPath}" is corrupt: ${msg}`, { cause: err });
  }

  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(keyText)) {
    throw new CaError(`CA key "${keyPath}" is encrypted: agentgate needs an unencrypted key`);
  }
  const keyPem = firstPemBlock(keyText, "PRIVATE KEY") ?? firstPemBlock(keyText, "RSA PRIVATE KEY");
  if (!keyPem) {
    const other = /-----BEGIN ([A-Z ]*PRIVATE KEY)-----/.exec(keyText)?.[1];
    throw new CaError(
      other
        ? `CA key "${keyPath}" is not supported: "${other}" (agentgate needs an RSA key)`
        : `CA key "${keyPath}" is corrupt: no PEM "PRIVATE KEY" block`,
    );
  }
  let key: forge.pki.rsa.PrivateKey;
  try {
    key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
    if (!key?.n || !key.d) throw new Error("not an RSA private key");
  } catch (err) {
    throw new CaError(`CA key "${keyPath}" is corrupt: ${(err as Error).message}`, { cause: err });
  }

  const pub = cert.publicKey as forge.pki.rsa.PublicKey;
  if (!pub.n.equals(key.n) || !pub.e.equals(key.e)) {
    throw new CaError(
      `CA key "${keyPath}" does not match certificate "${certPath}": restore the matching pair, ` +
        `or delete both files to create a new CA`,
    );
  }
  if (key.n.bitLength() < 2048) {
    throw new CaError(
      `CA key "${keyPath}" is too weak: RSA "${key.n.bitLength()}" bits, 2048 or more needed`,
    );
  }
  const bc = cert.getExtension("basicConstraints") as { cA?: boolean } | null;
  if (!bc?.cA) {
    throw new CaError(
      `CA certificate "${certPath}" is not a CA certificate: basicConstraints "CA" is not "true"`,
    );
  }
  if (cert.validity.notAfter.getTime() <= now.getTime()) {
    throw new CaError(
      `CA certificate "${certPath}" expired on "${cert.validity.notAfter.toISOString()}": ` +
        `delete "${certPath}" and "${keyPath}" to create a new CA`,
    );
  }

  let signingKey: CryptoKey;
  try {
    signingKey = await importSigningKey(key);
    // A key whose public half matches but whose private half is damaged
    // would sign leaves that no client accepts: prove it signs correctly now.
    await assertSignsFor(signingKey, certPem);
  } catch (err) {
    throw new CaError(`CA key "${keyPath}" is corrupt: ${(err as Error).message}`, { cause: err });
  }

  const warnings: string[] = [];
  if (Deno.build.os !== "windows") {
    const mode = (await Deno.stat(keyPath)).mode;
    if (mode !== null && (mode & 0o077) !== 0) {
      warnings.push(
        `CA key "${keyPath}" is readable by other users (mode "${octal(mode)}"): ` +
          `run chmod 600 "${keyPath}"`,
      );
    }
  }
  const daysLeft = Math.floor((cert.validity.notAfter.getTime() - now.getTime()) / DAY_MS);
  if (daysLeft < 100) {
    warnings.push(
      `CA certificate "${certPath}" expires in "${daysLeft}" days: plan to create a new CA`,
    );
  }
  return describe(dir, certPath, keyPath, certPem, keyPem, signingKey, false, warnings);
}

/** Returns null when another process created the pair first. */
async function createPair(
  dir: string,
  certPath: string,
  keyPath: string,
  options: CaOptions,
  now: Date,
): Promise<CertificateAuthority | null> {
  const keyBits = options.keyBits ?? 2048;
  if (![2048, 3072, 4096].includes(keyBits)) {
    throw new CaError(`CA key size "${keyBits}" is not supported: use 2048, 3072 or 4096`);
  }
  await ensureDir(dir);

  const { privateKey: keyPem, publicKey: publicPem } = await new Promise<
    { privateKey: string; publicKey: string }
  >((ok, fail) =>
    generateKeyPair("rsa", {
      modulusLength: keyBits,
      publicExponent: 65537,
      publicKeyEncoding: { type: "spki", format: "pem" },
      privateKeyEncoding: { type: "pkcs8", format: "pem" },
    }, (err, publicKey, privateKey) => err ? fail(err) : ok({ publicKey, privateKey }))
  );
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicPem);
  cert.serialNumber = randomSerialHex();
  cert.validity.notBefore = new Date(now.getTime() - BACKDATE_MS);
  const notAfter = new Date(now.getTime());
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CA_VALIDITY_YEARS);
  cert.validity.notAfter = notAfter;
  // A per-install suffix tells two agentgate CAs apart in a trust store.
  const suffix = randomHex(4);
  const name = [
    { shortName: "CN", value: `agentgate CA ${suffix}`, valueTagClass: forge.asn1.Type.UTF8 },
    { shortName: "O", value: "agentgate", valueTagClass: forge.asn1.Type.UTF8 },
  ] as unknown as forge.pki.CertificateField[]; // @types/node-forge types valueTagClass too narrowly
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    // pathLen 0: this CA signs leaves only, never another CA.
    { name: "basicConstraints", cA: true, pathLenConstraint: 0, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
    // OpenSSL's X509_STRICT (Python 3.13's default) wants an AKI everywhere.
    { name: "authorityKeyIdentifier", keyIdentifier: true },
  ]);
  cert.sign(key, forge.md.sha256.create());
  const certPem = normalizePem(forge.pki.certificateToPem(cert));

  const won = await publishPair(dir, certPath, keyPath, certPem, keyPem);
  if (!won) return null;
  const signingKey = await importSigningKey(key);
  return describe(dir, certPath, keyPath, certPem, keyPem, signingKey, true, []);
}

async function ensureDir(dir: string): Promise<void> {
  let existed = true;
  try {
    const info = await Deno.stat(dir);
    if (!info.isDirectory) throw new CaError(`CA directory "${dir}" is not a directory`);
    return;
  } catch (err) {
    if (err instanceof CaError) throw err;
    if (!(err instanceof Deno.errors.NotFound)) {
      throw new CaError(`Cannot use CA directory "${dir}": ${(err as Error).message}`, {
        cause: err,
      });
    }
    existed = false;
  }
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    // mkdir's mode passes through the umask; the key's directory is private
    // whatever the umask says. A directory the user made is left as it is.
    if (!existed && Deno.build.os !== "windows") await Deno.chmod(dir, 0o700);
  } catch (err) {
    throw new CaError(`Cannot create CA directory "${dir}": ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/**
 * Writes both files under temporary names and hard-links them into place, so
 * no reader ever sees a half-written file and, of two processes creating a CA
 * at once, exactly one wins. Returns false when the other one won.
 */
async function publishPair(
  dir: string,
  certPath: string,
  keyPath: string,
  certPem: string,
  keyPem: string,
): Promise<boolean> {
  const tag = `${Deno.pid}-${randomHex(4)}`;
  const tmpKey = join(dir, `.${CA_KEY_FILE}.${tag}.tmp`);
  const tmpCert = join(dir, `.${CA_CERT_FILE}.${tag}.tmp`);
  try {
    await Deno.writeTextFile(tmpKey, keyPem, { createNew: true, mode: 0o600 });
    await Deno.writeTextFile(tmpCert, certPem, { createNew: true, mode: 0o644 });
    if (Deno.build.os !== "windows") {
      await Deno.chmod(tmpKey, 0o600);
      await Deno.chmod(tmpCert, 0o644);
    }
    if (!(await linkNew(tmpKey, keyPath, keyPem, 0o600))) return false;
    if (!(await linkNew(tmpCert, certPath, certPem, 0o644))) {
      throw new CaError(
        `Found "${certPath}" written by another process while creating "${keyPath}": ` +
          `delete both files and start again`,
      );
    }
    return true;
  } catch (err) {
    if (err instanceof CaError) throw err;
    throw new CaError(`Cannot write the CA in "${dir}": ${(err as Error).message}`, { cause: err });
  } finally {
    await Deno.remove(tmpKey).catch(() => {});
    await Deno.remove(tmpCert).catch(() => {});
  }
}

async function linkNew(tmp: string, path: string, text: string, mode: number): Promise<boolean> {
  try {
    await Deno.link(tmp, path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) return false;
    // File systems without hard links: an exclusive create still never
    // overwrites, it only loses atomicity of the content.
    try {
      await Deno.writeTextFile(path, text, { createNew: true, mode });
      return true;
    } catch (err2) {
      if (err2 instanceof Deno.errors.AlreadyExists) return false;
      throw err2;
    }
  }
}

async function importSigningKey(key: forge.pki.rsa.PrivateKey): Promise<CryptoKey> {
  const pkcs8 = forge.asn1.toDer(
    forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(key)),
  ).getBytes();
  return await crypto.subtle.importKey(
    "pkcs8",
    binaryToBytes(pkcs8),
    { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    false,
    ["sign"],
  );
}

async function assertSignsFor(signingKey: CryptoKey, certPem: string): Promise<void> {
  const cert = forge.pki.certificateFromPem(certPem);
  const spki = forge.asn1.toDer(forge.pki.publicKeyToAsn1(cert.publicKey)).getBytes();
  const alg = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  const verifyKey = await crypto.subtle.importKey("spki", binaryToBytes(spki), alg, false, [
    "verify",
  ]);
  const probe = new TextEncoder().encode("agentgate CA key check");
  const sig = await crypto.subtle.sign(alg, signingKey, probe);
  if (!(await crypto.subtle.verify(alg, verifyKey, sig, probe))) {
    throw new CaError("its signatures do not verify with the certificate's public key");
  }
}

async function describe(
  dir: string,
  certPath: string,
  keyPath: string,
  certPem: string,
  keyPem: string,
  signingKey: CryptoKey,
  created: boolean,
  warnings: string[],
): Promise<CertificateAuthority> {
  // Parsed again even right after creation: only a parsed certificate keeps
  // the DER structure (tbsCertificate) that the subject bytes come from.
  const cert = forge.pki.certificateFromPem(certPem);
  const tbs = (cert as unknown as { tbsCertificate: forge.asn1.Asn1 }).tbsCertificate;
  const fields = tbs.value as forge.asn1.Asn1[];
  // The version field [0] is optional; subject follows serial, algorithm,
  // issuer and validity.
  const offset = fields[0].tagClass === forge.asn1.Class.CONTEXT_SPECIFIC ? 1 : 0;
  const subjectDer = binaryToBytes(forge.asn1.toDer(fields[4 + offset]).getBytes());

  const ski = cert.getExtension("subjectKeyIdentifier") as { subjectKeyIdentifier?: string } | null;
  // An imported CA without SKI: RFC 5280 method 1, as OpenSSL computes it.
  const keyIdHex = ski?.subjectKeyIdentifier ?? cert.generateSubjectKeyIdentifier().toHex();

  const der = binaryToBytes(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes());
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", der));
  return {
    dir,
    certPath,
    keyPath,
    certPem,
    keyPem,
    created,
    subject: cert.subject.attributes.map((a: forge.pki.CertificateField) =>
      `${a.shortName ?? a.type}=${a.value}`
    ).join(", "),
    subjectDer,
    keyId: hexToBytes(keyIdHex),
    serialHex: cert.serialNumber.toLowerCase(),
    notBefore: cert.validity.notBefore,
    notAfter: cert.validity.notAfter,
    fingerprint256: [...digest].map((b) => b.toString(16).padStart(2, "0").toUpperCase()).join(
      ":",
    ),
    signingKey,
    warnings,
  };
}

function firstPemBlock(text: string, label: string): string | null {
  const m = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----`).exec(text);
  return m ? normalizePem(m[0]) : null;
}

function normalizePem(pem: string): string {
  return pem.replace(/\r\n/g, "\n").trim() + "\n";
}

/** 16 random bytes as a positive DER INTEGER with no leading zero byte. */
export function randomSerialHex(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] & 0x7f) | 0x40;
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function randomHex(n: number): string {
  return [...crypto.getRandomValues(new Uint8Array(n))]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

function octal(mode: number): string {
  return "0" + (mode & 0o777).toString(8);
}

function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function binaryToBytes(s: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
