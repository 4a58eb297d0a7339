"""Coaching analytics on a fixture whose answers are worked out by hand (see each test)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from store.analytics import Advice, RepStats, SpinMix, advise, spin_mix, team_report
from store.db import Database
from store.models import (
    Account,
    Activity,
    Invoice,
    Opportunity,
    Org,
    Payment,
    SpinEntry,
    User,
    name_key,
)

NS = uuid.UUID("1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b")
ORG = uuid.uuid5(NS, "org")
START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)  # 30 days


def uid(key: str) -> uuid.UUID:
    return uuid.uuid5(NS, key)


def at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 9, 0, tzinfo=UTC)


def build(session: Session) -> None:
    session.add(Org(id=ORG, name="T", platform="console", external_id="t", settings={},
                    created_at=START, updated_at=START))
    session.flush()
    session.add(User(id=uid("m"), org_id=ORG, display_name="Manager", role="manager"))
    session.flush()
    for rep in ("a", "b"):
        session.add(User(id=uid(rep), org_id=ORG, display_name=f"Rep {rep.upper()}",
                         role="rep", manager_id=uid("m")))
    session.flush()
    for rep in ("a", "b"):
        session.add(Account(id=uid(f"acc-{rep}"), org_id=ORG, owner_id=uid(rep),
                            name=f"Account {rep}", name_key=name_key(f"Account {rep}"),
                            created_at=START, updated_at=START))
    session.flush()
    # opportunity: owner, created, stage now, stage entered, last activity
    opps = {
        "a1": ("a", at(10, 1), "lost", at(11, 20), at(11, 20)),
        "a2": ("a", at(11, 2), "keep_in_touch", at(11, 12), at(11, 12)),
        "a5": ("a", at(11, 3), "lost", at(11, 13), at(11, 13)),
        "a6": ("a", at(11, 1), "needs", at(11, 1), at(11, 1)),
        "b3": ("b", at(11, 1), "value", at(11, 25), at(11, 25)),
        "b4": ("b", at(10, 1), "trust", at(11, 11), at(11, 5)),
    }
    for key, (rep, created, stage, entered, last) in opps.items():
        session.add(Opportunity(id=uid(key), org_id=ORG, account_id=uid(f"acc-{rep}"),
                                owner_id=uid(rep), name=key, stage=stage,
                                stage_entered_at=entered, last_activity_at=last,
                                created_at=created, updated_at=created))
    session.flush()
    changes = [
        ("a1", at(10, 21), "analysis -> trust"),  # before the period: only sets the entry
        ("a1", at(11, 10), "trust -> needs"),     # trust advanced after 20 days
        ("a1", at(11, 20), "needs -> lost"),      # needs dropped after 10 days
        ("a2", at(11, 12), "analysis -> keep_in_touch"),  # dropped after 10 days
        ("a5", at(11, 13), "analysis -> lost"),   # dropped after 10 days
        ("b3", at(11, 5), "analysis -> trust"),   # 4 days
        ("b3", at(11, 15), "trust → needs"),      # 10 days (the arrow may be →)
        ("b3", at(11, 25), "needs -> value: written requirements received"),  # 10 days
        ("b4", at(11, 11), "analysis -> trust"),  # 41 days
        ("b4", at(12, 3), "trust -> needs"),      # after the period
    ]
    for key, when, note in changes:
        session.add(Activity(id=uuid.uuid4(), org_id=ORG, opportunity_id=uid(key),
                             kind="stage_change", note=note, occurred_at=when, created_at=when))
    spin: list[tuple[str, str | None, str, int]] = [
        ("a1", "a", "S", 3), ("a1", "a", "P", 2), ("a6", "a", "I", 1),
        ("b3", "b", "S", 1), ("b3", "b", "P", 1), ("b3", "b", "I", 2),
        ("b4", None, "N", 2)]  # no user recorded: credited to the owner, rep B
    for opp, asker, kind, n in spin:
        for i in range(n):
            session.add(SpinEntry(id=uuid.uuid4(), org_id=ORG, opportunity_id=uid(opp),
                                  user_id=uid(asker) if asker else None, kind=kind,
                                  question=f"{kind}{i}", asked_at=at(11, 5 + i),
                                  created_at=at(11, 5)))
    session.add(SpinEntry(id=uuid.uuid4(), org_id=ORG, opportunity_id=uid("a1"),
                          user_id=uid("a"), kind="S", question="old", asked_at=at(10, 5),
                          created_at=at(10, 5)))  # before the period
    invoices = [  # key, rep, amount, issued, status, closed, payments
        ("i1", "a", "100000", date(2026, 11, 5), "open", None, [("40000", date(2026, 11, 20))]),
        ("i2", "a", "50000", date(2026, 10, 1), "paid", date(2026, 11, 10),
         [("50000", date(2026, 11, 10))]),
        ("i3", "b", "200000", date(2026, 11, 10), "open", None, []),
        ("i4", "b", "30000", date(2026, 9, 1), "written_off", date(2026, 10, 15), []),
        ("i5", "b", "70000", date(2026, 12, 2), "open", None, []),  # after the period
    ]
    session.flush()
    for key, rep, amount, issued, status, closed, payments in invoices:
        session.add(Invoice(id=uid(key), org_id=ORG, account_id=uid(f"acc-{rep}"), number=key,
                            amount=Decimal(amount), currency="CNY", issued_on=issued,
                            due_on=issued, status=status, closed_on=closed,
                            created_at=START, updated_at=START))
        session.flush()
        for paid, on in payments:
            session.add(Payment(id=uuid.uuid4(), org_id=ORG, invoice_id=uid(key),
                                amount=Decimal(paid), currency="CNY", paid_on=on))
    session.flush()


async def test_team_report_figures(db: Database) -> None:
    await db.run(build)
    report = await db.run(lambda s: team_report(s, ORG, [uid("a"), uid("b")], start=START,
                                                end=END))
    a, b = report.reps
    assert (a.name, b.name) == ("Rep A", "Rep B")

    # SPIN mix in the period
    assert a.spin == SpinMix(3, 2, 1, 0) and a.spin.feedback == "no_need_payoff"
    assert b.spin == SpinMix(1, 1, 2, 2) and b.spin.feedback == "balanced"
    assert report.team.spin == SpinMix(4, 3, 3, 2)

    # step conversion and time per step
    assert (a.steps["analysis"].advanced, a.steps["analysis"].dropped) == (0, 2)
    assert a.steps["trust"].advanced == 1 and a.steps["trust"].mean_days == 20
    assert (a.steps["needs"].dropped, a.steps["needs"].mean_days) == (1, 10)
    assert b.steps["analysis"].advanced == 2 and b.steps["analysis"].mean_days == 22.5
    assert b.steps["trust"].mean_days == 10 and b.steps["needs"].advanced == 1
    team = report.team.steps
    assert team["analysis"].conversion == 0.5  # 2 advanced, 2 dropped
    assert team["trust"].conversion == 1.0 and team["trust"].mean_days == 15
    assert team["needs"].conversion == 0.5

    # where they stall (now = end of period)
    assert a.open_by_step == {"needs": 1} and a.stalled_by_step == {"needs": 1}
    assert b.open_by_step == {"value": 1, "trust": 1} and b.stalled_by_step == {"trust": 1}
    assert a.stall_step == "needs" and b.median_days_in_step("trust") == 19  # 11-11 09:00 to 12-01

    # collection speed: receivables at the end / invoiced in the period × 30 days
    assert (a.receivables, a.invoiced) == (Decimal(60000), Decimal(100000))
    assert a.dso == pytest.approx(18.0)
    assert a.mean_days_to_pay == 40
    assert (b.receivables, b.invoiced) == (Decimal(200000), Decimal(200000))
    assert b.dso == pytest.approx(30.0)
    assert report.team.dso == pytest.approx(26.0)

    # what to coach, compared with the team
    assert report.advice[uid("a")] == [
        Advice("need_payoff", {"team_pct": 17}),
        Advice("conversion", {"stage": "analysis", "rep_pct": 0, "team_pct": 50}),
        Advice("stalled", {"stage": "needs", "count": 1, "rep_pct": 100, "team_pct": 67}),
    ]
    assert [x.code for x in report.advice[uid("b")]] == ["stalled"]


async def test_spin_mix_of_one_opportunity_and_of_reps(db: Database) -> None:
    await db.run(build)
    assert await db.run(lambda s: spin_mix(s, ORG, opportunity_id=uid("a1"))) == SpinMix(4, 2)
    assert await db.run(lambda s: spin_mix(s, ORG, opportunity_id=uid("b4"))) == SpinMix(n=2)
    in_period = await db.run(lambda s: spin_mix(s, ORG, user_ids=[uid("a")], start=START,
                                                end=END))
    assert in_period == SpinMix(3, 2, 1, 0)


def test_slow_collection_and_missing_implication_are_flagged() -> None:
    rep = RepStats(uid("x"), "X", spin=SpinMix(5, 3, 0, 1), receivables=Decimal(90),
                   invoiced=Decimal(100), period_days=30)
    team = RepStats(None, "team", spin=SpinMix(10, 6, 6, 4), receivables=Decimal(120),
                    invoiced=Decimal(300), period_days=30)
    codes = {a.code: a.params for a in advise(rep, team)}
    assert codes["implication"] == {"rep_pct": 0, "team_pct": 23}
    assert codes["dso"] == {"rep": 27, "team": 12}
    assert SpinMix(6, 1, 1, 1).feedback == "situation_heavy"
    assert SpinMix().feedback == "none"
