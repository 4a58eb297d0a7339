"""Who may see and change what: one rule for every command, dialog, button and front end.

| access     | rep  | manager      | admin        |
|------------|------|--------------|--------------|
| `READ`     | own  | team         | org          |
| `CHANGE`   | own  | own          | own          |
| `MANAGE`   | own  | team         | org          |
| personal   | own  | team         | own (+ team) |

`READ` is the look-ups, cards, pipeline, exports. `CHANGE` is what a dialog, an edit form or a
proposal writes: a record's owner keeps it (a manager coaches, the rep records). `MANAGE` is
what the method gives managers over their team's deals: `override`, `advance`, and Done /
Snooze / Open on a nudge.

A manager's team is the users whose `manager_id` is them, and those users' reports (two levels:
a sales director sees the team leads' reps too). Personal notes on contacts are stricter: only
the owner and the owner's managers (not every admin), and only in a private chat — the caller
checks the chat, `may_see_personal` the people.

Look-ups filter by `Viewer.owner_clause`, so someone else's record is simply not found; the
commands answer the same "nothing of yours matches" whether it exists or not.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import QueryableAttribute, Session

from store.enums import Role
from store.models import User

OwnerColumn = ColumnElement[uuid.UUID] | QueryableAttribute[uuid.UUID]


class Access(StrEnum):
    READ = "read"
    CHANGE = "change"
    MANAGE = "manage"


class NotYours(Exception):
    """The asker may not see this; say so without revealing whether it exists."""


@dataclass(frozen=True)
class Viewer:
    """The asker and the owners whose records they may see (`None`: every owner)."""

    org_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    # the asker and everyone below them (reports, and their reports)
    team: frozenset[uuid.UUID]

    @property
    def sees_all(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def visible_owners(self) -> frozenset[uuid.UUID] | None:
        if self.sees_all:
            return None
        if self.role == Role.MANAGER:
            return self.team
        return frozenset({self.user_id})

    def owners(self, access: Access = Access.READ) -> frozenset[uuid.UUID] | None:
        """The owners whose records the viewer may `access` (`None`: every owner)."""
        if access == Access.CHANGE:
            return frozenset({self.user_id})
        return self.visible_owners

    def can_see(self, owner_id: uuid.UUID | None) -> bool:
        return self.allows(owner_id, Access.READ)

    def allows(self, owner_id: uuid.UUID | None, access: Access) -> bool:
        owners = self.owners(access)
        return owners is None or owner_id in owners

    def owner_clause(self, column: OwnerColumn,
                     access: Access = Access.READ) -> ColumnElement[bool]:
        """A WHERE clause limiting `column` (an owner_id) to what the viewer may `access`."""
        owners = self.owners(access)
        if owners is None:
            return true()
        if len(owners) == 1:
            return column == next(iter(owners))
        return column.in_(sorted(owners))

    def may_see_personal(self, *owner_ids: uuid.UUID | None) -> bool:
        """Personal notes: the owner of the record, or one of the owner's managers."""
        return any(owner is not None and (owner == self.user_id or owner in self.team)
                   for owner in owner_ids)


def team_of(session: Session, user_id: uuid.UUID) -> frozenset[uuid.UUID]:
    """The user and their reports, two levels down, in one query."""
    users = User.__table__
    direct = select(users.c.id).where(users.c.manager_id == user_id)
    rows = session.execute(
        select(users.c.id).where((users.c.manager_id == user_id)
                                 | users.c.manager_id.in_(direct.scalar_subquery()))
    ).scalars()
    return frozenset({user_id, *rows})


def viewer(session: Session, org_id: uuid.UUID, user_id: uuid.UUID, role: str) -> Viewer:
    """The viewer for a speaker (the coach's `Speaker` carries org, user and role)."""
    if role == Role.REP:  # a rep sees their own records only: no need to ask who reports to them
        return Viewer(org_id=org_id, user_id=user_id, role=role, team=frozenset({user_id}))
    return Viewer(org_id=org_id, user_id=user_id, role=role, team=team_of(session, user_id))


def require(viewer_: Viewer, owner_id: uuid.UUID | None,
            access: Access = Access.READ) -> None:
    if not viewer_.allows(owner_id, access):
        raise NotYours()
