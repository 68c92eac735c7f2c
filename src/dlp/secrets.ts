/**
 * Masking credentials in what agentgate stores and shows (the audit row, log
 * lines, `/_/api` answers): three detectors that do not depend on a list of
 * header names alone.
 *
 * - **Key names** ({@link isSecretName}): header names, query keys, path
 *   parameters and JSON keys, case-insensitive, camelCase and separators
 *   normalised — `*token*`, `*secret*`, `*passw*`, `*passphrase*`, `*auth*`
 *   (not "author"/"authority"), `*session*`, `*key*`, `*credential*`,
 *   `*signature*`, `*cookie*`, `*jwt*`, `*assertion*`, `*csrf*`, and the words
 *   `pwd`, `pw`, `pass`, `sig`, `otp`, `pin`, `sid`, `hmac`, `code` (alone or
 *   as an OTP/verification/device code).
 * - **Value shapes** ({@link maskText}): the DLP secret and personal-data
 *   detectors (API keys, tokens, JWTs, private keys, card numbers), tokens
 *   after an HTTP auth scheme (`Bearer`, `Basic`, `Token`, …), passwords in
 *   URL userinfo, and `name=value` / `"name": "value"` pairs with a secret name.
 * - **Path tokens** ({@link maskPath}): capability URLs of known services
 *   (Telegram `/bot<id>:<token>/`, Slack `/services/T…/B…/<secret>`, Discord
 *   `/webhooks/<id>/<token>`, Teams `/IncomingWebhook/<secret>/`, Zapier
 *   `/hooks/catch/<id>/<secret>`), a token-like segment after a segment named
 *   like a secret or a hook (`/token/<x>`, `/webhook/<x>`), and long
 *   high-entropy segments.
 *
 * Masks are idempotent (masking a masked value changes nothing), so stored
 * rows can be masked again when they are served.
 *
 * @module
 */
import { compileScanner, type Scanner } from "./scanner.ts";

/** The mask written instead of a value found by its name. */
export const MASK = "[REDACTED]";

/** Detectors whose matches are never stored: secrets and personal data, not threat patterns. */
const SHAPE_DETECTORS = [
  "aws_access_key",
  "aws_secret_key",
  "github_token",
  "private_key",
  "openai_key",
  "anthropic_key",
  "slack_token",
  "jwt",
  "stripe_key",
  "google_api_key",
  "credit_card",
  "us_ssn",
];

let shapes: Scanner | null = null;
function shapeScanner(): Scanner {
  return shapes ??= compileScanner({ detectors: SHAPE_DETECTORS, maxFindings: 100 });
}

/**
 * A pure string function with its recent answers kept: header names, header
 * values (`application/json`, a user agent), paths and reasons repeat from
 * request to request, and masking runs for every audit row on the event
 * loop. The cache holds at most `max` entries of inputs up to 512
 * characters and is cleared when full (an attacker sending unique values
 * only gets the uncached cost).
 */
function memo<A extends string>(fn: (s: A) => string, max = 4096): (s: A) => string {
  const cache = new Map<string, string>();
  return (s: A) => {
    if (s.length > 512) return fn(s);
    let v = cache.get(s);
    if (v === undefined) {
      v = fn(s);
      if (cache.size >= max) cache.clear();
      cache.set(s, v);
    }
    return v;
  };
}

// --- key names ---------------------------------------------------------------

/**
 * The words of a key name: camelCase split, separators dropped, lower-case.
 *
 * @example
 * nameWords("X-AccessToken") // ["x", "access", "token"]
 * nameWords("XAuthToken") // ["x", "auth", "token"]
 */
export function nameWords(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w !== "");
}

/** Substrings of the joined words that name a secret. */
const SECRET_PART =
  /token|secret|passw|passphrase|credential|signature|cookie|jwt|bearer|assertion|session|sessid|csrf|xsrf|apikey|auth(?!or(?!iz))|key/;
/** Words that name a secret on their own. */
const SECRET_WORDS = new Set([
  "pwd",
  "pw",
  "pass",
  "sig",
  "otp",
  "totp",
  "pin",
  "sid",
  "hmac",
  "mfa",
  "cred",
  "creds",
  "psk",
]);
/** First words that make a trailing "code" a secret (an OTP, a device or verification code). */
const CODE_KINDS = new Set([
  "otp",
  "mfa",
  "totp",
  "verification",
  "verify",
  "device",
  "user",
  "recovery",
  "reset",
  "confirmation",
  "confirm",
  "login",
  "activation",
  "invite",
  "sms",
  "email",
  "security",
  "backup",
  "pairing",
  "grant",
]);
/** Names that contain "key" (or another part above) and are known not to hold a secret. */
const NOT_SECRET = new Set([
  "keyword",
  "keywords",
  "keyboard",
  "keyid",
  "publickey",
  "idempotencykey",
  "sortkey",
  "cachekey",
  "monkey",
  "turkey",
  "hockey",
  "jockey",
  "whiskey",
  "donkey",
]);

