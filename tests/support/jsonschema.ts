/**
 * A small JSON Schema (draft 2020-12) validator for exactly the keywords
 * `agentgate schema` emits, so tests can check the generated schema against
 * real policy files without a third-party validator. An unknown keyword is an
 * error rather than silently ignored: the schema must stay in this subset.
 *
 * @module
 */

/** One validation error: where (JSON pointer) and why. */
export interface JsonSchemaError {
  path: string;
  message: string;
}

type JsonSchema = Record<string, unknown>;

/** Keywords the validator understands (annotations included). */
const KNOWN = new Set([
  "$schema",
  "$id",
  "$defs",
  "$ref",
  "title",
  "description",
  "type",
  "properties",
  "required",
  "additionalProperties",
  "enum",
  "anyOf",
  "items",
  "minItems",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "pattern",
]);

function typeOk(t: string, v: unknown): boolean {
  switch (t) {
    case "string":
      return typeof v === "string";
    case "number":
      return typeof v === "number" && Number.isFinite(v);
    case "integer":
      return typeof v === "number" && Number.isInteger(v);
    case "boolean":
      return typeof v === "boolean";
    case "null":
      return v === null;
    case "array":
      return Array.isArray(v);
    case "object":
      return v !== null && typeof v === "object" && !Array.isArray(v);
    default:
      throw new Error(`unsupported type "${t}"`);
  }
}

/**
 * Validate `value` against `schema`; returns the errors (empty = valid).
 *
 * @example
 * validateJsonSchema({ type: "object", properties: { a: { type: "integer" } } }, { a: 1.5 })
 * // [{ path: "/a", message: "must be integer" }]
 */
export function validateJsonSchema(
  schema: JsonSchema,
  value: unknown,
  root: JsonSchema = schema,
  path = "",
): JsonSchemaError[] {
  const errors: JsonSchemaError[] = [];
  const fail = (message: string) => errors.push({ path: path || "/", message });
  for (const k of Object.keys(schema)) {
    if (!KNOWN.has(k)) throw new Error(`unsupported JSON Schema keyword "${k}" at ${path || "/"}`);
  }
  if (typeof schema.$ref === "string") {
    const m = /^#\/\$defs\/([^/]+)$/.exec(schema.$ref);
    if (!m) throw new Error(`unsupported $ref "${schema.$ref}"`);
    const target = (root.$defs as Record<string, JsonSchema> | undefined)?.[m[1]];
    if (!target) throw new Error(`$ref "${schema.$ref}" does not resolve`);
    errors.push(...validateJsonSchema(target, value, root, path));
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type as string[] : [schema.type as string];
    if (!types.some((t) => typeOk(t, value))) {
      fail(`must be ${types.join(" or ")}`);
      return errors;
    }
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((e) => e === value)) {
    fail(`must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(", ")}`);
  }
  if (typeof value === "number") {
    if (typeof schema.minimum === "number" && value < schema.minimum) {
      fail(`must be >= ${schema.minimum}`);
    }
    if (typeof schema.maximum === "number" && value > schema.maximum) {
      fail(`must be <= ${schema.maximum}`);
    }
    if (typeof schema.exclusiveMinimum === "number" && value <= schema.exclusiveMinimum) {
      fail(`must be > ${schema.exclusiveMinimum}`);
    }
  }
  if (typeof value === "string" && typeof schema.pattern === "string") {
    if (!new RegExp(schema.pattern, "u").test(value)) fail(`must match ${schema.pattern}`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === "number" && value.length < schema.minItems) {
      fail(`must have at least ${schema.minItems} item(s)`);
    }
    if (schema.items !== undefined) {
      value.forEach((item, i) =>
        errors.push(...validateJsonSchema(schema.items as JsonSchema, item, root, `${path}/${i}`))
      );
    }
  }
  if (typeOk("object", value)) {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
    for (const r of (schema.required ?? []) as string[]) {
      if (!(r in obj)) fail(`missing required property "${r}"`);
    }
    for (const [k, v] of Object.entries(obj)) {
      const sub = path + "/" + k.replace(/~/g, "~0").replace(/\//g, "~1");
      if (k in props) errors.push(...validateJsonSchema(props[k], v, root, sub));
      else if (schema.additionalProperties === false) {
        errors.push({ path: sub, message: `unknown property "${k}"` });
      } else if (typeof schema.additionalProperties === "object") {
        errors.push(
          ...validateJsonSchema(schema.additionalProperties as JsonSchema, v, root, sub),
        );
      }
    }
  }
  if (Array.isArray(schema.anyOf)) {
    const options = schema.anyOf as JsonSchema[];
    const results = options.map((o) => validateJsonSchema(o, value, root, path));
    if (!results.some((r) => r.length === 0)) {
      // Report the option that got furthest (deepest error), like the loader does.
      const best = results.reduce((a, b) =>
        Math.max(...b.map((e) => e.path.length)) > Math.max(...a.map((e) => e.path.length)) ? b : a
      );
      errors.push(...best);
    }
  }
  return errors;
}
