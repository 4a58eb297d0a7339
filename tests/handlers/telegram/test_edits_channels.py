"""Edited messages and channel posts: they change nothing, and are answered where that helps."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.telegram.frontend import ALLOWED_UPDATES
from store.db import Database
from store.models import Account, TeamChannel
from tests.handlers.telegram.harness import running, shown

REP = 5201
GROUP = -100777
CHANNEL = -100888
BOT = "salescoach_test_bot"


def _accounts(session: Session) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in session.execute(select(Account.name, Account.industry)).all()]


def _channels(session: Session) -> int:
    return len(session.scalars(select(TeamChannel)).all())


async def test_an_edited_answer_changes_nothing_and_says_how_to_change_it(
        db: Database) -> None:
    async with running(db) as h:
        user = h.api.user(REP)
        await h.post(h.api.message_update(user, "/intake"))
        name = h.api.message_update(user, "Daqing Oilfield")
        await h.post(name)
        edit = h.api.edited_update(name, "Daqing Oilfield Company")
        await h.post(edit)
        await h.post(edit)  # redelivered: told once
        notes = [c for c in h.api.calls_to("sendMessage", chat_id=REP)
                 if "edited a message" in c.params["text"]]
        assert len(notes) == 1
        assert notes[0].params["reply_parameters"]["message_id"] == \
            name["message"]["message_id"]
        assert "<b>edit</b>" in notes[0].params["text"]
        # the edit was not taken as the answer to the open question (the industry)
        assert await db.run(_accounts) == [("Daqing Oilfield", None)]
        await h.post(h.api.message_update(user, "oil"))
        assert await db.run(_accounts) == [("Daqing Oilfield", "oil_gas")]


async def test_an_edit_is_explained_in_the_users_language(db: Database) -> None:
    async with running(db) as h:
        user = h.api.user(REP, language_code="zh-hans")
        first = h.api.message_update(user, "/help")
        await h.post(first)
        await h.post(h.api.edited_update(first, "/help me"))
        assert shown(h.api.last_message(REP)).startswith("我看到您修改了一条消息")


async def test_edits_in_a_group_are_left_alone(db: Database) -> None:
    async with running(db) as h:
        group = h.api.group_chat(GROUP)
        said = h.api.message_update(h.api.user(REP), "good morning", chat=group)
        await h.post(said)
        await h.post(h.api.edited_update(said, f"/pipeline@{BOT}"))
        assert h.api.calls_to("sendMessage") == []


async def test_channel_posts_are_ignored_and_a_command_is_pointed_elsewhere(
        db: Database) -> None:
    async with running(db) as h:
        channel = h.api.channel_chat(CHANNEL)
        for text in ["New price list is out", "/pipeline@some_other_bot", "/frobnicate"]:
            await h.post(h.api.channel_post_update(channel, text))
        assert h.api.calls_to("sendMessage") == []
        command = h.api.channel_post_update(channel, f"/channel@{BOT}")
        await h.post(command)
        await h.post(command)  # redelivered: answered once
        [note] = h.api.calls_to("sendMessage", chat_id=CHANNEL)
        assert note.params["text"].startswith("I don't work in channels.")
        [[button]] = note.params["reply_markup"]["inline_keyboard"]
        assert button["url"] == f"https://t.me/{BOT}"
        # nothing was bound or recorded for the channel
        assert await db.run(_channels) == 0


async def test_the_webhook_asks_for_edits_and_channel_posts(db: Database) -> None:
    assert {"edited_message", "channel_post"} <= set(ALLOWED_UPDATES)
    async with running(db) as h:
        [hook] = h.api.calls_to("setWebhook")
        allowed = hook.params["allowed_updates"]
        assert "edited_message" in allowed and "channel_post" in allowed
