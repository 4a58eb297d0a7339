"""The scheduler: one tick runs the nudge and digest passes; on PostgreSQL only the holder of
the advisory lock works, and two schedulers at once still queue everything once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session

from bot.scheduler import LOCK_KEY, Scheduler
from dialogs.render import Renderer
from store.db import Database
from store.models import Nudge, Outbox
from tests.bot import jobs_data as data

RENDERER = Renderer()
AT = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai: digest and nudges


def company(session: Session) -> None:
    data.team(session)
    data.opp(session, "idle", stage="deposit", idle_days=6)
    data.invoice(session, "INV-1", overdue_days=12)


async def counts(db: Database) -> tuple[int, int]:
    def read(session: Session) -> tuple[int, int]:
        return (session.scalar(select(func.count()).select_from(Nudge)) or 0,
                session.scalar(select(func.count()).select_from(Outbox)) or 0)

    return await db.run(read)


async def test_a_tick_raises_nudges_and_queues_the_digest(db: Database) -> None:
    await db.run(company)
    scheduler = Scheduler(db, RENDERER, clock=lambda: AT)
    try:
        first = await scheduler.tick()
        assert (first.ran, first.nudges, first.posts, first.digests) == (True, 2, 2, 1)
        again = await scheduler.tick()
        assert (again.nudges, again.digests) == (0, 0)
    finally:
        await scheduler.close()
    assert await counts(db) == (2, 3)


async def test_run_forever_stops_cleanly(db: Database) -> None:
    await db.run(company)
    # freeze_heap is serve's: the test process keeps its collector as it is
    scheduler = Scheduler(db, RENDERER, clock=lambda: AT, interval=0.05, freeze_heap=False)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run_forever(stop))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 5)
    await scheduler.close()
    assert await counts(db) == (2, 3)


async def test_only_the_lock_holder_works_on_postgresql(db: Database, database_url: str) -> None:
    if db.is_sqlite:
        pytest.skip("advisory locks are PostgreSQL's; SQLite serves one process")
    await db.run(company)
    holder = create_async_engine(db.url)
    scheduler = Scheduler(db, RENDERER, clock=lambda: AT)
    try:
        async with holder.connect() as conn:
            assert await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY})
            assert (await scheduler.tick()).ran is False
            assert await counts(db) == (0, 0)
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
        assert (await scheduler.tick()).ran is True
    finally:
        await scheduler.close()
        await holder.dispose()
    assert await counts(db) == (2, 3)


async def test_two_schedulers_at_once_queue_everything_once(db: Database,
                                                            database_url: str) -> None:
    await db.run(company)
    other = Database(database_url)
    clocks = [lambda: AT, lambda: AT + timedelta(seconds=1)]
    schedulers = [Scheduler(d, RENDERER, clock=c) for d, c in zip((db, other), clocks,
                                                                    strict=True)]
    try:
        for _ in range(3):
            await asyncio.gather(*(s.tick() for s in schedulers), return_exceptions=True)
    finally:
        for s in schedulers:
            await s.close()
        await other.dispose()
    assert await counts(db) == (2, 3)
