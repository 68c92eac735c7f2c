import assert from "node:assert/strict";
import type { CommandSpec, OptionSpec } from "./args.ts";
import { caSpec } from "./ca.ts";
import { checkSpec } from "./check.ts";
import { envSpec } from "./env.ts";
import { evalSpec } from "./eval.ts";
import { fmtSpec } from "./fmt.ts";
import { replaySpec } from "./replay.ts";
import { reportSpec } from "./report.ts";
import { runSpec } from "./run.ts";
import { scanSpec } from "./scan.ts";
import { schemaSpec } from "./schema.ts";
import { serveSpec } from "./serve.ts";
import { testSpec } from "./test.ts";
import { auditOption, configOption, formatOption, proxyOption, sinceOption } from "./options.ts";

const SPECS: CommandSpec[] = [
  caSpec,
  checkSpec,
  envSpec,
  evalSpec,
  fmtSpec,
  replaySpec,
  reportSpec,
  runSpec,
  scanSpec,
  schemaSpec,
  serveSpec,
  testSpec,
];

/** An option without what a command may choose for itself. */
function shape({ help: _h, choices: _c, ...rest }: OptionSpec) {
  return rest;
}

Deno.test("a shared option has one name, short letter and placeholder in every command", () => {
  const shared = [
    configOption(),
    formatOption([], ""),
    auditOption(),
    sinceOption(""),
    proxyOption(""),
  ];
  for (const spec of SPECS) {
    for (const o of spec.options) {
      const s = shared.find((x) => x.name === o.name);
      if (s) assert.deepEqual(shape(o), shape(s), `${spec.name} --${o.name}`);
    }
  }
});
