"""A small sales team for the nudge, digest, outbox and scheduler tests, at fixed clocks.

Org "Acme" on Slack, in Asia/Shanghai: manager Wang (U_MGR) with reps Li (U_LI) and Zhang
(U_ZHANG), team channel C_TEAM. `NOW` is Monday 2026-11-30 10:00 in Shanghai.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from store.models import (
    Account,
    CollectionAction,
    Contact,
    Identity,
    Invoice,
    Opportunity,
    Org,
    TeamChannel,
    User,
)

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # Monday 10:00 Asia/Shanghai
TODAY = date(2026, 11, 30)
ORG = uuid.UUID("00000000-0000-0000-0000-00000000a001")
MGR = uuid.UUID("00000000-0000-0000-0000-00000000b001")
LI = uuid.UUID("00000000-0000-0000-0000-00000000b002")
ZHANG = uuid.UUID("00000000-0000-0000-0000-00000000b003")
ACME_ACCOUNT = uuid.UUID("00000000-0000-0000-0000-00000000c001")


def uid(name: str) -> uuid.UUID:
    return uuid.uuid5(ORG, name)


def team(session: Session, *, settings: dict[str, Any] | None = None,
         tz: str = "Asia/Shanghai", lang: str = "en") -> None:
    session.add(Org(id=ORG, name="Acme", platform="slack", external_id="T1", tz=tz,
                    default_lang=lang, settings=settings or {}))
    session.flush()
    session.add_all([
        User(id=MGR, org_id=ORG, display_name="Wang", role="manager", lang="en"),
        User(id=LI, org_id=ORG, display_name="Li", role="rep", manager_id=MGR),
        User(id=ZHANG, org_id=ORG, display_name="Zhang", role="rep", manager_id=MGR),
    ])
    session.flush()
    session.add_all([
        Identity(org_id=ORG, user_id=MGR, platform="slack", external_id="U_MGR"),
        Identity(org_id=ORG, user_id=LI, platform="slack", external_id="U_LI"),
        Identity(org_id=ORG, user_id=ZHANG, platform="slack", external_id="U_ZHANG"),
        TeamChannel(org_id=ORG, platform="slack", channel_id="C_TEAM", name="sales",
                    bound_at=NOW - timedelta(days=30)),
        Account(id=ACME_ACCOUNT, org_id=ORG, owner_id=LI, name="Daqing Oilfield",
                name_key="daqing oilfield", created_at=NOW - timedelta(days=300)),
    ])
    session.flush()


def opp(session: Session, name: str, *, stage: str, owner: uuid.UUID = LI,
        idle_days: float | None = 1, in_stage_days: float = 10, amount: str = "100000",
        next_step_due: date | None = None, created_days: float = 200,
        account: uuid.UUID = ACME_ACCOUNT, closed_days: float | None = None) -> uuid.UUID:
    oid = uid(f"opp:{name}")
    session.add(Opportunity(
        id=oid, org_id=ORG, account_id=account, owner_id=owner, name=name, stage=stage,
        amount=Decimal(amount), currency="CNY", next_step="Call the buyer" if next_step_due
        else None, next_step_due=next_step_due,
        stage_entered_at=NOW - timedelta(days=in_stage_days),
        last_activity_at=None if idle_days is None else NOW - timedelta(days=idle_days),
        created_at=NOW - timedelta(days=created_days),
        closed_at=None if closed_days is None else NOW - timedelta(days=closed_days)))
    session.flush()
    return oid


def invoice(session: Session, number: str, *, overdue_days: int, amount: str = "80000",
            rungs: tuple[tuple[str, int], ...] = (), status: str = "open",
            account: uuid.UUID = ACME_ACCOUNT) -> uuid.UUID:
    iid = uid(f"inv:{number}")
    due = TODAY - timedelta(days=overdue_days)
    session.add(Invoice(id=iid, org_id=ORG, account_id=account, number=number,
                        amount=Decimal(amount), currency="CNY", issued_on=due - timedelta(30),
                        due_on=due, status=status))
    session.flush()
    for rung, days_ago in rungs:
        session.add(CollectionAction(org_id=ORG, invoice_id=iid, rung=rung, done_by=LI,
                                     done_at=NOW - timedelta(days=days_ago)))
    session.flush()
    return iid


def contact(session: Session, name: str, *, roles: list[str], stage: str | None,
            account: uuid.UUID = ACME_ACCOUNT) -> None:
    session.add(Contact(org_id=ORG, account_id=account, owner_id=LI, name=name,
                        name_key=name.casefold(), buying_roles=roles, relationship_stage=stage))
    session.flush()
