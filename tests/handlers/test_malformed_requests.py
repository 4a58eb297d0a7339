"""Malformed requests into `serve`'s HTTP app are a 4xx, never a 500: refused before any work,
nothing written, nothing sent, and one log line that names the problem but holds no secret
(no token, no signature, no body)."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from typing import Any

import pytest
from sqlalchemy import func, select

from store.db import Database
from store.models import DialogSession, Identity, ProcessedEvent, User
from tests.handlers.slack.conftest import fake_slack, slack  # noqa: F401  (fixtures)
from tests.handlers.slack.harness import CHANNEL, SECRET, TOKEN, SlackClient, sign
from tests.handlers.telegram.harness import SECRET as TELEGRAM_SECRET
from tests.handlers.telegram.harness import running

MARKER = "Zq9-body-marker"  # text in every malformed body: it must never reach a log


async def _written(db: Database) -> int:
    def count(session: Any) -> int:
        return sum(int(session.scalar(select(func.count()).select_from(model)) or 0)
                   for model in (User, Identity, DialogSession, ProcessedEvent))
    return await db.run(count)


def _one_clean_line(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    """One warning about the refusal, and no log line at all that quotes a secret or the
    body."""
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1, [r.getMessage() for r in loud]
    assert loud[0].levelno == logging.WARNING and loud[0].exc_info is None
    for record in caplog.records:
        line = record.getMessage()
        for secret in (MARKER, *secrets):
            assert secret not in line, line


# ---- Slack ------------------------------------------------------------------------------------


def _command(**drop_or_set: str | None) -> bytes:
    form: dict[str, str | None] = {
        "token": "legacy", "team_id": "T0FAKE", "team_domain": "fake", "channel_id": CHANNEL,
        "channel_name": "sales", "user_id": "U0REP1", "user_name": "liu", "command": "/coach",
        "text": f"intake {MARKER}", "api_app_id": "A0FAKE", "trigger_id": "1.2.3",
        "response_url": "https://hooks.slack.invalid/x"}
    form.update(drop_or_set)
    return urllib.parse.urlencode({k: v for k, v in form.items() if v is not None}).encode()


def _payload(payload: Any) -> bytes:
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
SLACK_CASES: dict[str, tuple[bytes, str]] = {
    "json-broken": (b'{"type": "event_callback", "event": {"text": "' + MARKER.encode(), JSON),
    "json-not-an-object": (json.dumps([MARKER, 1]).encode(), JSON),
    "json-event-not-an-object": (json.dumps({"type": "event_callback", "event_id": "Ev1",
                                             "team_id": "T0FAKE", "event": MARKER}).encode(),
                                 JSON),
    "form-payload-broken": (b"payload=%7B%22type%22%3A%22block_actions%22" + MARKER.encode(),
                            FORM),
    "form-payload-not-an-object": (_payload([MARKER]), FORM),
    "form-bad-percent-and-no-command": (b"%zz=" + MARKER.encode() + b"&\xff\xfe=1", FORM),
    "command-without-user_id": (_command(user_id=None), FORM),
    "command-with-empty-user_id": (_command(user_id=""), FORM),
    "command-without-channel_id": (_command(channel_id=None), FORM),
    "command-without-team_id": (_command(team_id=None), FORM),
    "click-without-actions": (_payload({"type": "block_actions", "team": {"id": "T0FAKE"},
                                        "user": {"id": "U0REP1", "name": MARKER},
                                        "actions": []}), FORM),
    "click-with-a-text-user": (_payload({"type": "block_actions", "user": MARKER,
                                         "actions": [{"action_id": "sc_a_0"}]}), FORM),
    "event-without-type": (json.dumps({"type": "event_callback", "team_id": "T0FAKE",
                                       "event_id": "Ev2", "event": {"text": MARKER}}).encode(),
                           JSON),
    "deeply-nested-json": (b'{"type": "event_callback", "event": ' + b"[" * 100_000
                           + b"]" * 100_000 + b"}", JSON),
    "click-without-user": (_payload({"type": "block_actions", "team": {"id": "T0FAKE"},
                                     "actions": [{"action_id": "sc_a_0", "type": "button",
                                                  "value": MARKER,
                                                  "text": {"text": MARKER}}],
                                     "container": {"type": "message", "channel_id": "D0REP1",
                                                   "message_ts": "1.2"}}), FORM),
}


@pytest.mark.parametrize("case", list(SLACK_CASES))
async def test_malformed_slack_requests_are_a_400_with_nothing_done(
        slack: SlackClient, db: Database, caplog: pytest.LogCaptureFixture,  # noqa: F811
        case: str) -> None:
    body, content_type = SLACK_CASES[case]
    now = int(time.time())
    headers = {"Content-Type": content_type, **sign(body, now)}
    with caplog.at_level(logging.DEBUG):
        response = await slack.http.post("/slack/events", content=body, headers=headers)
        await slack.front.settle()
    assert response.status_code == 400, response.text
    assert MARKER not in response.text
    assert slack.fake.calls() == []
    assert await _written(db) == 0
    _one_clean_line(caplog, SECRET, TOKEN, headers["X-Slack-Signature"])


@pytest.mark.parametrize("timestamp", ["abc", "1e9", "", " 17000", "-1", "1" * 400])
async def test_a_non_numeric_slack_timestamp_is_refused(
        slack: SlackClient, db: Database, caplog: pytest.LogCaptureFixture,  # noqa: F811
        timestamp: str) -> None:
    body = _command()
    signature = sign(body, int(time.time()))["X-Slack-Signature"]
    with caplog.at_level(logging.DEBUG):
        response = await slack.http.post("/slack/events", content=body, headers={
            "Content-Type": FORM, "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature})
        await slack.front.settle()
    assert 400 <= response.status_code < 500, response.status_code
    assert slack.fake.calls() == []
    assert await _written(db) == 0
    _one_clean_line(caplog, SECRET, TOKEN, signature)


async def test_a_well_formed_command_still_works_after_a_refusal(
        slack: SlackClient) -> None:  # noqa: F811
    body, content_type = SLACK_CASES["command-without-user_id"]
    refused = await slack.send(body, content_type)
    assert refused.status_code == 400
    rep = slack.user()
    response = await rep.command("intake")
    assert response.status_code == 200
    assert any("[1/24]" in t for t in slack.dm_texts(rep.dm))


# ---- Telegram ---------------------------------------------------------------------------------


def _deep(levels: int) -> bytes:
    return (b'{"update_id": 7, "message": ' + b'{"a": [' * levels + MARKER.encode().join(
        [b'"', b'"']) + b"]}" * levels + b"}")


def _text_message(n: int = 1) -> dict[str, Any]:
    user = {"id": 5001, "is_bot": False, "first_name": "Li", "language_code": "en"}
    return {"message_id": n, "date": int(time.time()), "chat": {"id": 5001, "type": "private"},
            "from": user, "text": f"/intake {MARKER}",
            "entities": [{"type": "bot_command", "offset": 0, "length": 7}]}


def _message(update_id: Any) -> bytes:
    return json.dumps({"update_id": update_id, "message": _text_message()}).encode()


def _reply_chain(levels: int) -> bytes:
    """A message replying to a message replying to … (python-telegram-bot recurses on it)."""
    message = _text_message()
    for n in range(2, levels + 1):
        message = {**_text_message(n), "reply_to_message": message}
    return json.dumps({"update_id": 8, "message": message}).encode()


TELEGRAM_CASES: dict[str, bytes] = {
    "nested-100000-levels": _deep(100_000),
    "nested-400-levels": _deep(400),
    "reply-chain-400-levels": _reply_chain(400),
    "update_id-a-word": _message(MARKER),
    "update_id-a-numeric-string": _message("12"),
    "update_id-a-fraction": _message(1.5),
    "update_id-true": _message(True),
    "update_id-null": _message(None),
    "update_id-negative": _message(-3),
    "update_id-huge": _message(10 ** 30),
    "message-not-an-object": json.dumps({"update_id": 9, "message": MARKER}).encode(),
    "not-utf8": b'{"update_id": 9, "message": "\xff\xfe' + MARKER.encode() + b'"}',
}


@pytest.mark.parametrize("case", list(TELEGRAM_CASES))
async def test_malformed_telegram_updates_are_a_400_with_nothing_done(
        db: Database, caplog: pytest.LogCaptureFixture, case: str) -> None:
    async with running(db) as h:
        before = len(h.api.calls)
        with caplog.at_level(logging.DEBUG):
            response = await h.post({}, raw=TELEGRAM_CASES[case])
        assert response.status_code == 400, response.text
        assert MARKER not in response.text
        assert h.api.calls[before:] == []
        assert await _written(db) == 0
        _one_clean_line(caplog, TELEGRAM_SECRET, h.api.token)
        # and the bot still serves a well-formed update
        await h.post(h.api.message_update(h.api.user(5001), "/intake"))
        assert h.api.calls_to("sendMessage")
