/**
 * `agentgate schema`: the JSON Schema of policy files, generated from the
 * definition the loader validates with (never hand-copied), for editor
 * completion and validation.
 *
 * @module
 */
import { type CommandSpec, helpText, parseArgs } from "./args.ts";
import type { Io } from "./io.ts";
import { configSchema, includeSchema } from "../config/spec.ts";
import { toJsonSchema } from "../config/schema.ts";
import { testFileSchema } from "../policytest/testfile.ts";

/** JSON Schema dialect of the output. */
export const JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema";

/** `$id`s of the three documents (URNs: the schema is printed, not hosted). */
export const SCHEMA_IDS = {
  policy: "urn:agentgate:schema:policy:v1",
  include: "urn:agentgate:schema:policy-include:v1",
  test: "urn:agentgate:schema:policy-test:v1",
} as const;

/**
 * The JSON Schema of a policy file (`version: 1`); `$defs.include` is the
 * schema of a file another one includes.
 *
 * @example
 * const schema = policyJsonSchema("policy");
 * schema.$schema // "https://json-schema.org/draft/2020-12/schema"
 */
export function policyJsonSchema(kind: keyof typeof SCHEMA_IDS): Record<string, unknown> {
  const head = { $schema: JSON_SCHEMA_DIALECT, $id: SCHEMA_IDS[kind] };
  if (kind === "include") {
    return { ...head, title: "agentgate included policy file", ...toJsonSchema(includeSchema) };
  }
  if (kind === "test") {
    return { ...head, title: "agentgate policy tests", ...toJsonSchema(testFileSchema) };
  }
  return {
    ...head,
    title: "agentgate policy",
    ...toJsonSchema(configSchema),
    $defs: {
      include: { title: "agentgate included policy file", ...toJsonSchema(includeSchema) },
    },
  };
}

/** The interface of `schema`. */
export const schemaSpec: CommandSpec = {
  name: "schema",
  summary: "Print the JSON Schema of policy files (for editors and validators).",
  usage: "agentgate schema [--for policy|include|test]",
  options: [
    {
      name: "for",
      type: "string",
      value: "KIND",
      choices: ["policy", "include", "test"],
      help: "policy (default: a main policy file), include (an included file), test (*_test.yaml).",
    },
  ],
  epilog: [
    "JSON Schema draft 2020-12, generated from the definitions the loader validates with. For",
    "completion in editors with the YAML language server, save it and name it on the first line:",
    "",
    "  agentgate schema > agentgate.schema.json",
    "  # yaml-language-server: $schema=./agentgate.schema.json",
    "",
    "The schema checks shapes; agentgate check also compiles patterns, conditions and policies.",
  ].join("\n"),
};

/** Run `schema`. */
export function schema(args: string[], io: Io): Promise<number> {
  const parsed = parseArgs(schemaSpec, args);
  if (parsed.opts.help) {
    io.stdout(helpText(schemaSpec));
    return Promise.resolve(0);
  }
  const kind = (parsed.opts.for as keyof typeof SCHEMA_IDS | undefined) ?? "policy";
  io.stdout(JSON.stringify(policyJsonSchema(kind), null, 2) + "\n");
  return Promise.resolve(0);
}
