"""Every post goes out once, also when the database fails between the send and its record:
the real Slack and Telegram front ends deliver through the outbox to the fake servers, the
record of one part raises a connection error, a restarted worker recovers, and the fake server
counts the posts it received."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bot.delivery import FrontEnd, Target
from bot.outbox import Limits, OutboxWorker, Pacer, Post, enqueue
from dialogs.messages import Outbound
from store.db import Database
from store.models import Org, Outbox
from tests.fakes.slack_api import TEAM_ID, FakeSlackAPI
from tests.handlers.slack.harness import make_client
from tests.handlers.telegram.harness import running

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
NO_PACING = Pacer({p: Limits(0.0, 0.0, 0.0) for p in ("slack", "telegram")})
TEXTS = ("Stalled: 2027 winter uniforms", "Overdue: INV-7", "Quiet: Daqing for 30 days")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def _queue(db: Database, platform: str, org_key: str, target: Target) -> None:
    def work(session: Session) -> None:
        org = Org(id=uuid.uuid4(), name="Acme", platform=platform, external_id=org_key)
        session.add(org)
        session.flush()
        enqueue(session, [Post(org_id=org.id, platform=platform, target=target,
                               messages=tuple(Outbound(t) for t in TEXTS), kind="nudge",
                               dedupe_key="nudges:2026-11-30")], T0)

    await db.run(work)


def _row(session: Session) -> tuple[str, int]:
    row = session.scalars(select(Outbox)).one()
    return row.status, row.parts_sent


async def _fail_record_then_recover(db: Database, front: FrontEnd, failing_part: int,
                                    posted: Callable[[], Sequence[str]],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    first = OutboxWorker(db, {front.platform: front}, clock=clock, pacer=NO_PACING)
    record = first._part_sent
    calls = {"n": 0}

    def flaky(session: Session, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == failing_part + 1:  # the database goes away after the send
            raise OperationalError("UPDATE outbox SET parts_sent=…", {},
                                   ConnectionResetError("server closed the connection"))
        record(session, *args, **kwargs)

    monkeypatch.setattr(first, "_part_sent", flaky)
    await first.drain()
    assert list(posted()) == list(TEXTS[:failing_part + 1])

    # the first worker's process is gone; another claims the row once its lease ran out
    await first.drain()
    clock.now += first.lease + timedelta(seconds=1)
    again = OutboxWorker(db, {front.platform: front}, clock=clock, pacer=NO_PACING)
    await again.drain()
    clock.now += timedelta(hours=1)
    await again.drain()

    assert list(posted()) == list(TEXTS)  # each part exactly once
    assert await db.run(_row) == ("sent", len(TEXTS))


@pytest.mark.parametrize("failing_part", [0, 1, 2])
async def test_slack_post_whose_record_failed_is_not_sent_again(
        db: Database, database_url: str, failing_part: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeSlackAPI() as fake:
        fake.add_channel("C0SALES", "sales", is_member=True)
        client, http = await make_client(fake, database_url)
        try:
            await _queue(db, "slack", TEAM_ID, Target(TEAM_ID, "channel", "C0SALES"))
            await _fail_record_then_recover(
                db, client.front, failing_part,
                lambda: [c.params["text"] for c in fake.calls("chat.postMessage")],
                monkeypatch)
        finally:
            await client.front.stop()
            await http.aclose()
            await client.app.close()


@pytest.mark.parametrize("failing_part", [0, 2])
async def test_telegram_post_whose_record_failed_is_not_sent_again(
        db: Database, failing_part: int, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(db) as h:
        bot = h.front.bot_id
        await _queue(db, "telegram", bot, Target(bot, "user", "8001"))
        await _fail_record_then_recover(
            db, h.front, failing_part,
            lambda: [c.params["text"] for c in h.api.calls_to("sendMessage")], monkeypatch)
