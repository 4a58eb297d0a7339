"""Personal data about contacts: erase it on request, export everything stored about a person,
and keep an audit log of who looked it up or changed it.

Forgetting keeps the row — the fact that a contact existed, with their buying roles, level and
function, stays in the history (needs, SPIN entries, activities still point at it) — and erases
what identifies or describes the person: name, title, phone, email, notes, communication style.
Their name is also blanked out of the free text linked to them (activity notes, SPIN questions
and answers, buying-signal notes, needs), and the dialogs that recorded or named them forget it
too: a dialog's state keeps every answer, so the answers given about the person (a contact's
turn in the intake: name, phone, notes ...) are emptied and their name blanked elsewhere in it.
The audit log holds ids and codes only.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from store.models import (
    Account,
    Activity,
    AuditLog,
    BuyingSignal,
    Contact,
    DialogSession,
    Need,
    SpinEntry,
    User,
)

ERASED_NAME = "(erased #{short})"
_ERASED_MARK = "(erased"
# columns of `contacts` that identify or describe the person
PERSONAL_COLUMNS = ("title", "phone", "email", "work_notes", "personal_notes", "comm_style")


class ContactNotFound(LookupError):
    """No contact with that id in the org."""


def audit(session: Session, *, org_id: uuid.UUID, action: str, subject_type: str,
          subject_id: uuid.UUID | None, now: datetime, user_id: uuid.UUID | None = None,
          actor: str | None = None, detail: dict[str, Any] | None = None) -> None:
    """Record who did what to whose personal data (no personal data in the record)."""
    table: Table = AuditLog.__table__  # type: ignore[assignment]
    session.execute(table.insert().values(
        id=uuid.uuid4(), org_id=org_id, user_id=user_id, actor=actor, action=action,
        subject_type=subject_type, subject_id=subject_id, detail=detail or {}, at=now))


def audit_entries(session: Session, org_id: uuid.UUID, subject_id: uuid.UUID | None = None
                  ) -> list[AuditLog]:
    query = select(AuditLog).where(AuditLog.org_id == org_id)
    if subject_id is not None:
        query = query.where(AuditLog.subject_id == subject_id)
    return list(session.execute(query.order_by(AuditLog.at, AuditLog.action)).scalars())


def is_erased(name: str) -> bool:
    return name.startswith(_ERASED_MARK)


def _contact(session: Session, org_id: uuid.UUID, contact_id: uuid.UUID) -> Contact:
    found = session.execute(select(Contact).where(Contact.org_id == org_id,
                                                  Contact.id == contact_id)).scalar()
    if found is None:
        raise ContactNotFound(str(contact_id))
    return found


def _name_parts(name: str) -> list[str]:
    """`刘建国 (Liu Jianguo)` -> the whole, `刘建国`, `Liu Jianguo`: what to blank in free text."""
    parts = [name.strip()]
    for piece in re.split(r"[()（）/,，]", name):
        piece = piece.strip()
        if len(piece) >= 2 and piece not in parts:
            parts.append(piece)
    return sorted(parts, key=len, reverse=True)


def _blank(text: str | None, parts: list[str], placeholder: str) -> str | None:
    if not text:
        return text
    for part in parts:
        text = re.sub(re.escape(part), placeholder, text, flags=re.IGNORECASE)
    return text


def forget_contact(session: Session, *, org_id: uuid.UUID, contact_id: uuid.UUID,
                   now: datetime, user_id: uuid.UUID | None = None,
                   actor: str | None = None) -> dict[str, int]:
    """Erase a contact's personal data; what changed, by kind of row."""
    contact = _contact(session, org_id, contact_id)
    placeholder = ERASED_NAME.format(short=contact_id.hex[:8])
    changed = {"contacts": 0, "activities": 0, "spin_entries": 0, "buying_signals": 0,
               "needs": 0, "dialog_sessions": 0}
    if not is_erased(contact.name):
        parts = _name_parts(contact.name)
        for model, columns in ((Activity, ("note",)), (SpinEntry, ("question", "answer")),
                               (BuyingSignal, ("note",)), (Need, ("text",))):
            table: Table = model.__table__  # type: ignore[assignment]
            for row in session.execute(select(table).where(table.c.org_id == org_id,
                                                           table.c.contact_id == contact_id)):
                values = {c: _blank(getattr(row, c), parts, placeholder) for c in columns}
                if any(values[c] != getattr(row, c) for c in columns):
                    session.execute(update(table).where(table.c.id == row.id).values(**values))
                    changed[table.name] += 1
        changed["dialog_sessions"] = _scrub_dialogs(session, org_id, contact_id, parts,
                                                    placeholder)
    contact.name = placeholder
    contact.name_key = placeholder
    for column in PERSONAL_COLUMNS:
        setattr(contact, column, None)
    contact.updated_at = now
    changed["contacts"] = 1
    session.flush()
    audit(session, org_id=org_id, action="forget", subject_type="contact",
          subject_id=contact_id, now=now, user_id=user_id, actor=actor,
          detail={k: v for k, v in changed.items() if v})
    return changed


_ITERATION = re.compile(r"^([A-Za-z_][\w-]*)\.(\d+)\.")


