"""An answer that must be unique (an invoice number) is checked before it is taken, and a
duplicate that slips in between (another dialog saved it first) is refused without losing
anything."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.app import build_engine
from bot.coach import Coach, plain
from bot.demo import load_demo
from dialogs.messages import Inbound
from store.db import Database
from store.models import Invoice
from tests.scenarios import METHOD_OPPORTUNITY as OPP
from tests.scenarios import METHOD_ORG, METHOD_USER

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


async def _coach(db: Database) -> Coach:
    await db.run(lambda s: load_demo(s, now=NOW))
    renderer, engine = build_engine()
    return Coach(db, engine, renderer, clock=lambda: NOW)


async def _say(coach: Coach, text: str) -> str:
    reply = await coach.handle(Inbound(platform="console", org_key=METHOD_ORG,
                                       user_key=METHOD_USER, text=text, user_name="Li Lei"))
    return "\n".join([plain(m.text) for m in reply.messages]
                     + [plain(o.label) for m in reply.messages for o in m.options])


def _numbers(session: Session) -> list[str]:
    return sorted(session.execute(select(Invoice.number)).scalars())


NEW_INVOICE = ["1", "YY-2026-0200", "¥360,000", "2026-11-27", "2026-12-05"]


@pytest.mark.parametrize(("lang", "refusal", "question"), [
    ("en", "Invoice number “YY-2026-0200” is already recorded", "Invoice number?"),
    ("zh", "发票号“YY-2026-0200”已经登记过了", "发票号？"),
])
async def test_a_used_invoice_number_is_refused_and_asked_again(
        db: Database, lang: str, refusal: str, question: str) -> None:
    coach = await _coach(db)
    await _say(coach, f"lang {lang}")
    await _say(coach, f"invoice {OPP}")
    for line in NEW_INVOICE:
        await _say(coach, line)
    before = await db.run(_numbers)
    assert "YY-2026-0200" in before

    await _say(coach, f"invoice {OPP}")
    await _say(coach, "1")
    answer = await _say(coach, "YY-2026-0200")
    assert refusal in answer
    assert answer.rstrip().endswith(question)  # the same question again
    # another number goes on; the invoice is recorded once each
    assert await _say(coach, "YY-2026-0201") != answer  # taken: the next question
    for line in NEW_INVOICE[2:]:
        await _say(coach, line)
    assert await db.run(_numbers) == sorted([*before, "YY-2026-0201"])


async def test_a_number_saved_meanwhile_by_another_dialog_is_refused_without_a_crash(
        db: Database) -> None:
    coach = await _coach(db)
    # dialog 1 takes the number but is left before its last answer
    await _say(coach, f"invoice {OPP}")
    for line in NEW_INVOICE[:-1]:
        await _say(coach, line)
    # dialog 2 records the same number first
    await _say(coach, "/invoice " + OPP)
    for line in NEW_INVOICE:
        await _say(coach, line)
    assert (await db.run(_numbers)).count("YY-2026-0200") == 1
    # back in dialog 1, the last answer would duplicate it
    assert "Due on which date?" in await _say(coach, "resume")
    answer = await _say(coach, "2026-12-05")
    assert "could not be saved" in answer and "Nothing from that answer was kept" in answer
    assert "Due on which date?" in answer  # where the dialog stands, unchanged
    assert (await db.run(_numbers)).count("YY-2026-0200") == 1
    # `edit` reaches the number; another one is taken and the dialog finishes on it
    assert "Invoice number" in await _say(coach, "edit")
    assert "Invoice number?" in await _say(coach, "number")
    await _say(coach, "YY-2026-0202")
    await _say(coach, "2026-12-05")

    def count(session: Session) -> int:
        return int(session.execute(select(func.count()).select_from(Invoice)).scalar_one())

    numbers = await db.run(_numbers)
    assert "YY-2026-0202" in numbers and numbers.count("YY-2026-0200") == 1
    assert await db.run(count) == len(numbers)
