// Builds the plugin into a WebAssembly component with ComponentizeJS (StarlingMonkey, no AOT).
//
//   npm run build                      -> ../../target/plugins/stripe.wasm
//   npm run build -- out/stripe.wasm   -> that path (or set WASMHOOK_PLUGIN_OUT)
//   WASMHOOK_WIT=/path/to/wit          -> the contract's WIT folder (default ../../wit)
import { componentize } from "@bytecodealliance/componentize-js";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? process.env.WASMHOOK_PLUGIN_OUT ?? resolve(here, "../../target/plugins/stripe.wasm"));
const witPath = resolve(process.env.WASMHOOK_WIT ?? resolve(here, "../../wit"));

const started = Date.now();
const { component } = await componentize({
  sourcePath: resolve(here, "src/plugin.js"),
  witPath,
  worldName: "wasmhook:plugin/plugin@0.1.0",
  // No fetch() and no incoming HTTP: the host provides neither. stdio stays on so that
  // uncaught errors reach the host's log; random and clocks are harmless (the wall clock is
  // frozen by the host).
  disableFeatures: ["http", "fetch-event"],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);
console.log(`wrote ${out} (${component.byteLength} bytes) in ${Date.now() - started} ms`);
