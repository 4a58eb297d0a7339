"""Invariants of the records, over random sequences of dialog turns and commands (issue 13).

Hypothesis drives a rep who owns a deal in collection and their manager through random lines —
the dialogs of steps 5 and 6 (contract, invoice, collect), `advance` / `override`, answers
that are dates in the past and the future, amounts, skip / back / cancel, and restarts (the
greeting that pauses an open dialog). After every line:

- a paused dialog has received no answer (only `resume` or a tap brings it back);

and after every sequence, by the same checks as `salescoach doctor`:

- no won opportunity has anything uninvoiced or unpaid;
- no fact is dated after the clock, and dates with an order keep it;
- every key in a JSON column is one the readers know.

Runs on SQLite and, when configured, on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import doctor
from bot.app import build_engine
from bot.coach import Coach
from bot.commands import load_commands
from bot.demo import demo_id, load_demo
from dialogs.messages import Inbound
from store.db import Database
from store.models import DialogSession as Dialog

START = datetime.fromisoformat("2026-11-27T09:00:00+08:00")
_ENGINE = build_engine()
RESTART = "<restart>"
RESUME = {"resume", "继续"}
USERS = ("zhangwei", "wangfang")  # the rep who owns Saibei Cement's deal, and their manager

LINES = st.sampled_from([
    # the dialogs and commands around finishing a deal
    "contract", "invoice", "collect", "advance", "override", "next", "qualify",
    "advance Kiln crew down jackets", "override Kiln crew down jackets",
    "contract Kiln crew down jackets", "invoice Saibei", "collect Saibei",
    "opp Kiln crew down jackets", "account Saibei",
    # answers: options, yes/no, dates either side of today, amounts, names, numbers
    "1", "2", "3", "4", "yes", "no", "today", "yesterday", "tomorrow", "next week",
    "in two weeks", "last month", "2026-11-20", "2026-12-25", "2025-01-01", "3 days ago",
    "980000", "500000", "120万", "0", "-5", "Kiln crew down jackets", "Saibei", "SB-2026-9",
    # dialog controls, and a restart of the front end
    "skip", "back", "cancel", "resume", "继续", "lang zh", "lang en", RESTART,
])
USER = st.sampled_from(USERS)
SEQUENCES = st.lists(st.tuples(USER, LINES), min_size=1, max_size=25)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=20)
        return self.now


def _inbound(user: str, text: str) -> Inbound:
    return Inbound(platform="console", org_key="demo", user_key=user, text=text, user_name=user)


def _dialogs(session: Session, user: str) -> dict[uuid.UUID, dict[str, Any]]:
    """The user's open dialogs' states, by id."""
    rows = session.execute(select(Dialog.id, Dialog.state).where(
        Dialog.user_id == demo_id("user", user), Dialog.status == "active")).all()
    return {rid: dict(state or {}) for rid, state in rows}


async def _walk(url: str, steps: list[tuple[str, str]]) -> list[doctor.Problem]:
    db = Database(url)
    try:
        await db.run(load_demo, now=START)
        renderer, engine = _ENGINE
        clock = Clock()
        coach = Coach(db, engine, renderer, clock=clock, registry=load_commands())
        for user, line in steps:
            if line == RESTART:
                await coach.greet(_inbound(user, ""))
                continue
            before = await db.run(_dialogs, user)
            await coach.handle(_inbound(user, line))
            after = await db.run(_dialogs, user)
            if line.strip().casefold() not in RESUME:
                for rid, state in before.items():
                    if state.get("paused") and rid in after:
                        assert after[rid].get("answers") == state.get("answers"), (
                            f"the paused dialog took {line!r} as an answer")
        today = clock.now.date()
        return await db.run(doctor.check, engine.flows, today)
    finally:
        await db.dispose()


# what an open next step on a deal that ended is: closed by the dialogs from now on, and
# repaired by `doctor --fix` in data older versions wrote; not a rule of the turns here
BROKEN_BY_TURNS = {"future", "order", "won_not_collected", "json_key"}


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=SEQUENCES)
@example(steps=[("zhangwei", "contract Kiln crew down jackets"), ("zhangwei", RESTART),
                ("zhangwei", "2"), ("zhangwei", "yes"), ("zhangwei", "resume"),
                ("zhangwei", "2"), ("zhangwei", "in two weeks")])
def test_random_turns_keep_the_records_true(database_url: str,
                                            steps: list[tuple[str, str]]) -> None:
    problems = asyncio.run(_walk(database_url, steps))
    broken = [p for p in problems if p.code in BROKEN_BY_TURNS]
    assert not broken, [(p.code, p.label, p.params) for p in broken]


def test_a_deal_walked_to_the_end_is_won_only_when_collected(database_url: str) -> None:
    """The sequence that used to declare 980,000 won with money owed: override by the manager."""
    steps = [("wangfang", "override Kiln crew down jackets"),
             ("zhangwei", "advance Kiln crew down jackets")]
    problems = asyncio.run(_walk(database_url, steps))
    assert not [p for p in problems if p.code in BROKEN_BY_TURNS]
