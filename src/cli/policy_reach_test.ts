import assert from "node:assert/strict";
import { policyReach } from "./policy_reach.ts";

Deno.test({
  name: "policy reach: in the working tree, writable directly or through a directory above",
  // chown needs root; CI containers run tests as root, which is also the case that matters.
  ignore: Deno.build.os !== "linux" || Deno.uid() !== 0,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "agentgate-reach-" });
    const other = await Deno.makeTempDir({ prefix: "agentgate-reach-cwd-" });
    const file = `${dir}/agentgate.yaml`;
    const agent = { uid: 4242, gids: [4242] };
    try {
      await Deno.writeTextFile(file, "version: 1\n");
      await Deno.chmod(file, 0o644);
      await Deno.chmod(dir, 0o755);
      const one = (cwd: string, who = agent) => policyReach([file], cwd, who)[0];
      // Root's file in root's directory: out of another user's reach.
      assert.deepEqual(one(other), { file, inTree: false, writableVia: null });
      assert.deepEqual(one(dir), { file, inTree: true, writableVia: null });
      // Root can write it (no read-only mount here).
      assert.equal(one(other, { uid: 0, gids: [0] }).writableVia, file);
      // World-writable file; group-writable for the agent's group.
      await Deno.chmod(file, 0o666);
      assert.equal(one(other).writableVia, file);
      await Deno.chmod(file, 0o664);
      await Deno.chown(file, 0, 4242);
      assert.equal(one(other).writableVia, file);
      await Deno.chown(file, 0, 0);
      await Deno.chmod(file, 0o644);
      // A writable directory lets the agent replace the file (rename over it).
      await Deno.chmod(dir, 0o777);
      assert.equal(one(other).writableVia, dir);
      // …unless the sticky bit protects entries the agent does not own.
      await Deno.chmod(dir, 0o1777);
      assert.equal(one(other).writableVia, null);
      // Its own file is its own, sticky or not.
      await Deno.chown(file, 4242, 4242);
      assert.equal(one(other).writableVia, file);
      // A symlink named as the policy: the link's directory counts too.
      await Deno.chown(file, 0, 0);
      await Deno.chmod(dir, 0o755);
      await Deno.chmod(other, 0o777);
      await Deno.symlink(file, `${other}/link.yaml`);
      assert.deepEqual(policyReach([`${other}/link.yaml`], dir, agent)[0], {
        file: `${other}/link.yaml`,
        inTree: true,
        writableVia: other,
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(other, { recursive: true });
    }
  },
});
