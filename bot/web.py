"""The HTTP side of `salescoach serve`: health, metrics, and the front ends' webhook routes."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Sequence

import uvicorn
from sqlalchemy import text
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.metrics import Metrics
from store.db import Database

log = logging.getLogger(__name__)

# A load balancer's probe must get an answer even when the database hangs instead of refusing.
HEALTH_TIMEOUT = 5.0


def _select_one(session: Session) -> None:
    session.execute(text("SELECT 1"))


def _short_reason(exc: BaseException) -> str:
    """A reason for /healthz that names the failure but never the URL or a password.

    Driver messages may quote the connection string, so only the exception type is shown.
    """
    if isinstance(exc, TimeoutError):
        return "timeout"
    return f"unavailable ({type(exc).__name__})"


def create_web_app(
    *, db: Database, metrics: Metrics, extra_routes: Sequence[BaseRoute] = ()
) -> Starlette:
    """The ASGI app: `/healthz`, `/metrics`, plus the routes the front ends contribute.

    `extra_routes` is where Slack (`POST /slack/events`) and Telegram (`POST /telegram/webhook`)
    plug in; this module knows nothing about them.
    """

    async def healthz(_request: Request) -> Response:
        try:
            await asyncio.wait_for(db.run(_select_one), timeout=HEALTH_TIMEOUT)
        except Exception as exc:  # any failure means "not healthy"; the detail goes to the log
            log.warning("health check: database unavailable: %s", type(exc).__name__)
            return JSONResponse(
                {"status": "error", "database": _short_reason(exc)}, status_code=503
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    async def metrics_endpoint(_request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *extra_routes,
    ]
    return Starlette(routes=routes)


def make_server(app: Starlette, *, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for `app`; `serve` runs it, tests start and stop it themselves."""
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))


def settle_heap() -> None:
    """Set aside everything built at start-up from the cyclic garbage collector's full passes.

    A full collection walks every tracked object. In a started server that is ~130,000 objects
    (SQLAlchemy, Bolt, python-telegram-bot, the catalogs and templates), nearly all of them
    alive for the life of the process, and walking them held the event loop for 30-100 ms:
    measured, that was the whole tail of Slack's ack time on PostgreSQL (benchmarks/slack_http.py
    p99 100-200 ms, one stall per full pass). Frozen, they are never walked again; what the
    server creates later is collected as before."""
    gc.collect()
    gc.freeze()


async def serve(app: Starlette, *, host: str, port: int) -> None:
    """Serve `app` until SIGINT/SIGTERM; uvicorn's Server drains connections on either."""
    server = make_server(app, host=host, port=port)
    server.config.load()  # imports the protocol modules, so they are frozen with the rest
    settle_heap()
    await server.serve()
