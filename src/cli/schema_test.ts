import assert from "node:assert/strict";
import { policyJsonSchema, schema } from "./schema.ts";
import { configSchema, includeSchema } from "../config/spec.ts";
import { toJsonSchema } from "../config/schema.ts";
import { memoryIo } from "./io.ts";

Deno.test("schema: generated from the loader's definitions, with $schema, $id and title", async () => {
  const s = policyJsonSchema("policy");
  assert.equal(s.$schema, "https://json-schema.org/draft/2020-12/schema");
  assert.equal(s.title, "agentgate policy");
  const { $schema: _a, $id: _b, title: _c, $defs, ...rest } = s;
  assert.deepEqual(rest, toJsonSchema(configSchema));
  assert.deepEqual(
    Object.keys(s.properties as Record<string, unknown>),
    Object.keys(configSchema.properties),
  );
  const { title: _t, ...include } = ($defs as Record<string, Record<string, unknown>>).include;
  assert.deepEqual(include, toJsonSchema(includeSchema));
  assert.equal(policyJsonSchema("include").$id, "urn:agentgate:schema:policy-include:v1");
  assert.equal(policyJsonSchema("test").title, "agentgate policy tests");

  const io = memoryIo();
  assert.equal(await schema(["--for", "include"], io), 0);
  assert.deepEqual(JSON.parse(io.out.join("")), policyJsonSchema("include"));
});
