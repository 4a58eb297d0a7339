"""Play a conversation, then check what it showed and what it stored: shared by every front end.

The scripts and the values they must produce are data in `tests/scenarios.py`. This module holds
the code around them that the console, method, Slack and Telegram tests all need:

- `converse`: a script through the console in-process (a `Coach` wired as `bot/app.py` does, on
  a fake clock), cut into one reply per line (`Transcript`).
- `salescoach_cmd`, `salescoach_env`, `sql`, `imminent_date`: the real entry point in a
  subprocess on a SQLite file, and what it wrote.
- `SCENARIOS`, `check_intake_transcript`, `stored`, `check_intake_rows`: the intake scenarios
  and the checks each front end runs after playing one, so that every adapter is held to the
  same transcript and the same rows.

pytest rewrites asserts only in test modules, so the checks here say what differed themselves.
"""

from __future__ import annotations

import functools
import io
import os
import re
import sqlite3
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.app import build_engine
from bot.coach import Coach
from bot.commands import Registry
from dialogs.engine import Engine
from dialogs.render import Renderer
from handlers.console import Console
from store.db import Database
from store.models import (
    Account,
    CompetitorNote,
    Contact,
    DialogSession,
    Identity,
    Opportunity,
)
from tests import scenarios as sc

REPO = Path(__file__).resolve().parents[1]
START = datetime.fromisoformat("2026-11-27T09:00:00+08:00")
TODAY = date(2026, 11, 27)  # START's calendar day in the coach's default time zone (UTC)
USER = "rep1"  # the console rep of `converse`

# ---- the console, in-process ----------------------------------------------------------------


