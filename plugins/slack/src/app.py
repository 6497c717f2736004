"""The Slack plugin: Events API deliveries become `slack.<event.type>[.<subtype>]` events.

The host checks `X-Slack-Signature: v0=<hex>` (HMAC-SHA256 over `v0:{timestamp}:{body}`, with
`X-Slack-Request-Timestamp` inside the source's tolerance) before this code runs. Slack sends no
delivery-id header: the body's `event_id` is the same on every retry (`X-Slack-Retry-Num`), so it
is the event id and the host answers a retry of an accepted event as a duplicate.

The `url_verification` handshake is answered with the challenge and stores nothing.
"""

import json
import re
import time

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Event,
    Header,
    LogLevel,
    Manifest,
    Outcome_Events,
    Outcome_Rejected,
    Outcome_Reply,
    Rejection,
    RejectionKind,
    Reply,
    SignatureScheme_VersionedHmac,
    SourceSettings,
    VersionedHmac,
)

NAME = "slack"
VERSION = "0.1.0"
WORD = re.compile(r"^[a-z0-9_]+$")


class Refusal(Exception):
    def __init__(self, kind: RejectionKind, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def malformed(reason: str) -> Refusal:
    return Refusal(RejectionKind.MALFORMED, reason)


def invalid(reason: str) -> Refusal:
    return Refusal(RejectionKind.INVALID, reason)


def signature_scheme() -> SignatureScheme_VersionedHmac:
    return SignatureScheme_VersionedHmac(
        VersionedHmac(
            signature_header="x-slack-signature",
            timestamp_header="x-slack-request-timestamp",
            version="v0",
        )
    )


def header(request, name: str):
    for item in request.headers:
        if item.name == name:
            return item.value
    return None


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def an_id(value):
    """Slack writes some references as an id string, others as an object with an `id`."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def subject_of(event: dict):
    channel = an_id(event.get("channel")) or an_id(event.get("channel_id"))
    if channel is None and isinstance(event.get("item"), dict):
        channel = an_id(event["item"].get("channel"))
    if channel is not None:
        return f"channels/{channel}"
    user = an_id(event.get("user")) or an_id(event.get("user_id"))
    return f"users/{user}" if user is not None else None


def normalize(request):
    try:
        payload = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise malformed(f"the body is not Events API JSON: {error}")
    if not isinstance(payload, dict):
        raise malformed("the body is not a JSON object")
    kind = payload.get("type")

    if kind == "url_verification":
        challenge = payload.get("challenge")
        if not isinstance(challenge, str) or not challenge:
            raise invalid("url_verification without a `challenge`")
        return Outcome_Reply(
            Reply(
                status=200,
                headers=[Header(name="content-type", value="text/plain")],
                body=challenge.encode("utf-8"),
            )
        )
    if kind == "app_rate_limited":
        return Outcome_Rejected(
            Rejection(kind=RejectionKind.IGNORED, reason="app_rate_limited notice")
        )
    if kind != "event_callback":
        raise invalid(f"unknown Events API type {kind!r}")

    event_id = payload.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise invalid("the event_callback has no `event_id`")
    event = payload.get("event")
    if not isinstance(event, dict):
        raise invalid("the event_callback has no `event` object")
    event_type = event.get("type")
    if not isinstance(event_type, str) or not WORD.match(event_type):
        raise invalid("the event has no `type`")
    type_name = f"slack.{event_type}"
    subtype = event.get("subtype")
    if isinstance(subtype, str) and WORD.match(subtype):
        type_name += f".{subtype}"

    event_time = payload.get("event_time")
    if event_time is None:
        when = ""
    elif is_int(event_time) and event_time > 0:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event_time))
    else:
        raise invalid("`event_time` is not Unix seconds")

    retry = header(request, "x-slack-retry-num")
    if retry is not None:
        reason = header(request, "x-slack-retry-reason") or "unknown"
        host.log(LogLevel.INFO, f"Slack retry {retry} ({reason}) of {event_id}")

    team = payload.get("team_id") or payload.get("enterprise_id") or "unknown"
    # The deprecated verification token is a credential: it is not forwarded to destinations.
    payload.pop("token", None)
    return Outcome_Events(
        [
            Event(
                id=event_id,
                source=f"https://slack.com/team/{team}",
                type=type_name,
                subject=subject_of(event),
                time=when,
                data=json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
                route_keys=[type_name],
            )
        ]
    )


class Handler(exports.Handler):
    def describe(self) -> Manifest:
        return Manifest(
            name=NAME,
            version=VERSION,
            description="Slack Events API webhooks (messages, mentions, reactions, ...).",
            signature=signature_scheme(),
            dedupe_header=None,
            event_types=["slack.*"],
        )

    def configure(self, config: str) -> SourceSettings:
        if config.strip() not in ("", "{}"):
            raise Err(f"the {NAME} plugin takes no configuration; leave `config` empty")
        return SourceSettings(signature=signature_scheme(), dedupe_header=None)

    def handle(self, request):
        try:
            return normalize(request)
        except Refusal as refusal:
            return Outcome_Rejected(Rejection(kind=refusal.kind, reason=refusal.reason))
