/**
 * A seccomp filter, as the classic-BPF program bubblewrap's `--seccomp FD`
 * loads, that refuses to create Unix-domain sockets (`socket(AF_UNIX, …)`
 * fails with EPERM) and allows every other system call.
 *
 * Why: `run --isolate` gives the command a network namespace whose only way
 * out is agentgate, but a Unix socket on the filesystem (`/var/run/docker.sock`,
 * an ssh or gpg agent, D-Bus, X11) is another door to a process that does
 * have the network. `socketpair`, which connects nothing outside, stays
 * allowed. The same approach as Anthropic's sandbox-runtime, here generated
 * without a C compiler.
 *
 * Architectures: x86-64 (with its x32 and i386 ABIs) and AArch64 (with
 * 32-bit ARM). On i386, `socketcall(SYS_SOCKET, …)` hides the family behind a
 * pointer, so 32-bit programs cannot create sockets at all.
 *
 * @module
 */

const LD_W_ABS = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const RET_K = 0x06; // BPF_RET | BPF_K

const RET_ALLOW = 0x7fff0000;
const EPERM = 1;
const RET_EPERM = 0x00050000 | EPERM;
const AF_UNIX = 1;

// Offsets in struct seccomp_data.
const NR = 0;
const ARCH = 4;
const ARG0_LOW = 16; // args[0], low 32 bits on little-endian machines

const AUDIT_ARCH = {
  x86_64: 0xc000003e,
  i386: 0x40000003,
  aarch64: 0xc00000b7,
  arm: 0x40000028,
} as const;

/** Per architecture: the `socket` system call numbers, and calls denied outright. */
interface ArchRule {
  arch: number;
  socket: number[];
  deny: number[];
}

const RULES: Record<"x86_64" | "aarch64", ArchRule[]> = {
  x86_64: [
    // x32 numbers carry bit 30 (__X32_SYSCALL_BIT).
    { arch: AUDIT_ARCH.x86_64, socket: [41, 0x40000000 + 41], deny: [] },
    // i386: socket(359); socketcall(102) cannot be checked.
    { arch: AUDIT_ARCH.i386, socket: [359], deny: [102] },
  ],
  aarch64: [
    { arch: AUDIT_ARCH.aarch64, socket: [198], deny: [] },
    { arch: AUDIT_ARCH.arm, socket: [281], deny: [] },
  ],
};

type Insn = { code: number; jt: number | string; jf: number | string; k: number } | {
  label: string;
};

/** Assemble instructions with labels into sock_filter structs (8 bytes each). */
function assemble(prog: Insn[]): Uint8Array {
  const labels = new Map<string, number>();
  const code: { code: number; jt: number | string; jf: number | string; k: number }[] = [];
  for (const i of prog) {
    if ("label" in i) labels.set(i.label, code.length);
    else code.push(i);
  }
  const out = new Uint8Array(code.length * 8);
  const view = new DataView(out.buffer);
  code.forEach((i, at) => {
    const rel = (t: number | string) => {
      const n = typeof t === "number" ? t : labels.get(t)! - at - 1;
      if (!(n >= 0 && n < 256)) throw new Error(`jump out of range at ${at}`);
      return n;
    };
    view.setUint16(at * 8, i.code, true);
    view.setUint8(at * 8 + 2, rel(i.jt));
    view.setUint8(at * 8 + 3, rel(i.jf));
    view.setUint32(at * 8 + 4, i.k >>> 0, true);
  });
  return out;
}

/**
 * The filter for the machine's architecture, or null where it is not known
 * (the sandbox then runs without it).
 *
 * @example
 * const bpf = unixSocketFilter("x86_64"); // Uint8Array of sock_filter structs
 */
export function unixSocketFilter(arch: string = Deno.build.arch): Uint8Array | null {
  const rules = RULES[arch as keyof typeof RULES];
  if (!rules) return null;
  const prog: Insn[] = [{ code: LD_W_ABS, jt: 0, jf: 0, k: ARCH }];
  rules.forEach((r, n) => {
    prog.push({ code: JEQ_K, jt: 0, jf: `arch${n + 1}`, k: r.arch });
    prog.push({ code: LD_W_ABS, jt: 0, jf: 0, k: NR });
    for (const nr of r.deny) prog.push({ code: JEQ_K, jt: "deny", jf: 0, k: nr });
    for (const nr of r.socket) prog.push({ code: JEQ_K, jt: "family", jf: 0, k: nr });
    prog.push({ code: RET_K, jt: 0, jf: 0, k: RET_ALLOW });
    prog.push({ label: `arch${n + 1}` });
    // The accumulator must hold the architecture again for the next test.
    if (n + 1 < rules.length) prog.push({ code: LD_W_ABS, jt: 0, jf: 0, k: ARCH });
  });
  prog.push(
    { code: RET_K, jt: 0, jf: 0, k: RET_ALLOW },
    { label: "family" },
    { code: LD_W_ABS, jt: 0, jf: 0, k: ARG0_LOW },
    { code: JEQ_K, jt: "deny", jf: 0, k: AF_UNIX },
    { code: RET_K, jt: 0, jf: 0, k: RET_ALLOW },
    { label: "deny" },
    { code: RET_K, jt: 0, jf: 0, k: RET_EPERM },
  );
  return assemble(prog);
}
