"""Wiring for the Telegram tests: the real front end, a real database, the fake Bot API server.

`Harness` runs python-telegram-bot's Application against `FakeTelegramAPI` and feeds it updates
through the webhook (httpx into the Starlette app of bot/web.py, with the secret header) or
through polling (the fake's getUpdates). `Driver` plays a conversation script as a rep would in
Telegram: a line that names a button of the open question is a tap, anything else is typed.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from starlette.applications import Starlette

from bot.app import App, build_engine
from bot.coach import Coach, plain
from bot.commands import Registry, load_commands
from bot.metrics import Metrics
from bot.settings import Settings
from bot.web import create_web_app
from handlers.telegram import Limits, TelegramFrontEnd
from store.db import Database
from tests.conversation_checks import FakeClock
from tests.fakes.telegram_api import FakeTelegramAPI

SECRET = "s3cret-Token_42"
WEBHOOK_URL = "https://coach.example.com/telegram/webhook"
# the real limiter, with room enough that a scripted conversation is not slowed down
FAST = Limits(per_chat=(10_000, 1000.0), per_group=(10_000, 60.0), overall=(100_000, 1.0))

ENGINE = build_engine()


def make_app(db: Database, api: FakeTelegramAPI, *, webhook: bool = True,
             admins: str = "", clock: Any = None,
             register: Callable[[Registry], None] | None = None) -> App:
    env: dict[str, Any] = {
        "DATABASE_URL": str(db.url), "TELEGRAM_BOT_TOKEN": api.token,
        "TELEGRAM_API_URL": api.base_url, "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "SALESCOACH_ADMINS": admins,
    }
    if webhook:
        env["TELEGRAM_WEBHOOK_URL"] = WEBHOOK_URL
    settings = Settings(_env_file=None, **env)
    renderer, engine = ENGINE
    metrics = Metrics()
    registry = load_commands()
    if register is not None:
        register(registry)
    coach = Coach(db, engine, renderer, clock=clock or FakeClock(), default_lang=settings.lang,
                  default_tz=settings.tz, metrics=metrics, registry=registry,
                  admins=tuple(settings.admin_ids))
    return App(settings=settings, db=db, renderer=renderer, engine=engine, coach=coach,
               metrics=metrics)


@dataclass
class Harness:
    api: FakeTelegramAPI
    app: App
    front: TelegramFrontEnd
    web: Starlette
    client: httpx.AsyncClient
    polling: bool = False

    async def post(self, update: dict[str, Any], *, secret: str | None = SECRET,
                   raw: bytes | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        if raw is not None:
            return await self.client.post("/telegram/webhook", content=raw, headers=headers)
        return await self.client.post("/telegram/webhook", json=update, headers=headers)

    async def deliver_update(self, update: dict[str, Any]) -> None:
        """Hand `update` to the bot (webhook or polling) and wait until it is handled."""
        if not self.polling:
            response = await self.post(update)
            assert response.status_code == 200, response.text
            return
        assert isinstance(self.front, Instrumented)
        self.api.push_update(update)
        update_id = update["update_id"]
        await self.api.wait_until(lambda: update_id in self.front.handled)  # type: ignore[attr-defined]


class Instrumented(TelegramFrontEnd):
    """The front end, noting which updates it has finished (what polling tests wait for)."""

    handled: set[int]

    async def _dispatch(self, update: Any, context: Any) -> None:
        try:
            await super()._dispatch(update, context)
        finally:
            self.handled.add(update.update_id)


@asynccontextmanager
async def running(db: Database, *, polling: bool = False, admins: str = "",
                  limits: Limits = FAST, clock: Any = None,
                  api: FakeTelegramAPI | None = None,
                  register: Callable[[Registry], None] | None = None) -> AsyncIterator[Harness]:
    """The fake server, the app and the started front end; everything stopped afterwards."""
    own = api is None
    api = api or FakeTelegramAPI().start()
    try:
        app = make_app(db, api, webhook=not polling, admins=admins, clock=clock,
                       register=register)
        front = Instrumented(app, limits=limits, poll_timeout=1.0)
        front.handled = set()
        web = create_web_app(db=db, metrics=app.metrics, extra_routes=front.routes())
        await front.start()
        try:
            transport = httpx.ASGITransport(app=web)
            async with httpx.AsyncClient(transport=transport,
                                         base_url="http://testserver") as client:
                yield Harness(api, app, front, web, client, polling)
        finally:
            await front.stop()
    finally:
        if own:
            api.stop()


def shown(message: dict[str, Any]) -> str:
    """What the user sees of a message the bot sent (its HTML as plain text)."""
    return plain(message.get("html", message.get("text", "")))


@dataclass
class Driver:
    """Plays a script in a private chat: taps a button when the line names one, else types.

    `deliver` hands an update to the bot under test and returns once it is handled (in-process
    through the webhook or polling, or to a `salescoach serve` subprocess)."""

    api: FakeTelegramAPI
    user: dict[str, Any]
    deliver: Callable[[dict[str, Any]], Awaitable[None]]
    sent_texts: list[str] = field(default_factory=list)  # every bot message text, in order
    taps: int = 0
    typed: int = 0
    replies: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, h: Harness, user: dict[str, Any]) -> Driver:
        return cls(h.api, user, h.deliver_update)

    @property
    def chat_id(self) -> int:
        return int(self.user["id"])

    def _texts_since(self, count: int) -> list[str]:
        calls = self.api.calls_to("sendMessage", chat_id=self.chat_id, ok=True)
        return [plain(str(c.params["text"])) for c in calls[count:]]

    def open_question(self) -> dict[str, Any] | None:
        messages = self.api.sent(self.chat_id)
        if messages and messages[-1].get("reply_markup"):
            return messages[-1]
        return None

    async def say(self, line: str) -> str:
        before = len(self.api.calls_to("sendMessage", chat_id=self.chat_id, ok=True))
        question = self.open_question()
        plan = self._plan(question, line) if question is not None else None
        if plan is None:
            self.typed += 1
            await self.deliver(self.api.message_update(self.user, line))
        else:
            assert question is not None
            for data in plan:
                self.taps += 1
                current = {m["message_id"]: m for m in self.api.sent(self.chat_id)}
                await self.deliver(self.api.callback_update(
                    self.user, current[question["message_id"]], data))
            if ENGINE[1].aliases.get(line.strip().casefold()) != "tip":
                self._check_answered(question)
        texts = self._texts_since(before)
        reply = "\n\n".join(texts)
        self.sent_texts.extend(texts)
        self.replies.append((line, reply))
        return reply

    def _check_answered(self, question: dict[str, Any]) -> None:
        now = {m["message_id"]: m for m in self.api.sent(self.chat_id)}[question["message_id"]]
        assert not now.get("reply_markup"), "the keyboard stays after an answer"
        assert "→ " in now["text"], now["text"]

    def _plan(self, question: dict[str, Any], line: str) -> list[str] | None:
        """The callback_data to send for `line`, or None to type it."""
        buttons = self.api.buttons(question)
        answers = [b for b in buttons if b["callback_data"].startswith(("a:", "t:"))]
        controls = [b for b in buttons if b["callback_data"].startswith("c:")]
        multi = any(b["callback_data"].startswith("d:") for b in buttons)
        renderer, engine = ENGINE
        word = engine.aliases.get(line.strip().casefold())
        if word is not None:
            labels = {html.unescape(plain(renderer.text(lang, f"control.{word}")))
                      for lang in renderer.languages}
            for b in controls:
                if b["text"] in labels:
                    return [b["callback_data"]]
            return None
        key = line.strip().casefold()
        if multi:
            parts = [p.strip() for p in re.split(r"[,、，]", line) if p.strip()]
            datas = []
            for part in parts:
                found = self._answer(answers, part)
                if found is None:
                    return None
                datas.append(found)
            done = next(b for b in buttons if b["callback_data"].startswith("d:"))
            return [*datas, done["callback_data"]]
        for b in answers:
            if b["text"].casefold() == key:
                return [b["callback_data"]]
        found = self._answer(answers, line) if line.strip().isdigit() else None
        return [found] if found else None

    @staticmethod
    def _answer(answers: list[dict[str, Any]], part: str) -> str | None:
        key = part.strip().casefold()
        if key.isdigit() and 1 <= int(key) <= len(answers):
            return str(answers[int(key) - 1]["callback_data"])
        for b in answers:
            if re.sub(r"^✓ ", "", b["text"]).casefold() == key:
                return str(b["callback_data"])
        return None


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)
