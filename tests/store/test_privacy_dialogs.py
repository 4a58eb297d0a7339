"""Forgetting a contact also empties what the dialogs that recorded them still hold."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.app import build_engine
from bot.coach import Coach
from dialogs.messages import Inbound
from store.db import Database
from store.models import Contact, DialogSession
from store.privacy import forget_contact, scrub_state
from tests.scenarios import INTAKE_EN

LATER = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _coach(db: Database) -> Coach:
    renderer, engine = build_engine()
    ticks = iter(range(10**6))
    return Coach(db, engine, renderer,
                 clock=lambda: datetime(2026, 11, 27, 9, 0, next(ticks) % 60, tzinfo=UTC))


async def _intake(db: Database, lines: list[str]) -> None:
    coach = _coach(db)
    for line in lines:
        await coach.handle(Inbound(platform="console", org_key="acme", user_key="li",
                                   text=line, user_name="Li"))


def _contact(name: str):  # type: ignore[no-untyped-def]
    def find(session: Session) -> tuple[uuid.UUID, uuid.UUID]:
        row = session.execute(select(Contact.id, Contact.org_id)
                              .where(Contact.name == name)).one()
        return row.id, row.org_id
    return find


def _states(session: Session) -> list[str]:
    return [json.dumps(state, ensure_ascii=False)
            for state in session.execute(select(DialogSession.state)).scalars()]


async def test_forget_contact_empties_their_answers_in_the_intake_dialog(db: Database) -> None:
    await _intake(db, INTAKE_EN)
    contact_id, org_id = await db.run(_contact("Liu Qiang"))
    before = " ".join(await db.run(_states))
    assert "Liu Qiang" in before and "138 0000 0000" in before and "badminton" in before

    changed = await db.run(lambda s: forget_contact(s, org_id=org_id, contact_id=contact_id,
                                                    now=LATER))
    assert changed["dialog_sessions"] >= 1
    after = " ".join(await db.run(_states))
    for personal in ("Liu Qiang", "138 0000 0000", "badminton", "gaokao"):
        assert personal not in after
    # the other contact's answers and the customer's stay
    assert "Zhao Min" in after and "Daqing Oilfield Company" in after


async def test_forget_contact_leaves_dialogs_that_do_not_name_them(db: Database) -> None:
    await _intake(db, INTAKE_EN)
    contact_id, org_id = await db.run(_contact("Zhao Min"))
    other = await db.run(_contact("Liu Qiang"))
    assert other[0] != contact_id

    def versions(session: Session) -> dict[uuid.UUID, int]:
        return dict(session.execute(select(DialogSession.id, DialogSession.version)).all())

    before = await db.run(versions)
    changed = await db.run(lambda s: forget_contact(s, org_id=org_id, contact_id=contact_id,
                                                    now=LATER))
    after = await db.run(versions)
    touched = {k for k in after if after[k] != before[k]}
    assert len(touched) == changed["dialog_sessions"]
    text = " ".join(await db.run(_states))
    assert "Zhao Min" not in text and "Liu Qiang" in text


def test_scrub_state_blanks_references_and_the_persons_iteration() -> None:
    cid = str(uuid.uuid4())
    state = {
        "flow": "intake",
        "answers": {
            "name": "Daqing",
            "contacts.0.name": "王海 (Wang Hai)",
            "contacts.0.phone": "+86 10 5555 0000",
            "contacts.1.name": "Zhao Min",
            "contacts.1.notes": "Met Wang Hai at the fair",
            "met": {"id": cid, "name": "王海 (Wang Hai)"},
        },
        "bound": {"contact": {"id": cid, "name": "王海 (Wang Hai)"}},
    }
    out = scrub_state(state, cid, ["王海 (Wang Hai)", "Wang Hai", "王海"], "(erased #x)")
    assert out["answers"]["contacts.0.name"] is None
    assert out["answers"]["contacts.0.phone"] is None
    assert out["answers"]["contacts.1.name"] == "Zhao Min"
    # another person's turn that mentions him keeps its answers, without his name
    assert out["answers"]["contacts.1.notes"] == "Met (erased #x) at the fair"
    assert out["answers"]["met"] == {"id": cid, "name": "(erased #x)"}
    assert out["bound"]["contact"]["name"] == "(erased #x)"
    assert out["answers"]["name"] == "Daqing"
