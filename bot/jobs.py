"""The scheduler and the outbox worker as background tasks of `salescoach serve`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from bot.app import App
from bot.delivery import FrontEnd
from bot.outbox import OutboxWorker
from bot.scheduler import Scheduler

log = logging.getLogger(__name__)


class BackgroundJobs:
    """Started after the front ends, stopped before them: the worker finishes the message in
    hand (its claim lets another process take over anything left)."""

    def __init__(self, app: App, fronts: Sequence[FrontEnd], *, tick: float = 60.0) -> None:
        self.scheduler = Scheduler(app.db, app.renderer, clock=app.coach.clock, interval=tick)
        self.worker = OutboxWorker(app.db, {f.platform: f for f in fronts},
                                   clock=app.coach.clock)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [asyncio.create_task(self.scheduler.run_forever(self._stop),
                                           name="scheduler")]
        if self.worker.fronts:
            self._tasks.append(asyncio.create_task(self.worker.run_forever(self._stop),
                                                   name="outbox"))

    async def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("%s stopped with an error", task.get_name(),
                              exc_info=task.exception())
        self._tasks = []
        await self.scheduler.close()
