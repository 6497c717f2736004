// The resolve hook test/host-import.mjs registers.
const HOST = "wasmhook:plugin/host@0.1.0";

export async function resolve(specifier, context, nextResolve) {
  if (specifier === HOST) {
    return { url: new URL("./host.mjs", import.meta.url).href, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
