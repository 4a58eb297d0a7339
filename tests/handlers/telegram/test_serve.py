"""`salescoach serve` with only Telegram settings, in a subprocess, against the fake Bot API:
polling and webhook mode each start, set up, serve the intake scenario and stop cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.db import Database
from store.models import Account, DialogSession
from tests import scenarios as sc
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.handlers.telegram.harness import SECRET, Driver

REPO = Path(__file__).resolve().parents[3]
REP = 919191


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(tmp_path: Path, api: FakeTelegramAPI, *, webhook: bool) -> Iterator[
        tuple[subprocess.Popen[str], int]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SALESCOACH_", "SLACK_", "TELEGRAM_")) and k != "DATABASE_URL"}
    env.update({"PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8", "HOST": "127.0.0.1",
                "PORT": str(port), "DATABASE_URL": f"sqlite:///{tmp_path / 'coach.db'}",
                "TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_API_URL": api.base_url})
    if webhook:
        env["TELEGRAM_WEBHOOK_URL"] = "https://coach.example.com/telegram/webhook"
        env["TELEGRAM_WEBHOOK_SECRET"] = SECRET
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=tmp_path,
                               env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_http(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {process.stderr.read() if process.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("serve did not come up")


def _rows(session: Session) -> tuple[list[tuple[Any, ...]], list[tuple[str, str]]]:
    accounts = [(a.name, a.industry, a.nature, a.size_employees, a.source_method)
                for a in session.scalars(select(Account)).all()]
    dialogs = [(d.flow, d.status) for d in session.scalars(
        select(DialogSession).order_by(DialogSession.created_at)).all()]
    return accounts, dialogs


# The first part of the English intake: typed answers, taps on choices and yes/no, a tip.
# (The process paces replies at Telegram's ~1 message a second per chat, so the whole script
# would take minutes here; the in-process tests play all of it.)
SCRIPT = ["/start", *sc.INTAKE_EN[:sc.INTAKE_EN.index("yes") + 1]]


async def _play(api: FakeTelegramAPI, deliver: Any, tmp_path: Path) -> None:
    driver = Driver(api, api.user(REP), deliver)
    for line in SCRIPT:
        await driver.say(line)
    text = "\n\n".join(driver.sent_texts)
    assert "Hi Li Lei!" in text
    assert sc.INTAKE_EN_FIRST_QUESTION in text and "Coach's tip" in text
    assert "How many did they buy" in driver.replies[-1][1] or "[" in driver.replies[-1][1]
    assert driver.taps >= 3 and driver.typed >= 5, (driver.taps, driver.typed)
    db = Database(f"sqlite:///{tmp_path / 'coach.db'}")
    try:
        accounts, dialogs = await db.run(_rows)
    finally:
        await db.dispose()
    assert accounts == [("Daqing Oilfield Company", "oil_gas", "state_owned", 12000,
                         "referral")]
    assert dialogs == [("intake", "active")]


def _is_tip(update: dict[str, Any]) -> bool:
    if "message" in update:
        return bool(update["message"].get("text") == "tip")
    query = update["callback_query"]
    buttons = [b for row in query["message"]["reply_markup"]["inline_keyboard"] for b in row]
    return any(b["callback_data"] == query["data"] and "Tip" in b["text"] for b in buttons)


def _stopped_cleanly(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    err = process.stderr.read() if process.stderr else ""
    # uvicorn shuts down on SIGTERM, then re-raises the signal it caught
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err and "Application shutdown complete" in err, err
    return err


async def test_serve_polls_with_only_telegram_settings(tmp_path: Path) -> None:
    with FakeTelegramAPI() as api, serve(tmp_path, api, webhook=False) as (process, _port):
        await api.wait_until(lambda: api.calls_to("getUpdates"), timeout=60)
        assert api.calls_to("deleteWebhook") and not api.calls_to("setWebhook")
        assert len(api.calls_to("setMyCommands")) == 6

        async def deliver(update: dict[str, Any]) -> None:
            """Push `update` for getUpdates; wait for the end of what it makes the bot send."""
            sends = len(api.calls_to("sendMessage"))
            edits = len(api.calls_to("editMessageReplyMarkup"))
            api.push_update(update)
            data = update.get("callback_query", {}).get("data", "")
            if data.startswith("t:"):  # a tick: the keyboard is redrawn
                await api.wait_until(
                    lambda: len(api.calls_to("editMessageReplyMarkup")) > edits, timeout=30)
            elif _is_tip(update) or "/start" in update.get("message", {}).get("text", ""):
                await api.wait_until(lambda: len(api.calls_to("sendMessage")) > sends,
                                     timeout=30)
            else:  # an answer: the reply ends with the next question and its keyboard
                await api.wait_until(lambda: any(
                    c.params.get("reply_markup") for c in api.calls_to("sendMessage")[sends:]),
                    timeout=30)

        await _play(api, deliver, tmp_path)
        _stopped_cleanly(process)


async def test_serve_takes_the_webhook_with_only_telegram_settings(tmp_path: Path) -> None:
    with FakeTelegramAPI() as api, serve(tmp_path, api, webhook=True) as (process, port):
        await asyncio.to_thread(_wait_http, port, process)
        await api.wait_until(lambda: api.calls_to("setWebhook"), timeout=60)
        [hook] = api.calls_to("setWebhook")
        assert hook.params["secret_token"] == SECRET
        assert not api.calls_to("getUpdates")
        url = f"http://127.0.0.1:{port}/telegram/webhook"
        async with httpx.AsyncClient(timeout=30) as client:
            wrong = await client.post(url, json=api.message_update(api.user(REP), "/start"),
                                      headers={"X-Telegram-Bot-Api-Secret-Token": "nope"})
            assert wrong.status_code == 403

            async def deliver(update: dict[str, Any]) -> None:
                response = await client.post(
                    url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
                assert response.status_code == 200

            await _play(api, deliver, tmp_path)
        _stopped_cleanly(process)
