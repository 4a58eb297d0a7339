"""The schema: migrations match the models, and the models keep their types on both backends."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, delete, func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session

from store.db import (
    Database,
    alembic_config,
    create_database,
    drop_database,
    normalize_url,
)
from store.enums import FunnelStage, InvoiceStatus, NudgeStatus, Platform, Role, SubjectType
from store.models import Account, Base, Contact, Invoice, Nudge, Opportunity, Org, User

NOW = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
ORG = uuid.UUID("00000000-0000-0000-0000-0000000000a1")
REP = uuid.UUID("00000000-0000-0000-0000-0000000000b1")
ACCOUNT = uuid.UUID("00000000-0000-0000-0000-0000000000c1")
OPP = uuid.UUID("00000000-0000-0000-0000-0000000000d1")
INVOICE = uuid.UUID("00000000-0000-0000-0000-0000000000e1")


def _schema_diff(session: Session) -> list[Any]:
    dialect = session.connection().dialect.name

    def for_this_dialect(obj: Any, name: Any, type_: str, reflected: bool, compare_to: Any) -> bool:
        # Objects the models create only on another backend (`.ddl_if(dialect=...)`, e.g. the
        # PostgreSQL-only pg_trgm indexes) are absent here on purpose: not a difference.
        ddl_if = getattr(obj, "_ddl_if", None)
        return reflected or ddl_if is None or ddl_if.dialect in (None, dialect)

    context = MigrationContext.configure(
        session.connection(),
        opts={"compare_type": True, "compare_server_default": True,
              "include_object": for_this_dialect},
    )
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_models(db: Database) -> None:
    assert await db.run(_schema_diff) == []


# --- downgrade and upgrade again, on a database of its own ----------------------------------


def _alembic(connection: Connection, action: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, revision)


def _table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


@pytest.fixture
async def scratch_url(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database (not migrated) on the same backend as `database_url`."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    server = os.environ["SALESCOACH_TEST_DATABASE_URL"]
    name = f"salescoach_scratch_{uuid.uuid4().hex[:10]}"
    scratch = await create_database(server, name)
    try:
        yield scratch
    finally:
        await drop_database(server, name)


async def _on_connection(url: str, fn: Any, *args: Any) -> Any:
    """Run `fn(connection, *args)` in one committed transaction, sync or async engine."""
    normalized = normalize_url(url)
    if normalized.get_backend_name() == "sqlite":
        engine = create_engine(normalized)

        def work() -> Any:
            with engine.begin() as conn:
                return fn(conn, *args)

        try:
            return await asyncio.to_thread(work)
        finally:
            engine.dispose()
    aengine = create_async_engine(normalized)
    try:
        async with aengine.begin() as aconn:
            return await aconn.run_sync(fn, *args)
    finally:
        await aengine.dispose()


async def test_downgrade_to_base_and_upgrade_again(scratch_url: str) -> None:
    database = Database(scratch_url)
    try:
        await database.upgrade()
    finally:
        await database.dispose()
    model_tables = set(Base.metadata.tables)
    assert model_tables <= await _on_connection(scratch_url, _table_names)

    await _on_connection(scratch_url, _alembic, "downgrade", "base")
    assert await _on_connection(scratch_url, _table_names) <= {"alembic_version"}

    await _on_connection(scratch_url, _alembic, "upgrade", "head")
    assert model_tables <= await _on_connection(scratch_url, _table_names)
    database = Database(scratch_url)
    try:
        assert await database.run(_schema_diff) == []
    finally:
        await database.dispose()


# --- rows and types -------------------------------------------------------------------------


def _seed(session: Session) -> None:
    session.add(Org(id=ORG, name="Test Org", platform=Platform.CONSOLE, external_id="t"))
    session.flush()
    session.add(User(id=REP, org_id=ORG, display_name="Li Lei", role=Role.REP))
    session.flush()
    session.add(
        Account(
            id=ACCOUNT,
            org_id=ORG,
            owner_id=REP,
            name="大庆油田 (Daqing Oilfield)",
            name_key="大庆油田",
            size_employees=200_000,
            last_purchase_amount=Decimal("1234567.89"),
            purchase_departments=["procurement", "union"],
            created_at=NOW,
            updated_at=NOW,
        )
    )
    session.flush()
    session.add_all(
        [
            Contact(
                org_id=ORG,
                account_id=ACCOUNT,
                owner_id=REP,
                name=name,
                name_key=name.lower(),
                buying_roles=["evaluator", "user"],
                personal_notes="likes table tennis",
            )
            for name in ("Zhao", "Qian")
        ]
    )
    session.add(
        Opportunity(
            id=OPP,
            org_id=ORG,
            account_id=ACCOUNT,
            owner_id=REP,
            name="Winter uniforms 2027",
            stage=FunnelStage.VALUE,
            amount=Decimal("3600000.00"),
            currency="CNY",
            expected_close=date(2027, 1, 15),
            qualification={"need": True, "budget": "3.6M"},
            verdict_reasons=["need", "budget"],
            # an aware datetime in another zone must come back as the same instant in UTC
            last_activity_at=datetime(2026, 11, 20, 18, 0, tzinfo=ZoneInfo("Asia/Shanghai")),
            stage_entered_at=NOW - timedelta(days=30),
        )
    )
    session.flush()
    session.add(
        Invoice(
            id=INVOICE,
            org_id=ORG,
            account_id=ACCOUNT,
            opportunity_id=OPP,
            number="INV-0001",
            amount=Decimal("0.10") + Decimal("0.20"),
            currency="CNY",
            issued_on=date(2026, 9, 1),
            due_on=date(2026, 10, 1),
        )
    )


async def test_rows_round_trip_with_their_types(db: Database) -> None:
    await db.run(_seed)

    def read(session: Session) -> tuple[Org, User, Account, Opportunity, Invoice, list[Contact]]:
        contacts = list(session.scalars(select(Contact).order_by(Contact.name)))
        return (
            session.get_one(Org, ORG),
            session.get_one(User, REP),
            session.get_one(Account, ACCOUNT),
            session.get_one(Opportunity, OPP),
            session.get_one(Invoice, INVOICE),
            contacts,
        )

    org, user, account, opp, invoice, contacts = await db.run(read)

    assert org.settings == {} and org.default_lang == "en"
    assert isinstance(org.created_at, datetime) and org.created_at.tzinfo is not None
    assert user.active is True and user.role == Role.REP and user.manager_id is None
    assert account.status == "active"
    assert account.last_purchase_amount == Decimal("1234567.89")
    assert isinstance(account.last_purchase_amount, Decimal)
    assert account.purchase_departments == ["procurement", "union"]
    assert account.created_at == NOW and account.created_at.tzinfo is not None
    assert [c.name for c in contacts] == ["Qian", "Zhao"]
    assert contacts[0].buying_roles == ["evaluator", "user"]
    assert isinstance(contacts[0].id, uuid.UUID)

    assert opp.stage == FunnelStage.VALUE and opp.phase is None
    assert opp.amount == Decimal("3600000.00") and isinstance(opp.amount, Decimal)
    assert opp.expected_close == date(2027, 1, 15)
    assert opp.qualification == {"need": True, "budget": "3.6M"}
    assert opp.verdict_reasons == ["need", "budget"]
    assert opp.last_activity_at == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert opp.last_activity_at is not None and opp.last_activity_at.utcoffset() == timedelta(0)
    assert opp.stage_entered_at == NOW - timedelta(days=30)

    assert invoice.amount == Decimal("0.30") and isinstance(invoice.amount, Decimal)
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.due_on == date(2026, 10, 1) and isinstance(invoice.due_on, date)


async def test_datetime_filters_compare_instants(db: Database) -> None:
    await db.run(_seed)
    cutoff = datetime(2026, 11, 20, 17, 59, tzinfo=ZoneInfo("Asia/Shanghai"))

    def stale(session: Session, before: datetime) -> list[uuid.UUID]:
        query = select(Opportunity.id).where(Opportunity.last_activity_at < before)
        return list(session.scalars(query))

    assert await db.run(stale, cutoff) == []
    assert await db.run(stale, cutoff + timedelta(minutes=2)) == [OPP]


async def test_deleting_an_account_removes_its_contacts_and_opportunities(db: Database) -> None:
    await db.run(_seed)

    def remove(session: Session) -> None:
        session.execute(delete(Account).where(Account.id == ACCOUNT))

    def counts(session: Session) -> tuple[int, int, int]:
        return (
            session.scalar(select(func.count()).select_from(Contact)) or 0,
            session.scalar(select(func.count()).select_from(Opportunity)) or 0,
            session.scalar(select(func.count()).select_from(Invoice)) or 0,
        )

    assert await db.run(counts) == (2, 1, 1)
    await db.run(remove)
    assert await db.run(counts) == (0, 0, 0)


async def test_orm_delete_of_an_account_leaves_cascading_to_the_database(db: Database) -> None:
    await db.run(_seed)

    def remove(session: Session) -> None:
        session.delete(session.get_one(Account, ACCOUNT))

    def contacts(session: Session) -> int:
        return session.scalar(select(func.count()).select_from(Contact)) or 0

    await db.run(remove)
    assert await db.run(contacts) == 0


def _nudge(session: Session, rule: str, period: str) -> None:
    session.add(
        Nudge(
            org_id=ORG,
            subject_type=SubjectType.OPPORTUNITY,
            subject_id=OPP,
            rule=rule,
            period=period,
            created_at=NOW,
        )
    )


async def test_a_nudge_is_unique_per_subject_rule_and_period(db: Database) -> None:
    await db.run(_seed)
    await db.run(_nudge, "stalled", "2026-11-27")
    await db.run(_nudge, "stalled", "2026-11-28")
    await db.run(_nudge, "next_step_overdue", "2026-11-27")
    with pytest.raises(IntegrityError):
        await db.run(_nudge, "stalled", "2026-11-27")

    def statuses(session: Session) -> list[str]:
        return list(session.scalars(select(Nudge.status)))

    assert await db.run(statuses) == [NudgeStatus.PENDING] * 3
