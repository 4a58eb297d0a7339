"""The team group: /channel, dialog commands as deep links, private data sent privately."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.commands import CommandRequest, Registry
from dialogs.messages import Outbound
from store.db import Database
from store.models import DialogSession, TeamChannel
from tests.handlers.telegram.harness import running, shown

ADMIN = 6001
REP = 6002
GROUP = -1001234567890
BOT = "salescoach_test_bot"


def _channels(session: Session) -> list[tuple[str, str | None, bool]]:
    return [(c.channel_id, c.name, c.active)
            for c in session.scalars(select(TeamChannel)).all()]


def _dialogs(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(DialogSession)) or 0)


def _secret(registry: Registry) -> None:
    def lookup(req: CommandRequest) -> list[Outbound]:
        return [Outbound(f"Contacts at {req.arg}: 2"),
                Outbound(f"Liu Qiang ({req.arg}): daughter sits the gaokao", private=True)]
    registry.add("secretinfo", lookup, hidden=True)


def urls(message: dict[str, Any]) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b["url"] for row in markup.get("inline_keyboard", []) for b in row if "url" in b]


async def test_channel_binds_the_group_for_an_admin_only(db: Database) -> None:
    async with running(db, admins=str(ADMIN)) as h:
        group = h.api.group_chat(GROUP, "East region sales")
        await h.post(h.api.message_update(h.api.user(REP), f"/channel@{BOT}", chat=group))
        assert shown(h.api.last_message(GROUP)).startswith("Only an admin")
        assert await db.run(_channels) == []
        await h.post(h.api.message_update(h.api.user(ADMIN), "/channel", chat=group))
        assert "This is now the team channel (East region sales)" in shown(
            h.api.last_message(GROUP))
        assert await db.run(_channels) == [(str(GROUP), "East region sales", True)]

        # the bot removed from the group: the binding stops receiving posts
        await h.post({"update_id": h.api.next_update_id(), "my_chat_member": {
            "chat": group, "from": h.api.user(ADMIN), "date": 1,
            "old_chat_member": {"status": "member", "user": h.api.user(h.api.bot_id)},
            "new_chat_member": {"status": "left", "user": {
                "id": h.api.bot_id, "is_bot": True, "first_name": "Coach"}}}})
        assert await db.run(_channels) == [(str(GROUP), "East region sales", False)]


async def test_a_dialog_command_in_the_group_links_to_the_private_chat(db: Database) -> None:
    async with running(db) as h:
        group = h.api.group_chat(GROUP)
        rep = h.api.user(REP)
        await h.post(h.api.message_update(rep, f"/intake@{BOT}", chat=group))
        reply = h.api.last_message(GROUP)
        assert "let's do that in our private chat" in shown(reply)
        assert urls(reply) == [f"https://t.me/{BOT}?start=intake"]
        await h.post(h.api.message_update(rep, "/skip", chat=group))
        assert urls(h.api.last_message(GROUP)) == [f"https://t.me/{BOT}?start=resume"]
        assert await db.run(_dialogs) == 0
        assert h.api.sent(REP) == []  # nothing was written to them first
        # following the link: Telegram sends /start intake in the private chat
        await h.post(h.api.message_update(rep, "/start intake"))
        assert "[1/24] What is the customer's name?" in shown(h.api.last_message(REP))
        assert await db.run(_dialogs) == 1


async def test_the_link_answer_is_in_the_reps_language(db: Database) -> None:
    async with running(db) as h:
        group = h.api.group_chat(GROUP)
        await h.post(h.api.message_update(h.api.user(REP, language_code="zh-hant"), "/qualify",
                                          chat=group))
        reply = h.api.last_message(GROUP)
        assert "我们到私聊里做吧" in shown(reply)
        assert [b["text"] for b in reply["reply_markup"]["inline_keyboard"][0]] == ["到私聊继续"]


async def test_other_bots_commands_and_chatter_are_left_alone(db: Database) -> None:
    async with running(db) as h:
        group = h.api.group_chat(GROUP)
        rep = h.api.user(REP)
        for text in ["/intake@some_other_bot", "good morning team", "/frobnicate"]:
            await h.post(h.api.message_update(rep, text, chat=group))
        assert h.api.calls_to("sendMessage") == []
        await h.post(h.api.message_update(rep, f"/frobnicate@{BOT}", chat=group))
        assert "I don't know “/frobnicate”." in shown(h.api.sent(GROUP)[0])


async def test_help_and_start_in_the_group(db: Database) -> None:
    async with running(db) as h:
        group = h.api.group_chat(GROUP)
        rep = h.api.user(REP)
        await h.post(h.api.message_update(rep, f"/help@{BOT}", chat=group))
        assert "What I can do" in shown(h.api.last_message(GROUP))
        await h.post(h.api.message_update(rep, f"/start@{BOT}", chat=group))
        assert urls(h.api.last_message(GROUP)) == [f"https://t.me/{BOT}"]


async def test_a_look_up_in_the_group_answers_the_asker_in_private(db: Database) -> None:
    async with running(db, register=_secret) as h:
        group = h.api.group_chat(GROUP)
        rep = h.api.user(REP)
        await h.post(h.api.message_update(rep, "/start"))
        greeted = len(h.api.sent(REP))
        await h.post(h.api.message_update(rep, "/secretinfo Sinopec", chat=group))
        in_group = [shown(m) for m in h.api.sent(GROUP)]
        assert in_group == ["Li Lei, I sent you the answer in our private chat. To post a "
                            "look-up here for everyone, end it with share (e.g. /pipeline "
                            "share); personal data stays private."]
        assert [shown(m) for m in h.api.sent(REP)[greeted:]] == [
            "Contacts at Sinopec: 2", "Liu Qiang (Sinopec): daughter sits the gaokao"]


async def test_private_data_asked_in_the_group_goes_to_the_private_chat(db: Database) -> None:
    async with running(db, register=_secret) as h:
        group = h.api.group_chat(GROUP)
        rep = h.api.user(REP)
        await h.post(h.api.message_update(rep, "/start"))
        await h.post(h.api.message_update(rep, "/secretinfo Sinopec share", chat=group))
        in_group = [shown(m) for m in h.api.sent(GROUP)]
        assert in_group[0] == "Contacts at Sinopec: 2"  # shared: `share` is no part of the name
        assert "gaokao" not in " ".join(in_group)
        assert in_group[-1].startswith("Li Lei, I sent you the answer in our private chat.")
        assert shown(h.api.last_message(REP)) == "Liu Qiang (Sinopec): daughter sits the gaokao"


async def test_private_data_for_someone_the_bot_cannot_write_to(db: Database) -> None:
    async with running(db, register=_secret) as h:
        group = h.api.group_chat(GROUP)
        h.api.fail_next(1, "403", chat_id=REP)  # they never opened a chat with the bot
        await h.post(h.api.message_update(h.api.user(REP), "/secretinfo Sinopec", chat=group))
        texts = [shown(m) for m in h.api.sent(GROUP)]
        assert "gaokao" not in " ".join(texts)
        last = h.api.last_message(GROUP)
        assert shown(last).startswith("Li Lei, I can't write to you privately yet")
        payload = urls(last)[0].split("?start=")[1]
        assert payload.startswith("q-") and len(payload) <= 64
        raw = payload[2:]
        assert base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode() == \
            "secretinfo Sinopec"
        # following that link runs the look-up privately
        await h.post(h.api.message_update(h.api.user(REP), f"/start {payload}"))
        assert shown(h.api.last_message(REP)) == "Liu Qiang (Sinopec): daughter sits the gaokao"
