// A minimal wasmhook plugin in JavaScript: any JSON object becomes one `example.received` event.
//
// The host checks `X-Webhook-Signature: sha256=<hex>` (HMAC-SHA256 of the raw body with the
// source's secret) before `handle` runs, so this code only parses and normalizes. Types follow
// wit/plugin.wit: records are objects with camelCase fields, variants are `{ tag, val }`, enums
// are their lower-case names, `list<u8>` is a Uint8Array, and a thrown value is the `err` of a
// `result`.

import { log } from "wasmhook:plugin/host@0.1.0";

const ID_HEADER = "x-webhook-id";

function describe() {
  return {
    name: "example",
    version: "0.1.0",
    description: "An example plugin: any JSON object becomes one event.",
    signature: {
      tag: "body-hmac",
      val: { header: "x-webhook-signature", prefix: "sha256=", encoding: "hex" },
    },
    dedupeHeader: ID_HEADER,
    eventTypes: ["example.received"],
  };
}

function configure(config) {
  if (config.trim() !== "" && config.trim() !== "{}") {
    throw "the example plugin takes no configuration; leave `config` empty";
  }
  const { signature, dedupeHeader } = describe();
  return { signature, dedupeHeader };
}

function rejected(kind, reason) {
  return { tag: "rejected", val: { kind, reason } };
}

function handle(request) {
  let text;
  let payload;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(request.body);
    payload = JSON.parse(text);
  } catch (error) {
    return rejected("malformed", `the body is not JSON: ${error.message}`);
  }
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    return rejected("malformed", "the body is not a JSON object");
  }
  // The dedupe key: the delivery id header, else the payload's own `id`.
  const header = request.headers.find((h) => h.name === ID_HEADER);
  const id = header?.value || (payload.id != null ? String(payload.id) : "");
  if (id === "") {
    return rejected("invalid", "no X-Webhook-Id header and no `id` field");
  }
  log("debug", `example event ${id}`);
  return {
    tag: "events",
    val: [
      {
        id,
        source: `urn:wasmhook:${request.sourceName}`,
        type: "example.received",
        subject: undefined,
        time: "", // empty: the request's receive time
        data: text,
        routeKeys: [],
      },
    ],
  };
}

export const handler = { describe, configure, handle };
