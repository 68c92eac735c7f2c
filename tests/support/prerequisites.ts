/**
 * The tools some test groups need beyond curl, openssl, python3 and git
 * (which `.ci/run` insists on): Chromium for the dashboard in a browser, and
 * the shells `agentgate env` writes for. A group whose tool is missing is
 * skipped, and `deno task test` (scripts/test.ts) ends with one line per
 * skipped group saying what was skipped and how to get the tool, so a plain
 * run never skips silently.
 *
 * @example
 * ```ts
 * const chromium = prerequisite("chromium");
 * Deno.test({ name: chromium.testName("dashboard in Chromium"), ignore: !chromium.found, fn });
 * ```
 *
 * @module
 */
import { join } from "node:path";

/** One tool a group of tests needs. */
export interface Prerequisite {
  /** The group's name in the skip line. */
  group: string;
  /** The test file the group is in, relative to the repository. */
  file: string;
  /** The executable: a path, or a name looked up on PATH. */
  tool: string;
  found: boolean;
  /** How to get it. */
  how: string;
  /** The one line printed when the group is skipped. */
  line: string;
  /** A test's name: as given when the tool is there, else saying it is skipped and why. */
  testName(name: string): string;
}

/** Whether an executable file `name` is on PATH (or, with a slash, at that path). */
export function onPath(name: string, path = Deno.env.get("PATH") ?? ""): boolean {
  const isExe = (p: string) => {
    try {
      const s = Deno.statSync(p);
      return s.isFile && (Deno.build.os === "windows" || ((s.mode ?? 0) & 0o111) !== 0);
    } catch {
      return false;
    }
  };
  if (name.includes("/")) return isExe(name);
  return path.split(":").filter(Boolean).some((dir) => isExe(join(dir, name)));
}

const APT = (pkg: string) =>
  `install it with apt-get install -y ${pkg}, or run .ci/run, which installs it`;

const KNOWN = {
  chromium: {
    group: "dashboard browser test",
    file: "tests/dashboard_browser_test.ts",
    // AGENTGATE_TEST_CHROMIUM: another binary, or a path that does not exist to try the skip.
    tool: () => Deno.env.get("AGENTGATE_TEST_CHROMIUM") ?? "/usr/bin/chromium",
    how: APT("chromium"),
  },
  zsh: {
    group: "env test with zsh",
    file: "src/cli/env_test.ts",
    tool: () => "zsh",
    how: APT("zsh"),
  },
  fish: {
    group: "env test with fish",
    file: "src/cli/env_test.ts",
    tool: () => "fish",
    how: APT("fish"),
  },
  "redis-server": {
    group: "shared state in Redis (fleet tests)",
    file: "tests/fleet_test.ts",
    // AGENTGATE_TEST_REDIS: another server binary (valkey-server), or a path that does not exist.
    tool: () => Deno.env.get("AGENTGATE_TEST_REDIS") ?? "redis-server",
    how: APT("redis-server"),
  },
  postgres: {
    group: "PostgreSQL audit tests",
    file: "tests/postgres_test.ts",
    // The server binary; AGENTGATE_TEST_PG_BIN (tests/support/postgres.ts) moves it.
    tool: () => `${Deno.env.get("AGENTGATE_TEST_PG_BIN") ?? "/usr/lib/postgresql/15/bin"}/postgres`,
    how: APT("postgresql"),
  },
  pwsh: {
    group: "env test with PowerShell",
    file: "src/cli/env_test.ts",
    tool: () => "pwsh",
    how: "PowerShell is not in Debian (.ci/run does not install it): see " +
      "https://learn.microsoft.com/powershell/scripting/install/installing-powershell-on-linux",
  },
} as const;

/** The tools test groups may be skipped for. */
export type Tool = keyof typeof KNOWN;

/** Every tool, in the order the skip lines are printed. */
export const TOOLS = Object.keys(KNOWN) as Tool[];

/**
 * Whether `tool` is here, and the words for when it is not.
 *
 * @example
 * ```ts
 * prerequisite("zsh").line;
 * // "SKIPPED env test with zsh (src/cli/env_test.ts): zsh not on PATH; install it with …"
 * ```
 */
export function prerequisite(tool: Tool): Prerequisite {
  const k = KNOWN[tool];
  const exe = k.tool();
  const found = onPath(exe);
  const missing = exe.includes("/") ? `${exe} not found` : `${exe} not on PATH`;
  return {
    group: k.group,
    file: k.file,
    tool: exe,
    found,
    how: k.how,
    line: `SKIPPED ${k.group} (${k.file}): ${missing}; ${k.how}`,
    testName: (name) => found ? name : `${name}: SKIPPED, ${missing}; ${k.how}`,
  };
}
