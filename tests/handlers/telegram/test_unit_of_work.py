"""One update, one unit of work: the keyboards, the dedupe and the unblock ride in the turn's
commit, and every guarantee holds (redelivery, double taps, old keyboards, failed sends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from handlers.telegram import keyboards as kb
from handlers.telegram.render import parse_callback
from handlers.telegram.replies import BoardCache
from store.db import Database
from store.models import Account, Identity, ProcessedEvent, TelegramKeyboard
from tests.handlers.telegram.harness import Harness, running, shown

REP = 5101


def _account(session: Session) -> tuple[Any, ...]:
    row = session.execute(select(Account.name, Account.industry, Account.nature,
                                 Account.size_employees)).one()
    return tuple(row)


def _events(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ProcessedEvent)) or 0)


def _open_keyboards(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(TelegramKeyboard)
                              .where(TelegramKeyboard.closed.is_(False))) or 0)


class Units:
    """Counts the units of work (`Database.run` calls) the bot opens."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        original = db.run

        async def run(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            self.names.append(getattr(fn, "__name__", type(fn).__name__))
            return await original(fn, *args, **kwargs)

        monkeypatch.setattr(db, "run", run)

    def take(self) -> list[str]:
        names, self.names = self.names, []
        return names


@asynccontextmanager
async def at_industry(db: Database) -> AsyncIterator[tuple[Harness, dict[str, Any]]]:
    async with running(db) as h:
        user = h.api.user(REP)
        await h.post(h.api.message_update(user, "/intake"))
        await h.post(h.api.message_update(user, "Daqing Oilfield Company"))
        question = h.api.last_message(REP)
        assert "Which industry" in shown(question)
        yield h, question


def texts(h: Harness) -> list[str]:
    return [shown(m) for m in h.api.sent(REP)]


async def test_a_typed_answer_and_a_tap_are_one_unit_of_work_each(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    async with at_industry(db) as (h, question):
        units = Units(db, monkeypatch)
        user = h.api.user(REP)
        await h.post(h.api.tap(user, question, "Oil & gas"))
        assert len(units.take()) == 1  # the turn, the keyboards, the closing: one commit
        assert "[3/24]" in texts(h)[-1]
        await h.post(h.api.message_update(user, "1"))  # typed, the next question has buttons
        assert len(units.take()) == 1
        assert "[4/24]" in texts(h)[-1]
        # the same tap again (a redelivery): refused from the store, no turn
        await h.post(h.api.tap(user, question, "Oil & gas"))
        assert units.take() == ["load"]
        assert await db.run(_account) == ("Daqing Oilfield Company", "oil_gas", "state_owned", None)


async def test_a_question_answered_by_typing_closes_its_keyboard(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    async with at_industry(db) as (h, industry):
        user = h.api.user(REP)
        await h.post(h.api.tap(user, industry, "Oil & gas"))
        nature = h.api.last_message(REP)
        await h.post(h.api.message_update(user, "1"))  # typed instead of tapped
        assert "[4/24]" in texts(h)[-1]
        units = Units(db, monkeypatch)
        await h.post(h.api.tap(user, nature, h.api.buttons(nature)[1]["text"]))
        assert units.take() == ["load"]  # known closed: refused without running a turn
        [*_, refused] = h.api.calls_to("answerCallbackQuery")
        assert refused.params["text"].startswith("This question is no longer open.")
        assert "[4/24]" in texts(h)[-1]
        # the open question is still the typed one, and answering it works
        await h.post(h.api.message_update(user, "12,000"))
        assert await db.run(_account) == (
            "Daqing Oilfield Company", "oil_gas", "state_owned", 12000)
        assert await db.run(_open_keyboards) == 1


async def test_a_keyboard_closed_by_another_process_refuses_the_tap_and_changes_nothing(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    async with at_industry(db) as (h, question):
        tap = parse_callback(h.api.buttons(question)[0]["callback_data"])
        assert tap is not None and h.front._boards.get(tap.key) is not None
        await db.run(kb.close, tap.key)  # another server process answered it
        events = await db.run(_events)
        await h.post(h.api.tap(h.api.user(REP), question, "Oil & gas"))
        [refused] = h.api.calls_to("answerCallbackQuery")
        assert refused.params["text"].startswith("This question is no longer open.")
        assert await db.run(_account) == ("Daqing Oilfield Company", None, None, None)
        assert await db.run(_events) == events  # the turn was rolled back, dedupe row and all
        assert "[2/24]" in texts(h)[-1]


async def test_a_tap_on_a_keyboard_this_process_never_saw_still_works(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    async with at_industry(db) as (h, question):
        h.front._boards = BoardCache()  # a restart, or another process sent it
        units = Units(db, monkeypatch)
        await h.post(h.api.tap(h.api.user(REP), question, "Oil & gas"))
        assert len(units.take()) == 2  # read what the button stands for, then the turn
        assert await db.run(_account) == ("Daqing Oilfield Company", "oil_gas", None, None)
        assert "[3/24]" in texts(h)[-1]


async def test_a_failed_send_after_the_turn_leaves_the_dialog_consistent(db: Database) -> None:
    async with at_industry(db) as (h, industry):
        user = h.api.user(REP)
        # the turn commits (answer, closed keyboard, the next question's keyboard row), then
        # Telegram fails the next question
        h.api.fail_next(1, "500", method="sendMessage", chat_id=REP)
        await h.post(h.api.tap(user, industry, "Oil & gas"))
        failed = h.api.calls_to("sendMessage", chat_id=REP)[-2]
        assert failed.failed == "500" and "[3/24]" in failed.params["text"]
        assert texts(h)[-1].startswith("Sorry")  # the error handler told them
        assert await db.run(_account) == ("Daqing Oilfield Company", "oil_gas", None, None)
        # the answered keyboard is closed: tapping it again changes nothing
        await h.post(h.api.tap(user, industry, "Mining"))
        assert h.api.calls_to("answerCallbackQuery")[-1].params["text"].startswith(
            "This question is no longer open.")
        # resume asks the open question again, with buttons that work
        await h.post(h.api.message_update(user, "/resume"))
        nature = h.api.last_message(REP)
        assert "[3/24]" in shown(nature)
        await h.post(h.api.tap(user, nature, h.api.buttons(nature)[0]["text"]))
        assert "[4/24]" in texts(h)[-1]
        # only the open question's keyboard is open (the one never delivered was closed too)
        assert await db.run(_open_keyboards) == 1


async def test_any_private_message_lifts_a_recorded_block(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(db) as h:
        user = h.api.user(REP)
        await h.post(h.api.message_update(user, "/help"))

        def block(session: Session) -> None:
            session.execute(update(Identity).values(blocked_at=h.app.coach.clock()))

        def blocked(session: Session) -> Any:
            return session.scalar(select(Identity.blocked_at))

        await db.run(block)
        units = Units(db, monkeypatch)
        await h.post(h.api.message_update(user, "/intake"))
        assert len(units.take()) == 1
        assert await db.run(blocked) is None
