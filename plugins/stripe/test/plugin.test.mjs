// Unit tests of the Stripe plugin's logic in node, without the component runtime:
//   node --import ./test/host-import.mjs --test test/plugin.test.mjs   (npm run unit)
import assert from "node:assert/strict";
import { test } from "node:test";

import { handler } from "../src/plugin.js";
import { logged } from "./host.mjs";

const encoder = new TextEncoder();

function request(body) {
  const bytes = body instanceof Uint8Array ? body : encoder.encode(typeof body === "string" ? body : JSON.stringify(body));
  return {
    method: "POST",
    path: "/webhooks/stripe",
    query: "",
    headers: [],
    body: bytes,
    receivedAtUnixMs: 1680064030000n,
    receivedAt: "2023-03-29T04:27:10Z",
    sourceName: "stripe",
    config: "",
  };
}

function snapshot(fields = {}) {
  return {
    id: "evt_3MqqGbLkdIwHu7ix0KFNtsFm",
    object: "event",
    created: 1680064028,
    type: "payment_intent.succeeded",
    data: { object: { id: "pi_3MqqGbLkdIwHu7ix0wDJkzmJ", object: "payment_intent", amount: 2000 } },
    ...fields,
  };
}

function oneEvent(outcome) {
  assert.equal(outcome.tag, "events", JSON.stringify(outcome));
  assert.equal(outcome.val.length, 1);
  return outcome.val[0];
}

test("a snapshot event maps to one stripe.<type> event about data.object.id", () => {
  const body = JSON.stringify(snapshot());
  const event = oneEvent(handler.handle(request(body)));
  assert.deepEqual(event, {
    id: "evt_3MqqGbLkdIwHu7ix0KFNtsFm",
    source: "https://stripe.com",
    type: "stripe.payment_intent.succeeded",
    subject: "pi_3MqqGbLkdIwHu7ix0wDJkzmJ",
    time: "2023-03-29T04:27:08.000Z",
    data: body,
    routeKeys: ["stripe.payment_intent.succeeded"],
  });
});

test("a Connect event names the account in its source", () => {
  const event = oneEvent(handler.handle(request(snapshot({ account: "acct_1032D82eZvKYlo2C" }))));
  assert.equal(event.source, "https://stripe.com/connect/acct_1032D82eZvKYlo2C");
});

test("an object without an id makes an event about the account", () => {
  const balance = snapshot({ type: "balance.available", data: { object: { object: "balance", available: [] } } });
  const event = oneEvent(handler.handle(request(balance)));
  assert.equal(event.type, "stripe.balance.available");
  assert.equal(event.subject, undefined);
});

test("a thin event is about its related object and has an RFC 3339 time", () => {
  const thin = {
    id: "evt_test_65R9Ijk8",
    object: "v2.core.event",
    type: "v1.billing.meter.error_report_triggered",
    created: "2024-09-17T06:20:52.246Z",
    related_object: { id: "mtr_test_61R9IeKN", type: "billing.meter" },
  };
  const event = oneEvent(handler.handle(request(thin)));
  assert.equal(event.type, "stripe.v1.billing.meter.error_report_triggered");
  assert.equal(event.subject, "mtr_test_61R9IeKN");
  assert.equal(event.time, "2024-09-17T06:20:52.246Z");
});

const refusals = [
  ["a body that is not UTF-8", new Uint8Array([0xff, 0xfe]), "malformed", "not UTF-8"],
  ["a body that is not JSON", "{not json", "malformed", "not valid JSON"],
  ["a JSON array", "[1]", "malformed", "not a JSON object"],
  ["JSON null", "null", "malformed", "not a JSON object"],
  ["no id", snapshot({ id: "" }), "invalid", "no `id`"],
  ["a type without an action", snapshot({ type: "charge" }), "invalid", "`resource.action`"],
  ["an upper-case type", snapshot({ type: "Charge.Succeeded" }), "invalid", "`resource.action`"],
  ["no data.object", snapshot({ data: {} }), "invalid", "no `data.object`"],
  ["a data.object that is an array", snapshot({ data: { object: [] } }), "invalid", "no `data.object`"],
  ["not an event", snapshot({ object: "charge" }), "invalid", "not a Stripe event"],
  ["a created time that is neither", snapshot({ created: "yesterday" }), "invalid", "`created`"],
  ["a negative created time", snapshot({ created: -1 }), "invalid", "`created`"],
];
for (const [name, body, kind, reason] of refusals) {
  test(`refuses ${name} as ${kind}`, () => {
    const outcome = handler.handle(request(body));
    assert.equal(outcome.tag, "rejected", JSON.stringify(outcome));
    assert.equal(outcome.val.kind, kind);
    assert.match(outcome.val.reason, new RegExp(reason.replace(/[.*+?^${}()|[\]\\`]/g, "\\$&")));
  });
}

test("refusals log nothing", () => {
  logged.length = 0;
  handler.handle(request("[]"));
  assert.deepEqual(logged, []);
});

test("configure takes no configuration and declares the Stripe scheme", () => {
  for (const empty of ["", " ", "{}"]) {
    assert.deepEqual(handler.configure(empty), { signature: { tag: "stripe" }, dedupeHeader: undefined });
  }
  assert.throws(() => handler.configure('{"x":1}'), (error) => String(error).includes("takes no configuration"));
  const manifest = handler.describe();
  assert.equal(manifest.name, "stripe");
  assert.deepEqual(manifest.eventTypes, ["stripe.*"]);
});
