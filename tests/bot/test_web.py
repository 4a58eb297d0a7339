"""The HTTP side of `salescoach serve`: /healthz, /metrics, routing, and a real uvicorn run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bot.metrics import Metrics
from bot.web import create_web_app, make_server
from store.db import Database

UNREACHABLE_URL = "postgresql://salescoach:s3cret-pw@127.0.0.1:1/nowhere"


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def plain_db(tmp_path: Path) -> AsyncIterator[Database]:
    """A SQLite database without a schema: enough for routes that only need `SELECT 1`."""
    database = Database(f"sqlite:///{tmp_path / 'plain.db'}")
    yield database
    await database.dispose()


async def test_healthz_ok(db: Database) -> None:
    app = create_web_app(db=db, metrics=Metrics())
    async with _client(app) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_healthz_unreachable_database_is_503_without_secrets() -> None:
    database = Database(UNREACHABLE_URL)
    try:
        app = create_web_app(db=database, metrics=Metrics())
        async with _client(app) as client:
            response = await client.get("/healthz")
    finally:
        await database.dispose()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"]
    for secret in ("s3cret-pw", "127.0.0.1:1", "postgresql://", "nowhere", "salescoach:"):
        assert secret not in response.text


async def test_metrics_exposes_counters(plain_db: Database) -> None:
    metrics = Metrics()
    metrics.turns_total.labels(front_end="console", outcome="ok").inc()
    metrics.turn_seconds.labels(front_end="console").observe(0.02)
    app = create_web_app(db=plain_db, metrics=metrics)
    async with _client(app) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'salescoach_turns_total{front_end="console",outcome="ok"} 1.0' in response.text
    assert "salescoach_turn_seconds_bucket" in response.text


def test_metrics_registries_are_independent() -> None:
    first, second = Metrics(), Metrics()
    first.errors_total.labels(front_end="slack", kind="timeout").inc()
    assert b'kind="timeout"' in first.render()[0]
    assert b'kind="timeout"' not in second.render()[0]


async def test_unknown_path_is_404_and_extra_routes_plug_in(plain_db: Database) -> None:
    async def fake_webhook(_request: Request) -> Response:
        return PlainTextResponse("ok")

    extra = [Route("/telegram/webhook", fake_webhook, methods=["POST"])]
    app = create_web_app(db=plain_db, metrics=Metrics(), extra_routes=extra)
    async with _client(app) as client:
        assert (await client.get("/nope")).status_code == 404
        assert (await client.post("/telegram/webhook")).text == "ok"
        assert (await client.post("/healthz")).status_code == 405


async def test_real_uvicorn_server_answers_healthz(db: Database) -> None:
    server = make_server(create_web_app(db=db, metrics=Metrics()), host="127.0.0.1", port=0)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started or task.done():
                break
            await asyncio.sleep(0.025)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.get(f"http://127.0.0.1:{port}/healthz")
        assert response.status_code == 200
        assert response.json()["database"] == "ok"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


async def test_serve_freezes_start_up_objects_before_taking_requests(
        plain_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """What exists when `serve` starts is out of the full collections' walk (they held the
    event loop 30-100 ms each with ~130,000 start-up objects), uvicorn's protocol modules
    included."""
    import gc

    import uvicorn

    import bot.web as web

    seen: dict[str, object] = {}

    async def fake_serve(server: uvicorn.Server, sockets: object = None) -> None:
        seen["loaded"] = server.config.loaded
        seen["frozen"] = gc.get_freeze_count()

    monkeypatch.setattr(uvicorn.Server, "serve", fake_serve)
    app = create_web_app(db=plain_db, metrics=Metrics())
    before = gc.get_freeze_count()
    try:
        await web.serve(app, host="127.0.0.1", port=0)
    finally:
        gc.unfreeze()
    assert seen["loaded"] is True
    assert isinstance(seen["frozen"], int) and seen["frozen"] > max(before, 10_000)
