"""A small company for the look-up, permission, privacy and CSV tests.

People (org "acme", console identities named by key):
    director  (manager)            └ manager (manager) └ rep1, rep2
    manager2  (manager)            └ rep3
    admin     (admin)
Accounts: rep1 owns Sinopec Beijing (中石化北京石油分公司) and China Petrochemical
(中国石油化工集团); rep2 owns Daqing; rep3 owns the two bus companies; manager owns one too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from store.models import (
    Account,
    Contact,
    Identity,
    Invoice,
    Opportunity,
    Org,
    User,
    name_key,
)

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
NS = uuid.UUID("8d6f3c1e-9a1b-4c2d-8e3f-0a1b2c3d4e5f")
ORG_KEY = "acme"


def uid(kind: str, key: str) -> uuid.UUID:
    return uuid.uuid5(NS, f"{kind}:{key}")


ORG = uid("org", ORG_KEY)
USERS = {  # key: (role, manager key)
    "director": ("manager", None),
    "manager": ("manager", "director"),
    "rep1": ("rep", "manager"),
    "rep2": ("rep", "manager"),
    "manager2": ("manager", None),
    "rep3": ("rep", "manager2"),
    "admin": ("admin", None),
}
ACCOUNTS = {  # key: (name, owner)
    "sinopec": ("中石化北京石油分公司 (Sinopec Beijing)", "rep1"),
    "petrochem": ("中国石油化工集团 (China Petrochemical Group)", "rep1"),
    "daqing": ("大庆油田 (Daqing Oilfield)", "rep2"),
    "bjbus": ("Beijing Bus Group", "rep3"),
    "shbus": ("Shanghai Bus Company", "rep3"),
    "harbin": ("Harbin Electric Machinery", "manager"),
    "sinochem": ("Sinochem Trading", "manager2"),
}


@dataclass(frozen=True)
class Company:
    org_id: uuid.UUID

    def user(self, key: str) -> uuid.UUID:
        return uid("user", key)

    def account(self, key: str) -> uuid.UUID:
        return uid("account", key)


def build(session: Session, now: datetime = NOW) -> Company:
    session.add(Org(id=ORG, name="Acme Uniforms", platform="console", external_id=ORG_KEY,
                    default_lang="en", tz="UTC", settings={}, created_at=now, updated_at=now))
    session.flush()
    for key, (role, _manager) in USERS.items():
        session.add(User(id=uid("user", key), org_id=ORG, display_name=key.title(), role=role,
                         created_at=now, updated_at=now))
    session.flush()
    for key, (_role, manager) in USERS.items():
        if manager:
            user = session.get(User, uid("user", key))
            assert user is not None
            user.manager_id = uid("user", manager)
        session.add(Identity(id=uid("identity", key), org_id=ORG, user_id=uid("user", key),
                             platform="console", external_id=key, created_at=now))
    session.flush()
    for key, (name, owner) in ACCOUNTS.items():
        session.add(Account(id=uid("account", key), org_id=ORG, owner_id=uid("user", owner),
                            name=name, name_key=name_key(name), created_at=now, updated_at=now))
    session.flush()
    contacts = [
        ("wanghai", "sinopec", "rep1", "王海 (Wang Hai)", ["decision_maker"], "trust",
         "Collects tea; his son studies in Leeds."),
        ("lina", "sinopec", "rep1", "李娜 (Li Na)", ["evaluator"], "date", None),
        ("zhaoyun", "daqing", "rep2", "赵云 (Zhao Yun)", ["initiator"], "alliance",
         "Marathon runner."),
        ("busboss", "bjbus", "rep3", "Liu Bus", ["decision_maker"], "acquaint",
         "Lives near the depot."),
    ]
    for key, account, owner, name, roles, stage, notes in contacts:
        session.add(Contact(id=uid("contact", key), org_id=ORG, account_id=uid("account", account),
                            owner_id=uid("user", owner), name=name, name_key=name_key(name),
                            buying_roles=roles, relationship_stage=stage, comm_style="owl",
                            insider_level="mid", phone="+86 10 5555 0000",
                            personal_notes=notes, created_at=now, updated_at=now))
    opps = [
        ("sinopec-winter", "sinopec", "rep1", "Winter jackets 2027", "needs", "design",
         Decimal("1200000")),
        ("daqing-crews", "daqing", "rep2", "Drilling crew parkas", "value", "evaluation",
         Decimal("6800000")),
        ("bjbus-drivers", "bjbus", "rep3", "Drivers' uniforms", "trust", None,
         Decimal("4200000")),
    ]
    for key, account, owner, name, stage, phase, amount in opps:
        session.add(Opportunity(
            id=uid("opp", key), org_id=ORG, account_id=uid("account", account),
            owner_id=uid("user", owner), name=name, stage=stage, phase=phase, amount=amount,
            currency="CNY", next_step="Call back", next_step_due=(now + timedelta(days=3)).date(),
            stage_entered_at=now - timedelta(days=10), last_activity_at=now - timedelta(days=2),
            created_at=now - timedelta(days=40), updated_at=now))
    session.flush()
    session.add(Invoice(id=uid("invoice", "sinopec-1"), org_id=ORG,
                        account_id=uid("account", "sinopec"),
                        opportunity_id=uid("opp", "sinopec-winter"), number="AC-001",
                        amount=Decimal("300000"), currency="CNY",
                        issued_on=(now - timedelta(days=60)).date(),
                        due_on=(now - timedelta(days=20)).date(), created_at=now, updated_at=now))
    session.flush()
    return Company(ORG)
