// The Stripe plugin: Stripe event deliveries (`payment_intent.succeeded`,
// `checkout.session.completed`, ...) become `stripe.<type>` events about `data.object.id`.
//
// The host checks `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` (HMAC-SHA256 over
// `{t}.{body}`, any `v1` of any active secret, within the source's timestamp tolerance) before
// this code runs. Stripe sends no delivery-id header: the event id in the body (`evt_...`) is the
// same on every retry, so it is the event id and so the host's dedupe key.

import { log } from "wasmhook:plugin/host@0.1.0";

const NAME = "stripe";
const VERSION = "0.1.0";
const TYPE_PATTERN = /^[a-z0-9_]+(\.[a-z0-9_]+)+$/;

class Refusal extends Error {
  constructor(kind, reason) {
    super(reason);
    this.kind = kind;
  }
}
const malformed = (reason) => new Refusal("malformed", reason);
const invalid = (reason) => new Refusal("invalid", reason);

function describe() {
  return {
    name: NAME,
    version: VERSION,
    description: "Stripe account and Connect webhooks (payments, checkout, billing, ...).",
    signature: { tag: "stripe" },
    dedupeHeader: undefined,
    eventTypes: ["stripe.*"],
  };
}

function configure(config) {
  const trimmed = config.trim();
  if (trimmed !== "" && trimmed !== "{}") {
    // A thrown value becomes the `err` of the result.
    throw `the ${NAME} plugin takes no configuration; leave \`config\` empty`;
  }
  const manifest = describe();
  return { signature: manifest.signature, dedupeHeader: manifest.dedupeHeader };
}

/** `created` of a snapshot event is Unix seconds; of a thin (v2) event, RFC 3339 text. */
function eventTime(created) {
  if (Number.isInteger(created) && created > 0) {
    return new Date(created * 1000).toISOString();
  }
  if (typeof created === "string" && !Number.isNaN(Date.parse(created))) {
    return new Date(Date.parse(created)).toISOString();
  }
  throw invalid("`created` is neither Unix seconds nor an RFC 3339 time");
}

/** Normalizes one delivery; throws a Refusal. */
function normalize(body) {
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(body);
  } catch {
    throw malformed("the body is not UTF-8");
  }
  let payload;
  try {
    payload = JSON.parse(text);
  } catch (error) {
    throw malformed(`the body is not valid JSON: ${error.message}`);
  }
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw malformed("the body is not a JSON object");
  }
  const { id, type, object, created } = payload;
  if (typeof id !== "string" || id === "") {
    throw invalid("the event has no `id`");
  }
  if (typeof type !== "string" || !TYPE_PATTERN.test(type)) {
    throw invalid("the event has no `type` of the form `resource.action`");
  }
  let subject;
  if (object === "event") {
    const resource = payload.data?.object;
    if (resource === null || typeof resource !== "object" || Array.isArray(resource)) {
      throw invalid("the event has no `data.object`");
    }
    // Some objects (a `balance`) have no id: the event is then about the account.
    if (typeof resource.id === "string" && resource.id !== "") subject = resource.id;
  } else if (object === "v2.core.event") {
    // A thin event: only a reference to the object.
    const related = payload.related_object;
    if (related && typeof related.id === "string" && related.id !== "") subject = related.id;
  } else {
    throw invalid("the body is not a Stripe event (`object` is not `event`)");
  }
  const time = eventTime(created);
  const eventType = `stripe.${type}`;
  const account = typeof payload.account === "string" && payload.account !== "" ? payload.account : undefined;
  return {
    id,
    source: account ? `https://stripe.com/connect/${account}` : "https://stripe.com",
    type: eventType,
    subject,
    time,
    data: text,
    routeKeys: [eventType],
  };
}

function handle(request) {
  try {
    return { tag: "events", val: [normalize(request.body)] };
  } catch (error) {
    if (error instanceof Refusal) {
      return { tag: "rejected", val: { kind: error.kind, reason: error.message } };
    }
    log("error", `unexpected failure: ${error}`);
    throw error;
  }
}

export const handler = { describe, configure, handle };
