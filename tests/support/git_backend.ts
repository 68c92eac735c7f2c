/**
 * A git repository served over smart HTTP by `git http-backend` (CGI behind
 * a node:http handler), for end-to-end tests of git through agentgate.
 *
 * @module
 */
import type http from "node:http";

const dec = new TextDecoder();

/**
 * A bare git repository with one commit on `main` at `bare` (a path under
 * the returned root, default `repo.git`); returns the root and the commit.
 */
export async function gitRepo(bare = "repo.git"): Promise<{ root: string; sha: string }> {
  const root = await Deno.makeTempDir({ prefix: "agentgate-git-" });
  const git = async (args: string[], cwd = root) => {
    const out = await new Deno.Command("git", {
      args: ["-c", "init.defaultBranch=main", "-c", "user.name=t", "-c", "user.email=t@t", ...args],
      cwd,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) throw new Error(`git ${args.join(" ")}: ${dec.decode(out.stderr)}`);
    return dec.decode(out.stdout).trim();
  };
  await git(["init", "-q", "work"]);
  await git(["commit", "-q", "--allow-empty", "-m", "first"], `${root}/work`);
  const sha = await git(["rev-parse", "HEAD"], `${root}/work`);
  await git(["clone", "-q", "--bare", "work", bare]);
  return { root, sha };
}

/** A CGI adapter: `git http-backend` behind a node:http handler (smart HTTP, protocol v2). */
export function gitHttpBackend(root: string): http.RequestListener {
  return (req, res) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      const body = new Uint8Array(Buffer.concat(chunks));
      const url = new URL(req.url ?? "/", "http://x");
      const child = new Deno.Command("git", {
        args: ["http-backend"],
        env: {
          GIT_PROJECT_ROOT: root,
          GIT_HTTP_EXPORT_ALL: "1",
          PATH_INFO: url.pathname,
          QUERY_STRING: url.search.slice(1),
          REQUEST_METHOD: req.method ?? "GET",
          CONTENT_TYPE: String(req.headers["content-type"] ?? ""),
          CONTENT_LENGTH: String(body.length),
          HTTP_CONTENT_ENCODING: String(req.headers["content-encoding"] ?? ""),
          GIT_PROTOCOL: String(req.headers["git-protocol"] ?? ""),
          REMOTE_ADDR: "127.0.0.1",
        },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const w = child.stdin.getWriter();
      await w.write(body);
      await w.close();
      const out = await child.output();
      const bytes = out.stdout;
      // CGI: headers, an empty line, the body.
      let split = -1;
      for (let i = 0; i + 1 < bytes.length; i++) {
        if (bytes[i] === 10 && bytes[i + 1] === 10) {
          split = i;
          break;
        }
        if (bytes[i] === 10 && bytes[i + 1] === 13 && bytes[i + 2] === 10) {
          split = i + 1;
          break;
        }
      }
      const head = dec.decode(bytes.subarray(0, split));
      const headers: Record<string, string> = {};
      let status = 200;
      for (const line of head.split(/\r?\n/)) {
        const i = line.indexOf(":");
        if (i < 0) continue;
        const name = line.slice(0, i).trim().toLowerCase();
        const value = line.slice(i + 1).trim();
        if (name === "status") status = Number(value.split(" ")[0]);
        else headers[name] = value;
      }
      res.writeHead(status, headers);
      res.end(bytes.subarray(split + 2));
    });
  };
}
