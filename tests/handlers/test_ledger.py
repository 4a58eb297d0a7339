"""The ledger test (issue 13): what is saved after each step of the method is what happened.

One opportunity of the demo company (Longjiang Bank's branch staff winter uniforms, rep lilei)
is walked through every flow of the six steps — `tests/scenarios.py` METHOD_EN / METHOD_ZH —
in English and in Chinese, through the console driver and through the Telegram and Slack
adapters against their fake API servers. After each step (each `advance` that moves the deal)
the database is compared with the ledger expected at that point: which stage, which facts under
which keys, with which dates and amounts. The same script must leave the same ledger whichever
front end it went through.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.coach import Coach
from bot.commands import load_commands
from bot.demo import demo_id, load_demo
from handlers.console import Console
from store.db import Database
from store.models import (
    BuyingSignal,
    CollectionAction,
    Contact,
    FabEntry,
    Identity,
    Invoice,
    Need,
    Opportunity,
    Org,
    Payment,
    SpinEntry,
    SwotEntry,
)
from tests import scenarios as sc
from tests.conversation_checks import START, FakeClock, engine

OPP = demo_id("opportunity", "bank-uniforms")
QIAN_YU = demo_id("contact", "qianyu")
LILEI = demo_id("user", "lilei")
D = date.fromisoformat


def ledger(session: Session) -> dict[str, Any]:
    """What the database says about the opportunity, in plain values."""
    opp = session.get(Opportunity, OPP)
    contact = session.get(Contact, QIAN_YU)
    assert opp is not None and contact is not None
    invoices = session.scalars(select(Invoice).where(Invoice.opportunity_id == OPP)
                               .order_by(Invoice.number)).all()
    numbers = {i.id: i.number for i in invoices}
    payments = session.execute(select(Payment.invoice_id, Payment.amount, Payment.currency,
                                      Payment.paid_on)
                               .where(Payment.invoice_id.in_(list(numbers)))).all()
    actions = session.execute(select(CollectionAction.invoice_id, CollectionAction.rung,
                                     CollectionAction.next_due, CollectionAction.done_by)
                              .where(CollectionAction.invoice_id.in_(list(numbers)))).all()
    return {
        "stage": opp.stage, "phase": opp.phase, "verdict": opp.verdict,
        "qualification": dict(opp.qualification or {}),
        "requirements_on": opp.requirements_on, "negotiation_on": opp.negotiation_on,
        "close_method": opp.close_method, "addons": bool(opp.addons),
        "contract_on": opp.contract_on, "contract_review": dict(opp.contract_review or {}),
        "service": (opp.produced_on, opp.delivered_on, opp.accepted_on),
        "referral": bool(opp.referral_note), "closed": opp.closed_at is not None,
        "qian_yu": (contact.relationship_stage, contact.comm_style, contact.insider_level),
        "spin": sorted(session.scalars(select(SpinEntry.kind)
                                       .where(SpinEntry.opportunity_id == OPP))),
        "needs": sorted(session.scalars(select(Need.kind).where(Need.opportunity_id == OPP))),
        "swot": sorted(tuple(r) for r in session.execute(
            select(SwotEntry.quadrant, SwotEntry.source)
            .where(SwotEntry.opportunity_id == OPP)).all()),
        "fab": session.scalar(select(FabEntry.id).where(FabEntry.opportunity_id == OPP)
                              .limit(1)) is not None,
        "signals": sorted(session.scalars(select(BuyingSignal.signal)
                                          .where(BuyingSignal.opportunity_id == OPP))),
        "invoices": [(i.number, i.amount, i.currency, i.issued_on, i.due_on, i.status)
                     for i in invoices],
        "payments": sorted((numbers[i], a, c, p) for i, a, c, p in payments),
        "actions": sorted((numbers[i], r, n, by == LILEI) for i, r, n, by in actions),
    }


QUALIFIED = {"need": "yes", "timetable": "2027-03-01",
             "budget": {"amount": "1200000.00", "currency": "CNY"},
             "can_win": 4, "worth_it": True, "our_strength": True}
ANALYSED: dict[str, Any] = {
    "stage": "trust", "phase": None, "verdict": "opportunity", "qualification": QUALIFIED,
    "requirements_on": None, "negotiation_on": None, "close_method": None, "addons": False,
    "contract_on": None, "contract_review": {}, "service": (None, None, None),
    "referral": False, "closed": False, "qian_yu": ("trust", "chameleon", "mid"),
    "spin": [], "needs": [], "swot": [], "fab": False, "signals": [], "invoices": [],
    "payments": [], "actions": [],
}
SIGNALS = ["asks_payment_terms", "asks_price_details", "asks_references"]
DEPOSIT = ("YY-2026-0200", Decimal("360000.00"), "CNY", D("2026-11-27"), D("2026-12-05"))
ORDER = ("YY-2027-0001", Decimal("840000.00"), "CNY", D("2026-11-27"), D("2026-12-27"))
TODAY = D("2026-11-27")


def expected(lang: str) -> list[dict[str, Any]]:
    """The ledger after each move of the deal, step by step."""
    spin = ["I", "N", "S"] if lang == "en" else ["P", "S"]
    swot = [("s", "quality"), ("t", "economic")] if lang == "en" else [("s", "quality")]
    needs = sorted(["goal", "problem", "solution", "product", "criterion", "goal", "problem"])
    steps: list[dict[str, Any]] = []

    def then(**changes: Any) -> None:
        steps.append({**(steps[-1] if steps else ANALYSED), **changes})

    then(stage="needs")  # step 2 done: the key contact trusts us
    then(stage="value", spin=spin, needs=needs, requirements_on=D("2026-11-25"),
         phase="design")  # step 3: needs dug out, the requirements received
    then(stage="commitment", swot=swot, fab=True, signals=SIGNALS,
         negotiation_on=D("2026-11-26"))  # step 4: buying signals, negotiation started
    then(stage="deposit", close_method="alternative", addons=True,
         contract_on=TODAY, contract_review={"terms": True, "licence": True,
                                             "bank_account": True})  # step 5: signed
    then(stage="order", invoices=[(*DEPOSIT, "paid")],
         payments=[("YY-2026-0200", Decimal("360000.00"), "CNY", TODAY)])  # the deposit is in
    then(stage="collection", service=(TODAY, TODAY, TODAY),
         invoices=[(*DEPOSIT, "paid"), (*ORDER, "open")])  # delivered and accepted, invoiced
    then(stage="won", closed=True, referral=True,
         invoices=[(*DEPOSIT, "paid"), (*ORDER, "paid")],
         payments=[("YY-2026-0200", Decimal("360000.00"), "CNY", TODAY),
                   ("YY-2027-0001", Decimal("400000.00"), "CNY", TODAY),
                   ("YY-2027-0001", Decimal("440000.00"), "CNY", TODAY)],
         actions=[("YY-2027-0001", "phone_gentle", D("2026-12-01"), True)])  # all collected
    return steps


def script(lang: str) -> tuple[list[str], set[int]]:
    """The lines, and the indexes of the lines after which the deal has moved a step."""
    lines = sc.METHOD_EN if lang == "en" else sc.METHOD_ZH
    moves = ("moves to step", "进入第", "订单", "回收账款", "成交——")
    moved = {i for i, (line, want) in enumerate(lines)
             if line.split(" ")[0] in ("advance", "推进") and want is not None
             and any(m in want for m in moves)}
    return [line for line, _ in lines], moved


def _assert_ledgers(found: list[dict[str, Any]], lang: str, where: str) -> None:
    want = expected(lang)
    assert len(found) == len(want), f"{where}: {len(found)} moves, expected {len(want)}"
    for step, (got, exp) in enumerate(zip(found, want, strict=True), start=1):
        diff = {k: (got.get(k), v) for k, v in exp.items() if got.get(k) != v}
        assert not diff, f"{where}, {lang}, after move {step} ({exp['stage']}): {diff}"


# ---- the console driver ------------------------------------------------------------------


class LedgerConsole(Console):
    """The real console loop, reading the script; the ledger is read after each move."""

    def __init__(self, coach: Coach, db: Database, lines: list[str], moved: set[int],
                 **kwargs: Any) -> None:
        super().__init__(coach, stdin=io.StringIO(), stdout=io.StringIO(), interactive=False,
                         **kwargs)
        self.db, self.lines, self.moved = db, lines, moved
        self.next, self.ledgers = 0, []  # type: ignore[var-annotated]

    async def _read(self) -> str | None:
        if self.next - 1 in self.moved:
            self.ledgers.append(await self.db.run(ledger))
        if self.next == len(self.lines):
            return None
        line = self.lines[self.next]
        self.next += 1
        return line


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_ledger_through_the_console(db: Database, lang: str) -> None:
    await db.run(load_demo, now=START)
    lines, moved = script(lang)
    renderer, dialogs = engine()
    coach = Coach(db, dialogs, renderer, clock=FakeClock(), registry=load_commands())
    console = LedgerConsole(coach, db, lines, moved, user=sc.METHOD_USER, org=sc.METHOD_ORG,
                            lang=lang)
    await console.run()
    _assert_ledgers(console.ledgers, lang, "console")


# ---- the messengers: the demo company installed in Telegram / Slack ------------------------


def _install(platform: str, org_key: str, user_key: str) -> Callable[[Session], None]:
    """The demo company as a team of `platform`, lilei as the user `user_key`."""
    def move(session: Session) -> None:
        org = demo_id("org", "demo")
        session.execute(update(Org).where(Org.id == org)
                        .values(platform=platform, external_id=org_key))
        session.execute(update(Identity).where(Identity.user_id == LILEI)
                        .values(platform=platform, external_id=user_key))
        others = session.scalars(select(Identity).where(Identity.org_id == org,
                                                        Identity.user_id != LILEI)).all()
        for n, identity in enumerate(others):
            identity.platform, identity.external_id = platform, f"{user_key}-{n}"
    return move


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_ledger_through_telegram(db: Database, lang: str) -> None:
    from tests.handlers.telegram.harness import Driver, running

    await db.run(load_demo, now=START)
    lines, moved = script(lang)
    ledgers: list[dict[str, Any]] = []
    async with running(db) as h:
        rep = h.api.user(515151, language_code=lang)
        await db.run(_install("telegram", str(h.api.bot_id), "515151"))
        driver = Driver.of(h, rep)
        for index, line in enumerate(lines):
            await driver.say(line)
            if index in moved:
                ledgers.append(await db.run(ledger))
    _assert_ledgers(ledgers, lang, "telegram")
