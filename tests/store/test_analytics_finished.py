"""Analytics on finished deals (issue 13, item 9): a deal taken to won with everything paid
reads as a converted collection step, a DSO of nothing outstanding and the days it took to be
paid — also when the last payment came in today. The definitions are in README.md
("How the analytics figures are defined")."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from bot.commands import load_commands
from bot.demo import load_demo
from store.analytics import team_report
from store.db import Database
from store.models import Account, Activity, Invoice, Opportunity, Org, Payment, User, name_key
from tests import scenarios as sc
from tests.conversation_checks import START, converse

NS = uuid.UUID("6a1c5e1e-0d7a-4b7e-9d34-0c1f3f0b9e11")
ORG, REP, ACC, OPP = (uuid.uuid5(NS, k) for k in ("org", "rep", "acc", "opp"))
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # mid-afternoon: the period ends now


def _at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 9, 0, tzinfo=UTC)


def _won_deal(session: Session) -> None:
    """One rep, one deal: in collection from 11-10, won an hour ago; two invoices of
    50,000 issued 11-05 and 11-21, the first paid on 11-15 (after 10 days), the second today
    (after 10 days)."""
    session.add(Org(id=ORG, name="F", platform="console", external_id="f", settings={}))
    session.flush()
    session.add(User(id=REP, org_id=ORG, display_name="Rep", role="rep"))
    session.flush()
    session.add(Account(id=ACC, org_id=ORG, owner_id=REP, name="Acme", name_key=name_key("Acme")))
    session.flush()
    session.add(Opportunity(id=OPP, org_id=ORG, account_id=ACC, owner_id=REP, name="Deal",
                            stage="won", amount=Decimal(100_000), currency="CNY",
                            created_at=_at(10, 1), stage_entered_at=NOW, closed_at=NOW))
    session.flush()
    for when, note in ((_at(11, 10), "order -> collection"),
                       (NOW - timedelta(hours=1), "collection -> won")):
        session.add(Activity(id=uuid.uuid4(), org_id=ORG, user_id=REP, account_id=ACC,
                             opportunity_id=OPP, kind="stage_change", note=note,
                             occurred_at=when, created_at=when))
    for number, issued, paid in (("F-1", date(2026, 11, 5), date(2026, 11, 15)),
                                 ("F-2", date(2026, 11, 21), NOW.date())):
        inv = uuid.uuid4()
        session.add(Invoice(id=inv, org_id=ORG, account_id=ACC, opportunity_id=OPP,
                            number=number, amount=Decimal(50_000), currency="CNY",
                            issued_on=issued, due_on=issued + timedelta(days=30),
                            status="paid", closed_on=paid))
        session.flush()
        session.add(Payment(id=uuid.uuid4(), org_id=ORG, invoice_id=inv,
                            amount=Decimal(50_000), currency="CNY", paid_on=paid))


async def test_a_won_fully_paid_deal_in_the_team_report(db: Database) -> None:
    await db.run(_won_deal)

    def report(session: Session) -> tuple[int, int, float | None, float | None, float | None,
                                          list[int]]:
        rep = team_report(session, ORG, [REP], start=NOW - timedelta(days=30), end=NOW).reps[0]
        collection = rep.steps["collection"]
        return (collection.advanced, collection.dropped, collection.conversion,
                collection.mean_days, rep.dso, sorted(rep.days_to_pay))

    advanced, dropped, conversion, days, dso, paid_after = await db.run(report)
    assert (advanced, dropped, conversion) == (1, 0, 1.0)  # collection -> won converts
    assert days == 21.2  # in collection from 11-10 09:00 to 12-01 14:00
    assert dso == 0.0  # everything paid, today's payment included
    assert paid_after == [10, 10]


@pytest.mark.parametrize(("lang", "script", "collection", "dso"), [
    ("en", sc.METHOD_EN, "• 6 · Collect receivables: 100% of 1",
     "Days sales outstanding 2 · paid after 0 days on average"),
    ("zh", sc.METHOD_ZH, "• 6 · 回收账款：1 个中 100%",
     "应收账款周转天数 2 · 平均 0 天回款"),
])
async def test_analytics_after_the_method_takes_a_deal_to_won(
        db: Database, lang: str, script: list[tuple[str, str | None]], collection: str,
        dso: str) -> None:
    """The method script takes the bank deal to won, invoiced and paid today; Li Lei's
    analytics then show collection converted and, of what is still owed to him, only the
    Daqing invoice (86,000 CNY over the 1,200,000 invoiced in the period × 30 days = 2)."""
    await db.run(load_demo, now=START)
    chat = await converse(db, [*(line for line, _ in script), "analytics"],
                          user=sc.METHOD_USER, org=sc.METHOD_ORG, lang=lang,
                          registry=load_commands())
    mine = chat.reply(-1).split("\n\n")[1]  # Li Lei's block (the team's follows)
    assert collection in mine, mine
    assert dso in mine, mine
    assert "— of 0" not in chat.reply(-1) and "0 个中 —" not in chat.reply(-1)
