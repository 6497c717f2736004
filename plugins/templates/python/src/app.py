"""A minimal wasmhook plugin in Python: any JSON object becomes one `example.received` event.

The host checks `X-Webhook-Signature: sha256=<hex>` (HMAC-SHA256 of the raw body with the
source's secret) before `handle` runs, so this code only parses and normalizes. The types come
from the bindings componentize-py generates from wit/plugin.wit (`wit_world`): records are
dataclasses with snake_case fields, each variant case is its own class, enums are Python enums,
and raising `Err(...)` returns the `err` of a `result`.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    BodyHmac,
    Event,
    LogLevel,
    MacEncoding,
    Manifest,
    Outcome_Events,
    Outcome_Rejected,
    Rejection,
    RejectionKind,
    SignatureScheme_BodyHmac,
    SourceSettings,
)

ID_HEADER = "x-webhook-id"
SIGNATURE = SignatureScheme_BodyHmac(
    BodyHmac(header="x-webhook-signature", prefix="sha256=", encoding=MacEncoding.HEX)
)


def rejected(kind: RejectionKind, reason: str) -> Outcome_Rejected:
    return Outcome_Rejected(Rejection(kind=kind, reason=reason))


class Handler(exports.Handler):
    def describe(self) -> Manifest:
        return Manifest(
            name="example",
            version="0.1.0",
            description="An example plugin: any JSON object becomes one event.",
            signature=SIGNATURE,
            dedupe_header=ID_HEADER,
            event_types=["example.received"],
        )

    def configure(self, config: str) -> SourceSettings:
        if config.strip() not in ("", "{}"):
            raise Err("the example plugin takes no configuration; leave `config` empty")
        return SourceSettings(signature=SIGNATURE, dedupe_header=ID_HEADER)

    def handle(self, request):
        try:
            text = request.body.decode("utf-8")
            payload = json.loads(text)
        except ValueError as error:  # UnicodeDecodeError is a ValueError too
            return rejected(RejectionKind.MALFORMED, f"the body is not JSON: {error}")
        if not isinstance(payload, dict):
            return rejected(RejectionKind.MALFORMED, "the body is not a JSON object")
        # The dedupe key: the delivery id header, else the payload's own `id`.
        ids = [h.value for h in request.headers if h.name == ID_HEADER and h.value]
        event_id = ids[0] if ids else ("" if payload.get("id") is None else str(payload["id"]))
        if not event_id:
            return rejected(RejectionKind.INVALID, "no X-Webhook-Id header and no `id` field")
        host.log(LogLevel.DEBUG, f"example event {event_id}")
        return Outcome_Events(
            [
                Event(
                    id=event_id,
                    source=f"urn:wasmhook:{request.source_name}",
                    type="example.received",
                    subject=None,
                    time="",  # empty: the request's receive time
                    data=text,
                    route_keys=[],
                )
            ]
        )
