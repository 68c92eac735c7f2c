/**
 * Presets: where the well-known credentials are used and how their clients
 * present them, so a policy names a source and nothing else:
 * `{ name: openai, preset: openai, env: OPENAI_API_KEY }`.
 *
 * @module
 */
import type { PhantomShape } from "./types.ts";

/** What a preset fills in (every key can be overridden in the policy). */
export interface Preset {
  /** One line for docs and `check`. */
  description: string;
  hosts: string[];
  paths?: string[];
  methods?: string[];
  headers?: { name: string; formats: string[] }[];
  basic?: { username: string | null };
  query?: string;
  phantom: PhantomShape;
  variables: string[];
  npmrc?: string;
  git?: string[];
}

/**
 * The presets by name. Phantom shapes keep the prefix (and, where a client
 * checks it, the length) of the real tokens: `ghp_` + 36, `npm_` + 36, `AIza`
 * + 35.
 */
export const PRESETS: Readonly<Record<string, Preset>> = {
  openai: {
    description: "OpenAI API key: Authorization: Bearer on api.openai.com",
    hosts: ["api.openai.com"],
    headers: [{ name: "authorization", formats: ["Bearer {secret}"] }],
    phantom: { prefix: "sk-proj-", sep: "-", random: 48 },
    variables: ["OPENAI_API_KEY"],
  },
  anthropic: {
    description:
      "Anthropic API key: x-api-key (or Authorization: Bearer, as newer SDKs send it) on api.anthropic.com",
    hosts: ["api.anthropic.com"],
    headers: [
      { name: "x-api-key", formats: ["{secret}"] },
      { name: "authorization", formats: ["Bearer {secret}"] },
    ],
    phantom: { prefix: "sk-ant-", sep: "-", random: 48 },
    variables: ["ANTHROPIC_API_KEY"],
  },
  gemini: {
    description: "Gemini API key: x-goog-api-key or ?key= on generativelanguage.googleapis.com",
    hosts: ["generativelanguage.googleapis.com"],
    headers: [{ name: "x-goog-api-key", formats: ["{secret}"] }],
    query: "key",
    phantom: { prefix: "AIza", sep: "", random: 26 },
    variables: ["GEMINI_API_KEY", "GOOGLE_API_KEY"],
  },
  github: {
    description:
      "GitHub token: Authorization: Bearer/token on api.github.com, basic auth for git over HTTPS on github.com",
    hosts: ["api.github.com", "github.com"],
    headers: [{ name: "authorization", formats: ["Bearer {secret}", "token {secret}"] }],
    basic: { username: null },
    phantom: { prefix: "ghp_", sep: "", random: 27 },
    variables: ["GITHUB_TOKEN", "GH_TOKEN"],
    git: ["github.com"],
  },
  npm: {
    description: "npm token: Authorization: Bearer on registry.npmjs.org, from an .npmrc",
    hosts: ["registry.npmjs.org"],
    headers: [{ name: "authorization", formats: ["Bearer {secret}"] }],
    phantom: { prefix: "npm_", sep: "", random: 27 },
    variables: ["NPM_TOKEN"],
    npmrc: "//registry.npmjs.org/",
  },
  pypi: {
    description: "PyPI upload token: basic auth as __token__ on upload.pypi.org",
    hosts: ["upload.pypi.org"],
    basic: { username: "__token__" },
    phantom: { prefix: "pypi-", sep: "-", random: 48 },
    variables: ["TWINE_PASSWORD", "UV_PUBLISH_TOKEN", "PYPI_TOKEN"],
  },
};

/** Preset names, for the schema and did-you-mean. */
export const PRESET_NAMES: readonly string[] = Object.keys(PRESETS);
