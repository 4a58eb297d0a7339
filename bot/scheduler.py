"""The scheduler inside `salescoach serve`: every minute, one nudge pass and one digest pass.

One scheduler at a time across processes: on PostgreSQL each tick first takes a session-level
advisory lock (`pg_try_advisory_lock`) on a connection of its own and skips the tick when
another process holds it; SQLite serves one process. The lock only saves work: exactly-once
rests on the unique constraints (`nudges` per subject, rule and period; `outbox.dedupe_key`),
so two schedulers that both ran a tick would still raise and queue everything once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot import digest, nudges
from dialogs.render import Renderer
from store.db import Database

log = logging.getLogger(__name__)

# pg advisory lock key: "salescoach scheduler" (any constant both processes agree on)
LOCK_KEY = 0x5C0AC4_5C4ED


_frozen = False


def _freeze_start_up_heap() -> None:
    """Move what start-up built (libraries, templates, the app: it lives as long as the
    process) out of the cyclic collector's way. A pass that raises thousands of nudges
    triggers full collections; without this each one walks the whole heap, which measured
    at about half the CPU time of a 15,000-nudge pass (benchmarks/nudge_scan.py)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


@dataclass
class TickResult:
    ran: bool
    nudges: int = 0
    posts: int = 0
    digests: int = 0


class Scheduler:
    def __init__(self, db: Database, renderer: Renderer, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 interval: float = 60.0, freeze_heap: bool = True) -> None:
        self.db = db
        self.freeze_heap = freeze_heap
        self.renderer = renderer
        self.clock = clock
        self.interval = interval
        self._lock_engine: AsyncEngine | None = None
        self._local = asyncio.Lock()

    async def tick(self) -> TickResult:
        """One round, if this process holds the scheduler lock."""
        async with self._local:
            if self.db.is_sqlite:
                return await self._work()
            if self._lock_engine is None:
                self._lock_engine = create_async_engine(self.db.url, pool_size=1,
                                                        max_overflow=0)
            async with self._lock_engine.connect() as conn:
                got = await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"),
                                        {"k": LOCK_KEY})
                await conn.commit()
                if not got:
                    return TickResult(ran=False)
                try:
                    return await self._work()
                finally:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                    await conn.commit()

    async def _work(self) -> TickResult:
        now = self.clock()
        passed = await self.db.run(nudges.run_pass, self.renderer, now)
        digests = await digest.run_pass(self.db, self.renderer, now)
        return TickResult(ran=True, nudges=len(passed.raised), posts=len(passed.posts),
                          digests=len(digests.posts))

    async def run_forever(self, stop: asyncio.Event) -> None:
        if self.freeze_heap:
            _freeze_start_up_heap()
        while not stop.is_set():
            try:
                result = await self.tick()
                if result.ran and (result.nudges or result.digests):
                    log.info("scheduler: %d nudges, %d posts, %d digests queued",
                             result.nudges, result.posts, result.digests)
            except Exception:
                log.exception("scheduler tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)

    async def close(self) -> None:
        if self._lock_engine is not None:
            await self._lock_engine.dispose()
            self._lock_engine = None
