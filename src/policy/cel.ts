/**
 * Kept only for the importers that other work in progress owns
 * (`engine.ts`, `limits/rate.ts`, `limits/spend.ts`): the CEL modules live in
 * `./cel/`, whose front door is `./cel/mod.ts`. Import that; delete this file
 * once nothing imports it.
 *
 * @example
 * ```ts
 * import { compileCondition } from "./cel/mod.ts"; // not "./cel.ts"
 * ```
 *
 * @module
 */
export * from "./cel/mod.ts";
