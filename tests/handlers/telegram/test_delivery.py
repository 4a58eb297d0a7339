"""`deliver` for the outbox: posts, buttons, files, long texts, and every way a post can fail."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.commands import CommandRequest, Registry
from bot.delivery import DeliveryError, Target
from dialogs.messages import Attachment, Option, Outbound
from store.db import Database
from store.models import Identity, TeamChannel
from tests.handlers.telegram.harness import Harness, running, shown

ADMIN = 7001
GROUP = -100777
BOT_ORG = "7000001"


def png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))


def _blocked(session: Session) -> Any:
    return session.scalar(select(Identity.blocked_at).where(Identity.external_id == str(ADMIN)))


def _active(session: Session) -> list[bool]:
    return [c.active for c in session.scalars(select(TeamChannel)).all()]


async def _bound(h: Harness) -> None:
    """The admin has talked to the bot and bound the group as the team channel."""
    await h.post(h.api.message_update(h.api.user(ADMIN), "/start"))
    await h.post(h.api.message_update(h.api.user(ADMIN), "/channel",
                                      chat=h.api.group_chat(GROUP)))


def _ack(registry: Registry) -> None:
    def ack(req: CommandRequest) -> list[Outbound]:
        return [Outbound(f"Noted: {req.arg} ({req.speaker.display_name})")]
    registry.add("ack", ack, hidden=True)


async def test_a_post_with_buttons_in_the_group_and_a_tap_on_it(db: Database) -> None:
    async with running(db, admins=str(ADMIN), register=_ack) as h:
        await _bound(h)
        nudge = Outbound("<b>Stalled:</b> 2027 winter uniforms (21 days)", kind="nudge",
                         options=(Option("ack stalled-1", "Got it"),
                                  Option("ack snooze-1", "Snooze a week")))
        ids = await h.front.deliver(Target(BOT_ORG, "channel", str(GROUP)), [nudge])
        post = h.api.last_message(GROUP)
        assert ids == [str(post["message_id"])]
        assert [b["text"] for b in h.api.buttons(post)] == ["Got it", "Snooze a week"]
        await h.post(h.api.tap(h.api.user(ADMIN), post, "Got it"))
        assert shown(h.api.last_message(GROUP)) == "Noted: stalled-1 (Li Lei)"
        edited = next(m for m in h.api.sent(GROUP) if m["message_id"] == post["message_id"])
        assert edited["text"].endswith("→ Got it") and "reply_markup" not in edited


async def test_files_go_as_photo_and_document(db: Database) -> None:
    async with running(db) as h:
        chart, docx = png(), b"PK\x03\x04 not really a docx"
        out = Outbound("Your pipeline", attachments=(
            Attachment("pipeline.png", chart, "image/png", "Pipeline <by stage>"),
            Attachment("proposal.docx", docx,
                       "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                       "Proposal & plan")))
        ids = await h.front.deliver(Target(BOT_ORG, "user", "8001"), [out])
        assert len(ids) == 3
        [photo] = h.api.calls_to("sendPhoto")
        assert photo.files["photo"][1] == chart
        assert photo.params["caption"] == "Pipeline &lt;by stage&gt;"
        [document] = h.api.calls_to("sendDocument")
        name, data, _mime = document.files["document"]
        assert (name, data) == ("proposal.docx", docx)
        assert document.params["caption"] == "Proposal &amp; plan"


async def test_a_long_text_is_split_into_messages_that_fit(db: Database) -> None:
    async with running(db) as h:
        lines = [f"<b>Account {i}</b> — Daqing &amp; Co, 长庆油田 🚀 status: <i>active</i>"
                 for i in range(200)]
        out = Outbound("\n".join(lines))
        ids = await h.front.deliver(Target(BOT_ORG, "user", "8002"), [out])
        calls = h.api.calls_to("sendMessage")
        assert len(ids) == len(calls) >= 3
        assert all(c.failed is None for c in calls)  # each piece parsed and fitted
        joined = "\n".join(c.params["text"] for c in calls)
        for i in (0, 77, 199):
            assert f"<b>Account {i}</b>" in joined


async def test_private_messages_never_reach_a_group(db: Database) -> None:
    async with running(db) as h:
        ids = await h.front.deliver(Target(BOT_ORG, "channel", str(GROUP)), [
            Outbound("Team digest"), Outbound("Liu's daughter: gaokao", private=True)])
        assert len(ids) == 1
        assert [shown(m) for m in h.api.sent(GROUP)] == ["Team digest"]


async def test_flood_control_becomes_retry_after(db: Database) -> None:
    async with running(db) as h:
        h.api.fail_next(1, "429", retry_after=7)
        with pytest.raises(DeliveryError) as caught:
            await h.front.deliver(Target(BOT_ORG, "user", "8003"), [Outbound("hi")])
        assert caught.value.retry_after == 7 and not caught.value.permanent
        assert len(h.api.calls_to("sendMessage")) == 1  # the outbox waits, not deliver


async def test_server_errors_are_worth_a_retry(db: Database) -> None:
    async with running(db) as h:
        h.api.fail_next(1, "500")
        with pytest.raises(DeliveryError) as caught:
            await h.front.deliver(Target(BOT_ORG, "user", "8004"), [Outbound("hi")])
        assert not caught.value.permanent and caught.value.retry_after is None
        assert await h.front.deliver(Target(BOT_ORG, "user", "8004"), [Outbound("hi")])


async def test_a_user_who_blocked_the_bot_is_recorded_and_permanent(db: Database) -> None:
    async with running(db, admins=str(ADMIN)) as h:
        await _bound(h)
        h.api.fail_next(1, "403")
        with pytest.raises(DeliveryError) as caught:
            await h.front.deliver(Target(BOT_ORG, "user", str(ADMIN)), [Outbound("digest")])
        assert caught.value.permanent
        assert "blocked" in caught.value.reason
        assert await db.run(_blocked) is not None


@pytest.mark.parametrize("kind", ["400", "kicked"])
async def test_a_group_that_is_gone_is_deactivated(db: Database, kind: str) -> None:
    async with running(db, admins=str(ADMIN)) as h:
        await _bound(h)
        assert await db.run(_active) == [True]
        h.api.fail_next(1, kind)
        with pytest.raises(DeliveryError) as caught:
            await h.front.deliver(Target(BOT_ORG, "channel", str(GROUP)), [Outbound("nudge")])
        assert caught.value.permanent
        assert await db.run(_active) == [False]


async def test_group_posts_are_paced_at_twenty_a_minute(db: Database) -> None:
    async with running(db) as h:
        now = [1000.0]
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)
            now[0] += seconds

        h.front.limiter.clock = lambda: now[0]
        h.front.limiter.sleep = sleep
        from handlers.telegram.limiter import FloodLimiter, Limits

        real = FloodLimiter(Limits())
        h.front.limiter._chat, h.front.limiter._group = real._chat, real._group
        h.front.limiter._overall = real._overall
        for i in range(25):
            await h.front.deliver(Target(BOT_ORG, "channel", str(GROUP)), [Outbound(f"n{i}")])
        assert len(h.api.calls_to("sendMessage")) == 25
        assert now[0] - 1000.0 >= 60.0  # the 21st post waited for the minute to pass
        assert now[0] - 1000.0 < 75.0


async def test_a_nudge_links_its_owner_and_keeps_names_escaped(db: Database) -> None:
    from dialogs.messages import Mention

    async with running(db) as h:
        await h.front.deliver(Target(BOT_ORG, "channel", str(GROUP)), [Outbound(
            "<b>Stalled:</b> Daqing &amp; Co\nOwner: @Li &amp; &lt;Wang&gt; · @Zhang · @Wu",
            kind="nudge", mentions=(Mention("telegram", "8001", "Li & <Wang>"),
                                    Mention("slack", "U0ZHANG", "Zhang"),
                                    Mention("telegram", "not-a-number", "Wu")))])
        [call] = h.api.calls_to("sendMessage", chat_id=GROUP, ok=True)
        assert call.params["text"] == (
            '<b>Stalled:</b> Daqing &amp; Co\nOwner: '
            '<a href="tg://user?id=8001">@Li &amp; &lt;Wang&gt;</a> · @Zhang · @Wu')
        # what Telegram shows: the name, as typed, behind the link
        assert h.api.last_message(GROUP)["text"] == \
            "Stalled: Daqing & Co\nOwner: @Li & <Wang> · @Zhang · @Wu"


async def test_a_long_message_is_never_cut_inside_a_mention(db: Database) -> None:
    from dialogs.messages import Mention

    async with running(db) as h:
        line = "• stalled 21 days, owner @Li Lei (Daqing)"
        await h.front.deliver(Target(BOT_ORG, "user", "8005"), [Outbound(
            "\n".join([line] * 300), mentions=(Mention("telegram", "8001", "Li Lei"),))])
        calls = h.api.calls_to("sendMessage")
        assert len(calls) >= 3 and all(c.failed is None for c in calls)
        link = '<a href="tg://user?id=8001">@Li Lei</a>'
        assert sum(c.params["text"].count(link) for c in calls) == 300
