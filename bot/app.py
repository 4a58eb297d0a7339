"""The composition root: settings in, everything built and wired, nothing at import time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.coach import Coach
from bot.commands import load_commands
from bot.metrics import Metrics
from bot.settings import Settings
from dialogs.engine import Engine
from dialogs.flow import load_flows
from dialogs.render import Renderer
from store.db import Database
from store.limits import limit_for
from store.records import json_keys, table_columns


@dataclass
class App:
    settings: Settings
    db: Database
    renderer: Renderer
    engine: Engine
    coach: Coach
    metrics: Metrics

    async def start(self) -> None:
        """Bring the schema up to date (unless SALESCOACH_AUTO_MIGRATE=0)."""
        if self.settings.auto_migrate:
            await self.db.upgrade()

    async def close(self) -> None:
        await self.db.dispose()


def build_engine() -> tuple[Renderer, Engine]:
    """Load and check every flow, catalog and template; a broken file fails here, named."""
    renderer = Renderer()
    flows = load_flows(columns=table_columns(), langs=renderer.languages,
                       json_keys=json_keys())
    return renderer, Engine(flows, renderer, limits=limit_for)


def build_app(settings: Settings, *, clock: Callable[[], datetime] | None = None) -> App:
    renderer, engine = build_engine()
    db = Database(settings.database_url)
    metrics = Metrics()
    if clock is None and settings.now is not None:
        start = settings.now if settings.now.tzinfo else settings.now.replace(tzinfo=UTC)
        offset = start - datetime.now(UTC)

        def clock() -> datetime:
            return datetime.now(UTC) + offset

    coach = Coach(db, engine, renderer, clock=clock or (lambda: datetime.now(UTC)),
                  default_lang=settings.lang, default_tz=settings.tz, metrics=metrics,
                  registry=load_commands(settings), admins=tuple(settings.admin_ids))
    return App(settings=settings, db=db, renderer=renderer, engine=engine, coach=coach,
               metrics=metrics)
