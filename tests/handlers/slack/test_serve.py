"""`salescoach serve` with only Slack settings (a real process on a free port), Socket Mode,
and configuration that cannot work failing at start-up."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.app import build_app
from store.db import ConfigError, Database
from tests.fakes.slack_api import TEAM_ID, FakeSlackAPI
from tests.handlers.slack.harness import (
    CHANNEL,
    SECRET,
    TOKEN,
    FakeClock,
    plain,
    settings_for,
    sign,
)

REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, fake_slack: FakeSlackAPI) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "TELEGRAM_", "SALESCOACH_")) and k != "DATABASE_URL"}
    env.update({"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": fake_slack.api_url, "PORT": str(port), "HOST": "127.0.0.1",
                "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8"})
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


async def _wait_healthy(base: str, proc: subprocess.Popen[str]) -> httpx.Response:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                pytest.fail(f"salescoach serve exited with {proc.returncode}:\n{out}")
            try:
                response = await http.get(f"{base}/healthz", timeout=2)
                if response.status_code == 200:
                    return response
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail("salescoach serve did not answer /healthz within 60 s")


async def test_salescoach_serve_with_only_slack_settings_serves_slash_commands(
        served: tuple[str, subprocess.Popen[str]], fake_slack: FakeSlackAPI) -> None:
    base, proc = served
    health = await _wait_healthy(base, proc)
    assert health.json() == {"status": "ok", "database": "ok"}
    form = {"team_id": TEAM_ID, "channel_id": CHANNEL, "channel_name": "sales",
            "user_id": "U0REP1", "user_name": "liu", "command": "/coach", "text": "intake",
            "response_url": fake_slack.response_url(), "trigger_id": "1.2.3"}
    body = urllib.parse.urlencode(form).encode()
    async with httpx.AsyncClient() as http:
        started = time.monotonic()
        response = await http.post(f"{base}/slack/events", content=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", **sign(body, int(time.time()))})
        acked = time.monotonic() - started
        assert response.status_code == 200 and acked < 3.0
        bad = await http.post(f"{base}/slack/events", content=body, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            **sign(body, int(time.time()), secret="wrong")})
        assert bad.status_code == 401
    posts = await fake_slack.awaited("chat.postMessage", 1, timeout=30)
    assert "[1/24] What is the customer's name?" in plain(posts[-1].params["text"])
    assert posts[-1].params["channel"] == "D0REP1"
    [note] = await fake_slack.awaited("chat.postEphemeral")
    assert note.params["channel"] == CHANNEL
    assert all(c.token == TOKEN for c in fake_slack.calls() if c.method != "response_url")


async def test_socket_mode_receives_over_the_websocket_and_acks(
        fake_slack: FakeSlackAPI, db: Database, database_url: str) -> None:
    settings = settings_for(fake_slack, database_url, SLACK_APP_TOKEN="xapp-1-test",
                            SLACK_SIGNING_SECRET=None)
    app = build_app(settings, clock=FakeClock())
    from handlers.slack import build_frontend

    front = build_frontend(app)
    assert front.routes() == []  # nothing listens over HTTP in Socket Mode
    await front.start()
    try:
        [opened] = await fake_slack.awaited("apps.connections.open")
        assert opened.token == "xapp-1-test"
        deadline = time.monotonic() + 10
        while fake_slack.socket_clients == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        payload = {"token": "legacy", "team_id": TEAM_ID, "channel_id": CHANNEL,
                   "channel_name": "sales", "user_id": "U0REP1", "user_name": "liu",
                   "command": "/coach", "text": "intake", "api_app_id": "A0FAKE",
                   "response_url": fake_slack.response_url(), "trigger_id": "1.2.3"}
        await asyncio.to_thread(fake_slack.socket_send, {
            "envelope_id": "env-1", "type": "slash_commands", "payload": payload,
            "accepts_response_payload": True})
        [ack] = await fake_slack.awaited("socket.ack")
        assert ack.params["envelope_id"] == "env-1"
        posts = await fake_slack.awaited("chat.postMessage", 1)
        assert "[1/24]" in plain(posts[-1].params["text"])
    finally:
        await front.stop()
        await app.close()


@pytest.mark.parametrize("env", [
    {"SLACK_SIGNING_SECRET": None},
    {"SLACK_BOT_TOKEN": None},
])
def test_settings_that_cannot_work_fail_at_start_up(fake_slack: FakeSlackAPI, tmp_path: Path,
                                                   env: dict[str, None]) -> None:
    from handlers.slack import build_frontend

    app = build_app(settings_for(fake_slack, f"sqlite:///{tmp_path}/x.db", **env))
    with pytest.raises(ConfigError, match="SLACK_"):
        build_frontend(app)
