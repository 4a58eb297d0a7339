"""Who sees what: rep / manager / admin × own / team / other, and personal notes."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.db import Database
from store.models import Account, User
from store.permissions import NotYours, require, team_of, viewer
from tests.store.lookups_data import ORG, USERS, build, uid


def _viewer_sees(session: Session, who: str, owner: str) -> bool:
    v = viewer(session, ORG, uid("user", who), USERS[who][0])
    return v.can_see(uid("user", owner))


def _visible_accounts(session: Session, who: str) -> set[str]:
    v = viewer(session, ORG, uid("user", who), USERS[who][0])
    return set(session.execute(select(Account.name).where(
        Account.org_id == ORG, v.owner_clause(Account.owner_id))).scalars())


# own = their own record; team = a record of someone they manage; other = outside their team
MATRIX = [
    # viewer, owner of the record, may see
    ("rep1", "rep1", True),       # rep × own
    ("rep1", "rep2", False),      # rep × a teammate's: not theirs
    ("rep1", "rep3", False),      # rep × other team
    ("manager", "manager", True),  # manager × own
    ("manager", "rep1", True),    # manager × team
    ("manager", "rep3", False),   # manager × other
    ("director", "rep2", True),   # manager of a manager × the team below (two levels)
    ("director", "manager", True),
    ("director", "rep3", False),
    ("admin", "admin", True),     # admin × own (owns nothing, still)
    ("admin", "rep1", True),      # admin × any team
    ("admin", "rep3", True),      # admin × other
]


@pytest.mark.parametrize(("who", "owner", "sees"), MATRIX)
async def test_permission_matrix(db: Database, who: str, owner: str, sees: bool) -> None:
    await db.run(build)
    assert await db.run(_viewer_sees, who, owner) is sees


async def test_visible_accounts_per_role(db: Database) -> None:
    await db.run(build)
    rep1 = await db.run(_visible_accounts, "rep1")
    assert rep1 == {"中石化北京石油分公司 (Sinopec Beijing)",
                    "中国石油化工集团 (China Petrochemical Group)"}
    manager = await db.run(_visible_accounts, "manager")
    assert manager == rep1 | {"大庆油田 (Daqing Oilfield)", "Harbin Electric Machinery"}
    assert len(await db.run(_visible_accounts, "admin")) == 7
    assert await db.run(_visible_accounts, "manager2") == {"Beijing Bus Group",
                                                          "Shanghai Bus Company",
                                                          "Sinochem Trading"}


def _personal(session: Session, who: str, owner: str) -> bool:
    v = viewer(session, ORG, uid("user", who), USERS[who][0])
    return v.may_see_personal(uid("user", owner))


@pytest.mark.parametrize(("who", "owner", "sees"), [
    ("rep1", "rep1", True), ("rep2", "rep1", False), ("manager", "rep1", True),
    ("director", "rep1", True), ("manager2", "rep1", False),
    # an admin sees every record, but personal notes only as the owner or a manager
    ("admin", "rep1", False),
])
async def test_personal_notes_only_for_the_owner_and_their_managers(
        db: Database, who: str, owner: str, sees: bool) -> None:
    await db.run(build)
    assert await db.run(_personal, who, owner) is sees


def _team(session: Session, who: str) -> set[str]:
    ids = team_of(session, uid("user", who))
    return set(session.execute(select(User.display_name).where(User.id.in_(ids))).scalars())


async def test_team_is_two_levels_deep(db: Database) -> None:
    await db.run(build)
    assert await db.run(_team, "director") == {"Director", "Manager", "Rep1", "Rep2"}
    assert await db.run(_team, "rep1") == {"Rep1"}


async def test_require_raises_not_yours(db: Database) -> None:
    await db.run(build)

    def check(session: Session) -> None:
        v = viewer(session, ORG, uid("user", "rep1"), "rep")
        require(v, uid("user", "rep1"))
        with pytest.raises(NotYours):
            require(v, uid("user", "rep3"))

    await db.run(check)
