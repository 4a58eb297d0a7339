"""The `salescoach` command (see DESIGN.md, "Contracts")."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from bot.app import App, build_app
from bot.settings import Settings
from dialogs.errors import CoachError
from store.db import ConfigError

T = TypeVar("T")

cli = typer.Typer(
    help="salescoach — a sales coach for the six-step key-account method.",
    no_args_is_help=True,
    add_completion=False,
)
db_cli = typer.Typer(help="Database schema commands.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "settings"
        raise typer.BadParameter(f"{name}: {err['msg']}") from exc


def _run(work: Callable[[App], Awaitable[T]], *, migrate: bool = True) -> T:
    """Build the app, run `work` in one event loop, close the app. Config errors exit 2."""
    settings = _settings()
    try:
        app = build_app(settings)
    except (CoachError, ConfigError) as exc:
        typer.secho(f"salescoach: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc

    async def main() -> T:
        try:
            if migrate:
                await app.start()
            return await work(app)
        finally:
            await app.close()

    return asyncio.run(main())


@cli.command()
def chat(
    user: Annotated[str, typer.Option(help="Who you are (your name or id).")] = "me",
    lang: Annotated[str | None, typer.Option(help="Language: en or zh.")] = None,
    org: Annotated[str, typer.Option(help="Company to work in; 'demo' after `salescoach demo`.")]
    = "console",
) -> None:
    """Talk to the coach in the terminal (interactive, or one line per turn from a pipe)."""
    from handlers.console import Console

    if lang is not None and lang not in ("en", "zh"):
        raise typer.BadParameter("--lang must be en or zh")

    async def work(app: App) -> None:
        await Console(app.coach, user=user, org=org, lang=lang).run()

    try:
        _run(work)
    except KeyboardInterrupt:
        typer.echo("")


@cli.command()
def serve() -> None:
    """Run every configured front end (Slack, Telegram) and the HTTP server in one process."""
    from bot.serve import run

    _run(run)


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to the newest version."""

    async def work(app: App) -> None:
        await app.db.upgrade()
        typer.echo(f"database is up to date: {app.db!r}")

    _run(work, migrate=False)


@cli.command()
def demo(
    at: Annotated[str | None, typer.Option(help="Load relative to this time (ISO 8601).")] = None,
) -> None:
    """Load the demo company (a uniform maker selling to an oil field and a bus group)."""
    from bot.demo import load_demo

    now = _parse_at(at)

    async def work(app: App) -> None:
        summary = await app.db.run(load_demo, now=now)
        typer.echo(f"demo company loaded: {summary}")
        typer.echo("try: salescoach chat --org demo --user lilei")

    _run(work)


def _parse_at(at: str | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(at)
    except ValueError as exc:
        raise typer.BadParameter(f"--at {at!r} is not an ISO date-time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cli()


if __name__ == "__main__":
    main()
