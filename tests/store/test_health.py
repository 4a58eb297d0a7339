"""Deal health on the demo company: scores and the reasons behind them."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.demo import demo_id, load_demo
from store.db import Database
from store.health import (
    ContactFacts,
    Health,
    OppFacts,
    evaluate,
    health_of,
    health_of_ids,
    health_of_rows,
)
from store.models import Contact, Opportunity
from tests.sql_log import statements_run

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def _all(session: Session, org_id: uuid.UUID) -> dict[str, Health]:
    found = health_of(session, org_id, select(Opportunity.id), now=NOW)
    keys = {demo_id("opportunity", k): k for k in (
        "daqing-winter-2027", "daqing-office", "bus-driver-winter", "bus-vests",
        "power-workwear", "power-2025-order", "bank-uniforms", "bank-exec-coats", "cement-2026")}
    return {keys[i]: h for i, h in found.items()}


def _codes(h: Health) -> dict[str, tuple[int, int]]:
    return {r.code: (r.points, r.max_points) for r in h.reasons}


async def test_health_reasons_on_the_demo_company(db: Database) -> None:
    summary = await db.run(load_demo, now=NOW)
    health = await db.run(_all, summary.org_id)

    # keep-in-touch is not an open opportunity: no score
    assert "daqing-office" not in health
    assert len(health) == 8

    daqing = health["daqing-winter-2027"]
    assert daqing.score == 90
    assert [r.code for r in daqing.problems] == ["dm_stage"]  # Liu Jianguo only acquainted
    assert daqing.problems[0].params == {"name": "刘建国 (Liu Jianguo)",
                                         "relationship": "acquaint"}
    assert _codes(daqing)["spin_ok"] == (15, 15)
    assert _codes(daqing)["signals_seen"] == (10, 10)

    bus = health["bus-driver-winter"]
    codes = _codes(bus)
    assert codes["spin_no_implication"] == (3, 15)      # S and P asked, no I, no N
    assert codes["activity_stalled"] == (0, 10)         # 26 days idle, needs allows 21
    assert codes["next_overdue"] == (2, 10)             # due 5 days ago
    assert bus.problems[0].code == "spin_no_implication"  # the most points lost first
    next_overdue = next(r for r in bus.reasons if r.code == "next_overdue")
    assert next_overdue.params["days"] == 5
    assert bus.score < daqing.score

    bank = health["bank-uniforms"]  # step 1: no decision maker check, SPIN or signals yet
    codes = _codes(bank)
    assert "dm_none" not in codes and "spin_none" not in codes and "signals_none" not in codes
    assert codes["qual_partial"] == (7, 20)  # need and timetable only
    assert codes["phase_early"] == (10, 10)

    exec_coats = health["bank-exec-coats"]
    assert _codes(exec_coats)["spin_none"] == (0, 15)

    cement = health["cement-2026"]  # after the contract: qualification etc. are history
    codes = _codes(cement)
    assert "qual_partial" not in codes and "spin_none" not in codes
    assert codes["dm_stage"] == (15, 15)  # alliance with Deng Hui
    assert codes["activity_stalled"] == (0, 10)  # 15 days, collection allows 14


def _facts(**kw: object) -> OppFacts:
    base: dict[str, object] = dict(
        id=uuid.uuid4(), account_id=uuid.uuid4(), stage="value", phase="design",
        qualification={"need": True, "timetable": True, "budget": "2M", "can_win": True,
                       "worth_it": True, "our_strength": True},
        next_step="Demo", next_step_due=date(2026, 12, 1),
        last_activity_at=datetime(2026, 11, 26, tzinfo=UTC), stage_entered_at=None,
        created_at=datetime(2026, 10, 1, tzinfo=UTC))
    base.update(kw)
    return OppFacts(**base)  # type: ignore[arg-type]


def test_a_perfect_opportunity_scores_100() -> None:
    dm = ContactFacts("Boss", ("decision_maker",), "alliance", "high")
    h = evaluate(_facts(), [dm], {"S": 2, "P": 2, "I": 1, "N": 1}, 1, now=NOW,
                 today=NOW.date(), thresholds={"value": 14})
    assert h.score == 100 and not h.problems


def test_phase_inconsistent_with_the_step_and_no_decision_maker() -> None:
    h = evaluate(_facts(phase="discover"), [], {"S": 1, "P": 1, "I": 1, "N": 1}, 1, now=NOW,
                 today=NOW.date(), thresholds={"value": 14})
    codes = _codes(h)
    assert codes["phase_mismatch"] == (0, 10)
    assert codes["dm_none"] == (0, 15)
    assert codes["insider_none"] == (0, 10)
    assert h.score == 65


def test_no_next_step_and_unmet_decision_maker() -> None:
    dm = ContactFacts("Boss", ("decision_maker",), None, None)
    h = evaluate(_facts(next_step=None, stage="trust", phase=None), [dm], {}, 0, now=NOW,
                 today=NOW.date(), thresholds={"trust": 21})
    codes = _codes(h)
    assert codes["next_none"] == (0, 10)
    assert codes["dm_unmet"] == (0, 15)
    assert codes["phase_early"] == (10, 10)


async def test_health_of_many_uses_a_fixed_number_of_queries(db: Database) -> None:
    summary = await db.run(load_demo, now=NOW)

    def count(session: Session) -> int:
        with statements_run(session) as statements:
            result = health_of(session, summary.org_id, select(Opportunity.id), now=NOW)
        assert len(result) == 8
        return len(statements)

    # the ids, the opportunities, contacts, SPIN and signal counts, the org settings
    assert await db.run(count) <= 5


async def test_health_of_loaded_rows_equals_health_by_ids_with_fewer_queries(
        db: Database) -> None:
    """The cards pass the opportunities and contacts they loaded already: same health, and
    only the counts and the org settings are queried."""
    summary = await db.run(load_demo, now=NOW)

    def both(session: Session) -> tuple[dict[uuid.UUID, Health], dict[uuid.UUID, Health], int]:
        opps = session.execute(select(Opportunity)).scalars().all()
        people = session.execute(select(Contact)).scalars().all()
        by_ids = health_of_ids(session, summary.org_id, [o.id for o in opps], now=NOW)
        with statements_run(session) as statements:
            by_rows = health_of_rows(session, summary.org_id, opps, contacts=people, now=NOW)
        return by_ids, by_rows, len(statements)

    by_ids, by_rows, queries = await db.run(both)
    assert len(by_ids) == 8 and by_rows == by_ids
    assert queries == 2  # SPIN and signal counts in one, the org's stalled thresholds
