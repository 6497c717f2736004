// Lets node import src/plugin.js outside a component: `wasmhook:plugin/host@0.1.0` (the host's
// import, which only a component can reach) resolves to test/host.mjs, which records log lines.
import { register } from "node:module";

register("./host-resolver.mjs", import.meta.url);
