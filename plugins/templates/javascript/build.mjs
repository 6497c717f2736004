// Builds src/plugin.js into a WebAssembly component with ComponentizeJS.
//
//   npm run build                     -> dist/example.wasm
//   npm run build -- path/out.wasm    -> that path (or set WASMHOOK_PLUGIN_OUT)
//   WASMHOOK_WIT=/path/to/wit         -> the contract's WIT (default: the copy in ./wit)
import { componentize } from "@bytecodealliance/componentize-js";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? process.env.WASMHOOK_PLUGIN_OUT ?? resolve(here, "dist/example.wasm"));
const witPath = resolve(process.env.WASMHOOK_WIT ?? resolve(here, "wit"));

const { component } = await componentize({
  sourcePath: resolve(here, "src/plugin.js"),
  witPath,
  worldName: "wasmhook:plugin/plugin@0.1.0",
  // The host provides no wasi:http: fetch() and the fetch event must be left out.
  disableFeatures: ["http", "fetch-event"],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);
console.log(`wrote ${out} (${component.byteLength} bytes)`);