class FakeClock:
    """2026-11-27T09:00:00+08:00, one second later on every call."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        value = self.now
        self.now += timedelta(seconds=1)
        return value


@functools.cache
def engine() -> tuple[Renderer, Engine]:
    """Every flow and template, loaded and checked once for the whole run."""
    return build_engine()


_ECHO = re.compile(r"^› (.*)\n", re.MULTILINE)


@dataclass
class Transcript:
    """What the console printed, cut into the greeting and one reply per input line."""

    text: str
    greeting: str
    turns: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Transcript:
        parts = _ECHO.split(text)
        turns = [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]
        return cls(text=text, greeting=parts[0].strip(), turns=turns)

    def reply(self, index: int) -> str:
        """The reply to input line `index` (negative indexes count from the end)."""
        return self.turns[index][1]

    def reply_to(self, line: str, occurrence: int = 0) -> str:
        found = [reply for typed, reply in self.turns if typed == line]
        return found[occurrence]


async def converse(db: Database, lines: list[str], *, user: str = USER, org: str = "console",
                   lang: str | None = None, registry: Registry | None = None) -> Transcript:
    """Run `lines` through a fresh Console + Coach (as bot/app.py wires them) on `db`."""
    renderer, dialog_engine = engine()
    coach = Coach(db, dialog_engine, renderer, clock=FakeClock(), registry=registry)
    stdout = io.StringIO()
    stdin = io.StringIO("".join(f"{line}\n" for line in lines))
    console = Console(coach, user=user, org=org, lang=lang, stdin=stdin, stdout=stdout,
                      interactive=False)
    await console.run()
    transcript = Transcript.parse(stdout.getvalue())
    assert [typed for typed, _ in transcript.turns] == lines, transcript.text
    return transcript


def question(reply: str) -> str:
    """The question block at the end of a reply: from its last `[n/m]` marker to the end."""
    starts = [m.start() for m in re.finditer(r"(?m)^\[\d+/\d+\] ", reply)]
    assert starts, f"no question in: {reply!r}"
    return reply[starts[-1]:].strip()


# ---- the real entry point, in a subprocess --------------------------------------------------


def salescoach_cmd(*args: str) -> list[str]:
    """`salescoach ARGS` as a command line for `subprocess`."""
    return [sys.executable, "-m", "bot.cli", *args]


def salescoach_env() -> dict[str, str]:
    """This environment without any database or salescoach setting, so that the subprocess uses
    `salescoach.db` in its working directory; this checkout importable; UTF-8 output."""
    env = {k: v for k, v in os.environ.items()
           if k != "DATABASE_URL" and not k.startswith("SALESCOACH_")}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def imminent_date() -> str:
    """120 days after the real today, ISO: a purchase date that a subprocess (on the wall
    clock) still judges imminent (within 365 days) on any day the suite runs."""
    return (datetime.now(UTC).date() + timedelta(days=120)).isoformat()


def sql(path: Path, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows of `query` on the SQLite file at `path`."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


# ---- the intake scenarios, through any front end --------------------------------------------


@dataclass(frozen=True)
class Scenario:
    script: list[str]
    start: str
    first_question: str
    phrases: list[str]
    verdict: str
    account: dict[str, Any]
    contacts: list[dict[str, Any]]
    competitors: list[dict[str, Any]]
    opportunity: dict[str, Any]
    qualification: dict[str, Any]
    expected_close: Callable[[date], date | None]


def next_friday(today: date) -> date:
    """What "下周五" (Friday of next week) means on `today`."""
    return today - timedelta(days=today.weekday()) + timedelta(days=7 + 4)


SCENARIOS = [
    pytest.param(Scenario(
        sc.INTAKE_EN, "intake", sc.INTAKE_EN_FIRST_QUESTION, sc.INTAKE_EN_PHRASES,
        sc.INTAKE_EN_VERDICT, sc.INTAKE_EN_ACCOUNT,
        sc.INTAKE_EN_CONTACTS, sc.INTAKE_EN_COMPETITORS, sc.INTAKE_EN_OPPORTUNITY,
        sc.INTAKE_EN_QUALIFICATION, lambda _today: date(2027, 3, 31)), id="en"),
    pytest.param(Scenario(
        sc.INTAKE_ZH, "建档", sc.INTAKE_ZH_FIRST_QUESTION, sc.INTAKE_ZH_PHRASES,
        sc.INTAKE_ZH_VERDICT, sc.INTAKE_ZH_ACCOUNT,
        sc.INTAKE_ZH_CONTACTS, sc.INTAKE_ZH_COMPETITORS, sc.INTAKE_ZH_OPPORTUNITY,
        sc.INTAKE_ZH_QUALIFICATION, next_friday), id="zh"),
]


@functools.cache
def failure_markers() -> tuple[str, ...]:
    """Texts that must never reach a rep: a traceback, and the internal-error reply in every
    language (its first clause, as the catalog has it)."""
    renderer, _ = engine()
    openings = tuple(re.split(r"[.。;；]", str(renderer.text(lang, "error.internal", ref="")))[0]
                     for lang in renderer.languages)
    return ("Traceback", "something went wrong", "出错", *openings)


def check_no_failure(text: str, context: object = None) -> None:
    """`text` shows no traceback and no internal-error reply, in any language."""
    for marker in failure_markers():
        assert marker not in text, (marker, context, text)


def check_intake_transcript(scenario: Scenario, text: str,
                            replies: Sequence[tuple[str, str]]) -> None:
    """What a rep saw while playing `scenario`: `text` is everything shown to them, `replies`
    one (line, reply to it) per script line."""
    for phrase in scenario.phrases:
        assert phrase in text, phrase
    assert [line for line, _ in replies] == scenario.script
    # The first question answers the start command; the verdict is in the very last reply.
    first = next(reply for line, reply in replies if line == scenario.start)
    assert scenario.first_question in first, first
    assert scenario.verdict in replies[-1][1], replies[-1][1]
    check_no_failure(text)


ACCOUNT_COLUMNS = tuple(sc.INTAKE_EN_ACCOUNT)
CONTACT_COLUMNS = tuple(sc.INTAKE_EN_CONTACTS[0])
COMPETITOR_COLUMNS = tuple(sc.INTAKE_EN_COMPETITORS[0])
OPPORTUNITY_COLUMNS = (*sc.INTAKE_EN_OPPORTUNITY, "expected_close", "qualification")


def row(obj: Any, columns: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in columns}


def only(rows: list[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    return [{k: r[k] for k in keys} for r in rows]


@dataclass
class Stored:
    """The rows a conversation leaves: the scenario columns plus ids and owners."""

    user_id: uuid.UUID
    accounts: list[dict[str, Any]]
    contacts: list[dict[str, Any]]
    competitors: list[dict[str, Any]]
    opportunities: list[dict[str, Any]]
    dialogs: list[tuple[str, str]]


def _stored(session: Session, platform: str, user: str) -> Stored:
    user_id = session.scalars(select(Identity.user_id).where(
        Identity.platform == platform, Identity.external_id == user)).one()
    accounts = session.scalars(select(Account).order_by(Account.created_at)).all()
    contacts = session.scalars(select(Contact).order_by(Contact.created_at)).all()
    competitors = session.scalars(select(CompetitorNote).order_by(CompetitorNote.created_at)).all()
    opportunities = session.scalars(select(Opportunity)).all()
    dialogs = session.execute(select(DialogSession.flow, DialogSession.status)
                              .order_by(DialogSession.created_at)).all()
    return Stored(
        user_id=user_id,
        accounts=[{**row(a, ACCOUNT_COLUMNS), "id": a.id, "owner_id": a.owner_id}
                  for a in accounts],
        contacts=[{**row(c, CONTACT_COLUMNS), "account_id": c.account_id,
                   "owner_id": c.owner_id} for c in contacts],
        competitors=[{**row(c, COMPETITOR_COLUMNS), "account_id": c.account_id}
                     for c in competitors],
        opportunities=[{**row(o, OPPORTUNITY_COLUMNS), "account_id": o.account_id,
                        "owner_id": o.owner_id} for o in opportunities],
        dialogs=[(flow, status) for flow, status in dialogs],
    )


async def stored(db: Database, *, platform: str = "console", user: str = USER) -> Stored:
    """Everything stored in `db`, with the user id of `user` on `platform`."""
    return await db.run(_stored, platform, user)


def _same(what: str, got: object, want: object) -> None:
    assert got == want, f"{what}:\n got: {got!r}\nwant: {want!r}"


def check_intake_rows(rows: Stored, scenario: Scenario, today: date = TODAY) -> None:
    """The rows `scenario` must leave, whichever front end played it (on `today`)."""
    _same("accounts", only(rows.accounts, ACCOUNT_COLUMNS), [scenario.account])
    account = rows.accounts[0]
    _same("account owner", account["owner_id"], rows.user_id)
    assert isinstance(account["last_purchase_amount"], Decimal), account

    _same("contacts", only(rows.contacts, CONTACT_COLUMNS), scenario.contacts)
    _same("contacts' account", {c["account_id"] for c in rows.contacts}, {account["id"]})
    _same("contacts' owner", {c["owner_id"] for c in rows.contacts}, {rows.user_id})

    _same("competitors", only(rows.competitors, COMPETITOR_COLUMNS), scenario.competitors)
    _same("competitors' account", {c["account_id"] for c in rows.competitors}, {account["id"]})

    assert len(rows.opportunities) == 1, rows.opportunities
    [opp] = rows.opportunities
    _same("opportunity", {k: opp[k] for k in scenario.opportunity}, scenario.opportunity)
    _same("opportunity's account", opp["account_id"], account["id"])
    _same("opportunity's owner", opp["owner_id"], rows.user_id)
    if opp["amount"] is not None:
        assert isinstance(opp["amount"], Decimal), opp
    close = scenario.expected_close(today)
    _same("expected close", opp["expected_close"], close)
    _same("qualification", {k: opp["qualification"].get(k) for k in scenario.qualification},
          scenario.qualification)
    _same("timetable", opp["qualification"].get("timetable"),
          close.isoformat() if close else None)

    _same("dialogs", rows.dialogs, [("intake", "done"), ("qualify", "done")])
