/**
 * Notices when policy files change, by polling their metadata.
 *
 * Why not `Deno.watchFs`: on Linux, Deno 2.9.6's watcher thread opens (and
 * closes) every file it reports an event for, which Node's `fs.watch` does not
 * (both checked with strace). Closing any descriptor of a file drops every
 * POSIX lock the process holds on it (fcntl semantics), and the audit database
 * usually sits next to the policy it records: the proxy's SQLite locks on
 * `audit.db-shm` vanished after its own writes, the next reader in another
 * process (`agentgate report`, the tests) found the shared memory "unused" and
 * truncated it, and the proxy died of SIGBUS on its mapping. `stat` opens
 * nothing, and a few stats per interval cost nothing measurable.
 *
 * A change is the inode, size, mtime or ctime of a file changing, or the file
 * appearing or disappearing; editors that save by renaming and Kubernetes
 * ConfigMap symlink swaps (stat follows the link) both show up as a new inode.
 *
 * @module
 */

/** Options for {@link watchFiles}. */
export interface WatchOptions {
  /** How often the files are checked (default 500 ms). */
  intervalMs?: number;
  /** Quiet time after the last change before `onChange` runs (default 250 ms). */
  settleMs?: number;
}

/** A running watch; `close()` stops it. */
export interface FileWatch {
  /** Checks completed so far, the first (the baseline) included. */
  readonly polls: number;
  close(): void;
}

async function signature(path: string): Promise<string> {
  try {
    const s = await Deno.stat(path);
    return `${s.ino}:${s.size}:${s.mtime?.getTime()}:${s.ctime?.getTime()}`;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "missing";
    return `error:${(e as Error).name}`;
  }
}

/**
 * Call `onChange` (with the paths that changed) once the given files change
 * and then stay unchanged for `settleMs`. The first check, at once, is the
 * baseline: what is loaded now.
 *
 * @example
 * const watch = watchFiles(["agentgate.yaml"], () => reload());
 * watch.close();
 */
export function watchFiles(
  files: string[],
  onChange: (changed: string[]) => void,
  opts: WatchOptions = {},
): FileWatch {
  const intervalMs = opts.intervalMs ?? 500;
  const settleMs = opts.settleMs ?? 250;
  let known: string[] | null = null;
  const pending = new Set<string>();
  let closed = false;
  let polls = 0;
  let poll: ReturnType<typeof setTimeout> | undefined;
  let settle: ReturnType<typeof setTimeout> | undefined;

  const check = async () => {
    const sigs = await Promise.all(files.map(signature));
    if (closed) return;
    polls++;
    const changed = known ? files.filter((_, i) => known![i] !== sigs[i]) : [];
    known = sigs;
    if (changed.length) {
      for (const f of changed) pending.add(f);
      clearTimeout(settle);
      settle = setTimeout(() => {
        const paths = [...pending];
        pending.clear();
        onChange(paths);
      }, settleMs);
    }
    poll = setTimeout(check, intervalMs);
  };
  void check();

  return {
    get polls() {
      return polls;
    },
    close() {
      closed = true;
      clearTimeout(poll);
      clearTimeout(settle);
    },
  };
}
