import assert from "node:assert/strict";
import { validateJsonSchema } from "./jsonschema.ts";

Deno.test("jsonschema: the keywords agentgate schema emits", () => {
  const schema = {
    type: "object",
    properties: {
      n: { type: "integer", minimum: 1, maximum: 3 },
      f: { type: "number", exclusiveMinimum: 0 },
      s: { type: "string", enum: ["a", "b"] },
      p: { type: "string", pattern: "^x+$" },
      l: { type: "array", items: { type: "string" }, minItems: 1 },
      u: { anyOf: [{ type: "string" }, { type: "array", items: { type: "string" } }] },
      m: { type: "object", additionalProperties: { type: "boolean" } },
      r: { $ref: "#/$defs/d" },
    },
    required: ["n"],
    additionalProperties: false,
    $defs: { d: { type: "boolean" } },
  };
  assert.deepEqual(
    validateJsonSchema(schema, {
      n: 2,
      f: 0.5,
      s: "a",
      p: "xx",
      l: ["a"],
      u: ["a"],
      m: { a: true },
      r: false,
    }),
    [],
  );
  const errs = validateJsonSchema(schema, {
    n: 1.5,
    f: 0,
    s: "c",
    p: "y",
    l: [],
    u: [1],
    m: { a: 1 },
    r: 1,
    extra: 1,
  });
  assert.deepEqual(errs.map((e) => `${e.path}: ${e.message}`), [
    "/n: must be integer",
    "/f: must be > 0",
    '/s: must be one of "a", "b"',
    "/p: must match ^x+$",
    "/l: must have at least 1 item(s)",
    "/u/0: must be string",
    "/m/a: must be boolean",
    "/r: must be boolean",
    '/extra: unknown property "extra"',
  ]);
  assert.deepEqual(validateJsonSchema(schema, {}), [
    { path: "/", message: 'missing required property "n"' },
  ]);
  assert.throws(
    () => validateJsonSchema({ oneOf: [] }, 1),
    /unsupported JSON Schema keyword "oneOf"/,
  );
});
