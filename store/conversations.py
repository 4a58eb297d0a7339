"""Who is talking and which dialog they are in: users, identities, dialog sessions.

Functions take a `Session` and never commit; the caller's unit of work does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Result, Select, Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import BindParameter

from store.models import DialogSession, Identity, Org, ProcessedEvent, User


class StaleSession(Exception):
    """The dialog was advanced by another input first (its version moved on)."""


@dataclass(frozen=True)
class Speaker:
    """The user behind an inbound message, with their org's defaults."""

    org_id: uuid.UUID
    user_id: uuid.UUID
    display_name: str
    lang: str | None
    tz: str | None
    org_lang: str
    org_tz: str
    role: str


@dataclass(frozen=True)
class OpenDialog:
    id: uuid.UUID
    flow: str
    state: dict[str, Any]
    version: int
    updated_at: datetime


# The statements of every turn are built once, with bind parameters, on the tables rather than
# the mapped classes, and run on the session's connection (in its transaction). Building a new
# construct per call, and the ORM's compile and bulk-update paths, cost more than the SQL itself.
_orgs = cast(Table, Org.__table__)
_users = cast(Table, User.__table__)
_identities = cast(Table, Identity.__table__)
_dialogs = cast(Table, DialogSession.__table__)
_events = cast(Table, ProcessedEvent.__table__)

_platform: BindParameter[str] = bindparam("platform")
_SPEAKER_COLUMNS = (_orgs.c.id, _users.c.id, _users.c.display_name, _users.c.lang, _users.c.tz,
                    _orgs.c.default_lang, _orgs.c.tz, _users.c.role)
_SPEAKER_FROM = _identities.join(_users, _users.c.id == _identities.c.user_id).join(
    _orgs, _orgs.c.id == _identities.c.org_id)
_SPEAKER_WHERE = (
    _orgs.c.platform == _platform, _orgs.c.external_id == bindparam("org_key"),
    _identities.c.platform == _platform, _identities.c.external_id == bindparam("user_key"),
)
_SPEAKER = select(*_SPEAKER_COLUMNS).select_from(_SPEAKER_FROM).where(*_SPEAKER_WHERE)
_OPEN_DIALOGS = (
    select(_dialogs.c.id, _dialogs.c.flow, _dialogs.c.state, _dialogs.c.version,
           _dialogs.c.updated_at)
    .where(_dialogs.c.user_id == bindparam("user_id"), _dialogs.c.status == "active")
    .order_by(_dialogs.c.updated_at.desc(), _dialogs.c.created_at.desc())
)
_OPEN_DIALOGS_LIMIT: dict[int, Select[Any]] = {}
_INSERT_DIALOG = insert(_dialogs)
_SAVE_DIALOG = update(_dialogs).where(
    _dialogs.c.id == bindparam("_id"), _dialogs.c.version == bindparam("_version"))
_TOUCH_DIALOG = update(_dialogs).where(_dialogs.c.id == bindparam("_id"))


def _execute(
    session: Session, statement: Executable, params: dict[str, Any]
) -> Result[*tuple[Any, ...]]:
    return session.connection().execute(statement, params)


def find_speaker(session: Session, platform: str, org_key: str, user_key: str) -> Speaker | None:
    row = _execute(session, _SPEAKER,
                   {"platform": platform, "org_key": org_key, "user_key": user_key}).first()
    return Speaker(*row) if row else None


def ensure_speaker(
    session: Session,
    *,
    platform: str,
    org_key: str,
    user_key: str,
    display_name: str,
    lang: str | None,
    default_lang: str,
    default_tz: str,
    now: datetime,
    role: str = "rep",
    known_new: bool = False,
) -> Speaker:
    """The speaker, created (org, user, identity) the first time they write, with `role`
    (an id listed in SALESCOACH_ADMINS is created as an admin). `known_new`: the caller has
    just looked them up and found nobody, so the first look-up is skipped."""
    if not known_new:
        found = find_speaker(session, platform, org_key, user_key)
        if found is not None:
            return found
    org_params = {"platform": platform, "org_key": org_key}
    org = _execute(session, _ORG, org_params).first()
    if org is None:
        # another first message from this org may get there first: then theirs stands
        _insert_ignore(session, _orgs, ("platform", "external_id"), {
            "id": uuid.uuid4(), "name": org_key, "platform": platform, "external_id": org_key,
            "default_lang": default_lang, "tz": default_tz, "settings": {}, "created_at": now,
            "updated_at": now})
        org = _execute(session, _ORG, org_params).one()
    org_id, org_lang, org_tz = org
    user_id = uuid.uuid4()
    _execute(session, _INSERT_USER, {
        "id": user_id, "org_id": org_id, "display_name": display_name, "role": role,
        "lang": lang, "active": True, "created_at": now, "updated_at": now})
    if _insert_ignore(session, _identities, ("org_id", "platform", "external_id"), {
            "id": uuid.uuid4(), "org_id": org_id, "user_id": user_id, "platform": platform,
            "external_id": user_key, "username": display_name, "created_at": now}):
        return Speaker(org_id, user_id, display_name, lang, None, org_lang, org_tz, role)
    # a concurrent first message from the same user created them: drop ours, take theirs
    _execute(session, _DELETE_USER, {"_id": user_id})
    found = find_speaker(session, platform, org_key, user_key)
    assert found is not None
    return found