def _mentions(value: Any, contact_id: str, parts: list[str]) -> bool:
    """Whether an answer is about the person: names them, or refers to their row."""
    if isinstance(value, str):
        folded = value.casefold()
        return any(part.casefold() in folded for part in parts)
    if isinstance(value, dict):
        return value.get("id") == contact_id or any(
            _mentions(v, contact_id, parts) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, contact_id, parts) for v in value)
    return False


def _blanked(value: Any, contact_id: str, parts: list[str], placeholder: str) -> Any:
    if isinstance(value, str):
        return _blank(value, parts, placeholder)
    if isinstance(value, dict):
        out = {k: _blanked(v, contact_id, parts, placeholder) for k, v in value.items()}
        if out.get("id") == contact_id and "name" in out:
            out["name"] = placeholder
        return out
    if isinstance(value, list):
        return [_blanked(v, contact_id, parts, placeholder) for v in value]
    return value


def scrub_state(state: dict[str, Any], contact_id: str, parts: list[str],
                placeholder: str) -> dict[str, Any]:
    """A dialog state without the person: the answers of a repeated group's turn that is
    about them (a contact in the intake: one of its answers is their name or their row) are
    emptied, their name is blanked everywhere else, and a reference to their row shows the
    placeholder."""
    answers = state.get("answers") or {}
    names = {part.casefold() for part in parts}

    def is_them(value: Any) -> bool:  # the answer that says who the turn is about
        if isinstance(value, str):
            return value.strip().casefold() in names
        return isinstance(value, dict) and value.get("id") == contact_id

    theirs = {match.group(0) for key, value in answers.items()
              if (match := _ITERATION.match(key)) and is_them(value)}
    kept = {key: (None if any(key.startswith(prefix) for prefix in theirs) else value)
            for key, value in answers.items()}
    out = _blanked({**state, "answers": kept}, contact_id, parts, placeholder)
    assert isinstance(out, dict)
    return out


def _scrub_dialogs(session: Session, org_id: uuid.UUID, contact_id: uuid.UUID,
                   parts: list[str], placeholder: str) -> int:
    """Apply `scrub_state` to every dialog of the org that names the person."""
    table: Table = DialogSession.__table__  # type: ignore[assignment]
    cid = str(contact_id)
    changed = 0
    for row in session.execute(select(table.c.id, table.c.state)
                               .where(table.c.org_id == org_id)).all():
        state = row.state or {}
        if not _mentions(state, cid, parts):
            continue
        scrubbed = scrub_state(state, cid, parts, placeholder)
        if scrubbed != state:
            # a new version: a turn in flight on the old state is told it is stale
            session.execute(update(table).where(table.c.id == row.id)
                            .values(state=scrubbed, version=table.c.version + 1))
            changed += 1
    return changed


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _rows(session: Session, model: Any, org_id: uuid.UUID, contact_id: uuid.UUID
          ) -> list[dict[str, Any]]:
    table: Table = model.__table__
    return [{k: _plain(v) for k, v in row._mapping.items() if k != "org_id"}
            for row in session.execute(select(table).where(table.c.org_id == org_id,
                                                           table.c.contact_id == contact_id))]


def export_contact(session: Session, *, org_id: uuid.UUID, contact_id: uuid.UUID,
                   now: datetime, user_id: uuid.UUID | None = None,
                   actor: str | None = None) -> dict[str, Any]:
    """Everything stored about a person, as JSON-ready data (the request is audited)."""
    contact = _contact(session, org_id, contact_id)
    table: Table = Contact.__table__  # type: ignore[assignment]
    row = session.execute(select(table).where(table.c.id == contact_id)).one()
    data: dict[str, Any] = {k: _plain(v) for k, v in row._mapping.items() if k != "org_id"}
    account = session.execute(select(Account.name).where(Account.id == contact.account_id)
                              ).scalar()
    owner = session.execute(select(User.display_name).where(User.id == contact.owner_id)
                            ).scalar()
    reports_to = None
    if contact.reports_to_id is not None:
        reports_to = session.execute(select(Contact.name).where(
            Contact.id == contact.reports_to_id)).scalar()
    reports = session.execute(select(Contact.name).where(
        Contact.reports_to_id == contact_id).order_by(Contact.name)).scalars().all()
    history = [{k: _plain(v) for k, v in {
        "at": e.at, "action": e.action, "user_id": e.user_id, "actor": e.actor,
        "detail": e.detail}.items()} for e in audit_entries(session, org_id, contact_id)]
    result = {
        "exported_at": now.isoformat(),
        "contact": data,
        "account": account,
        "owner": owner,
        "reports_to": reports_to,
        "direct_reports": list(reports),
        "needs": _rows(session, Need, org_id, contact_id),
        "spin_entries": _rows(session, SpinEntry, org_id, contact_id),
        "buying_signals": _rows(session, BuyingSignal, org_id, contact_id),
        "activities": _rows(session, Activity, org_id, contact_id),
        "audit_log": history,
    }
    audit(session, org_id=org_id, action="export", subject_type="contact",
          subject_id=contact_id, now=now, user_id=user_id, actor=actor)
    return result
