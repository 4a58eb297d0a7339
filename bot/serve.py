"""`salescoach serve`: every configured front end, the HTTP server, in one event loop."""

from __future__ import annotations

import logging

from bot.app import App
from bot.delivery import FrontEnd
from bot.jobs import BackgroundJobs
from bot.web import create_web_app
from bot.web import serve as serve_http

log = logging.getLogger(__name__)


def configured_frontends(app: App) -> list[FrontEnd]:
    """The messenger front ends whose tokens are set (imported only then)."""
    fronts: list[FrontEnd] = []
    if app.settings.slack_bot_token:
        from handlers.slack import build_frontend as build_slack

        fronts.append(build_slack(app))
    if app.settings.telegram_bot_token:
        from handlers.telegram import build_frontend as build_telegram

        fronts.append(build_telegram(app))
    return fronts


async def run(app: App) -> None:
    fronts = configured_frontends(app)
    if not fronts:
        log.warning("no SLACK_BOT_TOKEN or TELEGRAM_BOT_TOKEN set: serving health and metrics only")
    web = create_web_app(db=app.db, metrics=app.metrics,
                         extra_routes=[route for front in fronts for route in front.routes()])
    started: list[FrontEnd] = []
    jobs = BackgroundJobs(app, fronts)
    try:
        for front in fronts:
            await front.start()
            started.append(front)
        jobs.start()
        await serve_http(web, host=app.settings.host, port=app.settings.port)
    finally:
        await jobs.stop()
        for front in reversed(started):
            try:
                await front.stop()
            except Exception:
                log.exception("stopping the %s front end failed", front.platform)
