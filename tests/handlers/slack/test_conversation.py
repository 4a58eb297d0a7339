"""The terminal's conversation scenarios, through Slack: `/coach intake` in a channel opens the
DM; answers are typed in the DM or clicked (buttons, select menus, checkboxes + Done, the
back/skip/tip controls); the same rows must end up in the database as in the terminal."""

from __future__ import annotations

import re
from typing import Any

import pytest

from store.db import Database
from tests.conversation_checks import (
    SCENARIOS,
    Scenario,
    check_intake_rows,
    check_intake_transcript,
    stored,
)
from tests.fakes.slack_api import Call
from tests.handlers.slack.harness import CHANNEL, SlackClient, SlackUser, plain

SLASH_LINES = {"intake", "lang zh", "建档"}


def _last_dm_post(slack: SlackClient, rep: SlackUser) -> Call | None:
    posts = [c for c in slack.fake.calls("chat.postMessage")
             if c.ok and c.params.get("channel") == rep.dm]
    return posts[-1] if posts else None


def _elements(post: Call, block_id: str) -> list[dict[str, Any]]:
    for block in post.params.get("blocks") or []:
        if block.get("block_id") == block_id:
            return list(block["elements"])
    return []


async def play(slack: SlackClient, rep: SlackUser, line: str) -> str:
    """Send one scenario line the way a rep in Slack would; return how ("slash", "typed",
    "button", "select", "checkboxes", "control")."""
    if line in SLASH_LINES:
        response = await rep.command(line)
        assert response.status_code == 200
        return "slash"
    post = _last_dm_post(slack, rep)
    aliases = slack.front.coach.engine.aliases
    if post is not None:
        word = aliases.get(line.casefold())
        controls = {e["value"]: e for e in _elements(post, "sc_controls")}
        if word is not None and word in controls:
            await rep.click(post, value=word)
            return "control"
        options = _elements(post, "sc_options")
        multi = _elements(post, "sc_multi_block")
        if multi:
            choices = multi[0]["options"]
            numbers = [p.strip() for p in re.split(r"[,、]", line)]
            if all(n.isdigit() and 1 <= int(n) <= len(choices) for n in numbers):
                await rep.tick_and_done(post, [choices[int(n) - 1]["value"] for n in numbers])
                return "checkboxes"
        elif options:
            if options[0]["type"] == "static_select":
                choices = options[0]["options"]
                labels = [o["text"]["text"] for o in choices]
            else:
                choices = options
                labels = [o["text"]["text"] for o in options]
            kind = "select" if options[0]["type"] == "static_select" else "button"
            if line.isdigit() and 1 <= int(line) <= len(choices):
                await rep.click(post, value=choices[int(line) - 1]["value"])
                return kind
            if line in labels:
                await rep.click(post, label=line)
                return kind
    response = await rep.say(line)
    assert response.status_code == 200
    return "typed"


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_intake_scenario_through_slack(slack: SlackClient, db: Database,
                                             scenario: Scenario) -> None:
    rep = slack.user()
    ways: list[str] = []
    replies: list[tuple[str, str]] = []  # each line, with what it made the app post in the DM
    for line in scenario.script:
        since = len(slack.fake.calls())
        ways.append(await play(slack, rep, line))
        replies.append((line, "\n".join(slack.dm_texts(rep.dm, since))))

    # Every way of answering was used: slash commands, typing, buttons, menus, checkboxes and
    # the control buttons.
    assert {"slash", "typed", "button", "select", "control"} <= set(ways), ways
    if scenario.script[0] == "intake":
        assert "checkboxes" in ways
    check_intake_transcript(scenario, "\n".join(slack.seen_by(rep)), replies)
    assert scenario.verdict in "\n".join(slack.dm_texts(rep.dm)[-3:])
    # The dialog ran in the DM; the channel only got the ephemeral "opened in our DM".
    assert not [c for c in slack.fake.calls("chat.postMessage")
                if c.params.get("channel") == CHANNEL]
    notes = [c for c in slack.fake.calls("chat.postEphemeral") if c.ok]
    assert notes and all(c.params["channel"] == CHANNEL and c.params["user"] == rep.user
                         for c in notes)
    # Each click updated its question: the answer shown, the buttons gone.
    updates = slack.fake.calls("chat.update")
    clicks = sum(1 for w in ways if w in ("button", "select", "checkboxes", "control")) \
        - sum(1 for line, w in zip(scenario.script, ways, strict=True)
              if w == "control" and slack.front.coach.engine.aliases.get(line.casefold())
              == "tip")
    assert len(updates) == clicks
    for update in updates:
        kinds = [b["type"] for b in update.params["blocks"]]
        assert "actions" not in kinds and kinds[-1] == "context"
        assert update.params["blocks"][-1]["elements"][0]["text"].startswith("✓ *")

    check_intake_rows(await stored(db, platform="slack", user=rep.user), scenario)


