"""Writing what a dialog recorded: generic upserts by table and id. Never commits."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, Table, delete, insert, select, update
from sqlalchemy.orm import Session

from store.models import Activity, Base, name_key


def _table(name: str) -> Table:
    table = Base.metadata.tables.get(name)
    if table is None:
        raise KeyError(f"no table {name!r}")
    return table


def table_columns() -> dict[str, set[str]]:
    """Table -> column names, for checking flow files' `save:` targets at start-up."""
    return {name: {c.name for c in t.columns} for name, t in Base.metadata.tables.items()}


def _coerce(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        column = table.c[key]
        if value is not None and isinstance(column.type, Integer) and not isinstance(value, int):
            value = int(Decimal(str(value)))
        out[key] = value
    return out


def upsert(
    session: Session,
    table_name: str,
    row_id: str,
    values: dict[str, Any],
    *,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    now: datetime,
    parent: tuple[str, str] | None = None,
) -> None:
    """Update `values` on the row `row_id`; insert the row if it is not there yet."""
    table = _table(table_name)
    rid = uuid.UUID(row_id)
    data = _coerce(table, values)
    if "name" in data and "name_key" in table.c and data["name"] is not None:
        data["name_key"] = name_key(str(data["name"]))
    if "updated_at" in table.c:
        data["updated_at"] = now
    result = session.execute(
        update(table).where(table.c.id == rid, table.c.org_id == org_id).values(**data)
    )
    if result.rowcount:  # type: ignore[attr-defined]
        return
    data.update(id=rid, org_id=org_id)
    if "created_at" in table.c:
        data["created_at"] = now
    for owner in ("owner_id", "author_id", "user_id"):
        if owner in table.c and owner not in data:
            data[owner] = user_id
    if parent is not None:
        data[parent[0]] = uuid.UUID(parent[1])
    session.execute(insert(table).values(**data))


def remove(session: Session, table_name: str, row_id: str, *, org_id: uuid.UUID) -> None:
    table = _table(table_name)
    session.execute(delete(table).where(table.c.id == uuid.UUID(row_id), table.c.org_id == org_id))


def log_activity(
    session: Session,
    *,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    kind: str,
    note: str,
    now: datetime,
    account_id: str | None = None,
    opportunity_id: str | None = None,
    contact_id: str | None = None,
) -> None:
    def _id(value: str | None) -> uuid.UUID | None:
        return uuid.UUID(value) if value else None

    session.execute(insert(Activity).values(
        id=uuid.uuid4(), org_id=org_id, user_id=user_id, kind=kind, note=note, occurred_at=now,
        created_at=now, account_id=_id(account_id), opportunity_id=_id(opportunity_id),
        contact_id=_id(contact_id),
    ))


def names(session: Session, table_name: str, *, org_id: uuid.UUID,
          account_id: str | None = None, limit: int = 5000) -> list[tuple[str, str]]:
    """(id, name) of an org's accounts, or of one account's contacts, for "did you mean"."""
    table = _table(table_name)
    query = select(table.c.id, table.c.name).where(table.c.org_id == org_id)
    if account_id is not None and "account_id" in table.c:
        query = query.where(table.c.account_id == uuid.UUID(account_id))
    query = query.order_by(table.c.name).limit(limit)
    return [(str(rid), name) for rid, name in session.execute(query)]
