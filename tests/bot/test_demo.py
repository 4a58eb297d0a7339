"""The demo company loads on both backends, looks current at any `now`, and reloads cleanly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.demo import DemoSummary, demo_id, load_demo
from store.db import Database
from store.enums import FunnelStage, InvoiceStatus
from store.models import Account, Contact, Identity, Invoice, Opportunity, Org, Payment, User

NOW = datetime(2026, 11, 27, 1, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Facts:
    daqing: Account
    contacts: list[Contact]
    overdue_days: list[int]
    stages: set[str]
    lilei: User
    partial_paid: Decimal
    org: Org


def _counts(session: Session) -> dict[str, int]:
    models = {
        "orgs": Org,
        "users": User,
        "identities": Identity,
        "accounts": Account,
        "contacts": Contact,
        "opportunities": Opportunity,
        "invoices": Invoice,
        "payments": Payment,
    }
    return {
        name: session.scalar(select(func.count()).select_from(model)) or 0
        for name, model in models.items()
    }


async def test_demo_loads_with_current_looking_data(db: Database) -> None:
    summary = await db.run(load_demo, now=NOW)

    assert isinstance(summary, DemoSummary)
    assert summary.users == 4 and summary.identities == 4
    assert summary.accounts == 5
    assert summary.contacts >= 10 and summary.opportunities >= 8
    assert summary.invoices == 7 and summary.payments == 2 and summary.collection_actions >= 2
    assert summary.team_channels == 1
    counts = await db.run(_counts)
    assert counts["orgs"] == 1
    assert counts["contacts"] == summary.contacts
    assert counts["invoices"] == summary.invoices

    def facts(session: Session) -> Facts:
        daqing = session.scalars(select(Account).where(Account.industry == "oil_gas")).one()
        contacts = session.scalars(select(Contact).where(Contact.account_id == daqing.id)).all()
        open_invoices = session.scalars(select(Invoice).where(Invoice.status == InvoiceStatus.OPEN))
        lilei = session.scalars(select(Identity).where(Identity.external_id == "lilei")).one()
        partial = session.get_one(Invoice, demo_id("invoice", "YY-2026-0112"))
        return Facts(
            daqing=daqing,
            contacts=list(contacts),
            overdue_days=sorted((NOW.date() - inv.due_on).days for inv in open_invoices),
            stages=set(session.scalars(select(Opportunity.stage))),
            lilei=session.get_one(User, lilei.user_id),
            partial_paid=sum((p.amount for p in partial.payments), Decimal(0)),
            org=session.get_one(Org, summary.org_id),
        )

    got = await db.run(facts)
    assert got.daqing.name.startswith("大庆油田") and got.daqing.nature == "state_owned"
    assert got.daqing.created_at == NOW - timedelta(days=400)
    assert len(got.contacts) == 4
    assert any(c.personal_notes for c in got.contacts)
    # one not yet due, then 10, 25, 45, 75 and 120 days overdue
    assert got.overdue_days == [-20, 10, 25, 45, 75, 120]
    assert {
        FunnelStage.ANALYSIS,
        FunnelStage.TRUST,
        FunnelStage.NEEDS,
        FunnelStage.VALUE,
        FunnelStage.COMMITMENT,
        FunnelStage.DEPOSIT,
        FunnelStage.COLLECTION,
        FunnelStage.KEEP_IN_TOUCH,
    } <= got.stages
    assert got.lilei.display_name == "Li Lei 李雷"
    assert got.partial_paid == Decimal("400000.00")
    assert got.org.platform == "console" and got.org.external_id == "demo"


async def test_loading_twice_gives_the_same_rows(db: Database) -> None:
    first = await db.run(load_demo, now=NOW)
    counts = await db.run(_counts)
    later = NOW + timedelta(days=7)
    second = await db.run(load_demo, now=later)
    assert second == first
    assert await db.run(_counts) == counts

    def oldest_due(session: Session) -> int:
        due = session.scalar(
            select(func.min(Invoice.due_on)).where(Invoice.status == InvoiceStatus.OPEN)
        )
        assert due is not None
        return (later.date() - due).days

    # the dates moved with `now`: the oldest open invoice is still 120 days overdue
    assert await db.run(oldest_due) == 120
