/**
 * A small schema language for the policy file. One definition drives both the
 * validator (which walks YAML nodes, so every error has a position) and the
 * JSON Schema that `agentgate schema` prints — never hand-copied.
 *
 * @module
 */
import { isAlias, isMap, isPair, isScalar, isSeq, type Node, type Scalar } from "yaml";
import { didYouMean } from "../util/suggest.ts";

interface Base {
  description?: string;
}
/** A string; `check` returns an error message or null. */
export interface StringSchema extends Base {
  type: "string";
  enum?: readonly string[];
  /** Documented shape for JSON Schema (`pattern`). */
  pattern?: string;
  check?: (value: string) => string | null;
}
export interface NumberSchema extends Base {
  type: "number";
  integer?: boolean;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
}
export interface BooleanSchema extends Base {
  type: "boolean";
}
export interface ArraySchema extends Base {
  type: "array";
  items: Schema;
  minItems?: number;
}
export interface ObjectSchema extends Base {
  type: "object";
  properties: Record<string, Schema>;
  required?: readonly string[];
  /**
   * Keys refused with a message of their own (why they cannot be set, and
   * what to set instead); the message never quotes the value. Not part of
   * the JSON Schema, so editors flag them as unknown too.
   */
  forbidden?: Record<string, string>;
  /** Cross-field checks after the properties validated. */
  check?: (value: Record<string, unknown>) => string | null;
}
/** An object with free keys (e.g. `upstream.resolve`). */
export interface MapSchema extends Base {
  type: "map";
  values: Schema;
  keyCheck?: (key: string) => string | null;
}
/** The first option that validates without errors wins. */
export interface UnionSchema extends Base {
  type: "union";
  anyOf: readonly Schema[];
}
/** Anything (kept as plain data). */
export interface AnySchema extends Base {
  type: "any";
}
export type Schema =
  | StringSchema
  | NumberSchema
  | BooleanSchema
  | ArraySchema
  | ObjectSchema
  | MapSchema
  | UnionSchema
  | AnySchema;

/** A path into the document: keys and indexes. */
export type Path = ReadonlyArray<string | number>;

/** One validation error, located by its YAML node. */
export interface SchemaIssue {
  path: Path;
  node: Node | null;
  message: string;
  /** Point at the key of a pair rather than its value (unknown keys). */
  atKey?: boolean;
}

function kindOf(node: Node | null): string {
  if (node === null) return "nothing";
  if (isMap(node)) return "a mapping";
  if (isSeq(node)) return "a list";
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return "null";
    if (typeof v === "string") return `the string "${v}"`;
    return `${typeof v} ${String(v)}`;
  }
  return "an alias";
}

function describe(schema: Schema): string {
  switch (schema.type) {
    case "string":
      return schema.enum ? `one of ${schema.enum.map((e) => `"${e}"`).join(", ")}` : "a string";
    case "number":
      return schema.integer ? "an integer" : "a number";
    case "boolean":
      return "true or false";
    case "array":
      return "a list";
    case "object":
    case "map":
      return "a mapping";
    case "union":
      return schema.anyOf.map(describe).join(" or ");
    case "any":
      return "a value";
  }
}

/** Whether a node has the shape a schema expects (ignoring its contents). */
function shapeFits(schema: Schema, node: Node | null): boolean {
  switch (schema.type) {
    case "object":
    case "map":
      return isMap(node);
    case "array":
      return isSeq(node);
    case "string":
      return isScalar(node) && typeof node.value === "string";
    case "number":
      return isScalar(node) && typeof node.value === "number";
    case "boolean":
      return isScalar(node) && typeof node.value === "boolean";
    case "union":
      return schema.anyOf.some((o) => shapeFits(o, node));
    case "any":
      return true;
  }
}

const keyName = (k: unknown): string => String(isScalar(k) ? (k as Scalar).value : k);

/** How a message names the place of a path (`"proxy.listen"`, `"action" of rule "npm"`). */
export type PathName = (path: Path) => string;

const dotted: PathName = (path) => path.length ? `"${path.join(".")}"` : "the document";

/**
 * Validate a YAML node against a schema and return the plain value.
 * Errors are appended to `issues`; the returned value is only trustworthy when
 * none were added. `name` words the place in messages (default: the dotted
 * path).
 */
