"""Unit tests of the Slack plugin's logic in plain CPython, without the component runtime.

They import `app` with the real bindings componentize-py generates for the contract (`make
test` writes them to target/slack-bindings and puts them and `src` on PYTHONPATH). The only host
import the plugin calls, `host.log`, raises NotImplementedError outside a component, so each
test replaces it with a recorder.
"""

import json

import pytest

import app
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import (
    Header,
    LogLevel,
    Outcome_Events,
    Outcome_Rejected,
    Outcome_Reply,
    RejectionKind,
    Request,
)


@pytest.fixture
def logged(monkeypatch):
    lines = []
    monkeypatch.setattr(host, "log", lambda level, message: lines.append((level, message)))
    return lines


def request(body, headers=()):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode("utf-8")
    return Request(
        method="POST",
        path="/webhooks/slack",
        query="",
        headers=[Header(name=name, value=value) for name, value in headers],
        body=body,
        received_at_unix_ms=1_700_000_000_000,
        received_at="2023-11-14T22:13:20Z",
        source_name="slack",
        config="",
    )


def callback(event, **fields):
    payload = {
        "token": "XXYYZZ",
        "team_id": "T061EG9R6",
        "type": "event_callback",
        "event_id": "Ev0PV52K21",
        "event_time": 1355517523,
        "event": event,
    }
    payload.update(fields)
    return payload


def one_event(outcome):
    assert isinstance(outcome, Outcome_Events), outcome
    assert len(outcome.value) == 1
    return outcome.value[0]


@pytest.mark.parametrize(
    "event, expected_type, expected_subject",
    [
        ({"type": "app_mention", "channel": "C1", "user": "U1"}, "slack.app_mention", "channels/C1"),
        (
            {"type": "message", "subtype": "message_changed", "channel": "C2"},
            "slack.message.message_changed",
            "channels/C2",
        ),
        (
            {"type": "reaction_added", "user": "U3", "item": {"type": "message", "channel": "C3"}},
            "slack.reaction_added",
            "channels/C3",
        ),
        ({"type": "team_join", "user": {"id": "U4", "name": "x"}}, "slack.team_join", "users/U4"),
        ({"type": "channel_created", "channel": {"id": "C5"}}, "slack.channel_created", "channels/C5"),
        ({"type": "tokens_revoked"}, "slack.tokens_revoked", None),
        # A subtype that is not a plain word is not appended to the type.
        ({"type": "message", "subtype": "Not A Word", "channel": "C6"}, "slack.message", "channels/C6"),
    ],
)
def test_an_event_callback_maps_to_one_event(logged, event, expected_type, expected_subject):
    normalized = one_event(app.normalize(request(callback(event))))
    assert normalized.id == "Ev0PV52K21"
    assert normalized.type == expected_type
    assert normalized.route_keys == [expected_type]
    assert normalized.subject == expected_subject
    assert normalized.source == "https://slack.com/team/T061EG9R6"
    assert normalized.time == "2012-12-14T20:38:43Z"
    assert logged == []


def test_the_verification_token_is_removed_from_the_data(logged):
    normalized = one_event(app.normalize(request(callback({"type": "app_mention", "channel": "C1"}))))
    data = json.loads(normalized.data)
    assert "token" not in data
    assert data["event"] == {"type": "app_mention", "channel": "C1"}
    assert data["event_id"] == "Ev0PV52K21"


def test_an_event_without_event_time_gets_the_receive_time_and_an_enterprise_source(logged):
    payload = callback({"type": "app_mention", "channel": "C1"}, enterprise_id="E1")
    del payload["event_time"]
    del payload["team_id"]
    normalized = one_event(app.normalize(request(payload)))
    assert normalized.time == ""
    assert normalized.source == "https://slack.com/team/E1"


def test_a_retry_keeps_the_event_id_and_is_only_logged(logged):
    payload = callback({"type": "message", "channel": "C1"})
    first = one_event(app.normalize(request(payload)))
    retry = one_event(
        app.normalize(
            request(payload, [("x-slack-retry-num", "2"), ("x-slack-retry-reason", "http_timeout")])
        )
    )
    assert retry == first, "the retry is the same event, so the host's dedupe key matches"
    assert logged == [(LogLevel.INFO, "Slack retry 2 (http_timeout) of Ev0PV52K21")]


def test_url_verification_is_answered_with_the_challenge(logged):
    outcome = app.normalize(request({"type": "url_verification", "challenge": "3eZbrw1aB"}))
    assert isinstance(outcome, Outcome_Reply)
    assert outcome.value.status == 200
    assert outcome.value.body == b"3eZbrw1aB"
    assert outcome.value.headers == [Header(name="content-type", value="text/plain")]


def test_app_rate_limited_is_ignored(logged):
    outcome = app.normalize(request({"type": "app_rate_limited", "team_id": "T1"}))
    assert isinstance(outcome, Outcome_Rejected)
    assert outcome.value.kind == RejectionKind.IGNORED


@pytest.mark.parametrize(
    "body, kind, reason",
    [
        (b"\xff\xfe", RejectionKind.MALFORMED, "not Events API JSON"),
        (b"token=x&team_id=T1", RejectionKind.MALFORMED, "not Events API JSON"),
        (b"[1, 2]", RejectionKind.MALFORMED, "not a JSON object"),
        ({"type": "url_verification"}, RejectionKind.INVALID, "without a `challenge`"),
        ({"type": "block_actions"}, RejectionKind.INVALID, "unknown Events API type"),
        ({**callback({"type": "message"}), "event_id": ""}, RejectionKind.INVALID, "no `event_id`"),
        ({**callback({"type": "message"}), "event": "message"}, RejectionKind.INVALID, "no `event` object"),
        (callback({"type": "Message!"}), RejectionKind.INVALID, "the event has no `type`"),
        ({**callback({"type": "message"}), "event_time": "yesterday"}, RejectionKind.INVALID, "not Unix seconds"),
        ({**callback({"type": "message"}), "event_time": True}, RejectionKind.INVALID, "not Unix seconds"),
        ({**callback({"type": "message"}), "event_time": -5}, RejectionKind.INVALID, "not Unix seconds"),
    ],
)
def test_refusals_name_what_is_wrong(logged, body, kind, reason):
    outcome = app.Handler().handle(request(body))
    assert isinstance(outcome, Outcome_Rejected), outcome
    assert outcome.value.kind == kind
    assert reason in outcome.value.reason


def test_configure_refuses_any_configuration_and_declares_the_slack_scheme():
    handler = app.Handler()
    for empty in ("", "  ", "{}"):
        settings = handler.configure(empty)
        assert settings.signature.value.signature_header == "x-slack-signature"
        assert settings.signature.value.timestamp_header == "x-slack-request-timestamp"
        assert settings.signature.value.version == "v0"
        assert settings.dedupe_header is None
    with pytest.raises(Err):
        handler.configure('{"channel": "C1"}')
    manifest = handler.describe()
    assert (manifest.name, manifest.event_types) == ("slack", ["slack.*"])