/**
 * Whether a header name, query key, path parameter or JSON key names a
 * secret (its value is then masked whatever it looks like).
 *
 * @example
 * isSecretName("X-Forwarded-Authorization") // true
 * isSecretName("refreshToken") // true
 * isSecretName("code") // true
 * isSecretName("x-request-id") // false
 * isSecretName("author") // false
 */
export function isSecretName(name: string): boolean {
  return secretNames(name) === "1";
}

const secretNames = memo((name: string) => classifyName(name) ? "1" : "0");

/** Every part and word above, for a quick no (most names hold none of them). */
const ANY_PART =
  /token|secret|pass|credential|signature|cookie|jwt|bearer|assertion|sess|csrf|xsrf|auth|key|pw|sig|otp|pin|sid|hmac|mfa|cred|psk|code/i;

function classifyName(name: string): boolean {
  if (!ANY_PART.test(name)) return false;
  const words = nameWords(name);
  if (words.length === 0) return false;
  const joined = words.join("");
  if (NOT_SECRET.has(joined)) return false;
  if (SECRET_PART.test(joined)) return true;
  for (const w of words) if (SECRET_WORDS.has(w)) return true;
  const last = words[words.length - 1];
  return last === "code" && (words.length === 1 || CODE_KINDS.has(words[0]));
}

// --- value shapes ------------------------------------------------------------

