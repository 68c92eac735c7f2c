/**
 * A client for tests: fetch one URL with undici 6 (the version Node 22
 * bundles) through `EnvHttpProxyAgent`, as Node 22 does with
 * `NODE_USE_ENV_PROXY=1`: an `http://` URL goes through a `CONNECT host:80`
 * tunnel. Prints `STATUS BODY`, or `ERROR message` when the fetch fails.
 *
 * Usage: HTTP_PROXY=… deno run -A tests/support/undici_fetch.ts URL
 *
 * @module
 */
import { EnvHttpProxyAgent, fetch } from "undici";

const url = Deno.args[0];
try {
  const r = await fetch(url, { dispatcher: new EnvHttpProxyAgent() });
  console.log(`${r.status} ${await r.text()}`);
} catch (e) {
  const err = e as Error & { cause?: Error };
  console.log(`ERROR ${err.message}${err.cause ? `: ${err.cause.message}` : ""}`);
}