_ORG = select(_orgs.c.id, _orgs.c.default_lang, _orgs.c.tz).where(
    _orgs.c.platform == _platform, _orgs.c.external_id == bindparam("org_key"))
_INSERT_USER = insert(_users)
_DELETE_USER = delete(_users).where(_users.c.id == bindparam("_id"))
_IGNORING: dict[tuple[str, str], Executable] = {}


def _insert_ignore(session: Session, table: Table, unique: tuple[str, ...],
                   values: dict[str, Any]) -> bool:
    """INSERT that does nothing when a row with the same `unique` columns exists (one
    statement, no savepoint); False then."""
    dialect = session.get_bind().dialect.name
    statement = _IGNORING.get((dialect, table.name))
    if statement is None:
        factory = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = _IGNORING.setdefault(
            (dialect, table.name), factory(table).on_conflict_do_nothing(index_elements=unique))
    result = _execute(session, statement, values)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def set_role(session: Session, user_id: uuid.UUID, role: str, now: datetime) -> None:
    session.execute(update(User).where(User.id == user_id).values(role=role, updated_at=now))


def set_language(session: Session, user_id: uuid.UUID, lang: str, now: datetime) -> None:
    session.execute(update(User).where(User.id == user_id).values(lang=lang, updated_at=now))


def open_dialogs(session: Session, user_id: uuid.UUID, limit: int = 20) -> list[OpenDialog]:
    """The user's unfinished dialogs, most recently used first."""
    statement = _OPEN_DIALOGS_LIMIT.get(limit)
    if statement is None:
        statement = _OPEN_DIALOGS_LIMIT.setdefault(limit, _OPEN_DIALOGS.limit(limit))
    rows = _execute(session, statement, {"user_id": user_id}).all()
    return [OpenDialog(*row) for row in rows]


def current_dialog(session: Session, user_id: uuid.UUID) -> OpenDialog | None:
    found = open_dialogs(session, user_id, limit=1)
    return found[0] if found else None


_current = _dialogs.alias("current_dialog")
_latest = (
    select(_dialogs.c.id)
    .where(_dialogs.c.user_id == _users.c.id, _dialogs.c.status == "active")
    .order_by(_dialogs.c.updated_at.desc(), _dialogs.c.created_at.desc())
    .limit(1)
    .correlate(_users)
    .scalar_subquery()
)
_SPEAKER_AND_DIALOG = (
    select(*_SPEAKER_COLUMNS, _current.c.id, _current.c.flow, _current.c.state,
           _current.c.version, _current.c.updated_at)
    .select_from(_SPEAKER_FROM.outerjoin(_current, _current.c.id == _latest))
    .where(*_SPEAKER_WHERE)
)


def speaker_and_dialog(
    session: Session, platform: str, org_key: str, user_key: str
) -> tuple[Speaker, OpenDialog | None] | None:
    """`find_speaker` and their `current_dialog` in one statement (a turn needs both)."""
    row = _execute(session, _SPEAKER_AND_DIALOG,
                   {"platform": platform, "org_key": org_key, "user_key": user_key}).first()
    if row is None:
        return None
    speaker = Speaker(*row[:8])
    return speaker, (OpenDialog(*row[8:]) if row[8] is not None else None)


def create_dialog(
    session: Session,
    *,
    dialog_id: uuid.UUID,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    flow: str,
    state: dict[str, Any],
    status: str,
    now: datetime,
) -> None:
    _execute(session, _INSERT_DIALOG, {
        "id": dialog_id, "org_id": org_id, "user_id": user_id, "flow": flow, "state": state,
        "version": 1, "status": status, "created_at": now, "updated_at": now,
    })


def save_dialog(
    session: Session,
    dialog: OpenDialog,
    *,
    state: dict[str, Any],
    status: str,
    now: datetime,
) -> None:
    """Store the new state if nobody else did first; else raise `StaleSession`."""
    result = _execute(session, _SAVE_DIALOG, {
        "_id": dialog.id, "_version": dialog.version,
        "state": state, "status": status, "version": dialog.version + 1, "updated_at": now,
    })
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleSession(str(dialog.id))


def touch_dialog(session: Session, dialog_id: uuid.UUID, now: datetime) -> None:
    """Make a dialog the current one (what `resume` picks up)."""
    _execute(session, _TOUCH_DIALOG, {"_id": dialog_id, "updated_at": now})


def first_time(session: Session, platform: str, event_id: str, now: datetime) -> bool:
    """Record a platform event id; False if it was already handled (a retry, a double click)."""
    return _insert_ignore(session, _events, ("platform", "event_id"), {
        "id": uuid.uuid4(), "platform": platform, "event_id": event_id, "processed_at": now})