/** Schemes whose credential is masked whatever it looks like. */
const ALWAYS_SCHEMES = new Set([
  "bearer",
  "basic",
  "digest",
  "negotiate",
  "ntlm",
  "aws4-hmac-sha256",
  "sharedkey",
  "sharedaccesssignature",
  "hoba",
  "mutual",
  "dpop",
  "mac",
  "oauth",
  "vapid",
  "gnap",
  "privatetoken",
]);
/** An auth scheme and the credential after it. */
const SCHEME =
  /\b(Bearer|Basic|Digest|Negotiate|NTLM|AWS4-HMAC-SHA256|SharedKey|SharedAccessSignature|HOBA|Mutual|DPoP|MAC|OAuth|vapid|GNAP|PrivateToken|Token|Bot|Key|ApiKey|Api-Key|SSWS|Splunk|GenieKey|Klaviyo-API-Key|sso-key)([ \t]+)([^\s,;"']+)/gi;
/** A password (or a token) in a URL's userinfo. */
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@"'<>]+)@/gi;
/** `name=value` in text (query strings, form bodies, `Credential=…` parameters, log lines). */
const PAIR = /(^|[^A-Za-z0-9_.-])([A-Za-z_][A-Za-z0-9_.-]{0,63})=([^&\s"',;)\]}]+)/g;
/** `"name": "value"` in JSON text. */
const JSON_PAIR = /"([^"\\]{1,64})"(\s*:\s*)"((?:[^"\\]|\\.)*)"/g;
/** Telegram bot tokens: `bot<id>:<secret>` in a URL path, or `<id>:<35 characters>` alone. */
const TELEGRAM = /\b(bot)?(\d{4,12}):([A-Za-z0-9_-]{30,})/g;
/** Discord webhooks: `/webhooks/<id>/<token>`. */
const DISCORD = /(\/webhooks\/\d{5,})\/([A-Za-z0-9_-]{20,})/g;
/** Slack webhooks without their host: `/services/T…/B…/<secret>` (also workflows, triggers). */
const SLACK_PATH =
  /(\/(?:services|workflows|triggers)\/T[A-Z0-9]{6,}(?:\/[A-Z][A-Z0-9]{6,})*(?:\/\d+)?)\/([A-Za-z0-9]{16,})/g;

/** Shannon entropy of a string, in bits per character. */
function entropy(s: string): number {
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}

/**
 * Whether a word looks like a generated credential: 16+ token characters of
 * at least two kinds (letters of both cases, digits, symbols) and high
 * entropy — not a word, a date or a version.
 *
 * @example
 * looksLikeToken("a1B2c3D4e5F6g7H8i9J0") // true
 * looksLikeToken("expired") // false
 */
export function looksLikeToken(s: string, minLength = 16): boolean {
  if (s.length < minLength || s.length > 4096) return false;
  if (!/^[A-Za-z0-9\-._~+/=:%]+$/.test(s)) return false;
  let kinds = 0;
  if (/[a-z]/.test(s)) kinds++;
  if (/[A-Z]/.test(s)) kinds++;
  if (/[0-9]/.test(s)) kinds++;
  if (/[\-._~+/=:%]/.test(s)) kinds++;
  return kinds >= 2 && entropy(s) >= 3;
}

/**
 * Text with every credential found by its shape masked: the DLP secret and
 * personal-data detectors (`[REDACTED:<detector>]`), the credential after an
 * auth scheme, URL userinfo, values of secret-named `name=value` and JSON
 * pairs, and known service tokens. Readable text stays as it is.
 *
 * @example
 * maskText("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln") // "Bearer [REDACTED]"
 * maskText("upstream https://bob:hunter2@example.com failed") // "upstream https://[REDACTED]@example.com failed"
 * maskText("application/json") // "application/json"
 */
export function maskText(text: string): string {
  return text.length < 6 ? text : maskTextCached(text);
}

const maskTextCached = memo(maskTextUncached);

function maskTextUncached(text: string): string {
  let out = text;
  const scanner = shapeScanner();
  const found = scanner.scan(out);
  if (found.length) out = scanner.redact(out, found);
  out = out.replace(SCHEME, (all, scheme: string, sp: string, cred: string) => {
    if (cred.startsWith("[REDACTED")) return all;
    // In running text "Bearer token" or "Bearer <token>" is prose, not a credential.
    const always = ALWAYS_SCHEMES.has(scheme.toLowerCase()) && cred.length >= 4 &&
      !/^[a-z]+$/.test(cred) && !cred.startsWith("<");
    return always || looksLikeToken(cred, 12) ? `${scheme}${sp}${MASK}` : all;
  });
  if (out.includes("@")) out = out.replace(USERINFO, (_all, scheme: string) => `${scheme}${MASK}@`);
  if (out.includes("=")) {
    out = out.replace(
      PAIR,
      (all, pre: string, name: string, value: string) =>
        isSecretName(name) && !value.startsWith("[REDACTED") ? `${pre}${name}=${MASK}` : all,
    );
  }
  if (out.includes('"')) {
    out = out.replace(
      JSON_PAIR,
      (all, name: string, colon: string, value: string) =>
        isSecretName(name) && value !== "" && !value.startsWith("[REDACTED")
          ? `"${name}"${colon}"${MASK}"`
          : all,
    );
  }
  if (out.includes(":")) {
    out = out.replace(
      TELEGRAM,
      (all, bot: string | undefined, id: string, secret: string) =>
        bot || (id.length >= 6 && secret.length === 35) ? `${bot ?? ""}${id}:${MASK}` : all,
    );
  }
  if (out.includes("/")) {
    out = out.replace(DISCORD, (_all, head: string) => `${head}/${MASK}`);
    out = out.replace(SLACK_PATH, (_all, head: string) => `${head}/${MASK}`);
  }
  return out;
}

/**
 * A header value as it may be stored: masked whole when the name is a
 * secret's, else with credentials found by their shape masked.
 *
 * @example
 * maskHeaderValue("x-passphrase", "correct horse") // "[REDACTED]"
 * maskHeaderValue("x-upstream", "Bearer abcd1234efgh") // "Bearer [REDACTED]"
 */
export function maskHeaderValue(name: string, value: string): string {
  if (isSecretName(name)) return MASK;
  // A value that is an auth scheme and its credential is a credential, whatever the name.
  const m = /^\s*([A-Za-z0-9-]+)[ \t]+\S/.exec(value);
  if (m && ALWAYS_SCHEMES.has(m[1].toLowerCase())) return `${m[1]} ${MASK}`;
  return maskText(value);
}

/**
 * Headers with secret values masked (see {@link maskHeaderValue}).
 *
 * @example
 * maskHeaders({ authorization: "Bearer sk-1", accept: "*\/*" })
 * // { authorization: "[REDACTED]", accept: "*\/*" }
 */
export function maskHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k in headers) out[k] = maskHeaderValue(k, headers[k]);
  return out;
}

function decodeComponent(s: string): string {
  if (!s.includes("%") && !s.includes("+")) return s;
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return s;
  }
}

/**
 * A raw query string with secrets masked: the value of a parameter with a
 * secret name, and a whole parameter whose (decoded) value or name carries a
 * credential by its shape. Separators and other parameters stay as sent.
 *
 * @example
 * maskQuery("accessToken=abc&alt=sse") // "accessToken=[REDACTED]&alt=sse"
 * maskQuery("q=ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8") // "q=[REDACTED]"
 */
export function maskQuery(query: string): string {
  if (query === "") return query;
  return query.split(/([&;])/).map((part, i) => {
    if (i % 2 === 1 || part === "") return part;
    const eq = part.indexOf("=");
    const rawName = eq === -1 ? part : part.slice(0, eq);
    const name = decodeComponent(rawName);
    if (eq === -1) return maskText(name) === name ? part : MASK;
    const rawValue = part.slice(eq + 1);
    if (rawValue.startsWith(MASK)) return part;
    if (isSecretName(name)) return `${rawName}=${MASK}`;
    if (maskText(name) !== name) return `${MASK}=${MASK}`;
    const value = decodeComponent(rawValue);
    return maskText(value) === value ? part : `${rawName}=${MASK}`;
  }).join("");
}

/** Segment names after which a token-like segment is a secret. */
const HOOK_SEGMENT = /^(web)?hooks?$|^incomingwebhook$/i;

function maskSegment(seg: string): string {
  if (seg === "" || seg.startsWith("[REDACTED")) return seg;
  let s = seg;
  // Path parameters (`;jsessionid=…`): masked by name.
  const semi = s.indexOf(";");
  if (semi !== -1) {
    s = s.slice(0, semi) + s.slice(semi).replace(
      /;([^;=]*)=([^;]*)/g,
      (all, k: string) => isSecretName(decodeComponent(k)) ? `;${k}=${MASK}` : all,
    );
  }
  return s;
}

/**
 * A request path with capability tokens masked, for the audit's `path` and
 * every log line (decisions still see the real path): known service URLs,
 * a token-like segment after a segment named like a secret or a hook, long
 * high-entropy segments, path parameters with secret names, and anything
 * {@link maskText} finds. `host` adds what only a host identifies
 * (`hooks.slack.com`: the last segment).
 *
 * @example
 * maskPath("/bot123456:AAHk3xM9f1Yq8ZrT2vW5bN7cL0pQ4sD6eF8/sendMessage")
 * // "/bot123456:[REDACTED]/sendMessage"
 * maskPath("/api/webhooks/123456789012/AbCdEf_token-123456789012345") // "/api/webhooks/123456789012/[REDACTED]"
 * maskPath("/v1/chat/completions") // "/v1/chat/completions"
 */
export function maskPath(path: string, host?: string): string {
  if (path.length < 8) return path;
  return host === "hooks.slack.com" ? maskPathUncached(path, host) : maskPathCached(path);
}

const maskPathCached = memo((path: string) => maskPathUncached(path));

function maskPathUncached(path: string, host?: string): string {
  const segs = path.split("/");
  for (let i = 1; i < segs.length; i++) {
    const seg = segs[i];
    if (seg === "" || seg.startsWith("[REDACTED")) continue;
    const prev = decodeComponent(segs[i - 1].split(";")[0]);
    const plain = decodeComponent(seg.split(";")[0]);
    const tg = /^bot(\d{4,12}):[A-Za-z0-9_-]{30,}$/.exec(plain);
    if (tg) {
      // The bot's id is public; the part after the colon is its secret.
      segs[i] = `bot${tg[1]}:${MASK}`;
      continue;
    }
    // Zapier: /hooks/catch/<account>/<secret>/
    if (i >= 4 && segs[i - 2] === "catch" && segs[i - 3] === "hooks" && /^\d+$/.test(prev)) {
      segs[i] = MASK;
      continue;
    }
    if (
      looksLikeToken(plain, 8) && i > 1 && prev !== "" && !prev.startsWith("[REDACTED") &&
        (HOOK_SEGMENT.test(prev) || isSecretName(prev)) ||
      plain.length >= 32 && looksLikeToken(plain, 32) && /[A-Z]/.test(plain) &&
        /[a-z]/.test(plain) && /[0-9]/.test(plain) && entropy(plain) >= 4
    ) {
      segs[i] = MASK;
      continue;
    }
    segs[i] = maskSegment(seg);
  }
  if (host === "hooks.slack.com" && segs.length > 3) {
    const last = segs.length - 1;
    if (segs[last] !== "" && !segs[last].startsWith("[REDACTED")) segs[last] = MASK;
  }
  return maskText(segs.join("/"));
}
