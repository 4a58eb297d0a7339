"""What Slack's HTTP side demands: signatures, the 5-minute window, retries, double clicks,
rate limits, `<!channel>` escaping, and a polite message when a listener fails."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from typing import Any

import pytest
from sqlalchemy import func, select

from store.db import Database
from store.models import Account, DialogSession, ProcessedEvent, TeamChannel, User
from tests.handlers.slack.harness import CHANNEL, SlackClient, plain, sign


async def _count(db: Database, model: Any) -> int:
    return await db.run(lambda s: s.execute(select(func.count()).select_from(model)).scalar_one())


# ---- signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["bad-signature", "other-secret", "stale", "future", "missing"])
async def test_unsigned_or_stale_requests_are_refused_and_change_nothing(
        slack: SlackClient, db: Database, how: str) -> None:
    rep = slack.user()
    form = {"team_id": rep.team, "channel_id": CHANNEL, "user_id": rep.user,
            "command": "/coach", "text": "intake", "trigger_id": "1.2.3",
            "response_url": slack.fake.response_url()}
    body = urllib.parse.urlencode(form).encode()
    now = int(time.time())
    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body, now)}
    if how == "bad-signature":
        headers["X-Slack-Signature"] = "v0=" + "0" * 64
    elif how == "other-secret":
        headers.update(sign(body, now, secret="not-the-secret"))
    elif how == "stale":
        headers.update(sign(body, now - 5 * 60 - 10))  # correctly signed, but too old
    elif how == "future":
        headers.update(sign(body, now + 5 * 60 + 10))
    else:
        del headers["X-Slack-Signature"]
    response = await slack.http.post("/slack/events", content=body, headers=headers)
    await slack.front.settle()
    assert response.status_code == 401
    assert slack.fake.calls() == []
    assert await _count(db, User) == 0
    assert await _count(db, DialogSession) == 0


async def test_a_signed_request_within_the_window_is_served(slack: SlackClient) -> None:
    rep = slack.user()
    response = await slack.command("intake", user=rep.user, user_name="liu", team=rep.team,
                                   channel=CHANNEL, channel_name="sales",
                                   timestamp=int(time.time()) - 4 * 60)
    assert response.status_code == 200
    assert response.text == ""  # the ack: nothing shown in the channel by Slack itself
    assert any("[1/24]" in t for t in slack.dm_texts(rep.dm))


async def test_url_verification_answers_the_challenge(slack: SlackClient) -> None:
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = json.dumps({"token": "x", "challenge": challenge,
                       "type": "url_verification"}).encode()
    response = await slack.send(body, "application/json")
    assert response.status_code == 200
    assert response.json() == {"challenge": challenge}


# ---- retries and double clicks ----------------------------------------------------------------


async def test_a_retried_event_changes_nothing_twice(slack: SlackClient, db: Database) -> None:
    rep = slack.user()
    await rep.command("intake")
    await rep.say("Daqing Oilfield Company", event_id="Ev0RETRY01")
    posts = len(slack.fake.calls("chat.postMessage"))
    version = await db.run(lambda s: s.execute(select(DialogSession.version)).scalar_one())
    for attempt in (1, 2):  # Slack retries with the same event id
        response = await rep.say("Daqing Oilfield Company", event_id="Ev0RETRY01",
                                 retry=attempt)
        assert response.status_code == 200
    assert len(slack.fake.calls("chat.postMessage")) == posts
    assert await db.run(lambda s: s.execute(select(DialogSession.version)).scalar_one()) \
        == version
    assert await db.run(lambda s: s.execute(select(Account.name)).scalars().all()) == \
        ["Daqing Oilfield Company"]
    assert await db.run(lambda s: s.execute(
        select(func.count()).select_from(ProcessedEvent)
        .where(ProcessedEvent.event_id == "Ev0RETRY01")).scalar_one()) == 1


@pytest.mark.parametrize("command", ["intake", "pipeline", "channel"])
async def test_a_replayed_slash_command_runs_once(slack: SlackClient, db: Database,
                                                  command: str) -> None:
    """The same signed body again within the 5-minute window (a replay by whoever saw it, or
    a proxy sending it twice) is answered 200 and does nothing."""
    rep = slack.user()
    form = {"token": "legacy", "team_id": rep.team, "team_domain": "fake",
            "channel_id": CHANNEL, "channel_name": "sales", "user_id": rep.user,
            "user_name": rep.name, "command": "/coach", "text": command,
            "api_app_id": "A0FAKE", "is_enterprise_install": "false",
            "response_url": slack.fake.response_url("cmd-replayed"), "trigger_id": "7.8.9"}
    body = urllib.parse.urlencode(form).encode()
    signed_at = int(time.time())
    first = await slack.send(body, "application/x-www-form-urlencoded", timestamp=signed_at)
    assert first.status_code == 200
    calls = slack.fake.calls()
    assert calls
    rows = [(r.platform, r.event_id) for r in await db.run(
        lambda s: s.execute(select(ProcessedEvent)).scalars().all())]
    for replayed_at in (signed_at, signed_at):  # the same signature: within the window
        response = await slack.send(body, "application/x-www-form-urlencoded",
                                    timestamp=replayed_at)
        assert (response.status_code, response.text) == (200, "")
    assert slack.fake.calls() == calls
    assert [(r.platform, r.event_id) for r in await db.run(
        lambda s: s.execute(select(ProcessedEvent)).scalars().all())] == rows
    assert await _count(db, DialogSession) == (1 if command == "intake" else 0)
    # the same command sent anew (a new timestamp, so a new signature) is a new request
    again = await slack.send(body, "application/x-www-form-urlencoded",
                             timestamp=signed_at + 1)
    assert again.status_code == 200
    assert len(slack.fake.calls()) > len(calls)


async def test_a_double_click_answers_once(slack: SlackClient, db: Database) -> None:
    rep = slack.user()
    await rep.command("intake")
    await rep.say("Daqing Oilfield Company")
    await rep.say("oil")
    question = rep.last_question()  # [3/24] kind of organisation: a select menu
    await rep.click(question, value="state_owned")
    after_first = len(slack.fake.calls())
    await rep.click(question, value="state_owned")   # the same click again
    await rep.click(question, value="private")       # or another option on the old question
    assert slack.fake.calls()[after_first:] == []
    assert len(slack.fake.calls("chat.update")) == 1
    nature = await db.run(lambda s: s.execute(select(Account.nature)).scalar_one())
    assert nature == "state_owned"
    assert "[4/24]" in slack.dm_texts(rep.dm)[-1]


async def test_tip_button_keeps_the_question_open(slack: SlackClient) -> None:
    rep = slack.user()
    await rep.command("intake")
    await rep.say("Daqing Oilfield Company")
    question = rep.last_question()
    await rep.click(question, value="tip")
    await rep.click(question, value="tip")  # a double click on the tip: one tip
    assert [t for t in slack.dm_texts(rep.dm) if "Coach's tip" in t].__len__() == 1
    assert not slack.fake.calls("chat.update")  # the buttons stay: the question is open
    await rep.click(question, value="oil_gas")
    assert len(slack.fake.calls("chat.update")) == 1
    assert "[3/24]" in slack.dm_texts(rep.dm)[-1]


# ---- rate limits and server errors ------------------------------------------------------------


async def test_rate_limited_posting_waits_retry_after_and_loses_nothing(
        slack: SlackClient) -> None:
    rep = slack.user()
    await rep.command("intake")
    slack.fake.fail_next(1, status=429, retry_after=1, method="chat.postMessage")
    started = time.monotonic()
    await rep.say("Daqing Oilfield Company")
    posts = [c for c in slack.fake.calls("chat.postMessage")]
    assert [c.status for c in posts[-2:]] == [429, 200]
    assert posts[-1].at - posts[-2].at >= 1.0  # Retry-After honoured
    assert time.monotonic() - started >= 1.0
    assert "[2/24]" in plain(posts[-1].params["text"])


async def test_server_errors_are_retried_with_backoff(slack: SlackClient) -> None:
    rep = slack.user()
    slack.fake.fail_next(2, status=500, method="conversations.open")
    await rep.command("intake")
    opens = slack.fake.calls("conversations.open")
    assert [c.status for c in opens] == [500, 500, 200]
    assert any("[1/24]" in t for t in slack.dm_texts(rep.dm))


# ---- escaping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("typed_in_slack", "stored"), [
    ("&lt;!channel&gt; &amp; Co", "<!channel> & Co"),   # typed the characters literally
    ("<!channel> Oil", "@channel Oil"),                  # Slack's own @channel mention
    ("<@U0BOSS|boss> <!here>", "@boss @here"),           # user mention and @here
])
async def test_user_text_can_never_ping(slack: SlackClient, db: Database, typed_in_slack: str,
                                        stored: str) -> None:
    rep = slack.user()
    await rep.command("intake")
    ts = f"{time.time():.6f}"
    await slack.event({"type": "message", "text": typed_in_slack, "user": rep.user, "ts": ts,
                       "channel": rep.dm, "event_ts": ts, "channel_type": "im"},
                      team=rep.team)
    assert await db.run(lambda s: s.execute(select(Account.name)).scalar_one()) == stored
    question = slack.fake.calls("chat.postMessage")[-1]
    for text in (question.params["text"], question.params["blocks"][0]["text"]["text"]):
        assert "<!" not in text and "<@" not in text
    assert plain(question.params["text"]).startswith(f"[2/24] Which industry is {stored} in?")


# ---- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "expected"), [
    ("en", "Sorry — something went wrong on my side"),
    ("zh", "抱歉，系统出了点问题"),
])
async def test_a_listener_failure_is_told_politely_and_logged_with_the_request_id(
        slack: SlackClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        lang: str, expected: str) -> None:
    rep = slack.user()
    await rep.command(f"lang {lang}")

    async def broken(_inbound: object) -> None:
        raise RuntimeError("the database fell over")

    monkeypatch.setattr(slack.front.coach, "handle", broken)
    with caplog.at_level(logging.ERROR, logger="handlers.slack.frontend"):
        response = await rep.say("Daqing Oilfield Company")
    assert response.status_code == 200  # acked before the work failed
    [apology] = [c for c in slack.fake.calls("chat.postMessage") if expected in
                 plain(c.params["text"])]
    assert apology.params["channel"] == rep.dm
    [record] = [r for r in caplog.records if "failed" in r.getMessage()]
    assert record.exc_info is not None and "the database fell over" in str(record.exc_info[1])
    request_id = record.args[0]  # type: ignore[index]
    assert str(request_id) in plain(apology.params["text"])


# ---- /coach channel ---------------------------------------------------------------------------


async def test_channel_where_the_bot_is_not_a_member_explains_the_invite(
        slack: SlackClient, db: Database) -> None:
    slack.fake.add_channel("C0RANDOM", "random", is_member=False)
    rep = slack.user()
    await rep.command("channel", channel="C0RANDOM", channel_name="random")
    [info] = slack.fake.calls("conversations.info")
    assert info.params["channel"] == "C0RANDOM"
    # An ephemeral post fails where the bot is no member; the response URL still works.
    [answer] = slack.fake.calls("response_url")
    text = plain(answer.params["text"])
    assert "I'm not a member of #random" in text and "/invite @salescoach" in text
    assert answer.params["response_type"] == "ephemeral"
    assert await _count(db, TeamChannel) == 0


async def test_channel_binds_when_the_bot_is_a_member(slack: SlackClient, db: Database) -> None:
    rep = slack.user()
    await rep.command("channel")
    [note] = slack.fake.calls("chat.postEphemeral")
    assert "This is now the team channel (sales)" in plain(note.params["text"])
    rows = await db.run(lambda s: s.execute(
        select(TeamChannel.platform, TeamChannel.channel_id, TeamChannel.name,
               TeamChannel.active)).all())
    assert [tuple(r) for r in rows] == [("slack", CHANNEL, "sales", True)]
    role = await db.run(lambda s: s.execute(select(User.role)).scalar_one())
    assert role == "admin"  # the first to bind a channel, with SALESCOACH_ADMINS unset


async def test_channel_in_a_private_channel_the_bot_cannot_see(slack: SlackClient,
                                                               db: Database) -> None:
    rep = slack.user()
    await rep.command("channel", channel="G0SECRET", channel_name="secret")
    [answer] = slack.fake.calls("response_url")
    assert "/invite @salescoach" in plain(answer.params["text"])
    assert await _count(db, TeamChannel) == 0


async def test_channel_typed_in_the_dm_says_where_to_type_it(slack: SlackClient) -> None:
    rep = slack.user()
    await rep.command("channel", channel=rep.dm)
    texts = slack.seen_by(rep)
    assert any("in the team channel or group itself" in t for t in texts)