async def test_lang_zh_via_the_coach_and_help_is_ephemeral(slack: SlackClient) -> None:
    rep = slack.user()
    await rep.command("lang zh")
    [note] = slack.fake.calls("chat.postEphemeral")
    assert plain(note.params["text"]) == "语言：中文。"
    assert note.params["channel"] == CHANNEL
    await rep.command("")  # /coach alone: the help, in Chinese now
    help_note = slack.fake.calls("chat.postEphemeral")[-1]
    assert "intake" in plain(help_note.params["text"])
    assert not slack.fake.calls("chat.postMessage")


async def test_dialog_command_typed_in_the_dm_answers_there_without_a_note(
        slack: SlackClient) -> None:
    rep = slack.user()
    await rep.command("intake", channel=rep.dm)
    assert not slack.fake.calls("chat.postEphemeral")
    assert any("[1/24]" in t for t in slack.dm_texts(rep.dm))


async def test_a_command_in_a_dm_between_two_people_runs_in_our_dm(slack: SlackClient,
                                                                   db: Database) -> None:
    rep = slack.user()
    await rep.command("intake", channel="D0LIUWANG")
    assert any("[1/24]" in t for t in slack.dm_texts(rep.dm))
    assert not [c for c in slack.fake.calls("chat.postMessage")
                if c.params["channel"] == "D0LIUWANG"]
    # the note goes through the response URL: the bot is not in that DM
    [note] = slack.fake.calls("response_url")
    assert "opened it in our DM" in plain(note.params["text"])
    await rep.command("channel", channel="D0LIUWANG")
    assert "in the team channel or group itself" in plain(
        slack.fake.calls("response_url")[-1].params["text"])
    from store.models import TeamChannel
    assert await db.run(lambda s: s.query(TeamChannel).count()) == 0


async def test_a_bot_message_or_an_edit_in_the_dm_is_not_a_turn(slack: SlackClient) -> None:
    rep = slack.user()
    await rep.command("intake")
    before = len(slack.fake.calls())
    base = {"type": "message", "channel": rep.dm, "channel_type": "im", "ts": "1.2",
            "event_ts": "1.2"}
    await slack.event({**base, "text": "Daqing", "bot_id": "B0OTHER", "user": "U0OTHER"},
                      team=rep.team)
    await slack.event({**base, "subtype": "message_changed", "message": {"text": "x"}},
                      team=rep.team)
    assert slack.fake.calls()[before:] == []


async def test_a_rep_whose_slack_is_in_chinese_is_coached_in_chinese_by_name(
        slack: SlackClient) -> None:
    rep = slack.user("U0WANG", "王芳", locale="zh-CN")
    await rep.say("建档")
    assert "[1/24] 客户名称是什么？" in slack.dm_texts(rep.dm)[-1]
    [info] = slack.fake.calls("users.info")
    assert info.params["user"] == "U0WANG"
    await rep.open_home()
    view = slack.fake.calls("views.publish")[-1].params["view"]
    assert "王芳，您好" in view["blocks"][1]["text"]["text"]
    assert len(slack.fake.calls("users.info")) == 1  # asked once


async def test_lookups_are_ephemeral_unless_shared(slack: SlackClient) -> None:
    rep = slack.user()
    await rep.command("help")
    # the help is long enough to go out in parts (Slack's message size): every part ephemeral
    ephemeral = [c.params["channel"] for c in slack.fake.calls("chat.postEphemeral")]
    assert ephemeral and set(ephemeral) == {CHANNEL}
    assert not slack.fake.calls("chat.postMessage")
    await rep.command("help share")
    shared = slack.fake.calls("chat.postMessage")
    assert shared and {c.params["channel"] for c in shared} == {CHANNEL}
    assert "What I can do" in plain(shared[0].params["text"])
    assert len(slack.fake.calls("chat.postEphemeral")) == len(ephemeral)


async def test_sharing_where_the_bot_is_not_a_member_goes_through_the_response_url(
        slack: SlackClient) -> None:
    slack.fake.add_channel("C0RANDOM", "random", is_member=False)
    rep = slack.user()
    await rep.command("help share", channel="C0RANDOM", channel_name="random")
    answers = slack.fake.calls("response_url")  # the help may go out in parts
    assert answers and all(a.params["response_type"] == "in_channel" for a in answers)
    assert "What I can do" in plain(answers[0].params["text"])


async def test_a_shared_answer_keeps_private_parts_to_the_asker(
        slack: SlackClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.coach import Reply
    from dialogs.messages import Inbound, Outbound

    async def answer(inbound: Inbound) -> Reply:
        assert inbound.chat == "channel" and inbound.chat_key == CHANNEL
        return Reply((Outbound("<b>Daqing</b>: 2 open opportunities"),
                      Outbound("Liu Qiang: daughter sits the gaokao", private=True)), "en")

    monkeypatch.setattr(slack.front.coach, "handle", answer)
    rep = slack.user()
    await rep.command("account Daqing share")
    [shared] = slack.fake.calls("chat.postMessage")
    assert (shared.params["channel"], shared.params["text"]) == \
        (CHANNEL, "*Daqing*: 2 open opportunities")
    notes = [plain(c.params["text"]) for c in slack.fake.calls("chat.postEphemeral")]
    assert notes == ["This part contains personal data, so only you can see it.",
                     "Liu Qiang: daughter sits the gaokao"]