export function validate(
  node: Node | null,
  schema: Schema,
  path: Path = [],
  issues: SchemaIssue[] = [],
  name: PathName = dotted,
): unknown {
  if (node !== null && isAlias(node)) {
    issues.push({ path, node, message: "YAML aliases are not supported in policy files" });
    return undefined;
  }
  const bad = (message: string) => {
    issues.push({ path, node, message });
    return undefined;
  };
  const where = name(path);
  switch (schema.type) {
    case "any":
      return node === null ? null : node.toJSON();
    case "string": {
      if (!isScalar(node) || typeof node.value !== "string") {
        return bad(`${where} must be ${describe(schema)}, not ${kindOf(node)}`);
      }
      const v = node.value;
      if (schema.enum && !schema.enum.includes(v)) {
        return bad(
          `${where} must be ${describe(schema)}, not "${v}"${didYouMean(v, schema.enum)}`,
        );
      }
      const msg = schema.check?.(v);
      if (msg) return bad(msg);
      return v;
    }
    case "number": {
      if (!isScalar(node) || typeof node.value !== "number" || !Number.isFinite(node.value)) {
        return bad(`${where} must be ${describe(schema)}, not ${kindOf(node)}`);
      }
      const v = node.value;
      if (schema.integer && !Number.isInteger(v)) {
        return bad(`${where} must be an integer, not ${v}`);
      }
      if (schema.minimum !== undefined && v < schema.minimum) {
        return bad(`${where} must be at least ${schema.minimum}, not ${v}`);
      }
      if (schema.exclusiveMinimum !== undefined && v <= schema.exclusiveMinimum) {
        return bad(`${where} must be greater than ${schema.exclusiveMinimum}, not ${v}`);
      }
      if (schema.maximum !== undefined && v > schema.maximum) {
        return bad(`${where} must be at most ${schema.maximum}, not ${v}`);
      }
      return v;
    }
    case "boolean":
      if (!isScalar(node) || typeof node.value !== "boolean") {
        return bad(`${where} must be true or false, not ${kindOf(node)}`);
      }
      return node.value;
    case "array": {
      if (!isSeq(node)) return bad(`${where} must be a list, not ${kindOf(node)}`);
      if (schema.minItems !== undefined && node.items.length < schema.minItems) {
        return bad(`${where} must have at least ${schema.minItems} item(s)`);
      }
      return node.items.map((item, i) =>
        validate(item as Node | null, schema.items, [...path, i], issues, name)
      );
    }
    case "map": {
      if (!isMap(node)) return bad(`${where} must be a mapping, not ${kindOf(node)}`);
      const out: Record<string, unknown> = {};
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const k = keyName(pair.key);
        const msg = schema.keyCheck?.(k);
        if (msg) {
          issues.push({ path: [...path, k], node: pair.key as Node, message: msg, atKey: true });
          continue;
        }
        out[k] = validate(pair.value as Node | null, schema.values, [...path, k], issues, name);
      }
      return out;
    }
    case "object": {
      if (!isMap(node)) return bad(`${where} must be a mapping, not ${kindOf(node)}`);
      const out: Record<string, unknown> = {};
      const known = Object.keys(schema.properties);
      const before = issues.length;
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const k = keyName(pair.key);
        const sub = schema.properties[k];
        if (!sub) {
          const inWhat = path.length ? ` in ${where}` : "";
          const refused = schema.forbidden?.[k];
          issues.push({
            path: [...path, k],
            node: pair.key as Node,
            message: refused !== undefined
              ? `key "${k}"${inWhat} is not allowed: ${refused}`
              : `unknown key "${k}"${inWhat}${didYouMean(k, known)}`,
            atKey: true,
          });
          continue;
        }
        out[k] = validate(pair.value as Node | null, sub, [...path, k], issues, name);
      }
      for (const r of schema.required ?? []) {
        if (!(r in out)) issues.push({ path, node, message: `missing key "${r}" in ${where}` });
      }
      if (issues.length === before && schema.check) {
        const msg = schema.check(out);
        if (msg) issues.push({ path, node, message: msg });
      }
      return out;
    }
    case "union": {
      let best: { issues: SchemaIssue[]; value: unknown } | null = null;
      for (const option of schema.anyOf) {
        const local: SchemaIssue[] = [];
        const value = validate(node, option, path, local, name);
        if (local.length === 0) return value;
        // Prefer the option whose shape fits the node (errors deeper inside it).
        const depth = Math.max(...local.map((i) => i.path.length));
        const bestDepth = best ? Math.max(...best.issues.map((i) => i.path.length)) : -1;
        if (!best || depth > bestDepth) best = { issues: local, value };
      }
      const deepest = best!.issues;
      if (deepest.every((i) => i.path.length === path.length)) {
        // Every option failed at this level: when exactly one has the node's
        // shape (a mapping for an object, …), its own message says more
        // (e.g. a missing key) than "must be a mapping or a list".
        const fits = schema.anyOf.filter((o) => shapeFits(o, node));
        if (fits.length === 1) return validate(node, fits[0], path, issues, name);
        return bad(`${where} must be ${describe(schema)}, not ${kindOf(node)}`);
      }
      issues.push(...deepest);
      return best!.value;
    }
  }
}

/** The JSON Schema (draft 2020-12) of a schema. */
export function toJsonSchema(schema: Schema): Record<string, unknown> {
  const d = schema.description ? { description: schema.description } : {};
  switch (schema.type) {
    case "any":
      return { ...d };
    case "string":
      return {
        type: "string",
        ...d,
        ...(schema.enum ? { enum: [...schema.enum] } : {}),
        ...(schema.pattern ? { pattern: schema.pattern } : {}),
      };
    case "number":
      return {
        type: schema.integer ? "integer" : "number",
        ...d,
        ...(schema.minimum !== undefined ? { minimum: schema.minimum } : {}),
        ...(schema.maximum !== undefined ? { maximum: schema.maximum } : {}),
        ...(schema.exclusiveMinimum !== undefined
          ? { exclusiveMinimum: schema.exclusiveMinimum }
          : {}),
      };
    case "boolean":
      return { type: "boolean", ...d };
    case "array":
      return {
        type: "array",
        ...d,
        items: toJsonSchema(schema.items),
        ...(schema.minItems !== undefined ? { minItems: schema.minItems } : {}),
      };
    case "map":
      return { type: "object", ...d, additionalProperties: toJsonSchema(schema.values) };
    case "object":
      return {
        type: "object",
        ...d,
        properties: Object.fromEntries(
          Object.entries(schema.properties).map(([k, v]) => [k, toJsonSchema(v)]),
        ),
        ...(schema.required?.length ? { required: [...schema.required] } : {}),
        additionalProperties: false,
      };
    case "union":
      return { ...d, anyOf: schema.anyOf.map(toJsonSchema) };
  }
}
