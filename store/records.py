"""Writing what a dialog recorded: generic upserts by table and id. Never commits."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Delete,
    Insert,
    Integer,
    Select,
    Table,
    Update,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from store.enums import JSON_KEYS
from store.models import Activity, Base, name_key


def _table(name: str) -> Table:
    table = Base.metadata.tables.get(name)
    if table is None:
        raise KeyError(f"no table {name!r}")
    return table


class _Statements(NamedTuple):
    """A table's statements, built once: a dialog turn runs them with plain parameters, so
    SQLAlchemy's compiled cache is hit without building (and cache-keying) a construct per call.
    UPDATE and INSERT set exactly the columns named in the parameters."""

    table: Table
    integers: frozenset[str]
    update: Update
    insert: Insert
    delete: Delete
    owners: tuple[str, ...]
    has_name_key: bool
    has_updated_at: bool
    has_created_at: bool


_STATEMENTS: dict[str, _Statements] = {}
_NAMES: dict[tuple[str, bool, bool, int], Select[*tuple[Any, ...]]] = {}
_INSERT_ACTIVITY = insert(cast(Table, Activity.__table__))


def _statements(table_name: str) -> _Statements:
    found = _STATEMENTS.get(table_name)
    if found is None:
        table = _table(table_name)
        where = (table.c.id == bindparam("_row_id"), table.c.org_id == bindparam("_org_id"))
        found = _STATEMENTS.setdefault(table_name, _Statements(
            table=table,
            integers=frozenset(c.name for c in table.columns if isinstance(c.type, Integer)),
            update=update(table).where(*where),
            insert=insert(table),
            delete=delete(table).where(*where),
            owners=tuple(o for o in ("owner_id", "author_id", "user_id") if o in table.c),
            has_name_key="name_key" in table.c,
            has_updated_at="updated_at" in table.c,
            has_created_at="created_at" in table.c,
        ))
    return found


def table_columns() -> dict[str, set[str]]:
    """Table -> column names, for checking flow files' `save:` targets at start-up."""
    return {name: {c.name for c in t.columns} for name, t in Base.metadata.tables.items()}


def json_keys() -> dict[tuple[str, str], set[str]]:
    """(table, column) -> the keys a JSON column may hold, for checking flows at start-up."""
    return {where: {k.value for k in keys} for where, keys in JSON_KEYS.items()}


def _coerce(stmts: _Statements, values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    columns = stmts.table.c
    for key, value in values.items():
        if key not in columns:
            raise KeyError(key)
        if value is not None and key in stmts.integers and not isinstance(value, int):
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
    stmts = _statements(table_name)
    rid = uuid.UUID(row_id)
    data = _coerce(stmts, values)
    if stmts.has_name_key and data.get("name") is not None:
        data["name_key"] = name_key(str(data["name"]))
    if stmts.has_updated_at:
        data["updated_at"] = now
    connection = session.connection()
    if data:
        result = connection.execute(stmts.update, {**data, "_row_id": rid, "_org_id": org_id})
        if result.rowcount:
            return
    elif connection.execute(
        select(stmts.table.c.id).where(stmts.table.c.id == rid, stmts.table.c.org_id == org_id)
    ).first() is not None:
        return
    data.update(id=rid, org_id=org_id)
    if stmts.has_created_at:
        data["created_at"] = now
    for owner in stmts.owners:
        if owner not in data:
            data[owner] = user_id
    if parent is not None:
        data[parent[0]] = uuid.UUID(parent[1])
    connection.execute(stmts.insert, data)


def remove(session: Session, table_name: str, row_id: str, *, org_id: uuid.UUID) -> None:
    session.connection().execute(_statements(table_name).delete,
                                 {"_row_id": uuid.UUID(row_id), "_org_id": org_id})


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

    session.connection().execute(_INSERT_ACTIVITY, {
        "id": uuid.uuid4(), "org_id": org_id, "user_id": user_id, "kind": kind, "note": note,
        "occurred_at": now, "created_at": now, "account_id": _id(account_id),
        "opportunity_id": _id(opportunity_id), "contact_id": _id(contact_id),
    })


def value_taken(session: Session, table_name: str, column: str, *, org_id: uuid.UUID,
                value: str) -> bool:
    """Whether a row of the org already has `value` in `column` (an invoice number)."""
    table = _table(table_name)
    query = select(table.c.id).where(table.c.org_id == org_id, table.c[column] == value)
    return session.connection().execute(query.limit(1)).first() is not None


def names(session: Session, table_name: str, *, org_id: uuid.UUID,
          account_id: str | None = None, owners: frozenset[uuid.UUID] | None = None,
          limit: int = 5000) -> list[tuple[str, str]]:
    """(id, name) of an org's accounts, or of one account's contacts, for "did you mean";
    with `owners` (store/permissions.py), only the rows those users own."""
    table = _table(table_name)
    by_account = account_id is not None and "account_id" in table.c
    by_owner = owners is not None and "owner_id" in table.c
    query = _NAMES.get((table_name, by_account, by_owner, limit))
    if query is None:
        query = select(table.c.id, table.c.name).where(table.c.org_id == bindparam("_org_id"))
        if by_account:
            query = query.where(table.c.account_id == bindparam("_account_id"))
        if by_owner:
            query = query.where(table.c.owner_id.in_(bindparam("_owners", expanding=True)))
        query = _NAMES.setdefault((table_name, by_account, by_owner, limit),
                                  query.order_by(table.c.name).limit(limit))
    params: dict[str, Any] = {"_org_id": org_id}
    if by_account:
        params["_account_id"] = uuid.UUID(str(account_id))
    if by_owner:
        params["_owners"] = sorted(owners or ())
    return [(str(rid), name) for rid, name in session.connection().execute(query, params)]
