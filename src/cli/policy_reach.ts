/**
 * Whether the command `agentgate run` starts could change the policy: a
 * policy file (or an include) inside the command's working tree, or writable
 * by the user the command runs as — directly, or by replacing it through a
 * writable directory above it. Root can write anything that is not on a
 * read-only mount (CI containers often run everything as root).
 *
 * Why not `access(W_OK)` through `node:fs` `accessSync`: Deno 2.9.6 answers it
 * from the mode bits, not the kernel — as root, a 0444 file is EACCES and
 * `/proc/version` too, where Node 20 (a real access(2)) says writable (both
 * checked). So this reads `stat` and `/proc/self/mountinfo` itself.
 *
 * @module
 */
import { dirname, isAbsolute, relative, resolve } from "node:path";

/** A user and its groups. */
export interface Identity {
  uid: number;
  gids: number[];
}

/** What {@link policyReach} found for one file. */
export interface Reach {
  file: string;
  /** The file lies inside the working directory (symlinks resolved). */
  inTree: boolean;
  /** The path through which the user can change the file (itself or a directory above it), or null. */
  writableVia: string | null;
}

/** This process's user and groups (the command's, since it inherits them); null off POSIX. */
export function currentIdentity(): Identity | null {
  const uid = Deno.uid();
  const gid = Deno.gid();
  if (uid === null || gid === null) return null;
  const gids = [gid];
  try {
    const m = /^Groups:\s*(.*)$/m.exec(Deno.readTextFileSync("/proc/self/status"));
    for (const g of (m?.[1] ?? "").trim().split(/\s+/)) if (g) gids.push(Number(g));
  } catch {
    // Not Linux: the primary group only.
  }
  return { uid, gids };
}

/** Mount points and whether each is read-only (Linux `/proc/self/mountinfo`). */
function mounts(): { point: string; ro: boolean }[] {
  try {
    return Deno.readTextFileSync("/proc/self/mountinfo").split("\n").flatMap((line) => {
      const f = line.split(" ");
      if (f.length < 6) return [];
      const point = f[4].replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
      const sep = f.indexOf("-");
      const superOpts = sep > 0 ? (f[sep + 3] ?? "") : "";
      const ro = f[5].split(",").includes("ro") || superOpts.split(",").includes("ro");
      return [{ point, ro }];
    });
  } catch {
    return [];
  }
}

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

function realOr(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}

/**
 * For each policy file: is it in `cwd`'s tree, and can `who` change it?
 *
 * @example
 * policyReach(["/repo/agentgate.yaml"], "/repo", { uid: 1000, gids: [1000] })
 * // [{ file: "/repo/agentgate.yaml", inTree: true, writableVia: "/repo/agentgate.yaml" }]
 */
export function policyReach(files: string[], cwd: string, who: Identity): Reach[] {
  const mnt = mounts();
  const readOnly = (path: string): boolean => {
    let best: { point: string; ro: boolean } | null = null;
    for (const m of mnt) {
      if (inside(m.point, path) && (!best || m.point.length >= best.point.length)) best = m;
    }
    return best?.ro ?? false;
  };
  const canWrite = (path: string): boolean => {
    let st: Deno.FileInfo;
    try {
      st = Deno.statSync(path);
    } catch {
      return false;
    }
    if (readOnly(realOr(path))) return false;
    if (who.uid === 0) return true;
    const mode = st.mode ?? 0;
    if (st.uid === who.uid) return (mode & 0o200) !== 0;
    if (st.gid !== null && who.gids.includes(st.gid)) return (mode & 0o020) !== 0;
    return (mode & 0o002) !== 0;
  };
  /** `entry` can be renamed away or replaced in `dir` (the sticky bit protects others' entries). */
  const canReplace = (dir: string, entry: string): boolean => {
    if (!canWrite(dir)) return false;
    try {
      const d = Deno.statSync(dir);
      if (((d.mode ?? 0) & 0o1000) === 0 || who.uid === 0 || d.uid === who.uid) return true;
      return Deno.lstatSync(entry).uid === who.uid;
    } catch {
      return false;
    }
  };
  const via = (path: string): string | null => {
    if (canWrite(path)) return path;
    let entry = path;
    for (let dir = dirname(path);; dir = dirname(dir)) {
      if (canReplace(dir, entry)) return dir;
      if (dir === dirname(dir)) return null;
      entry = dir;
    }
  };
  const root = realOr(resolve(cwd));
  return files.map((file) => {
    const abs = resolve(cwd, file);
    const real = realOr(abs);
    return {
      file,
      inTree: inside(resolve(cwd), abs) || inside(root, real),
      // The path as named (a symlink can be swapped) and the file it leads to.
      writableVia: via(abs) ?? (real === abs ? null : via(real)),
    };
  });
}
